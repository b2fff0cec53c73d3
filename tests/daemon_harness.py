"""The Kafka daemon in tests: events to produce, its environment, a daemon running in-process or as a
child process, commits."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import random
import sys
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import local_schema_id
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, avro_body, confluent_frame
from kafka_harness import committed_offsets, produce
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.commands.run import Daemon
from consumer.ops.metrics import Metrics
from consumer.settings import Settings, load
from consumer.transform.amplitude import Transformer
from consumer.transform.amplitude_tables import BRAZE_TYPES
from consumer.transform.base import Skip

TOPIC = "currents"


PARTITIONS = 3


def make_events(
    n: int, seed: int, *, deliverable_only: bool = False
) -> tuple[list[tuple[bytes, bytes]], set[str]]:
    """``n`` Confluent-framed messages (key, value) and the insert_ids Amplitude must end up with."""
    synth = Synth(seed=seed, devices=300)
    transformer = Transformer()
    messages: list[tuple[bytes, bytes]] = []
    expected: set[str] = set()
    for event_type, record in synth.mixed(n, event_types=sorted(BRAZE_TYPES)):
        skipped = isinstance(transformer.transform(event_type, record), Skip)
        if skipped and deliverable_only:
            continue
        messages.append(
            (
                (record.get("device_id") or record["id"]).encode(),
                confluent_frame(local_schema_id(event_type), avro_body(event_type, record)),
            )
        )
        if not skipped:
            expected.add(record["id"])
    return messages, expected


async def produce_bulk(
    bootstrap: str, messages: list[tuple[bytes, bytes]], client: Mapping[str, Any] | None = None
) -> dict[TopicPartition, int]:
    """Produce messages round-robin over partitions; returns end offsets (``client``: producer options)."""
    per: dict[int, list[bytes]] = {}
    for i, (_, value) in enumerate(messages):
        per.setdefault(i % PARTITIONS, []).append(value)
    ends: dict[TopicPartition, int] = {}
    for partition, values in per.items():
        metas = await produce(bootstrap, TOPIC, values, partition=partition, client=client)
        ends[TopicPartition(TOPIC, partition)] = max(m.offset for m in metas) + 1
    return ends


def daemon_env(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp: Path
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_TOPICS": TOPIC,
        "KAFKA_GROUP_ID": "it-group",
        "KAFKA_SESSION_TIMEOUT": "2s",
        "SCHEMA_REGISTRY_URL": registry_url,
        "AMPLITUDE_API_KEY": "it-secret-key-123",
        "AMPLITUDE_URL": sim.http_v2_url,
        "CURRENTS_DEAD_LETTER": str(tmp / "dead-letter"),
        "CURRENTS_COMMIT_INTERVAL": "0.3s",
        "CURRENTS_BATCH_AGE": "0.1s",
        "CURRENTS_REVOKE_TIMEOUT": "5s",
        "CURRENTS_LOG_FORMAT": "json",
        # A restarted daemon re-sends what the killed one sent moments before; the simulator counts both
        # in one per-device second and throttles the hot device (a real 429). Amplitude's usual 30 s
        # penalty would then outlast the test's wait for the final commit.
        "CURRENTS_THROTTLE_PENALTY": "1s",
    }


def delivered_ids(sim: AmplitudeSimulator) -> set[str]:
    return {e.event["insert_id"] for e in sim.events}


async def all_committed(
    bootstrap: str, group: str, ends: dict[TopicPartition, int], client: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``group`` has committed every partition of ``ends`` to its end."""
    committed = await committed_offsets(bootstrap, group, ends, client)
    return all(committed.get(tp, -1) >= end for tp, end in ends.items())


def in_process_settings(env: dict[str, str], **extra: str) -> Settings:
    return load(None, env={**env, **extra})


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A daemon running in this event loop; on exit it is stopped and must exit 0."""
    destinations = build_destinations(settings)
    daemon = Daemon(settings, destinations, Metrics(CollectorRegistry()))
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 60) == 0
        await close_all(destinations)


_started: list[asyncio.subprocess.Process] = []


async def start_daemon_process(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """``currents-consumer run`` as a child process with ``env`` added, its output appended to ``log``;
    :func:`kill_started_daemons` ends it if the test does not."""
    fh = open(log, "ab")  # noqa: SIM115, ASYNC230 - handed to the child process
    try:
        # ResourceWarnings as errors: a Kafka consumer or socket left to the garbage collector then
        # leaves a Traceback in the log instead of a warning nobody reads.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-W", "error::ResourceWarning", "-m", "consumer", "run",
            env={**os.environ, **env}, stdout=fh, stderr=fh,
        )  # fmt: skip
    finally:
        fh.close()
    _started.append(proc)
    return proc


def kill_started_daemons() -> None:
    """SIGKILL every daemon :func:`start_daemon_process` started that still runs (a test that failed
    midway must not leave its daemon delivering behind it)."""
    while _started:
        proc = _started.pop()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


HOT_DEVICE = "hot-device-0000000001"


def make_events_with_hot_device(
    n: int, hot: int, seed: int
) -> tuple[list[tuple[bytes, bytes]], set[str], set[str]]:
    """``n`` deliverable messages of many devices with ``hot`` more of :data:`HOT_DEVICE` (one user too)
    shuffled among them: (messages, every insert_id expected, the hot device's insert_ids)."""
    rng = random.Random(seed)
    synth = Synth(seed=seed + 1, devices=1)  # not make_events' seed: its ids would repeat
    transformer = Transformer()
    others, other_ids = make_events(n, seed, deliverable_only=True)
    hot_messages: list[tuple[bytes, bytes]] = []
    hot_ids: set[str] = set()
    while len(hot_messages) < hot:
        event_type, record = next(synth.mixed(1, event_types=sorted(BRAZE_TYPES)))
        if "device_id" not in record:
            continue
        record["device_id"] = HOT_DEVICE
        if "external_user_id" in record:
            record["external_user_id"] = "hot-user-1"
        if isinstance(transformer.transform(event_type, record), Skip):
            continue
        frame = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
        hot_messages.append((HOT_DEVICE.encode(), frame))
        hot_ids.add(record["id"])
    messages = others + hot_messages
    rng.shuffle(messages)
    return messages, other_ids | hot_ids, hot_ids


def last_assignment(log: Path) -> list[str] | None:
    """The partitions of the daemon's latest ``assigned [...]`` log line (JSON logs), or None."""
    latest: list[str] | None = None
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            msg = json.loads(line)["msg"]
            if msg.startswith("assigned ["):
                latest = ast.literal_eval(msg[len("assigned ") :])
            elif msg.startswith("revoked "):
                latest = []
    return latest


async def produce_keyed(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> dict[TopicPartition, int]:
    """Produce messages as a producer keyed by device does: one key's messages all to one partition (a
    stable hash of the key; Kafka's default partitioner uses murmur2), in order; returns end offsets."""
    per: dict[int, list[bytes]] = {}
    for key, value in messages:
        per.setdefault(zlib.crc32(key) % PARTITIONS, []).append(value)
    ends: dict[TopicPartition, int] = {}
    for partition, values in per.items():
        metas = await produce(bootstrap, TOPIC, values, partition=partition)
        ends[TopicPartition(TOPIC, partition)] = max(m.offset for m in metas) + 1
    return ends
