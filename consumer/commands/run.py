"""``currents-consumer run``: the Kafka daemon (consumer group, at-least-once).

The loop: fetch -> decode -> track the offset -> pipeline (transform, throttle, batch, send) ->
acknowledge -> commit the contiguous done prefix per partition, periodically, on revoke and on
shutdown. Guarantees:

* **At-least-once.** An offset is committed only when it and every offset before it on its partition
  is done (delivered, skipped or dead-lettered, the dead-letter record synced to disk or
  acknowledged by the broker of ``--dead-letter kafka://TOPIC`` first). A SIGKILL
  at any instant re-reads from the last commit; Amplitude deduplicates on ``insert_id``.
* **Bounded memory, Kafka is the buffer.** Fetched messages wait in a backlog of at most one fetch;
  when the delivery engine is full (an Amplitude outage, hot devices) every assigned partition is
  paused and the loop keeps polling (so the group membership stays alive) without fetching more.
* **Rebalances.** On revoke, revoked partitions stop being fed, their in-flight events get
  ``revoke_timeout`` to finish, what is done is committed, and the partitions are forgotten: nothing
  is ever committed for a partition no longer owned.
* **Shutdown.** :meth:`Daemon.stop` (SIGTERM/SIGINT): stop fetching, finish events in flight within
  ``shutdown_grace``, commit, leave the group.
* **A fault ends it.** A fault of its own I/O (see :mod:`consumer.ops.faults`) turns readiness off at
  once; nothing more is read, started or committed, the requests already sent get ``shutdown_grace``
  for their answers, and :meth:`run` raises the fault (``run`` exits 4).
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer.app.destinations import Destination
from consumer.app.loop import RunLoop
from consumer.app.pipeline import Taken
from consumer.decode.avro import DecodeError, Message
from consumer.decode.registry import RegistryClient, RegistryUnavailable
from consumer.events import Position
from consumer.ops.faults import Fault
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.ops.waits import wait_set
from consumer.positions.deadletter import open_dead_letters
from consumer.settings import Settings
from consumer.sources.base import Stream
from consumer.sources.kafka.client import MessageDecoder, build_consumer
from consumer.sources.kafka.group import ConsumerFactory, KafkaSource
from consumer.sources.workers.batch_worker import MessageWorker, WorkerDied
from consumer.transform.prepare import MessageResult, prepare_messages

log = logging.getLogger("currents.daemon")


BATCH = 256
"""Messages prepared together (by a worker process or here)."""
AHEAD = 3
"""Batches with each worker process at once."""
FETCH_RECORDS = 2000
"""Messages one fetch adds to the backlog at most."""


@dataclass
class _Batch:
    """Messages taken from the backlog, their results to come, and partitions revoked meanwhile."""

    messages: list[Message]
    results: asyncio.Future[bytes] | None
    """The worker's pickled answer (``None`` when prepared here)."""
    worker: MessageWorker | None = None
    """The worker process preparing it."""
    dropped: set[Stream] = field(default_factory=set)
    ready: list[MessageResult] | None = None
    run: list[Taken] | None = None
    """The prepared records of the batch, once its messages are tracked."""
    next: int = 0
    """The first record of ``run`` not taken yet (the engine filled up midway)."""

    def drop_revoked(self) -> None:
        """Leave out the records not taken yet of partitions revoked since the batch was tracked (those
        already taken stay: ``next`` keeps pointing at the first record not taken)."""
        if self.dropped and self.run is not None:
            dropped, done = self.dropped, self.run[: self.next]
            self.run = done + [
                r for r in self.run[self.next :] if (r[0].source, r[0].partition) not in dropped
            ]
            self.dropped = set()

    @property
    def left(self) -> int:
        """Messages (or, once tracked, records) not handed to delivery yet."""
        return len(self.messages) if self.run is None else len(self.run) - self.next


class Daemon:
    """One consumer-group member delivering its partitions to Amplitude; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        consumer_factory: ConsumerFactory = build_consumer,
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.metrics = metrics
        dead = open_dead_letters(settings.dead_letter, settings.kafka)  # a directory, or kafka://TOPIC
        self.loop = RunLoop(destinations, dead, metrics, on_acked=self._acked_on)
        self.tracker = self.loop.tracker
        self.dead = self.loop.dead
        self.pipeline = self.loop.pipeline
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
        self.consumer = KafkaSource(k, self, consumer_factory)
        self.owned: set[Stream] = set()
        self.committed: dict[Stream, int] = {}
        self.backlog: deque[Any] = deque()
        self.assigned_once = False
        self.health: Health | None = None
        self._acked = asyncio.Event()
        self._commit_done = asyncio.Event()
        self._last_commit = time.monotonic()
        self._registry_wait = 1.0
        self.progress_interval = 10.0
        self._unstarted = 0

    # -- callbacks -------------------------------------------------------------------------------
    def _acked_on(self, stream: Stream) -> None:
        self._acked.set()

    async def assigned(self, partitions: set[Stream]) -> None:
        """Rebalance gave us ``partitions``: feed them (the source pauses them if the engine is full).

        The group's committed offset of each is read so that lag is measured from it and nothing
        lower is ever committed again.
        """
        self.owned |= partitions
        self.assigned_once = True
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            if committed is not None:
                self.committed[tp] = committed
        log.info("assigned %s", sorted(f"{topic}[{partition}]" for topic, partition in self.owned))

    async def revoked(self, partitions: set[Stream]) -> None:
        """Rebalance takes ``partitions`` away: finish what we can, commit it, forget them."""
        self.owned -= partitions
        self.backlog = deque(m for m in self.backlog if (m.topic, m.partition) not in partitions)
        for batch in self.inflight:  # being prepared: their records of these partitions are not taken
            batch.dropped |= partitions
        deadline = time.monotonic() + self.kafka.revoke_timeout
        self.pipeline.flush()
        while any(self.tracker.outstanding(s) for s in partitions) and time.monotonic() < deadline:
            self._acked.clear()
            await wait_set(self._acked, deadline - time.monotonic())
        await self.commit(partitions)
        for topic, partition in partitions:
            self.tracker.forget((topic, partition))
            self.committed.pop((topic, partition), None)
            for gauge in (self.metrics.lag, self.metrics.committed):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, str(partition))
        log.info("revoked %d partitions", len(partitions))

    # -- public ----------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Readiness: this member owns partitions and is not shutting down (a spare replica is not ready)."""
        return bool(self.owned) and not self.loop.stopping.is_set()

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        self.loop.stop()

    def update_gauges(self) -> None:
        """Refresh point-in-time gauges (before a scrape and with each progress line)."""
        self.pipeline.update_gauges(len(self.backlog) + sum(len(b.messages) for b in self.inflight))
        for tp in list(self.owned):
            high = self.consumer.highwater(tp)
            if high is not None:
                done = self.committed.get(tp)
                if done is not None:
                    self.metrics.lag.labels(tp[0], str(tp[1])).set(max(0, high - done))

    async def commit(self, only: set[Stream] | None = None) -> None:
        """Commit the contiguous done prefix of owned partitions (dead-letters synced first)."""
        prefix = self.loop.done_prefix(only if only is not None else self.owned)
        offsets = {tp: nxt for tp, nxt in prefix.items() if nxt > self.committed.get(tp, -1)}
        self._last_commit = time.monotonic()
        if not offsets or not await self.loop.commit(self.consumer, offsets):
            return
        for (topic, partition), offset in offsets.items():
            self.committed[(topic, partition)] = offset
            self.metrics.committed.labels(topic, str(partition)).set(offset)
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
            if not self.backlog and len(self.inflight) < ahead:
                # Top up from what the fetcher already holds, without waiting: the workers get the next
                # batches before this process waits for the ones they have (no idle gap per fetch).
                await self._fetch(0)
            while self.backlog and len(self.inflight) < ahead:
                if not await self._send_batch():
                    break
            if not self.inflight:
                return
            if await self._take(self.inflight[0]):
                self.inflight.popleft()

    async def _fetch(self, timeout_ms: int) -> None:
        """Add the messages of owned partitions that one fetch gives (within ``timeout_ms``) to the
        backlog."""
        fetched = await self.consumer.fetch(timeout_ms, FETCH_RECORDS)
        for tp, messages in fetched.items():
            if tp in self.owned:
                self.backlog.extend(messages)

    async def _send_batch(self) -> bool:
        """Move the next owned messages of the backlog to a batch being prepared; ``False`` to stop
        (the registry cannot be asked: the messages stay in the backlog and are tried again later)."""
        messages: list[Any] = []
        while self.backlog and len(messages) < BATCH:
            msg = self.backlog.popleft()
            if (msg.topic, msg.partition) in self.owned:
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
                # consumer.sources.workers.process)
                batch.ready = pickle.loads(await batch.results)
            except WorkerDied as exc:
                assert batch.worker is not None
                if await batch.worker.restart(exc.pid):
                    log.error("%s; its batches are prepared here, another worker starts", exc)
                batch.ready = self._prepare_here(batch.messages)
        pipeline = self.pipeline
        if not pipeline.has_room:
            return False
        if batch.run is None:
            batch.run = self._track(batch)
        batch.drop_revoked()
        run = batch.run
        # One run of records, up to the one that fills an engine (as taking them one by one while it has
        # room would): the per-record bookkeeping is then done once for all of them.
        end = pipeline.fit(run, batch.next)
        pipeline.take_run(run[batch.next : end])
        batch.next = end
        await asyncio.sleep(0)
        return end == len(run)

    def _track(self, batch: _Batch) -> list[Taken]:
        """Track every message of ``batch`` (of partitions still owned) and dead-letter the undecodable
        ones; the others' prepared records, in order."""
        track, pipeline, dropped = self.tracker.track, self.pipeline, batch.dropped
        run: list[Taken] = []
        assert batch.ready is not None
        for (topic, partition, offset, value), result in zip(batch.messages, batch.ready, strict=True):
            if dropped and (topic, partition) in dropped:
                continue
            track((topic, partition), offset)
            position = Position(topic, partition, offset)
            if isinstance(result, str):
                pipeline.undecodable(DecodeError(position, result, value))
            else:
                run.append((position, result[0], result[1]))
        return run

    def _flow_control(self) -> None:
        full = bool(self.backlog) and not self.pipeline.has_room
        source = self.consumer
        if full and not source.is_paused and self.owned:
            source.pause()
            log.info("delivery engine full: partitions paused")
        elif not full and source.is_paused:
            source.resume()
            log.info("partitions resumed")

    async def run(self) -> int:
        """Consume until :meth:`stop`; returns the exit code (0 after a clean shutdown)."""
        loop = self.loop
        # The registry first: a member that joined the group and then waited for it would hold partitions.
        registry_ok = self.registry is None or await self.registry.wait_reachable(loop.stopping, self._beat)
        if not registry_ok or not await self.consumer.start(loop.stopping, self._beat):
            async with loop.running(on_close=self._close):
                pass  # nothing was read: close the pipeline, the clients and the dead-letters
            return 0
        for worker in self.workers:
            await worker.start()
        async with loop.running((self.progress_interval, self._report), on_close=self._close):
            try:
                await self._consume()
            except Fault as fault:  # reported once; requests in flight still get the grace below
                loop.faults.report(fault)
            await self._wind_down()
        return 0

    async def _consume(self) -> None:
        """Fetch, feed and commit until stopped (a signal, or a fault reported anywhere in the run)."""
        loop = self.loop
        while not loop.stopping.is_set():
            self._beat()
            await self._feed()
            self._flow_control()
            await self._fetch(200 if self.backlog else 500)
            if time.monotonic() - self._last_commit >= self.kafka.commit_interval:
                await self.commit()

    async def _wind_down(self) -> None:
        """Stop reading, give the events in flight ``shutdown_grace`` to finish, commit what is done.

        After a fault nothing more is committed (:meth:`RunLoop.commit`) and no request starts; the
        requests already sent still get the grace for their answers, so the exit does not cut exchanges
        Amplitude is answering. Readiness is off from the first fault on (:meth:`ready`)."""
        grace = self.kafka.shutdown_grace
        if self.loop.faults.failed:
            log.error("stopping after a fault: nothing more is committed; exiting within %.0fs", grace)
        else:
            log.info("stopping: finishing events in flight (up to %.0fs)", grace)
        self.consumer.pause()
        # Fetched but never handed to delivery: not committed either, the group reads them again.
        self._unstarted = len(self.backlog) + sum(b.left for b in self.inflight)
        self.backlog.clear()
        self._abandon_inflight()
        await self.loop.finish(grace)
        await self.commit()

    def closing_lines(self) -> list[str]:
        """After a stop, for people: how many fetched events were neither delivered nor dead-lettered
        (their offsets are not committed: the group reads them again), or nothing when every one was."""
        left = self.loop.unfinished + self._unstarted
        if not left:
            return []
        within = "" if self.loop.faults.failed else f" within --shutdown-grace {self.kafka.shutdown_grace:g}s"
        return [
            f"currents-consumer: {left} fetched events were neither delivered nor dead-lettered{within}:"
            " their offsets were not committed, so the consumer group reads them again when a member next"
            " starts (Amplitude drops the events it already has by insert_id, within 7 days)"
        ]

    def _abandon_inflight(self) -> None:
        """Forget the batches being prepared (their messages are read again after a restart). Nobody
        awaits their answers any more: each is cancelled, or its exception (a dead worker's) retrieved,
        so none is left for asyncio to report as never retrieved."""
        for batch in self.inflight:
            future = batch.results
            if future is None:
                continue
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()
        self.inflight.clear()

    def _beat(self) -> None:
        if self.health is not None:
            self.health.beat()

    async def _close(self) -> None:
        self._abandon_inflight()
        for worker in self.workers:
            worker.close()
        await self.consumer.close()
        if self.registry is not None:
            await self.registry.close()

    def _report(self) -> None:
        self.update_gauges()
        log.info("progress %s", self.loop.counts())
