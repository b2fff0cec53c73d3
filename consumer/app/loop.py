"""The skeleton every reading command shares (``run`` over Kafka, ``replay`` over files).

:class:`RunLoop` owns the :class:`~consumer.positions.tracker.OffsetTracker`, the dead-letter writer and
the :class:`~consumer.app.pipeline.Pipeline`, wired so that every finished event (delivered, skipped or
dead-lettered) acknowledges its position in the tracker. It guarantees:

* **Only the done prefix is committed, dead-letters first.** :meth:`RunLoop.done_prefix` answers, per
  stream, the contiguous acknowledged prefix; :meth:`RunLoop.commit` settles the dead-letter output (on
  disk, or acknowledged by the broker) *before* handing positions to the
  :class:`~consumer.sources.base.Source`, so a dead-lettered event is never committed before it is durable.
* **Periodic work while running** (progress lines, checkpoints) runs in tasks that
  :meth:`RunLoop.running` starts and always cancels; on the way out the pipeline is closed, then the
  command's own resources, then the dead-letter writer (synced).
* **Grace on stop.** :meth:`RunLoop.stop` is idempotent; :meth:`RunLoop.finish` waits for every event
  to finish, or, once stopped, at most ``grace`` seconds more (what is left is read again next time).
* **A fault ends the run, safely.** The loop owns the run's :class:`~consumer.ops.faults.Faults`: a fault
  reported anywhere (a delivery engine, a periodic job, closing the dead-letters) stops the loop, and
  from then on :meth:`RunLoop.commit` commits nothing, so nothing unfinished is ever acknowledged to the
  source. Every task the loop starts has its exception retrieved and reported; when the body of
  :meth:`RunLoop.running` ends, the first fault is raised for the command to report.

What is specific to a source (Kafka's fetch/pause/rebalance, files' listing and resume state) stays
with its command; this module knows no source.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter

from consumer.app.destinations import Destination
from consumer.app.pipeline import Pipeline
from consumer.events import Position
from consumer.ops.faults import Fault, Faults
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterOutput, DeadLetterWriter
from consumer.positions.tracker import OffsetTracker
from consumer.sources.base import Source, Stream

log = logging.getLogger("currents.loop")

Periodic = tuple[float, Callable[[], Awaitable[None] | None]]
"""``(interval in seconds, what to call)``: work :meth:`RunLoop.running` repeats."""


class RunLoop:
    """Tracker + dead-letters + pipeline for one command's run; see the module docstring."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        dead_letter: str | DeadLetterOutput,
        metrics: Metrics,
        *,
        on_acked: Callable[[Stream], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracker = OffsetTracker()
        # A directory by name (replay), or the output the command opened (run: a file or a topic).
        self.dead = DeadLetterWriter(dead_letter) if isinstance(dead_letter, str) else dead_letter
        self._on_acked = on_acked
        self.faults = Faults()
        self.pipeline = Pipeline(
            destinations,
            self.dead,
            metrics,
            self.ack,
            on_ack_many=self.ack_many,
            clock=clock,
            faults=self.faults,
        )
        self.stopping = asyncio.Event()
        """Set by :meth:`stop` (and by the first fault): the command stops reading."""
        self.unfinished = 0
        """Events taken but neither delivered, skipped nor dead-lettered when :meth:`finish` gave up (at
        the end of the grace, or after a fault): never acknowledged, so read again by a later run."""
        self.faults.listen(lambda _: self.stop())

    # -- positions -------------------------------------------------------------------------------
    def ack(self, position: Position) -> None:
        """Acknowledge one finished event's position."""
        self.ack_many([position])

    def ack_many(self, positions: list[Position]) -> None:
        """Acknowledge ``positions``: each run of one stream's positions (a request's events are mostly
        one stream's, in order) goes to the tracker at once, then ``on_acked(stream)`` is told."""
        tracker, told = self.tracker, self._on_acked
        for stream, run in itertools.groupby(positions, key=attrgetter("stream")):
            tracker.ack_many(stream, [p.offset for p in run])
            if told is not None:
                told(stream)

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

    # -- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful stop (idempotent)."""
        self.stopping.set()

    @contextlib.asynccontextmanager
    async def running(
        self, *periodic: Periodic, on_close: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Repeat each ``periodic`` job while the body runs; afterwards (also on error) cancel them,
        close the pipeline, await ``on_close`` (the command's resources), close the dead-letters. A fault
        met by any of them is reported; once the body has returned, the run's first fault is raised."""
        tasks = [asyncio.create_task(_every(interval, job, self.faults)) for interval, job in periodic]
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

    def counts(self) -> str:
        """The progress figures both commands print: read, delivered, skipped, dead-lettered, pending,
        held devices. With several destinations each has its own figures (``amplitude: delivered N
        skipped N dead-lettered N``): summed, the skips of three destinations would exceed ``read``."""
        p = self.pipeline
        s = p.summary
        tail = f"pending {p.pending} held-devices {p.throttled_keys()}"
        if len(s.destinations) > 1:
            each = [
                f"{name}: delivered {c.delivered} skipped {c.skipped.total()} "
                f"dead-lettered {c.dead_lettered.total()}"
                for name, c in s.destinations.items()
            ]
            return " | ".join([f"read {sum(s.read.values())}", *each, tail])
        return (
            f"read {sum(s.read.values())} delivered {sum(s.done.values())} "
            f"skipped {sum(s.skipped.values())} dead-lettered {sum(s.dead_lettered.values())} {tail}"
        )


async def _every(interval: float, job: Callable[[], Awaitable[None] | None], faults: Faults) -> None:
    """Call ``job`` every ``interval`` seconds; its fault (or any exception: a bug) is reported and ends
    the repetition, so no exception waits unseen in a task until the end of the run."""
    while True:
        await asyncio.sleep(interval)
        try:
            result = job()
            if result is not None:
                await result
        except Fault as fault:
            faults.report(fault)
            return
        except Exception as exc:
            log.exception("a periodic job failed")
            faults.report(Fault(f"a periodic job failed: {type(exc).__name__}: {exc}"))
            return
