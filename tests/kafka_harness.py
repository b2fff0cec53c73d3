"""Helpers for integration tests against the embedded Tansu broker (see ``currents_devkit.broker``).

Everything here waits by polling a condition against a deadline, never by sleeping a fixed time.

Consumer-group timing on Tansu: the broker answers ``JoinGroup`` only after about
``session_timeout_ms / 2`` (whole seconds, at least 1 s), so :data:`GROUP_TIMING` keeps the session
short; every join or rebalance then costs about one second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

#: aiokafka group settings that make joins and rebalances fast on Tansu yet survive a loaded CI box:
#: join ~1 s; a member that dies without LeaveGroup is evicted after ~2-3 s.
GROUP_TIMING: Mapping[str, int] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}

#: A fetch long-poll waits at most this long on an idle partition. Tansu finishes in-flight fetches
#: before exiting on SIGTERM, so aiokafka's default (500 ms) would add that much to every broker stop.
FETCH_WAIT: Mapping[str, int] = {"fetch_max_wait_ms": 100}

#: Producer settings for bulk loads: batch up to 1 MiB, wait up to 5 ms to fill a batch.
BULK_PRODUCER: Mapping[str, int] = {"linger_ms": 5, "max_batch_size": 1_048_576}

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(condition: Condition, *, within: float = 10.0, message: str = "condition") -> None:
    """Poll ``condition`` (sync or async) every 20 ms until it is true; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {message}")
        await asyncio.sleep(0.02)  # poll interval, bounded by the deadline above


async def produce(
    bootstrap_servers: str,
    topic: str,
    values: Iterable[bytes],
    *,
    partition: int | None = None,
    key: bytes | None = None,
    client: Mapping[str, Any] | None = None,
) -> list[RecordMetadata]:
    """Send every value to ``topic`` (one partition if given), wait for all acks, return metadata.

    ``client`` adds producer options (``security_protocol``, ``ssl_context`` for a TLS broker)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **BULK_PRODUCER, **(client or {}))
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition) for value in values]
        await producer.flush()
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def produce_per_partition(
    bootstrap_servers: str, topic: str, per_partition: Mapping[int, Sequence[bytes]]
) -> None:
    """Send ``per_partition[p]`` to partition ``p`` of ``topic``, in order, and wait for all acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **BULK_PRODUCER)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, partition=partition)
            for partition, values in per_partition.items()
            for value in values
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_offsets(
    bootstrap_servers: str,
    group_id: str,
    partitions: Iterable[TopicPartition],
    client: Mapping[str, Any] | None = None,
) -> dict[TopicPartition, int]:
    """The group's committed offsets for ``partitions``; partitions with none are omitted (``client``
    adds admin-client options, as for :func:`produce`).

    The partitions must be named: Tansu answers the "all partitions" form of OffsetFetch
    with a malformed response (see ``tests/test_broker.py``).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client or {}))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id, partitions=list(partitions))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def group_consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """An unstarted group consumer: manual commits, earliest reset, :data:`GROUP_TIMING`, :data:`FETCH_WAIT`."""
    return plain_consumer(
        bootstrap_servers, group_id=group_id, enable_auto_commit=False, **{**GROUP_TIMING, **overrides}
    )


def plain_consumer(bootstrap_servers: str, **overrides: Any) -> AIOKafkaConsumer:
    """An unstarted consumer (no group unless given) reading from the earliest offset, :data:`FETCH_WAIT`."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "auto_offset_reset": "earliest",
        **FETCH_WAIT,
    }
    settings.update(overrides)
    return AIOKafkaConsumer(**settings)


async def drain(consumer: AIOKafkaConsumer, count: int, *, within: float = 15.0) -> list[ConsumerRecord]:
    """``getmany`` until ``count`` records arrived (fail after ``within`` s); return them."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + within
    while len(records) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"got {len(records)} of {count} records within {within}s")
        batches = await consumer.getmany(timeout_ms=200)
        for batch in batches.values():
            records.extend(batch)
    return records


@contextlib.asynccontextmanager
async def polling(consumer: AIOKafkaConsumer) -> AsyncIterator[list[ConsumerRecord]]:
    """Keep calling ``getmany`` in a background task (as the daemon does); yield the records seen."""
    records: list[ConsumerRecord] = []

    async def loop() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend(batch)

    task = asyncio.create_task(loop())
    try:
        yield records
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class RebalanceRecorder(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance listener that records every revoke/assign and can run a hook on revoke."""

    def __init__(self, on_revoke: Callable[[frozenset[TopicPartition]], Awaitable[None]] | None = None):
        """Record events; call ``on_revoke(revoked)`` (e.g. a final commit) before recording it."""
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Run the hook, then record ``("revoked", partitions)``."""
        partitions = frozenset(revoked)
        if self._on_revoke is not None and partitions:
            await self._on_revoke(partitions)
        self.events.append(("revoked", partitions))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Record ``("assigned", partitions)``."""
        self.events.append(("assigned", frozenset(assigned)))

    def assignments(self) -> list[frozenset[TopicPartition]]:
        """Every assignment received, oldest first."""
        return [parts for kind, parts in self.events if kind == "assigned"]

    def revocations(self) -> list[frozenset[TopicPartition]]:
        """Every non-empty revocation received, oldest first."""
        return [parts for kind, parts in self.events if kind == "revoked" and parts]
