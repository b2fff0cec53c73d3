#!/usr/bin/env bash
# Render every kustomization under deploy/ and validate what it produces.
#
#   scripts/validate_deploy.sh                       # exits non-zero on any failure
#   KUBE_VERSIONS="1.29.0 1.33.0" scripts/validate_deploy.sh
#
# For each directory holding a kustomization.yaml:
#   1. `kubectl kustomize DIR` (kubectl >= 1.21 embeds kustomize)
#   2. `kubernetes-validate --strict` against each Kubernetes version in KUBE_VERSIONS, using the JSON
#      schemas bundled in the package (offline; 1.37.0 bundles 1.25 to 1.37). Strict rejects unknown
#      fields. kubernetes-validate only warns about kinds it has no schema for: any such kind other
#      than the Prometheus Operator CRDs below fails here.
#   3. a structural check of those CRDs (PrometheusRule, PodMonitor, KEDA's ScaledObject) and of the
#      Grafana dashboard in its ConfigMap: required keys, runbook_url anchors, only metric names that
#      consumer/ops/metrics.py declares, and a ScaledObject that targets a Deployment rendered with it.
# Then, on its own: deploy/monitoring/grafana-dashboard.json parses and has panels with queries.
# With promtool on PATH (apt-get install prometheus): `promtool check rules` on the alerts (the rule
# groups of the rendered deploy/monitoring, extracted by scripts/extract_rules.py) and on the
# dashboard's queries, and `promtool test rules` on deploy/monitoring/alerts.test.yaml. Without it
# those are skipped, or fail if REQUIRE_PROMTOOL=1 (.ci/run installs promtool and sets it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
versions=${KUBE_VERSIONS:-"1.30.0 1.37.0"}
# Kinds with no bundled schema that are checked structurally instead (kind apiVersion, as in the WARN).
crd_kinds_re='kind ((PrometheusRule|PodMonitor) with api version monitoring\.coreos\.com/v1|ScaledObject with api version keda\.sh/v1alpha1) '
work=$(mktemp -d "${TMPDIR:-/tmp}/validate-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { printf 'validate_deploy: FAIL: %s\n' "$*" >&2; exit 1; }
for tool in kubectl kubernetes-validate python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (pip install kubernetes-validate)"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 cannot import yaml (pip install PyYAML)"

cd "$root"
mapfile -t dirs < <(find deploy -name kustomization.yaml -printf '%h\n' | sort)
[ "${#dirs[@]}" -gt 0 ] || fail "no kustomization.yaml under deploy/"

k_flags=()
for v in $versions; do k_flags+=(-k "$v"); done
echo "kubernetes-validate $(kubernetes-validate --version), strict, Kubernetes ${versions// /, }"

rendered=()
for dir in "${dirs[@]}"; do
    out="$work/$(echo "$dir" | tr / _).yaml"
    kubectl kustomize "$dir" >"$out" || fail "kubectl kustomize $dir"
    log="$out.log"
    if ! kubernetes-validate --strict --quiet "${k_flags[@]}" "$out" >"$log" 2>&1; then
        sed "s|$out|$dir|g" "$log" >&2
        fail "kubernetes-validate rejected $dir"
    fi
    unknown=$(grep -E '^WARN ' "$log" | grep -Ev "$crd_kinds_re" || true)
    [ -z "$unknown" ] || fail "$dir: no schema to validate against: ${unknown//$out/$dir}"
    printf '  %-28s %3d resources valid\n' "$dir" "$(grep -c '^kind:' "$out")"
    rendered+=("$dir=$out")
done

echo "structural checks: CRDs, dashboards, runbook anchors"
python3 - "$work" "${rendered[@]}" <<'PY'
"""Light structural checks for what kubernetes-validate has no schema for."""

import json
import pathlib
import re
import sys

import yaml

# The families consumer/ops/metrics.py declares (read as text: no import, no installed package needed),
# with the series names a histogram adds.
DECLARED = re.findall(r'"(currents_[a-z0-9_]+)"', pathlib.Path("consumer/ops/metrics.py").read_text())
METRICS = {name + suffix for name in DECLARED for suffix in ("", "_bucket", "_sum", "_count")}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
RUNBOOK = re.compile(r"^docs/operations\.md#([a-z0-9-]+)$")
errors: list[str] = []
runbook_anchors: set[str] = set()
rule_groups: list[dict] = []


def check_metrics(where: str, expr: str) -> None:
    for name in set(re.findall(r"\bcurrents_[a-z0-9_]+", expr)) - METRICS:
        errors.append(f"{where}: unknown metric {name}")


def check_prometheus_rule(where: str, doc: dict) -> None:
    groups = (doc.get("spec") or {}).get("groups")
    if not groups:
        errors.append(f"{where}: spec.groups is empty")
        return
    alerts: set[str] = set()
    for group in groups:
        if not group.get("name") or not group.get("rules"):
            errors.append(f"{where}: a group lacks name or rules")
            continue
        rule_groups.append(group)
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            at = f"{where} rule {name}"
            if bool(rule.get("alert")) == bool(rule.get("record")):
                errors.append(f"{at}: needs exactly one of alert/record")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                errors.append(f"{at}: no expr")
                continue
            check_metrics(at, rule["expr"])
            if "for" in rule and not DURATION.match(str(rule["for"])):
                errors.append(f"{at}: bad for: {rule['for']!r}")
            if not rule.get("alert"):
                continue
            if name in alerts:
                errors.append(f"{at}: duplicate alert name")
            alerts.add(name)
            if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
                errors.append(f"{at}: labels.severity must be one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    errors.append(f"{at}: no {key} annotation")
            match = RUNBOOK.match(annotations.get("runbook_url", ""))
            if not match:
                errors.append(f"{at}: runbook_url must look like docs/operations.md#anchor")
            else:
                runbook_anchors.add(match.group(1))


def check_pod_monitor(where: str, doc: dict) -> None:
    spec = doc.get("spec") or {}
    if not (spec.get("selector") or {}).get("matchLabels"):
        errors.append(f"{where}: spec.selector.matchLabels is empty")
    endpoints = spec.get("podMetricsEndpoints") or []
    if not endpoints or not all(e.get("port") for e in endpoints):
        errors.append(f"{where}: podMetricsEndpoints need a port")


def check_scaled_object(where: str, doc: dict, docs: list[dict]) -> None:
    """KEDA's ScaledObject: a Deployment of the same render as target, sane bounds, a Kafka trigger."""
    spec = doc.get("spec") or {}
    target = (spec.get("scaleTargetRef") or {}).get("name")
    deployments = {d["metadata"]["name"] for d in docs if d.get("kind") == "Deployment"}
    if target not in deployments:
        errors.append(f"{where}: scaleTargetRef.name {target!r} is not a Deployment here {sorted(deployments)}")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount")
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        errors.append(f"{where}: needs integers 0 <= minReplicaCount <= maxReplicaCount")
    for trigger in spec.get("triggers") or [{}]:
        meta = trigger.get("metadata") or {}
        if trigger.get("type") != "kafka":
            errors.append(f"{where}: trigger type {trigger.get('type')!r}, expected kafka")
        for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
            if not isinstance(meta.get(key), str) or not meta[key]:
                errors.append(f"{where}: kafka trigger needs metadata.{key} as a non-empty string")
        if not str(meta.get("lagThreshold", "")).isdigit():
            errors.append(f"{where}: lagThreshold must be a whole number (as a string)")


def check_dashboard(where: str, text: str) -> list[str]:
    """Check one dashboard; return its queries."""
    try:
        dashboard = json.loads(text)
    except json.JSONDecodeError as e:
        errors.append(f"{where}: not JSON: {e}")
        return []
    queries = []
    for key in ("uid", "title", "panels"):
        if not dashboard.get(key):
            errors.append(f"{where}: no {key}")
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    if not panels:
        errors.append(f"{where}: no panels")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        errors.append(f"{where}: panel ids missing or repeated")
    for panel in panels:
        at = f"{where} panel {panel.get('title')!r}"
        if not panel.get("title") or not panel.get("gridPos"):
            errors.append(f"{at}: no title or gridPos")
        exprs = [t.get("expr", "") for t in panel.get("targets", [])]
        if not exprs or not all(exprs):
            errors.append(f"{at}: every panel needs targets with an expr")
        for expr in exprs:
            check_metrics(at, expr)
            queries.append(expr)
    return queries


work = pathlib.Path(sys.argv[1])
for arg in sys.argv[2:]:
    directory, _, path = arg.partition("=")
    docs = [doc for doc in yaml.safe_load_all(pathlib.Path(path).read_text()) if doc]
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        where = f"{directory}: {kind}/{name}"
        if not kind or not doc.get("apiVersion") or not name:
            errors.append(f"{where}: needs apiVersion, kind and metadata.name")
        elif kind == "PrometheusRule":
            check_prometheus_rule(where, doc)
        elif kind == "PodMonitor":
            check_pod_monitor(where, doc)
        elif kind == "ScaledObject":
            check_scaled_object(where, doc, docs)
        elif kind == "ConfigMap" and (doc["metadata"].get("labels") or {}).get("grafana_dashboard"):
            for key, text in (doc.get("data") or {}).items():
                check_dashboard(f"{where} {key}", text)

dashboard_file = pathlib.Path("deploy/monitoring/grafana-dashboard.json")
dashboard_exprs = check_dashboard(str(dashboard_file), dashboard_file.read_text())

operations = pathlib.Path("docs/operations.md")
if operations.exists():
    text = operations.read_text()
    anchors = set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    for anchor in sorted(runbook_anchors - anchors):
        errors.append(f"runbook_url anchor #{anchor} has no heading in docs/operations.md")
else:
    print("  docs/operations.md not found: runbook anchors not checked:", ", ".join(sorted(runbook_anchors)))

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"  {len(rule_groups)} rule group(s), {len(runbook_anchors)} runbook anchors, "
      f"{dashboard_file}: {len(dashboard_exprs)} queries: ok")

# For promtool: the dashboard's queries as recording rules (Grafana's variables replaced by ordinary
# values) so that promtool parses them. The alerts' rules file is scripts/extract_rules.py's.
substitutions = {"$__rate_interval": "5m", "$__range": "1h", "$namespace": ".*"}
records = []
for i, expr in enumerate(dashboard_exprs):
    for var, value in substitutions.items():
        expr = expr.replace(var, value)
    records.append({"record": f"dashboard:query_{i}", "expr": expr})
(work / "dashboard-rules.yaml").write_text(
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, sort_keys=False))
PY

if command -v promtool >/dev/null; then
    echo "promtool: $(promtool --version 2>&1 | head -1)"
    python3 scripts/extract_rules.py "$work/deploy_monitoring.yaml" "$work/rules.yaml" \
        || fail "scripts/extract_rules.py: no alert rules in deploy/monitoring"
    promtool check rules "$work/rules.yaml" "$work/dashboard-rules.yaml" >"$work/promtool.log" 2>&1 \
        || { cat "$work/promtool.log" >&2; fail "promtool check rules"; }
    cp deploy/monitoring/alerts.test.yaml "$work/alerts.test.yaml"
    (cd "$work" && promtool test rules alerts.test.yaml) >"$work/promtool.log" 2>&1 \
        || { cat "$work/promtool.log" >&2; fail "promtool test rules deploy/monitoring/alerts.test.yaml"; }
    echo "  alert and dashboard queries parse; deploy/monitoring/alerts.test.yaml passes"
elif [ "${REQUIRE_PROMTOOL:-0}" = 1 ]; then
    fail "promtool not found (apt-get install prometheus) and REQUIRE_PROMTOOL=1"
else
    echo "promtool not found (apt-get install prometheus): PromQL syntax and alert unit tests skipped"
fi

echo "validate_deploy: ok"
