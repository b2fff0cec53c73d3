"""The Kafka daemon on a real broker (Tansu) delivering to the Amplitude simulator over real HTTP.

Each test checks at-least-once end to end: every deliverable event's ``insert_id`` reaches the
simulator, and the group's committed offsets reach the end of every partition only when that is true.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from daemon_harness import (
    PARTITIONS,
    TOPIC,
    all_committed,
    daemon_env,
    delivered_ids,
    in_process_settings,
    kill_started_daemons,
    make_events,
    produce_bulk,
    running_daemon,
    start_daemon_process,
)
from kafka_harness import committed_offsets, eventually, produce

from consumer.events import apart


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    """A test that fails midway must not leave its daemon running (and delivering) behind it."""
    yield
    kill_started_daemons()


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, expected = make_events(4000, seed=11)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    env = daemon_env(broker, sim, registry_url, tmp_path)

    first = await start_daemon_process(env, tmp_path / "first.log")
    await eventually(lambda: len(sim.events) >= 800, within=60, message="first daemon delivering")
    first.kill()  # SIGKILL: no drain, no final commit
    assert await first.wait() == -signal.SIGKILL
    assert len(delivered_ids(sim)) < len(expected), "the kill must happen mid-stream"

    second = await start_daemon_process(env, tmp_path / "second.log")
    await eventually(lambda: delivered_ids(sim) >= expected, within=90, message="every event delivered")
    await eventually(
        lambda: all_committed(broker.bootstrap_servers, "it-group", ends),
        within=30,
        message="offsets committed to the end",
    )
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), 60) == 0
    assert delivered_ids(sim) == expected
    # Nothing outside the expected set (no invented events); re-sends after the kill are duplicates.
    assert {e.event["insert_id"] for e in sim.duplicates} <= expected
    log = (tmp_path / "second.log").read_text()
    assert "it-secret-key-123" not in log + (tmp_path / "first.log").read_text()


async def test_second_consumer_joining_mid_stream(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, expected = make_events(5000, seed=12)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "CURRENTS_DEVICE_RATE": "3",
        "CURRENTS_SHUTDOWN_GRACE": "5s",
    }
    # A low per-device rate keeps the stream going long enough for the join to happen mid-stream.
    a = await start_daemon_process(env, tmp_path / "a.log")
    await eventually(lambda: len(sim.events) >= 300, within=60, message="first member delivering")
    b = await start_daemon_process(env, tmp_path / "b.log")
    await eventually(
        lambda: (
            '"assigned' in (tmp_path / "b.log").read_text()
            and "currents[" in (tmp_path / "b.log").read_text()
        ),
        within=60,
        message="second member assigned",
    )
    assert len(delivered_ids(sim)) < len(expected), "the join must happen mid-stream"
    await eventually(lambda: delivered_ids(sim) >= expected, within=240, message="every event delivered")
    await eventually(
        lambda: all_committed(broker.bootstrap_servers, "it-group", ends),
        within=30,
        message="offsets committed to the end",
    )
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    assert [await asyncio.wait_for(p.wait(), 60) for p in (a, b)] == [0, 0]
    assert "revoked" in (tmp_path / "a.log").read_text()


async def test_nothing_committed_while_amplitude_is_down_then_everything_arrives(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    # Only deliverable events: a skipped event at the head of a partition may rightly be committed.
    # More than the batches with the workers at once (3 x 256 each), so that some wait in the backlog.
    messages, expected = make_events(2500, seed=13, deliverable_only=True)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    env = daemon_env(broker, sim, registry_url, tmp_path)
    settings = in_process_settings(
        env, CURRENTS_MAX_PENDING="300", CURRENTS_RETRY_WINDOW="1h", CURRENTS_MAX_BACKOFF="0.5s"
    )
    sim.faults.down("503")
    async with running_daemon(settings) as daemon:
        await eventually(
            lambda: sim.stats.requests_by_status.get(503, 0) >= 5,
            within=30,
            message="requests failing while Amplitude is down",
        )
        await eventually(lambda: bool(daemon.consumer.paused()), within=30, message="partitions paused")
        assert daemon.pipeline.engine.pending <= 300
        first_pending: dict[TopicPartition, int] = {}
        for item in apart(daemon.pipeline.engine.live.items.values()):
            tp = TopicPartition(item.position.source, item.position.partition)
            first_pending[tp] = min(first_pending.get(tp, 1 << 62), item.position.offset)
        await daemon.commit()
        committed = await committed_offsets(broker.bootstrap_servers, "it-group", ends)
        assert not committed or all(committed[tp] <= first_pending[tp] for tp in committed), committed
        assert not delivered_ids(sim)
        sim.faults.up()
        await eventually(
            lambda: delivered_ids(sim) >= expected, within=90, message="everything after healing"
        )
        await eventually(
            lambda: all_committed(broker.bootstrap_servers, "it-group", ends),
            within=30,
            message="offsets committed to the end",
        )
    assert delivered_ids(sim) == expected


@pytest.mark.parametrize("workers", ["0", "1", "2"])
async def test_garbage_is_dead_lettered_and_the_partition_keeps_flowing(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path, workers: str
) -> None:
    """Decoded in this process or in worker processes: the same dead-letters, the same deliveries."""
    await broker.create_topic(TOPIC, 1)
    messages, expected = make_events(300, seed=14)
    garbage = [b"", b"\x01\x00\x00\x00\x01abc", b"\x00\x00\x00\x03\xe7\x02", b"\x00\x00"]
    good_frame = messages[0][1]
    truncated = good_frame[: len(good_frame) // 2]
    values = [v for _, v in messages[:100]] + garbage + [truncated] + [v for _, v in messages[100:]]
    metas = await produce(broker.bootstrap_servers, TOPIC, values, partition=0)
    ends = {TopicPartition(TOPIC, 0): max(m.offset for m in metas) + 1}
    bad_offsets = {metas[i].offset for i in range(100, 105)}
    env = daemon_env(broker, sim, registry_url, tmp_path)
    settings = in_process_settings(env, CURRENTS_WORKERS=workers)
    async with running_daemon(settings):
        await eventually(
            lambda: delivered_ids(sim) >= expected, within=60, message="events after the garbage"
        )
        await eventually(
            lambda: all_committed(broker.bootstrap_servers, "it-group", ends),
            within=30,
            message="offsets committed past the garbage",
        )
    records: list[dict[str, Any]] = []
    for path in (tmp_path / "dead-letter").glob("*.jsonl"):
        records += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    undecodable = [r for r in records if r["reason"] == "undecodable"]
    assert {r["position"]["offset"] for r in undecodable} == bad_offsets
    for r in undecodable:
        assert r["position"]["topic"] == TOPIC and r["position"]["partition"] == 0
        assert base64.b64decode(r["raw"]) == values[r["position"]["offset"] - metas[0].offset]
        assert r["detail"]


async def test_a_worker_process_that_dies_is_replaced_and_nothing_is_lost(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, expected = make_events(2000, seed=15)
    half = len(messages) // 2
    ends = await produce_bulk(broker.bootstrap_servers, messages[:half])
    settings = in_process_settings(daemon_env(broker, sim, registry_url, tmp_path), CURRENTS_WORKERS="2")
    async with running_daemon(settings) as daemon:
        assert len(daemon.workers) == 2
        await eventually(lambda: len(sim.events) >= 300, within=60, message="the daemon delivering")
        first, other = daemon.workers[0].pid, daemon.workers[1].pid
        assert first is not None and other is not None
        os.kill(first, signal.SIGKILL)
        # Produced after the kill: only a new worker (or this process) can prepare these.
        later = await produce_bulk(broker.bootstrap_servers, messages[half:])
        await eventually(lambda: delivered_ids(sim) >= expected, within=60, message="every event delivered")
        await eventually(
            lambda: all_committed(broker.bootstrap_servers, "it-group", later),
            within=30,
            message="offsets committed to the end",
        )
        assert daemon.workers[0].pid not in (None, first, other)
        assert daemon.workers[1].pid == other  # the other one kept working
    assert ends.keys() == later.keys()


async def test_kafka_unreachable_at_start_is_retried_not_fatal(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port}",
    }
    proc = await start_daemon_process(env, tmp_path / "unreachable.log")
    await eventually(
        lambda: "cannot reach Kafka" in (tmp_path / "unreachable.log").read_text(),
        within=30,
        message="the retry being logged",
    )
    assert proc.returncode is None, "the daemon must keep trying, not exit"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert "Traceback" not in (tmp_path / "unreachable.log").read_text()
