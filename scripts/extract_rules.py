#!/usr/bin/env python3
"""The alert rules of a PrometheusRule as a plain Prometheus rules file, for ``promtool``.

``deploy/monitoring/prometheusrule.yaml`` is a Prometheus Operator resource; ``promtool check rules`` and
``promtool test rules`` read a plain rules file (``groups:`` at the top). This writes its
``spec.groups`` as one:

    python3 scripts/extract_rules.py [PROMETHEUSRULE] OUT      # PROMETHEUSRULE: the file above

``deploy/monitoring/alerts.test.yaml`` names the result ``rules.yaml`` (``rule_files``), so write it
as ``rules.yaml`` beside a copy of that file and run ``promtool test rules alerts.test.yaml`` there,
as scripts/validate_deploy.sh does. Only PyYAML is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"


def rule_groups(path: Path = DEFAULT) -> list[dict[str, Any]]:
    """The ``spec.groups`` of every PrometheusRule in ``path`` (a file of one or more YAML documents)."""
    groups: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "PrometheusRule":
            groups += doc["spec"]["groups"]
    if not groups:
        raise ValueError(f"{path}: no PrometheusRule with rule groups")
    return groups


def rules_file(groups: list[dict[str, Any]]) -> str:
    """``groups`` as the text of a plain Prometheus rules file."""
    return str(yaml.safe_dump({"groups": groups}, sort_keys=False))


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0]) if len(argv) == 2 else DEFAULT
    try:
        text = rules_file(rule_groups(source))
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"extract_rules: {exc}", file=sys.stderr)
        return 1
    Path(argv[-1]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
