"""What a stop leaves behind is said exactly: Ctrl-C on a replay without a state directory (which cannot
resume), and a grace that ends during an Amplitude outage with events neither delivered nor
dead-lettered (``replay``: not recorded as done, read again; ``run``: offsets not committed, read again
by the group). Real processes, the simulator failing with 503, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from amplitude_harness import KEY, simulator
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_currents_tree
from daemon_harness import (
    PARTITIONS,
    TOPIC,
    daemon_env,
    kill_started_daemons,
    make_events,
    produce_bulk,
    start_daemon_process,
)
from kafka_harness import committed_offsets, eventually
from replay_harness import last_json, replay_argv, running

NO_STATE = (
    "without a state directory (--state-dir '') nothing records what was done, so running again starts"
    " from the beginning and sends everything again (Amplitude drops the events it already has by"
    " insert_id, within 7 days)"
)
RESUME = "interrupted: run the same command again to resume"
UNFINISHED = re.compile(r"  (\d+) events were neither delivered nor dead-lettered within --grace 0\.5s: (.*)")


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


def replay_args(sim: AmplitudeSimulator, tmp_path: Path, state_dir: str, *extra: str) -> list[str]:
    return replay_argv(
        sim.http_v2_url, tmp_path,
        "--metrics-port", "0", "--grace", "0.5", "--max-backoff", "200ms", "--retry-window", "1h", *extra,
        state=state_dir,
    )  # fmt: skip


async def interrupted_during_an_outage(tmp_path: Path, state_dir: str) -> tuple[str, int, int]:
    """A replay of 300 events against Amplitude answering 503, Ctrl-C once requests are failing; its
    stderr, the number of events it read and did not skip, and the number it skipped."""
    write_currents_tree(tmp_path / "in", Synth(3, devices=50), 300, max_per_file=100, codecs=("null",))
    async with simulator() as sim:
        sim.faults.down("503")
        async with running(
            replay_args(sim, tmp_path, state_dir), {"AMPLITUDE_API_KEY": KEY}, tmp_path
        ) as cmd:
            await eventually(lambda: sim.stats.requests_by_status.get(503, 0) >= 3, within=30, message="503s")
            os.killpg(cmd.proc.pid, signal.SIGINT)
            code, _, err = await cmd.finish()
        assert code == 130, err
        assert sim.events == []
    summary = last_json(err)
    assert summary["delivered"] == 0 and summary["dead_lettered"] == {}
    skipped = sum(summary["skipped"].values())
    return err, summary["read"] - skipped, skipped


async def test_ctrl_c_without_a_state_dir_says_a_new_run_starts_from_the_beginning(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(9, devices=300), 3000, max_per_file=300, codecs=("null",))
    async with simulator() as sim:
        args = replay_args(sim, tmp_path, "", "--project-rate", "1000", "--max-pending", "100")
        async with running(args, {"AMPLITUDE_API_KEY": KEY}, tmp_path) as command:
            await eventually(lambda: sim.stats.events_ingested >= 300, within=30, message="delivering")
            os.killpg(command.proc.pid, signal.SIGINT)
            code, _, err = await command.finish()
    assert code == 130, err
    assert f"  interrupted: {NO_STATE}\n" in err
    assert "resume" not in err, "no state: nothing can resume"


async def test_a_grace_that_ends_in_an_outage_says_the_files_are_read_again(tmp_path: Path) -> None:
    err, taken, skipped = await interrupted_during_an_outage(tmp_path, str(tmp_path / "state"))
    (found,) = UNFINISHED.findall(err)
    assert found == (
        str(taken),
        "their files are not recorded as done in the resume state, so the next run reads them again",
    )
    assert f"  {RESUME}\n" in err
    (state_file,) = (tmp_path / "state").glob("replay-*.json")  # beside it: the job's lock
    # Only files whose every record was skipped are done (nothing of theirs was waiting for Amplitude).
    done = orjson.loads(state_file.read_bytes())["done"]
    assert sum(done.values()) <= skipped, "a file with undelivered events was recorded as done"


async def test_a_grace_that_ends_in_an_outage_without_state_says_only_a_new_run_sends_them(
    tmp_path: Path,
) -> None:
    err, taken, _ = await interrupted_during_an_outage(tmp_path, "")
    (found,) = UNFINISHED.findall(err)
    assert found == (
        str(taken),
        "no resume state is kept (--state-dir ''), only a new run from the beginning sends them",
    )
    assert f"  interrupted: {NO_STATE}\n" in err and "resume\n" not in err


async def test_run_stopped_in_an_outage_says_the_uncommitted_events_are_read_again(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, _ = make_events(600, seed=5, deliverable_only=True)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    sim.faults.down("503")
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "CURRENTS_SHUTDOWN_GRACE": "1s",
        "CURRENTS_RETRY_WINDOW": "1h",
        "CURRENTS_MAX_BACKOFF": "0.2s",
    }
    proc = await start_daemon_process(env, tmp_path / "run.log")
    await eventually(lambda: sim.stats.requests_by_status.get(503, 0) >= 3, within=60, message="503s")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    log = (tmp_path / "run.log").read_text()
    (left,) = re.findall(
        r"currents-consumer: (\d+) fetched events were neither delivered nor dead-lettered within"
        r" --shutdown-grace 1s: their offsets were not committed, so the consumer group reads them again"
        r" when a member next starts \(Amplitude drops the events it already has by insert_id, within 7 days\)",
        log,
    )
    committed = await committed_offsets(broker.bootstrap_servers, "it-group", ends)
    behind = sum(end - committed.get(tp, 0) for tp, end in ends.items())
    assert behind == len(messages), "nothing was delivered, so nothing may be committed"
    assert 0 < int(left) <= behind, log
