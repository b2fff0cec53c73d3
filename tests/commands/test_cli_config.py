"""``currents-consumer config``: a grouped table on a terminal (read through a real pseudo-terminal),
the unchanged JSON in a pipe or with ``--json``; a secret is masked in both."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-5e1f9a0c77"


def environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        "AMPLITUDE_API_KEY": SECRET,
        "CURRENTS_LOG_LEVEL": "WARNING",
    }


def config_on_a_terminal(*argv: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run ``config ARGV`` with stdout on a pseudo-terminal; what it wrote there and its exit code."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer", "config", *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    os.close(slave)  # the child holds the only other end: reading ends when it exits
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def test_config_on_a_terminal_is_a_table_grouped_like_help() -> None:
    code, out = config_on_a_terminal("--retry-window", "36h")
    assert code == 0
    assert not out.lstrip().startswith("{"), "a person at a terminal gets no JSON"
    lines = out.splitlines()
    assert re.fullmatch(r"\s+option\s+value\s+source", lines[0])
    titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert titles == [
        "input selection",
        "following a bucket",
        "Kafka",
        "destinations",
        "Amplitude",
        "limits and retries",
        "mapping",
        "Movable Ink",
        "Remerge",
        "operations",
    ]

    def row(flag: str) -> list[str]:
        return next(line.split() for line in lines if line.split()[:1] == [flag])

    assert row("--retry-window") == ["--retry-window", "36h", "flag"]
    assert row("--max-backoff") == ["--max-backoff", "5m", "default"]
    assert row("--api-key") == ["--api-key", "***", "env", "AMPLITUDE_API_KEY"]
    assert row("--log-level") == ["--log-level", "warning", "env", "CURRENTS_LOG_LEVEL"]
    assert row("--gzip") == ["--gzip", "true", "default"]
    assert SECRET not in out


def test_config_in_a_pipe_or_with_json_is_the_json_unchanged() -> None:
    piped = subprocess.run(
        [sys.executable, "-m", "consumer", "config", "--retry-window", "36h"],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    described = json.loads(piped.stdout)
    assert described["limits.retry_window"] == {"value": 129600.0, "source": "flag"}
    assert described["amplitude.api_key"] == {"value": "***", "source": "env AMPLITUDE_API_KEY"}
    assert described["log_level"]["value"] == "warning"
    assert SECRET not in piped.stdout
    code, out = config_on_a_terminal("--retry-window", "36h", "--json")
    assert code == 0 and json.loads(out) == described
