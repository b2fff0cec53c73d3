"""Tests for consumer.ops.progress: a bar on an interactive replay, today's log lines otherwise.

The interactive case is a real ``replay`` child whose stderr is a pseudo-terminal (``pty.openpty``);
the piped case is a child with stderr on a pipe (JSON only, no bar); the JSON progress lines are checked
in this process with a short interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from amplitude_harness import KEY, settings, simulator
from currents_devkit.synth import Synth, write_currents_tree
from prometheus_client import CollectorRegistry

from consumer.app.destinations import amplitude_destination
from consumer.commands.replay import Replay
from consumer.ops.logs import setup
from consumer.ops.metrics import Metrics
from consumer.sinks.amplitude import AmplitudeSink
from consumer.sources.storage.files import list_files

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _tree(tmp_path: Path) -> tuple[Path, int]:
    root = tmp_path / "in"
    write_currents_tree(root, Synth(5, devices=200), 1200, max_per_file=200)
    return root, len(list(list_files([str(root)])))


def _env(url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "CURRENTS_"))}
    return {**base, "AMPLITUDE_API_KEY": KEY, "AMPLITUDE_URL": url, "COLUMNS": "120"}


def _read_until_closed(fd: int) -> bytes:
    """Everything written to the pty until every writer has closed it (Linux: EIO)."""
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


async def _replay_child(
    root: Path, tmp_path: Path, url: str, stderr: int, *args: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        "replay",
        str(root),
        "--state-dir",
        "",
        "--dead-letter",
        str(tmp_path / "dead-letter"),
        *args,
        env=_env(url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )


async def _on_a_terminal(root: Path, tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run a replay of ``root`` with its stderr on a pseudo-terminal: its exit code and the screen's
    text (escape sequences removed)."""
    master, slave = pty.openpty()
    try:
        async with simulator() as sim:
            proc = await _replay_child(root, tmp_path, sim.http_v2_url, slave, *args)
            os.close(slave)
            slave = -1
            reading = asyncio.create_task(asyncio.to_thread(_read_until_closed, master))
            try:
                code = await asyncio.wait_for(proc.wait(), 120)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            screen = ANSI.sub("", (await asyncio.wait_for(reading, 30)).decode(errors="replace"))
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    return code, screen


async def test_an_interactive_replay_shows_a_bar_with_files_events_and_eta(tmp_path: Path) -> None:
    root, files = _tree(tmp_path)
    code, screen = await _on_a_terminal(root, tmp_path)
    assert code == 0, screen[-2000:]
    frames = [f for f in re.split(r"[\r\n]", screen) if f.startswith("replay ")]
    assert frames, screen[-2000:]
    last = frames[-1]
    assert f"files {files}/{files}" in last and "1,200 events" in last and "ETA" in last, last
    assert "ev/s" in last
    assert '"msg":"progress' not in screen and "progress files done" not in screen
    assert "read 1200, delivered" in screen  # the summary follows the bar


async def test_json_logs_on_a_terminal_stay_json(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    code, screen = await _on_a_terminal(root, tmp_path, "--log-format", "json", "--summary-json")
    assert code == 0, screen[-2000:]
    assert "━" not in screen and not [f for f in re.split(r"[\r\n]", screen) if f.startswith("replay ")]
    assert json.loads(screen.strip().splitlines()[-1])["read"] == 1200


async def test_a_piped_replay_shows_no_bar_and_ends_with_its_json_summary(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    async with simulator() as sim:
        proc = await _replay_child(root, tmp_path, sim.http_v2_url, asyncio.subprocess.PIPE, "--summary-json")
        assert proc.stderr is not None
        err = (await asyncio.wait_for(proc.stderr.read(), 120)).decode()
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0, err[-2000:]
    assert "━" not in err and "\x1b[" not in err
    assert all(line.startswith("{") for line in err.splitlines() if line), err[-2000:]
    assert json.loads(err.splitlines()[-1])["read"] == 1200


def test_the_log_view_does_not_import_rich() -> None:
    """``rich`` loads only for the bar. (In a process that imports httpx it may be loaded anyway:
    httpx imports its optional command line, which uses rich, when click and pygments are installed.)"""
    check = (
        "import sys, consumer.ops.progress as p; v = p.progress_view('auto'); "
        "assert isinstance(v, p.LogView), v; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'rich'], 'rich imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_without_a_terminal_progress_stays_json_log_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    root, files = _tree(tmp_path)
    setup("auto", "INFO")  # stderr is pytest's capture here: not a terminal, so JSON
    async with simulator() as sim:
        sim.faults.set_delay(0.2)  # long enough for a few progress ticks
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        try:
            replay = Replay([str(root)], s, [amplitude_destination(s, sink)], Metrics(CollectorRegistry()))
            replay.progress_interval = 0.05
            result = await replay.run()
        finally:
            await sink.close()
    assert result.files_done == files
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    progress = [r["msg"] for r in lines if r["msg"].startswith("progress ")]
    assert progress and all(m.startswith("progress files done ") for m in progress)
    assert all(r["level"] == "info" for r in lines if r["msg"].startswith("progress "))
