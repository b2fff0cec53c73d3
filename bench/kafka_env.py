"""The Kafka side of the daemon benchmark, as a child process: broker, schema registry, loaded topic.

``python bench/kafka_env.py DATA_DIR TOPIC PARTITIONS [LAYOUT]`` starts an embedded Tansu broker and the
local schema registry, produces every record of the Currents files under ``DATA_DIR`` to ``TOPIC`` (made
with ``PARTITIONS`` partitions) as Confluent-framed values, then prints one JSON line — ``bootstrap``,
``registry``, ``messages``, ``expected`` (how many of them map to an Amplitude event, computed with the
product's own transform, so the daemon's delivery can be checked), ``partitions``, ``layout`` and
``per_partition`` (messages, expected events and runs of one event type on each partition) — and serves
until its stdin closes. Kept out of the measured daemon process and out of the harness process on purpose.

``LAYOUT`` is how records are spread over the partitions:

``keyed`` (the default)  each record keyed by device (``device_id``, else ``external_user_id``, else
                         ``id``); the default partitioner hashes the key, so every partition holds a
                         mix of all event types in file order.
``files``                file by file: every record of one Currents file goes, in order, to one
                         partition, the files (sorted by path) dealt round-robin over the partitions;
                         no key. Each partition then holds long runs of one event type (a file holds
                         one type), as a topic loaded by a file-by-file producer does. An explicit
                         partition is used because aiokafka's partitioner picks a random partition
                         per keyless record (it has no sticky partitioner), which would mix types.
``mixed``                keyed by device as ``keyed``, but the records of all files in a shuffled order
                         (seeded), so no partition holds runs of one type (an experiment of
                         bench/kafka_trace.py, not a row: ``keyed`` follows file order, and since the
                         files are sorted by event type its partitions hold runs of one type too).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
from aiokafka import AIOKafkaProducer
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import LocalRegistry, local_schema_id
from currents_devkit.synth import avro_body, confluent_frame

from consumer.decode.schemas import event_type_of
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

LAYOUTS = ("keyed", "files", "mixed")


async def load(
    files: list[Path], bootstrap: str, topic: str, partitions: int, layout: str
) -> tuple[int, int, list[dict[str, Any]]]:
    """Produce every record of ``files`` as ``layout`` says; returns (messages, expected Amplitude
    events, per partition: messages, expected events and runs of one event type)."""
    if layout not in LAYOUTS:
        raise SystemExit(f"kafka_env.py: unknown layout {layout!r}; choose from {LAYOUTS}")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    transformer = Transformer()
    messages = expected = 0
    sent: list[tuple[asyncio.Future[Any], str, bool]] = []  # each record's delivery, in order
    if layout == "mixed":
        return await _load_mixed(producer, files, topic, partitions, transformer)
    try:
        for index, event_type, record in _records(files):
            value = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
            if layout == "files":
                future = await producer.send(topic, value, partition=index % partitions)
            else:
                future = await producer.send(topic, value, key=_key(record))
            mapped = not isinstance(transformer.transform(event_type, record), Skip)
            sent.append((future, event_type, mapped))
            messages += 1
            expected += mapped
        await producer.flush()
    finally:
        await producer.stop()
    return messages, expected, _per_partition(sent, partitions)


async def _load_mixed(
    producer: AIOKafkaProducer, files: list[Path], topic: str, partitions: int, transformer: Transformer
) -> tuple[int, int, list[dict[str, Any]]]:
    """The ``mixed`` layout: every record keyed by device, all files' records in a seeded shuffle."""
    records: list[tuple[bytes, bytes, str, bool]] = []
    for _, event_type, record in _records(files):
        value = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
        mapped = not isinstance(transformer.transform(event_type, record), Skip)
        records.append((value, _key(record), event_type, mapped))
    random.Random(1).shuffle(records)
    sent: list[tuple[asyncio.Future[Any], str, bool]] = []
    try:
        for value, key_bytes, event_type, mapped in records:
            sent.append((await producer.send(topic, value, key=key_bytes), event_type, mapped))
        await producer.flush()
    finally:
        await producer.stop()
    return len(records), sum(r[3] for r in records), _per_partition(sent, partitions)


def _records(files: list[Path]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Every record of ``files`` in order, with its file's index and its event type."""
    for index, path in enumerate(files):
        with open(path, "rb") as fh:
            reader = fastavro.reader(fh)
            schema = reader.writer_schema
            assert isinstance(schema, dict), "a Currents file holds records"
            event_type = event_type_of(str(schema["name"]))
            for raw in reader:
                record: dict[str, Any] = raw  # type: ignore[assignment]  # Currents records are records
                yield index, event_type, record


def _key(record: dict[str, Any]) -> bytes:
    """A record's message key: its device (else its user, else its id), as the daemon's topics are keyed."""
    return str(record.get("device_id") or record.get("external_user_id") or record["id"]).encode()


def _per_partition(
    sent: list[tuple[asyncio.Future[Any], str, bool]], partitions: int
) -> list[dict[str, Any]]:
    """Per partition: messages, expected events, runs of one event type (in produced order)."""
    per: list[dict[str, Any]] = [{"messages": 0, "expected": 0, "type_runs": 0} for _ in range(partitions)]
    last_type: list[str | None] = [None] * partitions
    for future, event_type, mapped in sent:  # where each record went, in the order it was produced
        partition = future.result().partition
        entry = per[partition]
        entry["messages"] += 1
        entry["expected"] += mapped
        if last_type[partition] != event_type:
            entry["type_runs"] += 1
            last_type[partition] = event_type
    for entry in per:
        entry["mean_type_run"] = round(entry["messages"] / entry["type_runs"], 1) if entry["type_runs"] else 0
    return per


async def main(files: list[Path], topic: str, partitions: int, layout: str) -> None:
    """Serve a loaded broker and registry until stdin closes."""
    async with EmbeddedBroker(log_path=Path(os.devnull)) as broker:
        await broker.create_topic(topic, partitions)
        registry = LocalRegistry()
        url = await registry.start()
        messages, expected, per = await load(files, broker.bootstrap_servers, topic, partitions, layout)
        print(
            json.dumps(
                {
                    "bootstrap": broker.bootstrap_servers,
                    "registry": url,
                    "messages": messages,
                    "expected": expected,
                    "partitions": partitions,
                    "layout": layout,
                    "per_partition": per,
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the harness closes our stdin
        await registry.stop()


if __name__ == "__main__":
    layout = sys.argv[4] if len(sys.argv) > 4 else "keyed"
    asyncio.run(main(sorted(Path(sys.argv[1]).rglob("*.avro")), sys.argv[2], int(sys.argv[3]), layout))
