"""Tests for ``currents-consumer demo`` (currents_devkit.demo, currents_devkit.follow_demo), run as a user
runs it: a subprocess.

One short run each way: by default its temporary directory is gone afterwards and the JSON summary has
each destination's counts; with ``--keep DIR`` the files stay in DIR and the text summary has one line
per destination. ``demo --follow`` follows a directory: what was there, then three files landing while it
runs, each event delivered once (the demo waits on the follower and the simulator, with deadlines).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = (sys.executable, "-m", "consumer", "demo", "--events", "400", "--partitions", "2")
FOLLOW = (sys.executable, "-m", "consumer", "demo")


def _demo(tmp_path: Path, *extra: str, demo: tuple[str, ...] = DEMO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where tempfile puts the demo's directory
    return subprocess.run([*demo, *extra], env=env, capture_output=True, text=True, timeout=240, check=False)


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


LANDED_LINE = re.compile(
    r"^    (\S+) +(\d+) events, (\d+) to Amplitude, the last (\d+\.\d)s after the file landed$"
)


def test_demo_follow_delivers_what_is_there_then_each_file_that_lands(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    done = _demo(tmp_path, "--follow", "--events", "300", "--summary-json", "--keep", str(keep), demo=FOLLOW)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    summary = json.loads(next(x for x in lines if x.startswith('{"read"')))
    landed = [m for m in map(LANDED_LINE.match, lines) if m]
    assert [m[1] for m in landed] == [
        "users.behaviors.CustomEvent",
        "users.messages.email.Open",
        "users.behaviors.Purchase",
    ]
    events = sum(int(m[2]) for m in landed)
    assert all(0 < int(m[3]) <= int(m[2]) for m in landed)  # some events have no identity: skipped
    assert all(float(m[4]) < 60 for m in landed)
    assert f"  picked up live: 3 files, {events} events; landing to Amplitude " in done.stderr
    assert summary["read"] == 300 + events  # what was there, then what landed: each event once
    amplitude = summary["destinations"]["amplitude"]
    assert f"Amplitude simulator received {amplitude['delivered']} events, 0 duplicates" in done.stderr
    # The follower kept its state and lock beside each other, and dead-lettered nothing.
    assert len(list((keep / "state").glob("follow-*.json"))) == 1
    assert len(list((keep / "state").glob("follow-*.lock"))) == 1
    assert sum(amplitude["dead_lettered"].values()) == 0
    assert f"kept {keep} (bucket/, state/, dead-letter/)" in done.stderr
