"""The Kafka side of the daemon benchmark, as a child process: broker, schema registry, loaded topic.

``python bench/kafka_env.py DATA_DIR TOPIC PARTITIONS`` starts an embedded Tansu broker and the local
schema registry, produces every record of the Currents files under ``DATA_DIR`` to ``TOPIC`` as
Confluent-framed values keyed by device, then prints one JSON line — ``bootstrap``, ``registry``,
``messages``, ``expected`` (how many of them map to an Amplitude event, computed with the product's
own transform, so the daemon's delivery can be checked) — and serves until its stdin closes.
Kept out of the measured daemon process and out of the harness process on purpose.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
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


async def load(files: list[Path], bootstrap: str, topic: str) -> tuple[int, int]:
    """Produce every record of ``files``; returns (messages, expected Amplitude events)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    transformer = Transformer()
    messages = expected = 0
    try:
        for path in files:
            with open(path, "rb") as fh:  # noqa: ASYNC230 - a benchmark loader, nothing else runs
                reader = fastavro.reader(fh)
                schema = reader.writer_schema
                assert isinstance(schema, dict), "a Currents file holds records"
                event_type = event_type_of(str(schema["name"]))
                for raw in reader:
                    record: dict[str, Any] = raw  # type: ignore[assignment]  # Currents records are records
                    value = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
                    key = str(record.get("device_id") or record.get("external_user_id") or record["id"])
                    await producer.send(topic, value, key=key.encode())
                    messages += 1
                    if not isinstance(transformer.transform(event_type, record), Skip):
                        expected += 1
        await producer.flush()
    finally:
        await producer.stop()
    return messages, expected


async def main(files: list[Path], topic: str, partitions: int) -> None:
    """Serve a loaded broker and registry until stdin closes."""
    async with EmbeddedBroker(log_path=Path(os.devnull)) as broker:
        await broker.create_topic(topic, partitions)
        registry = LocalRegistry()
        url = await registry.start()
        messages, expected = await load(files, broker.bootstrap_servers, topic)
        print(
            json.dumps(
                {
                    "bootstrap": broker.bootstrap_servers,
                    "registry": url,
                    "messages": messages,
                    "expected": expected,
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the harness closes our stdin
        await registry.stop()


if __name__ == "__main__":
    asyncio.run(main(sorted(Path(sys.argv[1]).rglob("*.avro")), sys.argv[2], int(sys.argv[3])))
