"""`currents-consumer replay` as a child process in tests: start it, run it, read its JSON summary."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

STARTED: list[int] = []
"""The process groups :func:`start` began (each child leads its own), for :func:`kill_leftovers`."""


def kill_leftovers() -> int:
    """Kill every process group :func:`start` began that is still there (a test that failed or was
    skipped between starting a child and stopping it), workers included; returns how many were."""
    killed = 0
    while STARTED:
        group = STARTED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
            killed += 1
    return killed


@dataclass
class Command:
    """A running ``python -m consumer`` whose stdout and stderr are collected as it runs."""

    proc: asyncio.subprocess.Process
    out: asyncio.Task[bytes]
    err: asyncio.Task[bytes]

    async def finish(self, within: float = 60.0) -> tuple[int, str, str]:
        code = await asyncio.wait_for(self.proc.wait(), within)
        return code, (await self.out).decode(), (await self.err).decode()


def replay_argv(
    url: str, tmp_path: Path, *extra: str, dead_letter: Path | None = None, state: Path | str | None = None
) -> list[str]:
    """``replay TMP/in`` to ``url`` with its dead-letter output and resume state under ``tmp_path``
    (unless given; ``state=""`` is no state) and the summary as JSON, then ``extra``."""
    return [
        "replay",
        str(tmp_path / "in"),
        "--amplitude-url",
        url,
        "--dead-letter",
        str(tmp_path / "dead-letter" if dead_letter is None else dead_letter),
        "--state-dir",
        str(tmp_path / "state" if state is None else state),
        "--summary-json",
        *extra,
    ]


async def start(
    args: list[str], env: dict[str, str], cwd: Path, *, preexec_fn: Callable[[], None] | None = None
) -> Command:
    """``python -m consumer ARGS`` with ``env`` added (``preexec_fn`` runs in the child before it
    executes, e.g. :func:`fault_harness.without_file_overrides`)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "CURRENTS_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        # A file, socket or client left to the garbage collector is then a Traceback on stderr.
        "-W",
        "error::ResourceWarning",
        "-m",
        "consumer",
        *args,
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, as a command started from a shell
        preexec_fn=preexec_fn,
    )
    STARTED.append(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    return Command(proc, asyncio.create_task(proc.stdout.read()), asyncio.create_task(proc.stderr.read()))


@contextlib.asynccontextmanager
async def running(args: list[str], env: dict[str, str], cwd: Path) -> AsyncIterator[Command]:
    command = await start(args, env, cwd)
    try:
        yield command
    finally:
        if command.proc.returncode is None:
            command.proc.kill()
            await command.proc.wait()


def last_json(stderr: str) -> dict[str, Any]:
    """The summary the command prints last on stderr."""
    line = next(line for line in reversed(stderr.splitlines()) if line.startswith('{"read"'))
    summary: dict[str, Any] = orjson.loads(line)
    return summary
