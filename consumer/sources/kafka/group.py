"""One Kafka consumer-group member: everything of the daemon's input that touches aiokafka.

Connecting (retried with backoff, 1 s doubling to 30 s, while the brokers are unreachable, their
certificate is not trusted or they refuse the SASL login; each failure logged once with its reason),
the rebalance listener, fetching, pausing and resuming, reading and writing committed offsets and the
high watermark, and leaving the group. Partitions are named as :data:`~consumer.sources.base.Stream`
tuples ``(topic, partition)`` (an aiokafka ``TopicPartition`` is such a tuple), so no caller needs
aiokafka's types. Offsets are never auto-committed: :meth:`GroupConsumer.commit` is given the
contiguous done prefix by the caller. The :class:`~consumer.sources.base.Source` around it is
:mod:`consumer.sources.kafka.source`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from consumer.ops.waits import wait_set
from consumer.settings import KafkaSettings
from consumer.sources.base import Stream
from consumer.sources.kafka.client import build_consumer, explain_start_failure, refused_login, subscribe
from consumer.sources.kafka.logs import quiet_repeats

log = logging.getLogger("currents.daemon")

ConsumerFactory = Callable[[KafkaSettings], AIOKafkaConsumer]


class Rebalance(Protocol):
    """What the reader does when the group gives or takes partitions (awaited inside the poll)."""

    async def assigned(self, partitions: set[Stream]) -> None:
        """``partitions`` are now this member's: feed them."""

    async def revoked(self, partitions: set[Stream]) -> None:
        """``partitions`` go away once this returns: finish and commit what can be, then forget them."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, source: GroupConsumer) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source.rebalance.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.source.is_paused and assigned:
            # Back-pressure holds for partitions that arrive while delivery is full.
            self.source.consumer.pause(*assigned)
        await self.source.rebalance.assigned(set(assigned))


class GroupConsumer:
    """One consumer-group member: connect, rebalance, fetch, pause, commit."""

    def __init__(
        self, settings: KafkaSettings, rebalance: Rebalance, factory: ConsumerFactory = build_consumer
    ) -> None:
        self.settings = settings
        self.rebalance = rebalance
        self._factory = factory
        self._quiet = quiet_repeats()
        # Built by start(): a consumer built earlier would be left unclosed by a run that ends before
        # it starts (a metrics port taken), and aiokafka reports that as an error at exit.
        self._consumer: AIOKafkaConsumer | None = None
        self.is_paused = False
        """Whether :meth:`pause` holds (partitions assigned meanwhile start paused)."""

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The aiokafka consumer (only once :meth:`start` has connected)."""
        assert self._consumer is not None, "GroupConsumer.start() first"
        return self._consumer

    async def start(self, stopping: asyncio.Event, beat: Callable[[], None]) -> bool:
        """Connect and join the group, retrying with backoff while Kafka is unreachable (calling
        ``beat`` between attempts, the process is alive); ``False`` if ``stopping`` is set first,
        also in the middle of an attempt (a broker that accepts and never answers does not hold a
        stop). Each failed attempt is one line, with its cause; aiokafka's own line about the same
        failed bootstrap is not logged."""
        wait = 1.0
        while True:
            self._consumer = self._factory(self.settings)
            subscribe(self._consumer, self.settings, _Listener(self))
            with self._quiet.connecting():
                failure = await self._attempt(self._consumer, stopping)
            if failure is None:
                return True
            if isinstance(failure, Exception) and not stopping.is_set():
                # aiokafka's error says only that bootstrapping failed (or is a KeyError from its
                # SCRAM client); the operator needs to know why.
                log.error(
                    "cannot reach Kafka at %s: %s; retrying in %.0fs",
                    self.settings.bootstrap_servers,
                    await explain_start_failure(self.settings, failure),
                    wait,
                )
            # A consumer whose start failed is not reused: close it, and build a fresh one only to
            # retry: one built while the stop came would be left unclosed (a ResourceWarning at exit).
            with contextlib.suppress(Exception):  # a consumer whose start failed half-way
                await self.close()
            beat()
            await wait_set(stopping, wait)
            if stopping.is_set():
                return False
            wait = min(30.0, wait * 2)

    async def _attempt(self, consumer: AIOKafkaConsumer, stopping: asyncio.Event) -> BaseException | None:
        """One ``consumer.start()``: ``None`` once connected, else why not (a stop that came first
        cancels the attempt and is returned as :class:`asyncio.CancelledError`). Exceptions that are
        not a failure to connect are raised."""
        starting = asyncio.ensure_future(consumer.start())
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not starting.done():
                starting.cancel()
            await asyncio.gather(starting, stopped, return_exceptions=True)
        if starting.cancelled():
            return asyncio.CancelledError()
        exc = starting.exception()
        if exc is None:
            return None
        if not isinstance(exc, Exception) or (
            not isinstance(exc, KafkaError) and not refused_login(self.settings, exc)
        ):
            raise exc
        return exc

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[Stream, list[Any]]:
        """Messages fetched per partition (waits up to ``timeout_ms`` for some; rebalance callbacks run
        inside). Each message has ``topic``, ``partition``, ``offset`` and ``value``."""
        fetched: dict[Stream, list[Any]] = await self.consumer.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
        return fetched

    def pause(self) -> None:
        """Stop fetching from every assigned partition (polling goes on: the membership stays alive)."""
        self.is_paused = True
        self.consumer.pause(*self.consumer.assignment())

    def resume(self) -> None:
        """Fetch again from every paused partition."""
        self.is_paused = False
        self.consumer.resume(*self.consumer.paused())

    def paused(self) -> set[Stream]:
        """The partitions paused now."""
        return set(self.consumer.paused())

    async def committed(self, stream: Stream) -> int | None:
        """The group's committed offset of ``stream``, ``None`` if it has none or cannot be read."""
        try:
            committed = await self.consumer.committed(TopicPartition(*stream))
        except KafkaError as exc:
            log.warning("cannot read the committed offset of %s[%d]: %s", stream[0], stream[1], exc)
            return None
        return committed if committed is not None and committed >= 0 else None

    def highwater(self, stream: Stream) -> int | None:
        """The partition's end offset as of the last fetch (``None`` before one)."""
        high: int | None = self.consumer.highwater(TopicPartition(*stream))
        return high

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Commit ``offsets`` for the group; ``False`` (logged) when Kafka refuses."""
        try:
            await self.consumer.commit({TopicPartition(*s): offset for s, offset in offsets.items()})
        except KafkaError as exc:
            # A rebalance in progress or a fenced generation: the next owner re-reads from the last
            # successful commit, which is safe.
            log.warning("commit failed (%s); will retry", type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        """Leave the group and close the connections (commits nothing); nothing to do before
        :meth:`start` built a consumer, or after it is closed."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
