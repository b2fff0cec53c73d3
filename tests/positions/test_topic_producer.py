"""Tests for consumer.sources.kafka.deadletter's producer on the real broker: a full queue is handed to
the broker before any settle, settle returns once every record is acknowledged, and one key's records
keep the order they were written in; a record the producer refuses is a fault naming the topic, raised
again by every later call."""

from __future__ import annotations

import contextlib
from collections import defaultdict

import pytest
from aiokafka.structs import ConsumerRecord
from currents_devkit.broker import EmbeddedBroker
from kafka_harness import eventually, plain_consumer

from consumer.ops.faults import Fault
from consumer.settings import load
from consumer.sources.kafka.deadletter import TopicProducer

TOPIC = "dead-letters"


async def test_a_full_queue_goes_out_before_settle_and_each_key_keeps_its_order(
    broker: EmbeddedBroker,
) -> None:
    await broker.create_topic(TOPIC, 3)
    kafka = load(None, env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}).kafka
    producer = TopicProducer(kafka, TOPIC, eager=10)
    consumer = plain_consumer(broker.bootstrap_servers)
    await consumer.start()
    seen: list[ConsumerRecord] = []

    async def received(n: int) -> bool:
        for batch in (await consumer.getmany(timeout_ms=100)).values():
            seen.extend(batch)
        return len(seen) >= n

    try:
        consumer.subscribe([TOPIC])
        for i in range(25):
            producer.send(f"device-{i % 4}".encode(), f"{i}".encode())
        # More than ``eager`` queued: handed to the broker without a settle (all 25: the hand-over
        # starts once the writer yields, and takes what is queued by then).
        await eventually(lambda: received(25), within=15, message="the full queue on the topic")
        await producer.settle()  # their acks: nothing left to send
        producer.send(b"device-0", b"25")
        await producer.settle()  # below ``eager``: sent by the settle
        await eventually(lambda: received(26), within=15, message="the settled record on the topic")
    finally:
        await producer.close()
        await consumer.stop()
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(seen, key=lambda r: (r.partition, r.offset)):
        by_key[record.key].append(int(record.value))
    assert by_key == {f"device-{k}".encode(): list(range(k, 25, 4)) + [25] * (k == 0) for k in range(4)}


async def test_settle_with_nothing_written_starts_no_producer(broker: EmbeddedBroker) -> None:
    kafka = load(None, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}).kafka  # nothing listens there
    producer = TopicProducer(kafka, TOPIC)
    await producer.settle()
    await producer.close()


async def test_a_record_the_producer_refuses_is_a_fault_naming_the_topic(broker: EmbeddedBroker) -> None:
    await broker.create_topic(TOPIC, 1)
    kafka = load(None, env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}).kafka
    producer = TopicProducer(kafka, TOPIC)
    producer.send(b"device-0", b"x" * (2 << 20))  # over the producer's 1 MiB request limit
    try:
        with pytest.raises(
            Fault, match=f"cannot write the dead-letter topic {TOPIC}: MessageSizeTooLargeError"
        ):
            await producer.settle()
        with pytest.raises(Fault, match="MessageSizeTooLargeError"):
            producer.send(b"device-0", b"small")  # nothing written after it counts
    finally:
        with contextlib.suppress(Fault):
            await producer.close()
