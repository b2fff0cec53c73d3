"""The Kafka :class:`~consumer.sources.base.Source` of ``run``: a consumer-group member whose messages are
decoded and prepared by worker processes while the main process delivers.

* **The hand-over.** Fetched messages wait in a backlog of at most one fetch (:data:`FETCH_RECORDS`).
  Batches of :data:`BATCH` messages go to the worker processes in turn, up to :data:`AHEAD` with each at
  once, so they decode and map the next batches while the main process delivers the current one; their
  answers are handed out in the order the batches were sent. Before a batch leaves, the schema ids it
  needs are looked up in the registry (an unreachable registry is waited for, with back-off: nothing is
  dead-lettered for an outage). A worker that dies fails the batches it held; those are prepared here
  and the worker is replaced. With ``--workers 0`` every batch is prepared here.
* **Back-pressure.** :meth:`KafkaSource.pause` pauses every assigned partition (and those assigned
  meanwhile); :meth:`KafkaSource.read` then keeps polling, so the group membership stays alive, and hands
  out nothing.
* **Rebalances.** A revocation drops the revoked partitions' messages not handed out yet (in the backlog
  and with the workers) and asks the loop to finish and commit what it took of them
  (:meth:`~consumer.sources.base.Owner.release`) before the partitions go. An assignment reads the
  group's committed offsets, from which lag is measured.
* **Undecodable values** come out as bad rows of their partition's chunk (dead-lettered ``undecodable``
  by the pipeline, with topic, partition, offset and raw bytes), so garbage never stalls a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from consumer.decode.avro import MessageRun
from consumer.decode.registry import RegistryClient, RegistryUnavailable
from consumer.ops.metrics import Metrics
from consumer.ops.waits import wait_set
from consumer.settings import KafkaSettings
from consumer.sources.base import Batch, Owner, Stream
from consumer.sources.kafka.client import MessageDecoder, build_consumer
from consumer.sources.kafka.group import ConsumerFactory, GroupConsumer
from consumer.sources.workers.batch_worker import MessageWorker, WorkerDied
from consumer.transform.base import Mapper
from consumer.transform.prepare import Chunk, Preparer, prepare_messages

log = logging.getLogger("currents.daemon")

OFFSET = attrgetter("offset")
"""A fetched record's offset, read in C (``map(OFFSET, records)`` runs no Python code per record)."""
VALUE = attrgetter("value")
"""A fetched record's value, read in C."""

BATCH = 256
"""Messages prepared together (by a worker process or here)."""
AHEAD = 3
"""Batches with each worker process at once."""
FETCH_RECORDS = 2000
"""Messages one fetch adds to the backlog at most."""


@dataclass
class _Prepping:
    """Messages sent to be prepared, their answer to come, and partitions revoked meanwhile."""

    messages: list[MessageRun]
    answer: asyncio.Future[bytes] | None
    """The worker's pickled answer (``None`` when prepared here)."""
    worker: MessageWorker | None = None
    ready: list[Chunk] | None = None
    dropped: set[Stream] = field(default_factory=set)


class KafkaSource:
    """The daemon's input; implements :class:`~consumer.sources.base.Source` (see the module docstring).

    ``mappers`` are the destinations' (the workers and this process prepare records with them).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        mappers: Sequence[Mapper],
        metrics: Metrics,
        *,
        workers: int,
        consumer_factory: ConsumerFactory = build_consumer,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = (
            RegistryClient(
                settings.schema_registry_url,
                settings.schema_registry_username,
                settings.schema_registry_password.reveal(),
            )
            if settings.schema_registry_url
            else None
        )
        self.decoder = MessageDecoder(self.registry, settings.event_type_for_topic())
        self.preparer = Preparer(mappers)
        self.workers = [
            MessageWorker(mappers, self.decoder.topic_types, self.registry is not None)
            for _ in range(workers)
        ]
        self.group = GroupConsumer(settings, self, consumer_factory)
        self.owned: set[Stream] = set()
        self.committed: dict[Stream, int] = {}
        """Per owned partition, the group's committed offset (read on assignment, then ours)."""
        self.backlog_runs: deque[MessageRun] = deque()
        """Fetched messages not handed to a worker yet, as runs of one partition each."""
        self.prepping: deque[_Prepping] = deque()
        self._owner: Owner | None = None
        self._stopping: asyncio.Event | None = None
        self._next_worker = 0
        self._registry_wait = 1.0

    # -- the Source contract ---------------------------------------------------------------------
    async def start(self, owner: Owner, stopping: asyncio.Event, beat: Callable[[], None]) -> bool:
        """Wait for the schema registry (a member that joined the group and then waited for it would hold
        partitions), join the group (both retried while unreachable), start the worker processes."""
        self._owner, self._stopping = owner, stopping
        if self.registry is not None and not await self.registry.wait_reachable(stopping, beat):
            return False
        if not await self.group.start(stopping, beat):
            return False
        for worker in self.workers:
            await worker.start()
        return True

    async def read(self, timeout: float) -> Batch | None:  # noqa: ASYNC109
        """The next prepared batch of messages (polling up to ``timeout`` seconds when none is on its way);
        while paused, one poll (the membership stays alive) and an empty batch. Never ``None``: a consumer
        group has no end."""
        if self.group.is_paused:
            await self._fetch(0)
            return Batch()
        ahead = AHEAD * len(self.workers) or 1
        if not self.backlog_runs and len(self.prepping) < ahead:
            # Top up from what the fetcher already holds, without waiting: the workers get the next
            # batches before this process waits for the ones they have (no idle gap per fetch).
            await self._fetch(0)
        await self._prepare_ahead(ahead)
        if not self.prepping:
            await self._fetch(int(timeout * 1000))
            await self._prepare_ahead(ahead)
            if not self.prepping:
                return Batch()
        return self._batch(await self._answer(self.prepping.popleft()))

    def pause(self) -> None:
        """Stop fetching from every assigned partition (polling goes on)."""
        if not self.group.is_paused:
            self.group.pause()
            log.info("partitions paused")

    def resume(self) -> None:
        """Fetch again from every paused partition."""
        if self.group.is_paused:
            self.group.resume()
            log.info("partitions resumed")

    def streams(self) -> Iterable[Stream]:
        """The partitions owned now."""
        return self.owned

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Commit ``offsets`` for the group (nothing to send when nothing moved)."""
        if not offsets:
            return True
        if not await self.group.commit(offsets):
            return False
        for (topic, partition), offset in offsets.items():
            self.committed[(topic, partition)] = offset
            self.metrics.committed.labels(topic, str(partition)).set(offset)
        return True

    def finished(self, stream: Stream, next_position: int) -> None:
        """A partition never ends."""

    def ready(self) -> bool:
        """Readiness: this member owns partitions (a spare replica is not ready)."""
        return bool(self.owned)

    def backlog(self) -> int:
        """Messages fetched and not handed out yet (in the backlog and with the workers)."""
        return sum(len(run) for run in self.backlog_runs) + sum(
            len(run) for p in self.prepping for run in p.messages
        )

    async def close(self) -> None:
        """Forget the batches being prepared, stop the workers, leave the group, close the registry."""
        self._abandon_prepping()
        for worker in self.workers:
            worker.close()
        await self.group.close()
        if self.registry is not None:
            await self.registry.close()

    # -- rebalances (called by the group member) -------------------------------------------------
    async def assigned(self, partitions: set[Stream]) -> None:
        """The group gave us ``partitions``: their committed offsets are read so that lag is measured."""
        self.owned |= partitions
        for tp in partitions:
            committed = await self.group.committed(tp)
            if committed is not None:
                self.committed[tp] = committed
        log.info("assigned %s", sorted(f"{topic}[{partition}]" for topic, partition in self.owned))

    async def revoked(self, partitions: set[Stream]) -> None:
        """The group takes ``partitions`` away: drop what was not handed out, let the loop finish and
        commit what it took, forget them."""
        self.owned -= partitions
        self.backlog_runs = deque(run for run in self.backlog_runs if run.stream not in partitions)
        for prepping in self.prepping:  # being prepared: their records of these partitions are dropped
            prepping.dropped |= partitions
        if self._owner is not None:
            await self._owner.release(partitions, self.settings.revoke_timeout)
        for topic, partition in partitions:
            self.committed.pop((topic, partition), None)
            for gauge in (self.metrics.lag, self.metrics.committed):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, str(partition))
        log.info("revoked %d partitions", len(partitions))

    def update_gauges(self) -> None:
        """Lag per owned partition: messages between the committed offset and the end (as of the last
        fetch)."""
        for tp in list(self.owned):
            high = self.group.highwater(tp)
            done = self.committed.get(tp)
            if high is not None and done is not None:
                self.metrics.lag.labels(tp[0], str(tp[1])).set(max(0, high - done))

    # -- the hand-over ---------------------------------------------------------------------------
    async def _fetch(self, timeout_ms: int) -> None:
        """Add the messages of owned partitions that one fetch gives (within ``timeout_ms``) to the
        backlog."""
        fetched = await self.group.fetch(timeout_ms, FETCH_RECORDS)
        for (topic, partition), messages in fetched.items():
            if (topic, partition) in self.owned and messages:
                # attrgetter maps in C: no Python code per message beyond aiokafka's own
                offsets = array("q", map(OFFSET, messages))
                self.backlog_runs.append(MessageRun(topic, partition, offsets, list(map(VALUE, messages))))

    async def _prepare_ahead(self, ahead: int) -> None:
        """Start preparing backlog messages, a batch at a time, while fewer than ``ahead`` batches are
        being prepared."""
        while self.backlog_runs and len(self.prepping) < ahead:
            if not await self._start_preparing():
                return

    async def _start_preparing(self) -> bool:
        """Move the next owned messages of the backlog to a batch being prepared; ``False`` to stop (the
        registry cannot be asked: the messages stay in the backlog and are tried again later)."""
        backlog, owned = self.backlog_runs, self.owned
        batch: list[MessageRun] = []
        room = BATCH
        while backlog and room > 0:
            run = backlog.popleft()
            if run.stream not in owned:
                continue
            if len(run) > room:
                run, rest = run.split(room)
                backlog.appendleft(rest)
            batch.append(run)
            room -= len(run)
        try:
            await self.decoder.ensure(batch)
        except RegistryUnavailable as exc:
            backlog.extendleft(reversed(batch))
            log.warning("%s; retrying in %.0fs", exc, self._registry_wait)
            await wait_set(self._stopping or asyncio.Event(), self._registry_wait)
            self._registry_wait = min(30.0, self._registry_wait * 2)
            return False
        self._registry_wait = 1.0
        if not batch:
            return True
        if self.workers:
            worker = self.workers[self._next_worker % len(self.workers)]
            self._next_worker += 1
            known = self.registry.schemas() if self.registry is not None else {}
            self.prepping.append(
                _Prepping(batch, worker.prepare(batch, known, self.decoder.unusable), worker)
            )
        else:
            self.prepping.append(_Prepping(batch, None, ready=self._prepare_here(batch)))
        return True

    def _prepare_here(self, batch: list[MessageRun]) -> list[Chunk]:
        d = self.decoder
        return prepare_messages(batch, d.topic_types, d.registry, d.unusable, self.preparer)

    async def _answer(self, prepping: _Prepping) -> _Prepping:
        """``prepping`` with its results: the worker's (unpickled here, on the event loop, which frees what
        it allocates), or prepared here when the worker died."""
        if prepping.ready is None:
            assert prepping.answer is not None and prepping.worker is not None
            try:
                prepping.ready = pickle.loads(await prepping.answer)
            except WorkerDied as exc:
                if await prepping.worker.restart(exc.pid):
                    log.error("%s; its batches are prepared here, another worker starts", exc)
                prepping.ready = self._prepare_here(prepping.messages)
        return prepping

    def _batch(self, prepping: _Prepping) -> Batch:
        """The chunks of a prepared batch (one per partition) of partitions still owned; undecodable
        messages are their chunk's bad rows."""
        assert prepping.ready is not None
        dropped = prepping.dropped
        return Batch([chunk for chunk in prepping.ready if not dropped or chunk.stream not in dropped])

    def _abandon_prepping(self) -> None:
        """Forget the batches being prepared (their messages are read again after a restart). Nobody
        awaits their answers any more: each is cancelled, or its exception (a dead worker's) retrieved,
        so none is left for asyncio to report as never retrieved."""
        for prepping in self.prepping:
            future = prepping.answer
            if future is None:
                continue
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()
        self.prepping.clear()
