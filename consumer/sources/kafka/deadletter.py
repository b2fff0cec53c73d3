"""Dead letters on a Kafka topic: the producer ``run`` writes them with, the reader of ``redrive``.

Both are clients of the cluster of ``--bootstrap-servers`` with its security settings
(:func:`~consumer.sources.kafka.client.connection_options`). Guarantees:

* **Acknowledged before done.** :meth:`TopicProducer.send` queues (and hands a full queue to the
  producer in the background); :meth:`TopicProducer.settle` sends everything queued, in order, and
  returns once the broker acknowledged every record (``acks=all``). The daemon settles before it
  commits offsets, so a dead-lettered event's offset is never committed before its record is on the
  topic.
* **A refused write is a fault.** A record the producer or broker refuses (too large, no leader, no
  broker within :data:`SETTLE_TIMEOUT`) is a :class:`~consumer.ops.faults.Fault` naming the topic and
  the cause; every later call raises the same fault, so nothing queued after it counts as written.
* **Not idempotent.** Tansu does not answer ``InitProducerId``, so the producer is not idempotent: a
  send retried after a lost answer may write a record twice. Redrive re-sends with the record's
  ``insert_id``, so a duplicate record costs a duplicate request, never a duplicate event.
* **Reading is bounded.** :class:`TopicReader` reads each partition up to its high watermark (or a given
  offset range) and stops; redrive writes its own new dead letters only after reading, so they are
  left for the next redrive. With a consumer group, :meth:`TopicReader.commit` commits what was read, once the
  caller has settled it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumer.events import Position
from consumer.ops.faults import Fault
from consumer.settings import KafkaSettings, SettingsError
from consumer.sources.kafka.client import connection_options

SETTLE_TIMEOUT = 60.0
"""Seconds :meth:`TopicProducer.settle` waits for the broker's acknowledgements before it is a fault."""
EAGER = 1000
"""Records queued before :class:`TopicProducer` hands them to the producer without waiting to settle."""
RECORD_LIMIT = 1_000_000
"""Bytes of one dead-letter record at most: under the producer's 1 MiB request limit (and the broker's
default ``message.max.bytes``) with room for its key and batch header."""
READ_STALL = 30.0
"""Seconds :meth:`TopicReader.records` waits for a record it knows is there before it is a fault."""

Ranges = Mapping[int, tuple[int, int | None]]
"""Partition -> (first offset, last offset or ``None`` for the end), both included."""


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class TopicProducer:
    """Queues keyed records for one topic and writes them on :meth:`settle`; see the module docstring.

    Once ``eager`` records are queued they are handed to the producer at once, without waiting for
    :meth:`settle` (which still waits for their acknowledgements): a commit held back for long (behind
    an event still being retried) does not keep every dead letter since in memory. One task hands
    records over at a time, in the order written, so one device's records keep their order."""

    def __init__(self, settings: KafkaSettings, topic: str, *, eager: int = EAGER) -> None:
        self.settings = settings
        self.topic = topic
        self.eager = eager
        self._queue: list[tuple[bytes | None, bytes]] = []
        self._producer: AIOKafkaProducer | None = None
        self._handing: asyncio.Task[None] | None = None
        self._acks: list[asyncio.Future[Any]] = []
        self._error: BaseException | None = None
        self.fault: Fault | None = None

    def _failed(self, cause: str) -> Fault:
        if self.fault is None:
            self.fault = Fault(f"cannot write the dead-letter topic {self.topic}: {cause}")
        return self.fault

    def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one record (written by the next :meth:`settle`, or sooner once ``eager`` are queued)."""
        if self.fault is not None:
            raise self.fault
        if self._error is not None:
            raise self._failed(_cause(self._error))
        self._queue.append((key, value))
        if len(self._queue) >= self.eager and self._handing is None:
            self._handing = asyncio.get_running_loop().create_task(self._hand_over())

    async def _hand_over(self) -> None:
        """Hand every queued record to the producer, in order, until none is left (records written
        meanwhile included); a failure is kept for :meth:`send` and :meth:`settle` to raise."""
        try:
            while self._queue:
                queued, self._queue = self._queue, []
                producer = await self._started()
                for key, value in queued:
                    self._acks.append(await producer.send(self.topic, value, key=key))
        except (KafkaError, OSError) as exc:
            self._error = exc
        finally:
            self._handing = None

    async def _started(self) -> AIOKafkaProducer:
        producer = self._producer
        if producer is None:
            producer = AIOKafkaProducer(**connection_options(self.settings), acks="all", linger_ms=5)
            self._producer = producer
            await producer.start()
        return producer

    async def settle(self) -> None:
        """Write every queued record and wait until the broker acknowledged each; :class:`Fault` if not."""
        if self.fault is not None:
            raise self.fault
        try:
            await asyncio.wait_for(self._settle(), SETTLE_TIMEOUT)
        except TimeoutError:
            raise self._failed(f"not acknowledged within {SETTLE_TIMEOUT:.0f}s") from None
        except (KafkaError, OSError) as exc:
            raise self._failed(_cause(exc)) from None

    async def _settle(self) -> None:
        handing = self._handing
        if handing is None and self._queue:
            handing = self._handing = asyncio.get_running_loop().create_task(self._hand_over())
        if handing is not None:
            await asyncio.shield(handing)  # a timeout leaves it to close(), which cancels it
        if self._error is not None:
            raise self._error
        acks, self._acks = self._acks, []
        await asyncio.gather(*acks)

    async def close(self) -> None:
        """Settle what is queued, then stop the producer (stopped even when the settle raises; records
        not acknowledged by then are abandoned: their events were never reported done)."""
        try:
            await self.settle()
        finally:
            handing, self._handing = self._handing, None
            if handing is not None:
                handing.cancel()
                await asyncio.gather(handing, return_exceptions=True)
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()
            for ack in self._acks:  # retrieved, so none is reported as never retrieved
                if ack.done() and not ack.cancelled():
                    ack.exception()
            self._acks = []


class TopicReader:
    """Reads a dead-letter topic from a consumer group's committed offsets (or the beginning), or a
    given offset range, up to the end each partition had when reading began."""

    def __init__(
        self, settings: KafkaSettings, topic: str, *, group: str | None = None, ranges: Ranges | None = None
    ) -> None:
        """Check the choice (a group of redrive's own, or offset ranges); nothing is read yet."""
        if group and ranges:
            raise SettingsError("redrive: give --group or --offsets, not both")
        if group and group == settings.group_id:
            raise SettingsError(f"redrive --group {group}: that is the daemon's group (--group-id)")
        self.topic = topic
        self.servers = settings.bootstrap_servers
        self.group = group or None
        self.ranges = dict(ranges or {})
        options = {**connection_options(settings), "enable_auto_commit": False}
        self._consumer = AIOKafkaConsumer(group_id=self.group, auto_offset_reset="earliest", **options)
        self._ends: dict[TopicPartition, int] = {}

    async def records(self) -> list[tuple[Position, bytes]]:
        """Every record to redrive, with its position on the topic, in offset order per partition."""
        consumer = self._consumer
        await consumer.start()
        bounds = await self._bounds()
        got: list[tuple[Position, bytes]] = []
        consumer.assign(sorted(bounds))
        for tp, (start, _) in bounds.items():
            consumer.seek(tp, start)
        todo = set(bounds)
        stalled = time.monotonic() + READ_STALL
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=200)
            for tp, messages in batches.items():
                stop = bounds[tp][1]
                got.extend(
                    (Position(tp.topic, tp.partition, m.offset), m.value)
                    for m in messages
                    if stop is None or m.offset < stop
                )
                stalled = time.monotonic() + READ_STALL
            for tp in list(todo):
                end = self._end(tp, bounds[tp][1])
                if end is not None and await consumer.position(tp) >= end:
                    todo.discard(tp)
                    self._ends[tp] = end
            if todo and time.monotonic() > stalled:
                raise Fault(f"dead-letter topic {self.topic}: no records within {READ_STALL:.0f}s")
        return got

    def _end(self, tp: TopicPartition, stop: int | None) -> int | None:
        """Where reading ``tp`` ends: its high watermark as the last fetch answered it (Tansu's
        ListOffsets answers the last batch's base offset + 1, not the end), or ``stop`` if lower;
        ``None`` until a fetch answered."""
        high: int | None = self._consumer.highwater(tp)
        if high is None:
            return None
        return high if stop is None else min(stop, high)

    async def _bounds(self) -> dict[TopicPartition, tuple[int, int | None]]:
        """Per partition, the first offset to read and the one after the last (``None``: the end)."""
        consumer = self._consumer
        await consumer.topics()  # loads the cluster's metadata
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise SettingsError(f"no dead-letter topic {self.topic} on {self.servers}")
        unknown = sorted(set(self.ranges) - partitions)
        if unknown:
            raise SettingsError(f"--offsets: {self.topic} has no partition {unknown[0]}")
        tps = [TopicPartition(self.topic, p) for p in sorted(self.ranges or partitions)]
        firsts = await consumer.beginning_offsets(tps)
        bounds: dict[TopicPartition, tuple[int, int | None]] = {}
        for tp in tps:
            start, stop = firsts[tp], None
            if tp.partition in self.ranges:
                first, last = self.ranges[tp.partition]
                start, stop = max(start, first), None if last is None else last + 1
            elif self.group is not None:
                committed = await consumer.committed(tp)
                start = max(start, committed) if committed is not None else start
            bounds[tp] = (start, stop)
        return bounds

    async def commit(self) -> None:
        """With a group, commit every partition read up to where reading stopped."""
        if self.group is not None and self._ends:
            try:
                await self._consumer.commit(dict(self._ends))
            except KafkaError as exc:
                raise Fault(f"cannot commit redrive's group {self.group}: {_cause(exc)}") from None

    async def close(self) -> None:
        """Leave the cluster."""
        await self._consumer.stop()
