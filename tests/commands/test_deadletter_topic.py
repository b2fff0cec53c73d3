"""Dead letters on a Kafka topic, on the real broker: the daemon (``--dead-letter kafka://TOPIC``) writes
each record keyed by device with the original position, ``redrive kafka://TOPIC`` re-sends them from a
group of its own (once) or an offset range, and a record too large for a message goes without its
event (a record the producer refuses is a fault: tests/positions/test_topic_producer.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import local_schema_id
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, avro_body, confluent_frame
from daemon_harness import (
    PARTITIONS,
    TOPIC,
    all_committed,
    daemon_env,
    delivered_ids,
    in_process_settings,
    kill_started_daemons,
    produce_bulk,
    running_daemon,
)
from kafka_harness import committed_offsets, drain, eventually, plain_consumer, produce
from test_daemon_faults import CUSTOM, by_offset, custom_events

from consumer.commands.redrive import parse_offsets
from consumer.settings import SettingsError

DLQ = "currents-dead-letters"
GROUP = "it-group"


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


async def read_topic(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, dict[str, object]]]:
    """The first ``count`` records of ``topic`` (key, JSON value), read with a plain consumer."""
    consumer = plain_consumer(bootstrap)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        records = await drain(consumer, count)
    finally:
        await consumer.stop()
    return [(r.key, orjson.loads(r.value)) for r in records]


async def redrive_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``currents-consumer redrive ARGS`` as a child process; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "redrive", *args, "--summary-json",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_daemon_dead_letters_into_the_topic_and_redrive_sends_them_once(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    await broker.create_topic(DLQ, PARTITIONS)
    messages, ids = custom_events(300)  # every tenth has device "short": a 400 with min_id_length 8
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    placed = by_offset(ids)
    refused = set(ids[::10])
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "CURRENTS_DEAD_LETTER": f"kafka://{DLQ}",
    }
    settings = in_process_settings(env, AMPLITUDE_MIN_ID_LENGTH="8")
    async with running_daemon(settings) as daemon:
        await eventually(
            lambda: all_committed(broker.bootstrap_servers, GROUP, ends), within=60, message="committed"
        )
        assert daemon.dead.count == len(refused)
    assert delivered_ids(sim) == set(ids) - refused
    assert not (tmp_path / "dead-letter").exists() and not (tmp_path / "kafka:").exists()

    records = await read_topic(broker.bootstrap_servers, DLQ, len(refused))
    for key, record in records:
        event = record["event"]
        assert isinstance(event, dict) and isinstance(record["position"], dict)
        assert key == event["device_id"].encode() == b"short"
        assert record["reason"], record
        pos = record["position"]
        tp = TopicPartition(pos["topic"], pos["partition"])
        assert placed[tp][pos["offset"]] == event["insert_id"], "the record's position is the event's"
        assert {"time", "destination", "event_type"} <= record.keys()
    assert {r["event"]["insert_id"] for _, r in records} == refused  # type: ignore[index]

    # Redrive without min_id_length: Amplitude takes them now; the group commits what was read.
    redrive_env = {**env, "CURRENTS_DEAD_LETTER": str(tmp_path / "redrive-dl")}
    code, out = await redrive_cli(redrive_env, f"kafka://{DLQ}", "--group", "redrive-1")
    assert code == 0, out
    assert delivered_ids(sim) == set(ids), out[-2000:]
    sent = len(sim.events)
    dlq_ends = {TopicPartition(DLQ, p): 0 for p in range(PARTITIONS)}
    committed = await committed_offsets(broker.bootstrap_servers, "redrive-1", dlq_ends)
    assert sum(committed.values()) == len(refused), committed

    # The same group again: nothing left to read, nothing sent.
    code, out = await redrive_cli(redrive_env, f"kafka://{DLQ}", "--group", "redrive-1")
    assert code == 0, out
    assert len(sim.events) == sent
    assert orjson.loads(out.strip().splitlines()[-1])["read"] == 0, out[-800:]

    # An offset range re-sends just those records (same insert_id: Amplitude deduplicates).
    first = min(p for tp, p in committed.items() if p > 0)
    partition = next(tp.partition for tp, p in committed.items() if p == first)
    code, out = await redrive_cli(redrive_env, f"kafka://{DLQ}", "--offsets", f"{partition}:0-0")
    assert code == 0, out
    summary = orjson.loads(out.strip().splitlines()[-1])
    assert (summary["read"], summary["delivered"]) == (1, 1), out[-800:]
    assert len(sim.events) == sent  # Amplitude deduplicated the insert_id it already had


async def test_redrive_refuses_the_daemons_group_and_replay_refuses_a_topic(tmp_path: Path) -> None:
    env = {
        "KAFKA_GROUP_ID": "daemon",
        "CURRENTS_DEAD_LETTER": str(tmp_path / "dl"),
        "AMPLITUDE_API_KEY": "it-secret-key-123",
        "AMPLITUDE_URL": "http://127.0.0.1:9/2/httpapi",  # nothing is sent: refused before reading
    }
    code, out = await redrive_cli(env, "kafka://dlq", "--group", "daemon")
    assert code == 2 and "that is the daemon's group" in out, out
    code, out = await redrive_cli(env, "kafka://dlq", str(tmp_path))
    assert code == 2 and "not both" in out, out
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "replay", str(tmp_path), "--dead-letter", "kafka://dlq",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"replay writes dead letters to a directory" in out_b, out_b
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "config", "--dead-letter", "kafka://no topic!",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"kafka://TOPIC takes a Kafka topic name" in out_b, out_b


def huge_event() -> bytes:
    """A custom event whose properties alone are over 1 MiB: too large for an Amplitude request, so it
    is dead-lettered, and its dead-letter record is over the producer's 1 MiB request limit."""
    record = Synth(seed=9, devices=5).record(CUSTOM)
    record["device_id"] = "device-huge"
    record["external_user_id"] = None
    record["id"] = str(uuid.UUID(int=10**9))
    record["properties"] = orjson.dumps({"blob": "x" * (1200 << 10)}).decode()
    return confluent_frame(local_schema_id(CUSTOM), avro_body(CUSTOM, record))


async def test_a_record_too_large_for_a_message_goes_without_its_event_and_the_daemon_goes_on(
    broker: EmbeddedBroker,
    sim: AmplitudeSimulator,
    registry_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An event over 1 MiB is dead-lettered (``payload_too_large``); its record would be over the
    producer's request limit, which would stop every daemon that reads the event again. It goes
    without the event, with its position and why, and the events after it are delivered and
    committed."""
    await broker.create_topic(TOPIC, 1)
    await broker.create_topic(DLQ, 1)
    before, _ = custom_events(60)
    good = [v for i, (_, v) in enumerate(before) if i % 10]  # no device "short": all deliverable
    big_at = len(good)
    after = good[:10]
    await produce(broker.bootstrap_servers, TOPIC, good)
    await produce(
        broker.bootstrap_servers, TOPIC, [huge_event(), *after], client={"max_request_size": 4 << 20}
    )
    env = {**daemon_env(broker, sim, registry_url, tmp_path), "CURRENTS_DEAD_LETTER": f"kafka://{DLQ}"}
    tp = TopicPartition(TOPIC, 0)
    end = big_at + 1 + len(after)
    async with running_daemon(in_process_settings(env)):
        await eventually(
            lambda: all_committed(broker.bootstrap_servers, GROUP, {tp: end}),
            within=60,
            message="every offset committed, the huge event's included",
        )
    ((key, record),) = await read_topic(broker.bootstrap_servers, DLQ, 1)
    assert key == b"device-huge"
    assert record["reason"] == "payload_too_large" and "event" not in record
    assert record["position"] == {"topic": TOPIC, "partition": 0, "offset": big_at}
    assert "over the 1000000-byte message limit" in str(record["omitted"])
    (line,) = [r.getMessage() for r in caplog.records if "written without its event" in r.getMessage()]
    assert f"offset': {big_at}" in line and "payload_too_large" in line and DLQ in line, line


def test_offsets_are_partition_first_last_with_an_open_end() -> None:
    assert parse_offsets(["0:10-20", "2:5-"]) == {0: (10, 20), 2: (5, None)}
    for bad in (["0:20-10"], ["x:1-2"], ["0:1"], ["1:1-2", "1:3-4"]):
        with pytest.raises(SettingsError):
            parse_offsets(bad)
