"""Sharded backfills through the command line: three ``replay --shard I/3`` processes side by side over
one tree deliver every event exactly once between them, each keeps its own resume state and resumes
on its own, the dry run lists only its shard, and a job sharded another way is refused."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson
from amplitude_harness import KEY, eventually, insert_ids, settings, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_currents_tree
from replay_harness import Command, last_json, start
from test_replay import expected_events, replay_args

from consumer.sources.storage.files import list_files

ENV = {"AMPLITUDE_API_KEY": KEY}


def shard_args(sim: AmplitudeSimulator, tmp_path: Path, index: int, *extra: str) -> list[str]:
    # --workers 0: three shards with two worker processes each would be nine processes on two cores
    return replay_args(sim, tmp_path, "--shard", f"{index}/3", "--workers", "0", *extra)


def states(tmp_path: Path) -> dict[int, dict[str, Any]]:
    """Shard index -> its resume state (``replay-<job>.shard-I-of-3.json``)."""
    out: dict[int, dict[str, Any]] = {}
    for path in (tmp_path / "state").glob("replay-*.json"):
        index = int(path.name.split(".shard-")[1].split("-of-")[0])
        out[index] = orjson.loads(path.read_bytes())
    return out


def absolute(paths: list[str]) -> set[str]:
    """The files as the resume state names them (absolute paths)."""
    return {os.path.abspath(p) for p in paths}


def files_of(state: dict[str, Any]) -> set[str]:
    return {ident.split("|")[0] for ident in state["done"]}


async def dry_run(tmp_path: Path, *flags: str) -> tuple[int, list[str], str]:
    command = await start(
        ["replay", str(tmp_path / "in"), "--state-dir", str(tmp_path / "state"), "--dry-run", *flags],
        {},
        tmp_path,
    )
    code, out, err = await command.finish()
    return code, out.splitlines(), err


async def test_three_shards_side_by_side_deliver_every_event_exactly_once(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(21, devices=400), 6000, max_per_file=150, codecs=("deflate",))
    everything = absolute(list(list_files([str(tmp_path / "in")])))
    async with simulator() as sim:
        expected = expected_events(tmp_path / "in", settings(sim, tmp_path))
        planned = {}
        for index in range(3):
            code, lines, err = await dry_run(tmp_path, "--shard", f"{index}/3")
            assert code == 0, err
            assert f"dry run: shard {index}/3" in err
            planned[index] = absolute([line.split("\t")[2] for line in lines])
        commands = [await start(shard_args(sim, tmp_path, i), ENV, tmp_path) for i in range(3)]
        results = await asyncio.gather(*(c.finish(within=120) for c in commands))
        for code, _, stderr in results:
            assert code == 0, stderr
        ids = insert_ids(sim.events)
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert set(ids) == set(expected)
    done = states(tmp_path)
    assert sorted(done) == [0, 1, 2]
    finished = [files_of(done[i]) for i in range(3)]
    assert all(finished), "a shard took no file"
    assert not (finished[0] & finished[1] or finished[0] & finished[2] or finished[1] & finished[2])
    assert finished[0] | finished[1] | finished[2] == everything
    assert [planned[i] for i in range(3)] == finished, "a shard read other files than its dry run listed"
    assert sum(last_json(stderr)["read"] for _, _, stderr in results) == 6000


async def stop_midway(command: Command, sim: AmplitudeSimulator, events: int) -> tuple[int, str]:
    await eventually(lambda: sim.stats.events_ingested >= events, within=60, message="part-way")
    command.proc.send_signal(signal.SIGTERM)
    code, _, stderr = await command.finish()
    return code, stderr


async def test_each_shard_resumes_on_its_own(tmp_path: Path) -> None:
    """Shards 0 and 2 finish; shard 1 is stopped part-way (SIGTERM) and run again: the rerun reads only
    its unfinished files, and the other shards' states are never touched."""
    write_currents_tree(tmp_path / "in", Synth(22, devices=400), 6000, max_per_file=150, codecs=("deflate",))
    async with simulator() as sim:
        expected = expected_events(tmp_path / "in", settings(sim, tmp_path))
        others = [await start(shard_args(sim, tmp_path, i), ENV, tmp_path) for i in (0, 2)]
        for code, _, stderr in await asyncio.gather(*(c.finish(within=120) for c in others)):
            assert code == 0, stderr
        before_1 = sim.stats.events_ingested
        saved = {p.name: p.read_bytes() for p in (tmp_path / "state").glob("replay-*.json")}
        assert len(saved) == 2
        # slow enough to be stopped part-way: 1000 events/s, little read ahead
        slow = shard_args(sim, tmp_path, 1, "--project-rate", "1000", "--max-pending", "100")
        code, stderr = await stop_midway(await start(slow, ENV, tmp_path), sim, before_1 + 600)
        assert code in (0, 130), stderr
        first = states(tmp_path)[1]
        assert files_of(first), "no file of shard 1 finished before the stop"
        stopped = len(set(insert_ids(sim.events)))
        assert stopped < len(expected), "shard 1 was not stopped part-way"

        command = await start(shard_args(sim, tmp_path, 1), ENV, tmp_path)
        code, _, stderr = await command.finish(within=120)
        assert code == 0, stderr
        assert f"files already finished by an earlier run: {len(files_of(first))}" in stderr
        assert set(insert_ids(sim.events)) == set(expected)
        resent = {expected[e.event["insert_id"]][0] for e in sim.duplicates}
        assert not resent & files_of(first), "a finished file was sent again"
        assert len(sim.duplicates) <= 100, "more than the events in flight at the stop were sent twice"
    for name, data in saved.items():
        assert (tmp_path / "state" / name).read_bytes() == data, f"shard 1 touched {name}"
    assert files_of(states(tmp_path)[1]) > files_of(first)


async def test_a_job_sharded_another_way_is_refused(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(23, devices=50), 600, max_per_file=100, codecs=("null",))
    (tmp_path / "state").mkdir()
    code, lines, err = await dry_run(tmp_path, "--shard", "1/3")
    assert code == 0 and lines, err
    # a state as shard 1/3 leaves behind (written the way a run writes it)
    from consumer.positions.resume import ResumeState
    from consumer.sources.storage.selection import Shard

    ResumeState.load(str(tmp_path / "state"), [str(tmp_path / "in")], shard=Shard(1, 3)).save()
    for flags in (["--shard", "0/2"], []):
        code, lines, err = await dry_run(tmp_path, *flags)
        assert code == 2 and not lines, err
        assert "of this replay was kept as shard 1/3" in err
        assert "run with the same sharding, or move replay-" in err
    code, _, err = await dry_run(tmp_path, "--shard", "0/3")
    assert code == 0, err
