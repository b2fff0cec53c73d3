"""Tests for ``currents-consumer demo`` (currents_devkit.demo), run as a user runs it: a subprocess.

One short run each way: by default its temporary directory is gone afterwards and the JSON summary has
each destination's counts; with ``--keep DIR`` the files stay in DIR and the text summary has one line
per destination.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEMO = [sys.executable, "-m", "consumer", "demo", "--events", "400", "--partitions", "2"]


def _demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where tempfile puts the demo's directory
    return subprocess.run([*DEMO, *extra], env=env, capture_output=True, text=True, timeout=240, check=False)


def test_demo_removes_its_directory_and_reports_each_destination_apart(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--summary-json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "the demo's temporary directory is removed"
    line = next(x for x in done.stderr.splitlines() if x.startswith('{"read"'))
    summary = json.loads(line)
    assert summary["read"] == 400
    assert list(summary["destinations"]) == ["amplitude", "movableink", "remerge"]
    for name, counts in summary["destinations"].items():
        assert sum(counts["skipped"].values()) <= summary["read"], name
        assert counts["delivered"] == summary["delivered_by_destination"].get(name, 0)
    assert summary["destinations"]["amplitude"]["delivered"] == summary["delivered"]
    assert summary["before_destinations"]["dead_lettered"] == {"undecodable": 3}


def test_demo_keep_dir_keeps_its_files_and_prints_a_line_per_destination(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    done = _demo(tmp_path, "--keep", str(keep))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (keep / "broker.log").exists() and list((keep / "dead-letter").glob("*.jsonl"))
    assert f"kept {keep}" in done.stderr
    lines = done.stderr.splitlines()
    head = lines.index("read 400; per destination:")
    assert [x.split()[0] for x in lines[head + 1 : head + 4]] == ["amplitude", "movableink", "remerge"]
    assert "before any destination  dead-lettered 3 (undecodable 3)" in lines[head + 4]
