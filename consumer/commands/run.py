"""``currents-consumer run``: the Kafka daemon (consumer group, at-least-once).

The loop: fetch -> decode -> track the offset -> pipeline (transform, throttle, batch, send) ->
acknowledge -> commit the contiguous done prefix per partition, periodically, on revoke and on
shutdown. Guarantees:

* **At-least-once.** An offset is committed only when it and every offset before it on its partition
  is done (delivered, skipped or dead-lettered, the dead-letter record synced to disk first). A SIGKILL
  at any instant re-reads from the last commit; Amplitude deduplicates on ``insert_id``.
* **Bounded memory, Kafka is the buffer.** Fetched messages wait in a backlog of at most one fetch;
  when the delivery engine is full (an Amplitude outage, hot devices) every assigned partition is
  paused and the loop keeps polling (so the group membership stays alive) without fetching more.
* **Rebalances.** On revoke, revoked partitions stop being fed, their in-flight events get
  ``revoke_timeout`` to finish, what is done is committed, and the partitions are forgotten: nothing
  is ever committed for a partition no longer owned.
* **Shutdown.** :meth:`Daemon.stop` (SIGTERM/SIGINT): stop fetching, finish events in flight within
  ``shutdown_grace``, commit, leave the group.
* **Garbage never stalls a partition.** Undecodable values are dead-lettered with topic/partition/
  offset and raw bytes, and acknowledged; an unreachable schema registry is waited for instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from consumer.app.destinations import Destination
from consumer.app.pipeline import Pipeline
from consumer.decode.avro import DecodeError, Message
from consumer.decode.registry import RegistryClient, RegistryUnavailable
from consumer.events import Position
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter
from consumer.positions.tracker import OffsetTracker
from consumer.settings import KafkaSettings, Settings
from consumer.sources.kafka import MessageDecoder, build_consumer, subscribe
from consumer.sources.workers import MessageWorker, WorkerDied
from consumer.transform.prepare import MessageResult, prepare_messages

log = logging.getLogger("currents.daemon")


BATCH = 256
"""Messages prepared together (by a worker process or here)."""
AHEAD = 3
"""Batches with each worker process at once."""


@dataclass
class _Batch:
    """Messages taken from the backlog, their results to come, and partitions revoked meanwhile."""

    messages: list[Message]
    results: asyncio.Future[bytes] | None
    """The worker's pickled answer (``None`` when prepared here)."""
    worker: MessageWorker | None = None
    """The worker process preparing it."""
    dropped: set[TopicPartition] = field(default_factory=set)
    ready: list[MessageResult] | None = None
    next: int = 0
    """The first message not taken yet (the engine filled up midway)."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.daemon.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.daemon.assigned(set(assigned))


class Daemon:
    """One consumer-group member delivering its partitions to Amplitude; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        consumer_factory: Callable[[KafkaSettings], AIOKafkaConsumer] = build_consumer,
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.metrics = metrics
        self.tracker = OffsetTracker()
        self.dead = DeadLetterWriter(settings.dead_letter)
        self.pipeline = Pipeline(destinations, self.dead, metrics, self._ack)
        k = settings.kafka
        self.registry = (
            RegistryClient(
                k.schema_registry_url, k.schema_registry_username, k.schema_registry_password.reveal()
            )
            if k.schema_registry_url
            else None
        )
        self.decoder = MessageDecoder(self.registry, k.event_type_for_topic())
        # Batches read from the backlog and being prepared (by worker processes, or already here).
        self.inflight: deque[_Batch] = deque()
        # Batches go to the worker processes in turn; their answers are taken in the order sent.
        self.workers = [
            MessageWorker(self.pipeline.preparer.mappers, self.decoder.topic_types, self.registry is not None)
            for _ in range(settings.input.workers)
        ]
        self._turn = 0
        self._factory = consumer_factory
        self.consumer = consumer_factory(k)
        self.owned: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.backlog: deque[Any] = deque()
        self.assigned_once = False
        self.health: Health | None = None
        self._stopping = asyncio.Event()
        self._acked = asyncio.Event()
        self._commit_done = asyncio.Event()
        self._paused = False
        self._last_commit = time.monotonic()
        self._registry_wait = 1.0
        self.progress_interval = 10.0

    # -- callbacks -------------------------------------------------------------------------------
    def _ack(self, position: Position) -> None:
        self.tracker.ack(position.stream, position.offset)
        self._acked.set()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Rebalance gave us ``partitions``: feed them (paused if the engine is full).

        The group's committed offset of each is read so that lag is measured from it and nothing
        lower is ever committed again.
        """
        self.owned |= partitions
        self.assigned_once = True
        if self._paused and partitions:
            self.consumer.pause(*partitions)
        for tp in partitions:
            try:
                committed = await self.consumer.committed(tp)
            except KafkaError as exc:
                log.warning("cannot read the committed offset of %s[%d]: %s", tp.topic, tp.partition, exc)
                continue
            if committed is not None and committed >= 0:
                self.committed[tp] = committed
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in self.owned))

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance takes ``partitions`` away: finish what we can, commit it, forget them."""
        self.owned -= partitions
        self.backlog = deque(
            m for m in self.backlog if TopicPartition(m.topic, m.partition) not in partitions
        )
        for batch in self.inflight:  # being prepared: their records of these partitions are not taken
            batch.dropped |= partitions
        streams = [(tp.topic, tp.partition) for tp in partitions]
        deadline = time.monotonic() + self.kafka.revoke_timeout
        self.pipeline.flush()
        while any(self.tracker.outstanding(s) for s in streams) and time.monotonic() < deadline:
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), deadline - time.monotonic())
        await self.commit(partitions)
        for tp in partitions:
            self.tracker.forget((tp.topic, tp.partition))
            self.committed.pop(tp, None)
            for gauge in (self.metrics.lag, self.metrics.committed):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))
        log.info("revoked %d partitions", len(partitions))

    # -- public ----------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Readiness: this member owns partitions and is not shutting down (a spare replica is not ready)."""
        return bool(self.owned) and not self._stopping.is_set()

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        self._stopping.set()

    def update_gauges(self) -> None:
        """Refresh point-in-time gauges (before a scrape and with each progress line)."""
        self.pipeline.update_gauges(len(self.backlog) + sum(len(b.messages) for b in self.inflight))
        for tp in list(self.owned):
            high = self.consumer.highwater(tp)
            if high is not None:
                done = self.committed.get(tp)
                if done is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit the contiguous done prefix of owned partitions (dead-letters synced first)."""
        offsets: dict[TopicPartition, int] = {}
        for tp in only if only is not None else self.owned:
            nxt = self.tracker.committable((tp.topic, tp.partition))
            if nxt is not None and nxt > self.committed.get(tp, -1):
                offsets[tp] = nxt
        self._last_commit = time.monotonic()
        if not offsets:
            return
        self.dead.sync()
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance in progress or a fenced generation: the next owner re-reads from the last
            # successful commit, which is safe.
            log.warning("commit failed (%s); will retry", type(exc).__name__)
            return
        for tp, offset in offsets.items():
            self.committed[tp] = offset
            self.metrics.committed.labels(tp.topic, str(tp.partition)).set(offset)
        self._commit_done.set()

    async def wait_commit(self) -> None:
        """Wait until the next successful commit."""
        self._commit_done.clear()
        await self._commit_done.wait()

    # -- the loop --------------------------------------------------------------------------------
    async def _feed(self) -> None:
        """Take backlog messages into the pipeline while it has room, a batch at a time.

        With worker processes, up to :data:`AHEAD` batches are with each at once, so they decode and map
        the next batches while this process delivers the current one.
        """
        ahead = AHEAD * len(self.workers) or 1
        while (self.backlog or self.inflight) and self.pipeline.has_room:
            while self.backlog and len(self.inflight) < ahead:
                if not await self._send_batch():
                    break
            if not self.inflight:
                return
            if await self._take(self.inflight[0]):
                self.inflight.popleft()

    async def _send_batch(self) -> bool:
        """Move the next owned messages of the backlog to a batch being prepared; ``False`` to stop
        (the registry cannot be asked: the messages stay in the backlog and are tried again later)."""
        messages: list[Any] = []
        while self.backlog and len(messages) < BATCH:
            msg = self.backlog.popleft()
            if TopicPartition(msg.topic, msg.partition) in self.owned:
                messages.append(msg)
        batch = [(m.topic, m.partition, m.offset, m.value) for m in messages]
        try:
            await self.decoder.ensure(batch)
        except RegistryUnavailable as exc:
            self.backlog.extendleft(reversed(messages))
            log.warning("%s; retrying in %.0fs", exc, self._registry_wait)
            await asyncio.sleep(self._registry_wait)
            self._registry_wait = min(30.0, self._registry_wait * 2)
            return False
        self._registry_wait = 1.0
        if not batch:
            return True
        if self.workers:
            worker = self.workers[self._turn % len(self.workers)]
            self._turn += 1
            registry = self.registry
            known = registry.schemas() if registry is not None else {}
            future = worker.prepare(batch, known, self.decoder.unusable)
            self.inflight.append(_Batch(batch, future, worker))
        else:
            self.inflight.append(_Batch(batch, None, ready=self._prepare_here(batch)))
        return True

    def _prepare_here(self, batch: list[Message]) -> list[MessageResult]:
        d = self.decoder
        return prepare_messages(batch, d.topic_types, d.registry, d.unusable, self.pipeline.preparer)

    async def _take(self, batch: _Batch) -> bool:
        """Track and ingest ``batch``'s records in order while the pipeline has room (undecodable
        messages are dead-lettered); ``True`` once the whole batch is taken."""
        if batch.ready is None:
            assert batch.results is not None
            try:
                # unpickled here, on the event loop, which frees what it allocates (see
                # consumer.sources.workers)
                batch.ready = pickle.loads(await batch.results)
            except WorkerDied as exc:
                assert batch.worker is not None
                if batch.worker.restart(exc.pid):
                    log.error("%s; its batches are prepared here, another worker starts", exc)
                batch.ready = self._prepare_here(batch.messages)
        pipeline, track, ready, messages = self.pipeline, self.tracker.track, batch.ready, batch.messages
        while batch.next < len(messages):
            if not pipeline.has_room:
                return False
            i = batch.next
            batch.next += 1
            topic, partition, offset, value = messages[i]
            if batch.dropped and TopicPartition(topic, partition) in batch.dropped:
                continue
            track((topic, partition), offset)
            position = Position(topic, partition, offset)
            result = ready[i]
            if isinstance(result, str):
                pipeline.undecodable(DecodeError(position, result, value))
            else:
                await pipeline.take(position, result[0], result[1])
        return True

    def _flow_control(self) -> None:
        full = bool(self.backlog) and not self.pipeline.has_room
        if full and not self._paused and self.owned:
            self.consumer.pause(*self.owned)
            self._paused = True
            log.info("delivery engine full: partitions paused")
        elif not full and self._paused:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
            log.info("partitions resumed")

    # Complexity: the `run` command is being rewritten behind the Source contract (another branch).
    async def run(self) -> int:  # noqa: C901
        """Consume until :meth:`stop`; returns the exit code (0 after a clean shutdown)."""
        if not await self._start_consumer():
            await self.pipeline.close()
            self.dead.close()
            return 0
        for worker in self.workers:
            worker.start()
        reporter = asyncio.create_task(self._report())
        try:
            while not self._stopping.is_set():
                if self.health is not None:
                    self.health.beat()
                await self._feed()
                self._flow_control()
                fetched = await self.consumer.getmany(
                    timeout_ms=200 if self.backlog else 500, max_records=2000
                )
                for tp, messages in fetched.items():
                    if tp in self.owned:
                        self.backlog.extend(messages)
                if time.monotonic() - self._last_commit >= self.kafka.commit_interval:
                    await self.commit()
            log.info("stopping: finishing events in flight (up to %.0fs)", self.kafka.shutdown_grace)
            self.consumer.pause(*self.owned)
            self.backlog.clear()
            self.inflight.clear()
            drained = await self.pipeline.drain(self.kafka.shutdown_grace)
            if not drained:
                log.warning("%d events not finished; they will be read again", self.pipeline.pending)
            await self.commit()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            await self.pipeline.close()
            for worker in self.workers:
                worker.close()
            await self.consumer.stop()
            self.dead.close()
            if self.registry is not None:
                await self.registry.close()
        return 0

    async def _start_consumer(self) -> bool:
        """Connect to Kafka, retrying with backoff while it is unreachable; ``False`` if stopped first."""
        wait = 1.0
        while True:
            subscribe(self.consumer, self.kafka, _Listener(self))
            try:
                await self.consumer.start()
                return True
            except KafkaError as exc:
                log.error(
                    "cannot reach Kafka at %s (%s); retrying in %.0fs",
                    self.kafka.bootstrap_servers,
                    type(exc).__name__,
                    wait,
                )
            # A consumer whose start failed is not reused: close it and build a fresh one.
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = self._factory(self.kafka)
            if self.health is not None:
                self.health.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return False
            wait = min(30.0, wait * 2)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            self.update_gauges()
            s = self.pipeline.summary
            log.info(
                "progress read %d delivered %d skipped %d dead-lettered %d pending %d held-devices %d",
                sum(s.read.values()),
                sum(s.done.values()),
                sum(s.skipped.values()),
                sum(s.dead_lettered.values()),
                self.pipeline.pending,
                self.pipeline.throttled_keys(),
            )
