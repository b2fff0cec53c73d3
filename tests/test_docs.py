"""The documentation agrees with the code: generated tables are current, examples are accepted.

- ``docs/configuration.md`` holds exactly what ``scripts/gen_config_doc.py`` prints (regenerate with
  ``python scripts/gen_config_doc.py --write``);
- ``docs/config.example.toml`` is accepted by ``currents-consumer config`` and names every option;
- ``docs/mapping.md`` lists every type of Braze's table with its Amplitude name, and holds exactly what
  ``scripts/gen_mapping_doc.py`` prints (the two profiles side by side; ``--write`` regenerates it);
- ``docs/operations.md`` has a heading for every alert's runbook anchor and names every metric;
- relative links in ``README.md`` and ``docs/*.md`` point at existing files and headings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from consumer.settings import OPTIONS, MappingConfig
from consumer.transform.amplitude_tables import BRAZE_TYPES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "config.example.toml"


def script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gen_config_doc() -> ModuleType:
    return script("gen_config_doc")


def test_configuration_doc_is_generated_from_the_code() -> None:
    gen = gen_config_doc()
    text = (DOCS / "configuration.md").read_text()
    start, end = text.index(gen.BEGIN), text.index(gen.END) + len(gen.END)
    assert text[start:end] == gen.generated(), (
        "docs/configuration.md is out of date: run python scripts/gen_config_doc.py --write"
    )


def test_configuration_doc_names_every_option() -> None:
    text = (DOCS / "configuration.md").read_text()
    for opt in OPTIONS:
        assert f"| `{opt.key}` | `{opt.flag}` | `{opt.env}` |" in text, opt.key


def test_example_config_is_accepted(tmp_path: Path) -> None:
    """`currents-consumer config --config docs/config.example.toml` in a clean environment."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "config", "--config", str(EXAMPLE)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described.keys() == {o.key for o in OPTIONS} | {"mapping.names"}
    assert described["kafka.topics"] == {"value": ["braze-currents"], "source": f"file {EXAMPLE}"}


def test_example_config_names_every_option() -> None:
    """Every option appears in its section, set or commented out (secrets stay commented out)."""
    lines = EXAMPLE.read_text().splitlines()
    section, seen = "", set()
    for line in lines:
        header = re.match(r"^\[([a-z_.]+)\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"^#?\s*([a-z_]+)\s*=", line)
        if key:
            seen.add(f"{section}.{key.group(1)}" if section else key.group(1))
    assert {o.key for o in OPTIONS} - seen == set()
    set_keys = _flatten(tomllib.loads(EXAMPLE.read_text()))
    assert not {o.key for o in OPTIONS if o.secret} & set_keys, "keep secrets out of the example"


def _flatten(tree: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "mapping.names":
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_mapping_doc_lists_every_braze_type() -> None:
    text = (DOCS / "mapping.md").read_text()
    prefix = MappingConfig().event_prefix
    for event_type, spec in BRAZE_TYPES.items():
        name = prefix + spec.name + ("<name>" if event_type == "users.behaviors.CustomEvent" else "")
        assert f"| `{event_type}` | `{name}` |" in text, event_type


def test_mapping_doc_profiles_table_is_generated_from_the_code() -> None:
    gen = script("gen_mapping_doc")
    text = (DOCS / "mapping.md").read_text()
    start, end = text.index(gen.BEGIN), text.index(gen.END) + len(gen.END)
    assert text[start:end] == gen.generated(), (
        "docs/mapping.md is out of date: run python scripts/gen_mapping_doc.py --write"
    )
    # the 40 seed types and the 80 glossary types: 83 (three seed news feed types are not in the glossary)
    assert text[start:end].count("\n| `") == 83


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown`` (lower case, punctuation dropped, spaces
    to dashes)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.M):
        text = re.sub(r"`", "", heading.strip().lower())
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_operations_doc_has_every_runbook_anchor() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install PyYAML)")
    rule = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheusrule.yaml").read_text())
    urls = [
        r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r
    ]
    assert urls
    anchors = github_anchors((DOCS / "operations.md").read_text())
    for url in urls:
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md"
        assert anchor in anchors, f"no heading for #{anchor} in docs/operations.md"


def test_operations_doc_names_every_metric() -> None:
    from prometheus_client import CollectorRegistry

    from consumer.ops.metrics import Metrics

    text = (DOCS / "operations.md").read_text()
    metrics = Metrics(CollectorRegistry())
    families = [c for c in vars(metrics).values() if hasattr(c, "_name")]
    assert families
    for family in families:
        series = family._name + ("_total" if family._type == "counter" else "")
        assert f"`{series}" in text, f"docs/operations.md does not describe {series}"


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_relative_links_resolve(page: str) -> None:
    """Every relative link of the page names an existing file and, with ``#anchor``, a heading in it."""
    source = ROOT / page
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (source.parent / path).resolve() if path else source
        assert linked.exists(), f"{page}: broken link {target}"
        if anchor:
            assert anchor in github_anchors(linked.read_text()), f"{page}: no heading for {target}"


def test_the_docs_cite_amplitudes_documented_project_limit() -> None:
    """shared/reference/amplitude-api.md: 100,000 events/s per project and endpoint is Amplitude's
    documented default; no page may give another figure for it."""
    pages = {
        p: p.read_text() for p in [ROOT / "README.md", *DOCS.glob("*.md"), *ROOT.glob("deploy/**/*.yaml")]
    }
    for path, text in pages.items():
        assert not re.search(r"50,000 events/s|50000 events/s", text), f"{path.relative_to(ROOT)}"
    assert "100,000 events/s per project and endpoint" in pages[DOCS / "backfill.md"]


def test_architecture_names_only_files_that_exist_and_each_module_once() -> None:
    """Every ``*.py`` path ``docs/architecture.md`` names exists, and within one package's section each
    module is described once."""
    text = (DOCS / "architecture.md").read_text()
    root = DOCS.parent
    sources = [p.relative_to(root).as_posix() for p in root.glob("**/*.py") if ".ci" not in p.parts]
    missing = [
        name
        for name in sorted(set(re.findall(r"`([A-Za-z_/]+\.py)`", text)))
        if not any(path == name or path.endswith("/" + name) for path in sources)
    ]
    assert missing == []
    section, described = "", Counter[tuple[str, str]]()
    for line in text.splitlines():
        heading = re.match(r"^#{2,4} `([a-z_/]+)`", line)
        if heading:
            section = heading.group(1)
        for name in re.findall(r"\*\*`([a-z_/]+\.py)`\*\*", line):
            described[(section, name)] += 1
    assert [key for key, n in described.items() if n > 1] == []
