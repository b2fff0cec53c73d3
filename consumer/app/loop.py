"""The one loop every reading command drives (``run`` over Kafka, ``replay`` over files, ``replay --follow``
over a bucket): read a :class:`~consumer.sources.base.Source`, track, take into delivery, acknowledge,
commit.

:class:`RunLoop` owns the :class:`~consumer.positions.tracker.OffsetTracker`, the dead-letter writer and
the :class:`~consumer.app.pipeline.Pipeline`, wired so that the rows taken together are tracked as one
:class:`~consumer.events.Group`, done once every event of it has finished (delivered, skipped or
dead-lettered). :meth:`RunLoop.drive` is the whole life of a run; it
guarantees:

* **Only the done prefix is committed, dead-letters first.** Every ``commit_interval`` (and on a
  revocation, and at the end) the contiguous acknowledged prefix of each of the source's streams that
  moved is handed to :meth:`~consumer.sources.base.Source.commit`, after the dead-letter output is
  settled (on disk, or acknowledged by the broker), so a dead-lettered event is never committed before
  it is durable. Commits never interleave (one lock).
* **Bounded memory.** A batch is taken up to the row that fills an engine (``--max-pending`` events
  or bytes, as taking records one at a time would); the rest is held, the source is paused, and the
  loop waits for room while it keeps calling the paused source (Kafka's group membership stays alive).
  Nothing more is read while anything is held.
* **Periodic work while running** (progress lines, checkpoints, a lock's lease) runs in tasks that
  :meth:`RunLoop.running` starts and always cancels; on the way out the pipeline is closed, then the
  command's own resources (the source first), then the dead-letter writer (synced).
* **Grace on stop.** :meth:`RunLoop.stop` is idempotent; reading stops, the source is paused, and what
  was taken gets ``grace`` seconds to finish (all the time it needs when the source simply ended); what
  is left is never acknowledged, so it is read again next time.
* **A fault ends the run, safely.** The loop owns the run's :class:`~consumer.ops.faults.Faults`: a fault
  reported anywhere (a delivery engine, a periodic job, the source, closing the dead-letters) stops the
  loop, and from then on nothing is committed, so nothing unfinished is ever acknowledged to the source.
  Every task the loop starts has its exception retrieved and reported; when the run's body ends, the
  first fault is raised for the command to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

from consumer.app.periodic import Periodic, every
from consumer.app.pipeline import Pipeline
from consumer.delivery.destination import Destination
from consumer.events import Group, Position
from consumer.ops.faults import Fault, Faults
from consumer.ops.metrics import Metrics
from consumer.ops.waits import wait_set
from consumer.positions.deadletter import DeadLetterOutput, DeadLetterWriter
from consumer.positions.tracker import OffsetTracker
from consumer.sources.base import Batch, Source, Stream
from consumer.transform.prepare import Chunk

log = logging.getLogger("currents.loop")


READ_WAIT = 0.5
"""Seconds one read of a source waits for input (so the loop turns, and ``/livez`` beats, when idle)."""
FULL_WAIT = 0.2
"""Seconds the loop waits for room before it calls the paused source again."""


class RunLoop:
    """Tracker + dead-letters + pipeline for one command's run; see the module docstring."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        dead_letter: str | DeadLetterOutput,
        metrics: Metrics,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracker = OffsetTracker()
        # A directory by name (replay), or the output the command opened (run: a file or a topic).
        self.dead = DeadLetterWriter(dead_letter) if isinstance(dead_letter, str) else dead_letter
        self.faults = Faults()
        self.pipeline = Pipeline(
            destinations,
            self.dead,
            metrics,
            self.acknowledge,
            track=self.tracker.track,
            clock=clock,
            faults=self.faults,
        )
        self.stopping = asyncio.Event()
        """Set by :meth:`stop` (and by the first fault): the loop stops reading."""
        self.unfinished = 0
        """Events taken but neither delivered, skipped nor dead-lettered when :meth:`finish` gave up (at
        the end of the grace, or after a fault): never acknowledged, so read again by a later run."""
        self.unstarted = 0
        """Records read but never taken into delivery when the loop stopped (read again by a later run)."""
        self.beat: Callable[[], None] = lambda: None
        """Called every turn of the loop (``/livez``)."""
        self.hold: Callable[[], bool] = lambda: False
        """While it answers ``True`` nothing more is read (e.g. a lock's lease is not confirmed)."""
        self.source: Source | None = None
        self.committed: dict[Stream, int] = {}
        """Per stream, the last position committed by this run."""
        self._held: list[Chunk] = []
        """Chunks read and not all taken into delivery (held while delivery is full)."""
        self._next = 0
        """The first row of ``_held[0]`` not taken yet."""
        self._ended: set[Stream] = set()
        self._acked = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._moved = asyncio.Event()
        self.faults.listen(lambda _: self.stop())

    # -- positions -------------------------------------------------------------------------------
    def acknowledge(self, groups: list[Group]) -> None:
        """Groups of rows are finished (the tracker sees it in their counts): a stream that had ended and
        has nothing outstanding any more is finished; waiters on acknowledgements are woken."""
        ended = self._ended
        if ended:
            for stream in {group.stream for group in groups}:
                if stream in ended:
                    self._finish_if_done(stream)
        self._acked.set()

    def done_prefix(self, streams: Iterable[Stream]) -> dict[Stream, int]:
        """Per stream with tracked positions, the next position after its contiguous done prefix."""
        committable = self.tracker.committable
        return {s: nxt for s in streams if (nxt := committable(s)) is not None}

    async def commit(self, source: Source, offsets: Mapping[Stream, int]) -> bool:
        """Sync the dead-letter output, then commit ``offsets`` to ``source``; the source's answer.
        After a fault nothing is committed (``False``)."""
        if self.faults.failed:
            return False
        with self._reporting(reraise=True):
            await self.dead.settle()
        return await source.commit(offsets)

    async def checkpoint(self, only: Iterable[Stream] | None = None) -> None:
        """Commit the done prefix of the source's streams (or of ``only``) that moved since the last
        commit; nothing after a fault."""
        source = self.source
        if source is None:
            return
        async with self._commit_lock:
            prefix = self.done_prefix(source.streams() if only is None else only)
            offsets = {s: nxt for s, nxt in prefix.items() if nxt > self.committed.get(s, -1)}
            if await self.commit(source, offsets) and offsets:
                self.committed.update(offsets)
                self._moved.set()

    async def wait_commit(self) -> None:
        """Wait until the next commit that moves a position."""
        self._moved.clear()
        await self._moved.wait()

    def _finish_if_done(self, stream: Stream) -> None:
        tracker = self.tracker
        if tracker.outstanding(stream) or self.source is None:
            return
        next_position = tracker.committable(stream) or 0
        self._ended.discard(stream)
        tracker.forget(stream)
        self.committed.pop(stream, None)
        self.source.finished(stream, next_position)

    # -- reading ---------------------------------------------------------------------------------
    async def consume(self, source: Source) -> None:
        """Read ``source`` until it ends or the loop stops: track each batch's positions, dead-letter its
        bad inputs, take its records while delivery has room; pause the source while anything is held."""
        pipeline, paused = self.pipeline, False
        while not self.stopping.is_set():
            self.beat()
            if self._held:
                self._queue_held()
            full = bool(self._held) or self.hold()
            if full != paused:
                paused = full
                if full:
                    source.pause()
                    log.debug("delivery full: reading paused")
                else:
                    source.resume()
                    log.debug("reading resumed")
            if full:
                if self._held:
                    await pipeline.wait_room(FULL_WAIT)
                else:
                    await wait_set(self.stopping, FULL_WAIT)
                batch = await source.read(0)
            else:
                batch = await source.read(READ_WAIT)
            if batch is None:
                return
            self.accept(batch)

    def accept(self, batch: Batch) -> None:
        """What :meth:`consume` does with each batch read: dead-letter the bad inputs (tracked, and
        acknowledged once written), take the chunks' rows while delivery has room (the rest is held; each
        part taken is tracked as it is taken), note the streams ended."""
        pipeline = self.pipeline
        for bad in batch.bad:
            error = bad.error
            position = error.position
            group = Group(position.stream, position.offset, position.offset, 1)
            self.tracker.track(group)
            pipeline.dead_letter_input(position, bad.reason, error.reason, raw=error.raw)
            group.owed = 0
            self.acknowledge([group])
        if batch.problems:
            pipeline.summary.unreadable.extend(batch.problems)
        if batch.records:
            self._held, self._next = list(batch.records), 0
            self._queue_held()
        for stream in batch.ended:
            self._ended.add(stream)
            self._finish_if_done(stream)

    @property
    def waiting(self) -> list[Position]:
        """The positions of rows read and not taken into delivery yet (held while delivery is full)."""
        out: list[Position] = []
        for i, chunk in enumerate(self._held):
            source, partition = chunk.stream
            out += [Position(source, partition, o) for o in chunk.offsets[self._next if i == 0 else 0 :]]
        return out

    def _held_rows(self) -> int:
        """How many rows are held (read, not taken)."""
        return sum(len(chunk) for chunk in self._held) - self._next

    def _queue_held(self) -> None:
        """Queue held rows for delivery, while it has room, up to the one that fills an engine (see
        :meth:`~consumer.app.pipeline.Pipeline.queue_run`)."""
        held, pipeline = self._held, self.pipeline
        while held and pipeline.has_room:
            chunk = held[0]
            end = pipeline.queue_run(chunk, self._next)
            if end < len(chunk):
                self._next = end
                return
            del held[0]
            self._next = 0

    async def release(self, streams: set[Stream], timeout: float) -> None:  # noqa: ASYNC109
        """The source loses ``streams``: drop what was read of them and not taken, give what was taken
        ``timeout`` seconds to finish, commit the done prefix, forget them (see
        :class:`~consumer.sources.base.Owner`)."""
        # A stream's rows held and not taken will never be acknowledged: wait only up to the first.
        limits: dict[Stream, int] = {}
        kept: list[Chunk] = []
        for i, chunk in enumerate(self._held):
            if chunk.stream in streams:
                limits.setdefault(chunk.stream, chunk.offsets[self._next if i == 0 else 0])
            else:
                kept.append(chunk)
        if self._held and (not kept or kept[0] is not self._held[0]):
            self._next = 0  # the chunk partly taken was dropped
        self._held = kept
        self.pipeline.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._unsettled(s, limits.get(s)) for s in streams):
            self._acked.clear()
            await wait_set(self._acked, deadline - time.monotonic())
        await self.checkpoint(streams)
        for stream in streams:
            self.tracker.forget(stream)
            self.committed.pop(stream, None)
            self._ended.discard(stream)

    def _unsettled(self, stream: Stream, limit: int | None) -> bool:
        """Whether events taken of ``stream`` (those before ``limit``, if given) are still unfinished."""
        if limit is None:
            return self.tracker.outstanding(stream) > 0
        committable = self.tracker.committable(stream)
        return committable is not None and committable < limit

    # -- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful stop (idempotent)."""
        self.stopping.set()

    async def drive(
        self,
        source: Source,
        *,
        grace: float,
        commit_interval: float,
        periodic: Sequence[Periodic] = (),
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The whole run: start ``source``, read it until it ends or the loop stops, wind down (``grace``),
        commit, close. The done prefix is committed every ``commit_interval`` seconds meanwhile, the
        wind-down included; ``periodic`` jobs run alongside; ``on_close`` runs after the source is
        closed. The run's first fault is raised at the end."""
        self.source = source

        async def close() -> None:
            try:
                await source.close()
            finally:
                if on_close is not None:
                    await on_close()

        if not await source.start(self, self.stopping, self.beat):
            async with self.running(on_close=close):
                return  # stopped before it could start: nothing was read
        async with self.running((commit_interval, self.checkpoint), *periodic, on_close=close):
            try:
                await self.consume(source)
            except Fault as fault:  # reported once; requests in flight still get the grace below
                self.faults.report(fault)
            await self._wind_down(source, grace)

    async def _wind_down(self, source: Source, grace: float) -> None:
        """Stop reading, give the events taken ``grace`` to finish once stopped, commit what is done.

        After a fault nothing more is committed (:meth:`commit`) and no request starts; the requests
        already sent still get the grace for their answers, so the exit does not cut exchanges a
        destination is answering."""
        if self.faults.failed:
            log.error("stopping after a fault: nothing more is committed; exiting within %.0fs", grace)
        elif self.stopping.is_set():
            log.info("stopping: finishing events in flight (up to %.0fs)", grace)
        source.pause()
        self.unstarted = source.backlog() + self._held_rows()
        self._held, self._next = [], 0
        await self.finish(grace)
        await self.checkpoint()

    @contextlib.asynccontextmanager
    async def running(
        self, *periodic: Periodic, on_close: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Repeat each ``periodic`` job while the body runs; afterwards (also on error) cancel them,
        close the pipeline, await ``on_close`` (the command's resources), close the dead-letters. A fault
        met by any of them is reported; once the body has returned, the run's first fault is raised."""
        tasks = [asyncio.create_task(every(interval, job, self.faults)) for interval, job in periodic]
        try:
            yield
        except Fault as fault:
            self.faults.report(fault)
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self.pipeline.close()
                if on_close is not None:
                    with self._reporting():
                        await on_close()
            finally:
                with self._reporting():
                    await self.dead.aclose()
        self.faults.raise_first()

    @contextlib.contextmanager
    def _reporting(self, *, reraise: bool = False) -> Iterator[None]:
        """Report a :class:`~consumer.ops.faults.Fault` raised in the body (and raise it on if asked)."""
        try:
            yield
        except Fault as fault:
            self.faults.report(fault)
            if reraise:
                raise

    async def finish(self, grace: float) -> bool:
        """Wait for every event taken to finish; once stopped (before or during the wait), at most
        ``grace`` seconds more. ``False`` if some were left unfinished (they are read again); after a fault,
        as soon as the requests already in flight are answered (at most ``grace`` seconds)."""
        pipeline = self.pipeline
        if self.faults.failed:
            drained = False
        elif self.stopping.is_set():
            drained = await pipeline.drain(grace)
        else:
            waiting = asyncio.create_task(pipeline.drain())
            stopped = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if waiting.done():
                drained = waiting.result()
            else:
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
                drained = await pipeline.drain(grace)
        if self.faults.failed:  # nothing new starts; the requests already sent get the grace to end
            await pipeline.settle(grace)
        if not drained:
            self.unfinished = pipeline.pending
            log.warning("%d events not finished; they will be read again", self.unfinished)
        return drained

    def ready(self) -> bool:
        """Readiness: the source is able to work and the run is neither stopping nor failed."""
        return self.source is not None and self.source.ready() and not self.stopping.is_set()

    def update_gauges(self) -> None:
        """Refresh the point-in-time gauges (before a scrape and with each progress line)."""
        backlog = self._held_rows() + (self.source.backlog() if self.source is not None else 0)
        self.pipeline.update_gauges(backlog)

    def counts(self) -> str:
        """The progress figures every command prints (see :meth:`Pipeline.progress_line`)."""
        return self.pipeline.progress_line()
