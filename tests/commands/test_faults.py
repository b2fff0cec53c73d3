"""Every I/O edge of ``replay`` fails loudly and safely, through the command line: the fault is injected
for real (a path that is not a directory, a full or read-only tmpfs, a port already bound), the process
ends within a bound naming the path or endpoint and the OS error, and a second run with the fault gone
ends with every event delivered or dead-lettered (nothing lost, by ``insert_id`` at the simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from amplitude_harness import KEY, dead_letters, insert_ids, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_container
from fault_harness import as_root, tmpfs, without_file_overrides, worker_children
from replay_harness import last_json, replay_argv, start

CUSTOM = "users.behaviors.CustomEvent"
BOUND = 30.0
"""Seconds within which a faulty run must have ended (it takes about two here)."""


def write_input(root: Path, n: int = 300) -> set[str]:
    """``n`` custom events in one file, every tenth with a device id Amplitude refuses as too short
    (``--min-id-length 8``: a 400 naming those events); returns every insert_id a replay must account for."""
    synth = Synth(3, devices=50)
    records: list[dict[str, Any]] = []
    for i in range(n):
        record = synth.record(CUSTOM)
        record["device_id"] = "short" if i % 10 == 0 else f"device-{i:05d}"
        record["external_user_id"] = None
        record["id"] = str(uuid.UUID(int=i + 1))
        records.append(record)
    write_container(root / f"event_type={CUSTOM}" / "part-0.avro", CUSTOM, records)
    return {str(uuid.UUID(int=i + 1)) for i in range(n)}


def args(sim: AmplitudeSimulator, tmp_path: Path, dead_letter: Path, state: Path, *extra: str) -> list[str]:
    return replay_argv(
        sim.http_v2_url, tmp_path, "--min-id-length", "8", "--batch-age", "20ms", *extra,
        dead_letter=dead_letter, state=state,
    )  # fmt: skip


async def replay(argv: list[str], cwd: Path) -> tuple[int, str, float]:
    """Run ``argv``; its exit code, stderr and seconds taken (it must end within :data:`BOUND`)."""
    began = time.monotonic()
    command = await start(argv, {"AMPLITUDE_API_KEY": KEY, "CURRENTS_LOG_FORMAT": "json"}, cwd)
    code, _, stderr = await command.finish(within=BOUND)
    return code, stderr, time.monotonic() - began


def accounted(sim: AmplitudeSimulator, *dead_dirs: Path) -> tuple[set[str], set[str]]:
    """The insert_ids delivered to ``sim`` and those dead-lettered under ``dead_dirs``."""
    dead = {r["event"]["insert_id"] for d in dead_dirs for r in dead_letters(d) if "event" in r}
    return set(insert_ids(sim.events)), dead


async def second_run_accounts_for_everything(
    sim: AmplitudeSimulator, tmp_path: Path, expected: set[str], state: Path, earlier_dead: Path | None = None
) -> dict[str, Any]:
    """The same replay with the fault gone: exit 3 (some events dead-lettered), nothing lost."""
    dead = tmp_path / "dead-letter-2"
    code, stderr, _ = await replay(args(sim, tmp_path, dead, state), tmp_path)
    assert code == 3, stderr
    delivered, dead_ids = accounted(sim, dead, *(d for d in [earlier_dead] if d is not None))
    assert delivered | dead_ids == expected, f"lost: {len(expected - delivered - dead_ids)}"
    assert len(dead_ids) == len(expected) // 10
    summary = last_json(stderr)
    assert summary["exit_code"] == 3 and summary["exit"] == "dead_lettered"
    return summary


async def test_a_dead_letter_path_that_is_not_a_directory_is_refused_before_anything_is_read(
    tmp_path: Path,
) -> None:
    expected = write_input(tmp_path / "in")
    (tmp_path / "a-file").write_text("not a directory")
    async with simulator() as sim:
        code, stderr, _ = await replay(
            args(sim, tmp_path, tmp_path / "a-file" / "dl", tmp_path / "state"), tmp_path
        )
        assert code == 2, stderr
        assert f"dead-letter output {tmp_path / 'a-file' / 'dl'}: [Errno 20] Not a directory" in stderr
        assert sim.stats.requests_total == 0, "something was read and sent"
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state")


async def test_a_read_only_dead_letter_directory_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    expected = write_input(tmp_path / "in")
    async with simulator() as sim:
        with tmpfs(tmp_path / "ro", read_only=True) as ro:
            code, stderr, _ = await replay(args(sim, tmp_path, ro / "dl", tmp_path / "state"), tmp_path)
        assert code == 2, stderr
        assert f"dead-letter output {ro / 'dl'}: [Errno 30] Read-only file system" in stderr
        assert sim.stats.requests_total == 0
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state")


async def test_a_read_only_state_directory_is_refused_and_an_empty_one_means_no_state(tmp_path: Path) -> None:
    expected = write_input(tmp_path / "in")
    async with simulator() as sim:
        with tmpfs(tmp_path / "ro", read_only=True) as ro:
            code, stderr, _ = await replay(args(sim, tmp_path, tmp_path / "dl", ro / "state"), tmp_path)
            assert code == 2, stderr
            assert f"resume state directory {ro / 'state'}: [Errno 30] Read-only file system" in stderr
            assert sim.stats.requests_total == 0
            # --state-dir '' keeps no state: nothing to check, the run goes ahead
            code, stderr, _ = await replay(args(sim, tmp_path, tmp_path / "dl", Path("")), tmp_path)
        assert code == 3, stderr
        delivered, dead = accounted(sim, tmp_path / "dl")
        assert delivered | dead == expected


async def test_a_full_dead_letter_disk_ends_the_replay_and_the_next_run_loses_nothing(tmp_path: Path) -> None:
    """The hang of issue 20: the 400 names some events, their dead-letter records cannot be written."""
    expected = write_input(tmp_path / "in")
    async with simulator() as sim:
        with tmpfs(tmp_path / "full", full=True) as full:
            code, stderr, seconds = await replay(
                args(sim, tmp_path, full / "dl", tmp_path / "state"), tmp_path
            )
        assert code == 4, stderr
        assert (
            f"stopped: cannot write the dead-letter output {full / 'dl'}: [Errno 28] No space left on device"
            in (stderr)
        )
        assert "Task exception was never retrieved" not in stderr and "Traceback" not in stderr
        summary = last_json(stderr)
        assert summary["exit_code"] == 4 and summary["exit"] == "fault"
        state = list((tmp_path / "state").glob("*.json"))
        assert all(not orjson.loads(p.read_bytes())["done"] for p in state), "a file was marked done"
        delivered_first = len(set(insert_ids(sim.events)))
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state")
        print(f"dead-letter ENOSPC: exit after {seconds:.1f}s, first run delivered {delivered_first}")


async def test_a_full_state_disk_ends_the_replay_and_the_next_run_loses_nothing(tmp_path: Path) -> None:
    expected = write_input(tmp_path / "in")
    async with simulator() as sim:
        with tmpfs(tmp_path / "full", full=True) as full:
            code, stderr, seconds = await replay(
                args(sim, tmp_path, tmp_path / "dl", full / "state"), tmp_path
            )
        assert code == 4, stderr
        assert "stopped: cannot write the resume state " in stderr
        assert f"{full / 'state'}" in stderr and "[Errno 28] No space left on device" in stderr
        assert "Traceback" not in stderr
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state", tmp_path / "dl")
        print(f"state ENOSPC: exit after {seconds:.1f}s")


async def test_a_metrics_port_already_bound_ends_the_replay_before_anything_is_read(tmp_path: Path) -> None:
    expected = write_input(tmp_path / "in")
    async with simulator() as sim:
        with socket.socket() as taken:
            taken.bind(("0.0.0.0", 0))
            taken.listen()
            port = taken.getsockname()[1]
            code, stderr, _ = await replay(
                args(sim, tmp_path, tmp_path / "dl", tmp_path / "state", "--metrics-port", str(port)),
                tmp_path,
            )
        assert code == 4, stderr
        assert f"cannot serve metrics and probes on port {port}" in stderr
        assert "address already in use" in stderr.lower()
        assert sim.stats.requests_total == 0
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state")


def test_the_tmpfs_helper_really_fills_and_unmounts(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "t", full=True) as full,
        pytest.raises(OSError, match="No space left"),
        open(full / "more", "wb") as fh,
    ):
        fh.write(b"x" * 8192)
        fh.flush()
    assert not os.path.ismount(tmp_path / "t")


async def test_a_worker_that_keeps_dying_ends_the_replay_and_the_next_run_loses_nothing(
    tmp_path: Path,
) -> None:
    expected: set[str] = set()
    synth = Synth(4, devices=50)
    for f in range(30):
        records = []
        for i in range(100):
            record = synth.record(CUSTOM)
            record["device_id"] = "short" if i % 10 == 0 else f"device-{f:02d}-{i:05d}"
            record["external_user_id"] = None
            record["id"] = str(uuid.UUID(int=f * 1000 + i + 1))
            expected.add(record["id"])
            records.append(record)
        write_container(tmp_path / "in" / f"event_type={CUSTOM}" / f"part-{f:02d}.avro", CUSTOM, records)
    async with simulator() as sim:
        argv = args(
            sim, tmp_path, tmp_path / "dl", tmp_path / "state", "--workers", "1", "--project-rate", "500"
        )
        began = time.monotonic()
        command = await start(argv, {"AMPLITUDE_API_KEY": KEY, "CURRENTS_LOG_FORMAT": "json"}, tmp_path)
        killed: set[int] = set()
        while command.proc.returncode is None and time.monotonic() - began < BOUND:
            for child in worker_children(command.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, 9)
                    killed.add(child)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(command.proc.wait(), 0.1)
        code, _, stderr = await command.finish(within=5)
        seconds = time.monotonic() - began
        assert code == 4, (killed, stderr[-3000:])
        assert "stopped: worker processes keep dying: 6 deaths within 60s (the last with exit code " in stderr
        assert len(killed) >= 6
        assert "Traceback" not in stderr
        summary = await second_run_accounts_for_everything(
            sim, tmp_path, expected, tmp_path / "state", tmp_path / "dl"
        )
        assert summary["unreadable"] == []
        print(f"worker deaths: exit after {seconds:.1f}s, killed {len(killed)}")


@pytest.mark.parametrize(
    ("option", "what"), [("dead-letter", "dead-letter output"), ("state-dir", "resume state directory")]
)
async def test_a_directory_the_run_may_not_write_is_refused_with_the_real_eacces(
    tmp_path: Path, option: str, what: str
) -> None:
    """The kernel's own EACCES: a directory of another owner (mode 0755), a child without root's
    overrides; refused before anything is read, and the run with a writable directory loses nothing."""
    as_root()
    expected = write_input(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chown(locked, 65534, 65534)
    locked.chmod(0o755)
    dead, state = (locked, tmp_path / "state") if option == "dead-letter" else (tmp_path / "dl", locked)
    async with simulator() as sim:
        env = {"AMPLITUDE_API_KEY": KEY, "CURRENTS_LOG_FORMAT": "json"}
        command = await start(
            args(sim, tmp_path, dead, state), env, tmp_path, preexec_fn=without_file_overrides
        )
        code, _, stderr = await command.finish(within=BOUND)
        assert code == 2, stderr
        assert (
            f"configuration error: cannot write the {what} {locked}: [Errno 13] Permission denied" in stderr
        )
        assert sim.stats.requests_total == 0, "something was read and sent"
        assert list(locked.iterdir()) == []
        await second_run_accounts_for_everything(sim, tmp_path, expected, tmp_path / "state")


async def test_a_missing_directory_under_one_the_run_may_not_write_is_refused_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    """The dead-letter directory is made on the first record, so the start-up check proves that it could
    be made: under a parent of another owner the kernel's EACCES, before anything is read."""
    as_root()
    write_input(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chown(locked, 65534, 65534)
    locked.chmod(0o755)
    async with simulator() as sim:
        env = {"AMPLITUDE_API_KEY": KEY, "CURRENTS_LOG_FORMAT": "json"}
        argv = args(sim, tmp_path, locked / "a" / "dl", tmp_path / "state")
        command = await start(argv, env, tmp_path, preexec_fn=without_file_overrides)
        code, _, stderr = await command.finish(within=BOUND)
        assert code == 2, stderr
        assert f"configuration error: cannot write the dead-letter output {locked / 'a' / 'dl'}: " in stderr
        assert "[Errno 13] Permission denied" in stderr
        assert sim.stats.requests_total == 0


async def test_personal_data_directories_made_by_a_run_are_0700_under_umask_022(tmp_path: Path) -> None:
    """Neither directory exists yet; the run creates both (and their missing parents) owner-only, as
    consumer.positions.private does, however the start-up check proved them writable first."""
    expected = write_input(tmp_path / "in")
    dead, state = tmp_path / "data" / "dl", tmp_path / "var" / "state"
    previous = os.umask(0o022)
    try:
        async with simulator() as sim:
            code, stderr, _ = await replay(args(sim, tmp_path, dead, state), tmp_path)
    finally:
        os.umask(previous)
    assert code == 3, stderr  # every tenth event is dead-lettered
    assert len(dead_letters(dead)) == len(expected) // 10
    for directory in (dead, dead.parent, state, state.parent):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


async def test_a_run_that_dead_letters_nothing_leaves_no_dead_letter_directory(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    async with simulator() as sim:
        argv = args(sim, tmp_path, tmp_path / "dead-letter", tmp_path / "state")
        argv = [a for a in argv if a not in ("--dead-letter", str(tmp_path / "dead-letter"))]
        code, stderr, _ = await replay(argv, tmp_path)
    assert code == 0, stderr
    assert not (tmp_path / "dead-letter").exists(), "made before anything was written to it"
