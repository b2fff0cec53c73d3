"""The stages every source shares: count, map per destination, skip or hand to delivery, acknowledge.

The run's loop (:mod:`consumer.app.loop`) reads chunks of prepared rows (each destination's payloads as
columns, made by :class:`~consumer.transform.prepare.Preparer` in a worker process or here) in position
order and hands them to :meth:`Pipeline.queue_run`; redrive re-sends dead-lettered events one at a time
(:meth:`Pipeline.redeliver`). A row goes to every enabled
:class:`~consumer.delivery.destination.Destination` (fan-out): each has mapped it to zero or more
payloads (or skipped it) and its own delivery engine takes them.

Acknowledging is by group, not by event: the rows one call takes are one
:class:`~consumer.events.Group` (a range of positions), tracked by the loop as it is taken, which counts
the payloads it owes over every destination; each payload that ends (delivered or dead-lettered) counts
it down, and at zero the group is acknowledged, so a commit never passes an event some destination
still owes. Skips, unencodable payloads and undecodable rows (dead-lettered as they are met) owe
nothing.

Back-pressure: the loop queues a chunk's rows up to the one that fills an engine (:meth:`Pipeline.queue_run`
says where it stopped) and then waits for room (:meth:`Pipeline.wait_room`), so one destination that is
down pauses the input once its ``--max-pending`` fills (the others keep flowing until then).

The pipeline owns the run summary and the event-level metrics, so both sources report the same way.

Faults: every engine shares the run's :class:`~consumer.ops.faults.Faults`; a dead-letter record the
pipeline itself cannot write is reported there too and raised to the source, whose record then is never
acknowledged. From the first fault on, :meth:`queue_run` / :meth:`redeliver` raise it (no new input is
taken).
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from consumer.delivery.destination import Destination
from consumer.delivery.engine import DeliveryEngine
from consumer.delivery.live import DoneCallback
from consumer.events import Group, PendingRun, Position, Queued, end_before
from consumer.ops.faults import Fault, Faults
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.positions.deadletter import DeadLetterOutput
from consumer.transform.base import Payload
from consumer.transform.prepare import Chunk, Preparer, rows_in

AckCallback = Callable[[list[Group]], None]
"""Told the groups of rows finished (every payload of them ended), in any order."""

TrackCallback = Callable[[Group], None]
"""Told each group of rows as it is taken, before anything of it can end (the loop tracks it)."""

log = logging.getLogger("currents.pipeline")

INPUT = "input"
"""The ``destination`` label of dead-letters for input that never became an event."""


class Pipeline:
    """Deliver prepared records to every destination; tells ``on_ack([positions])`` of each record once,
    when every destination has finished it."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        dead_letter: DeadLetterOutput,
        metrics: Metrics,
        on_ack: AckCallback,
        *,
        track: TrackCallback | None = None,
        clock: Callable[[], float] | None = None,
        faults: Faults | None = None,
    ) -> None:
        if not destinations:
            raise ValueError("a pipeline needs at least one destination")
        self.destinations = list(destinations)
        self.dead = dead_letter
        self.metrics = metrics
        self.on_ack = on_ack
        self.track: TrackCallback = track if track is not None else _untracked
        self.summary = Summary.of([d.name for d in self.destinations])
        self.faults = faults if faults is not None else Faults()
        self.engines = [
            DeliveryEngine(
                d, dead_letter, self._done_by(d), metrics, clock=clock or time.time, faults=self.faults
            )
            for d in self.destinations
        ]
        self.preparer = Preparer([d.mapper for d in self.destinations])
        self._clock = self.engines[0].clock
        self._engine_of = {d.name: engine for d, engine in zip(self.destinations, self.engines, strict=True)}

    @property
    def engine(self) -> DeliveryEngine:
        """The first destination's engine (the only one in a single-destination run)."""
        return self.engines[0]

    # -- acknowledgement -------------------------------------------------------------------------
    def _done_by(self, destination: Destination) -> DoneCallback:
        name = destination.name
        summary, metrics = self.summary, self.metrics

        def done(items: list[Queued], outcome: str, reason: str) -> None:
            if outcome == "delivered":
                types = Counter([t for item in items for t in item.event_types()])
                summary.delivered(name, types)
                for event_type, n in types.items():
                    metrics.count(metrics.delivered, event_type, n, destination=name)
            else:
                n = sum([item.count for item in items])
                summary.dead(name, reason, n)
                metrics.count(metrics.dead_lettered, reason, n, destination=name)
            acked: list[Group] = []
            for item in items:
                group = item.group
                group.owed -= item.count
                if not group.owed:
                    acked.append(group)
            if acked:
                self.on_ack(acked)

        return done

    # -- input -----------------------------------------------------------------------------------
    def queue_run(self, chunk: Chunk, start: int = 0) -> int:
        """The run loop's way in: queue rows ``start:`` of ``chunk`` for delivery, in order, without ever
        waiting, up to and including the row that fills an engine (``--max-pending`` events or
        ``--max-pending-bytes``), as taking rows one by one while :attr:`has_room` would; returns the row
        after the last one queued (``len(chunk)`` when all were).

        The rows queued are one :class:`~consumer.events.Group`, tracked (``track``) before anything of
        it can end, and acknowledged (``on_ack``) once every payload of it has ended. Its payloads become
        one :class:`~consumer.events.Pending` each, read straight from the chunk's columns; skips,
        unencodable payloads and bad rows end here. The bookkeeping (read counts, the clock, the hand-over
        to each engine) is done once per call.

        For a source that must keep polling while delivery is full (the Kafka daemon): the caller queues
        while :attr:`has_room` and otherwise waits for room (:meth:`wait_room`); the payloads of the row
        that fills an engine are queued all the same."""
        self.faults.raise_first()
        end = self._run_end(chunk, start)
        offsets, types, stream = chunk.offsets, chunk.types, chunk.stream
        # One owed for the placing itself: nothing of the group can finish it before it is all placed, and
        # a dead letter that cannot be written (a fault, raised) leaves it unfinished for ever.
        group = Group(stream, offsets[start], offsets[end - 1], 1)
        self.track(group)
        self._count_read(types[start:end])
        for row, reason, raw in rows_in(chunk.bad, start, end):
            log.warning("undecodable input %s:%d@%d: %s", stream[0], stream[1], offsets[row], reason)
            self.dead_letter_input(
                Position(stream[0], stream[1], offsets[row]), "undecodable", reason, raw=raw
            )
        now = self._clock()
        rows_of = (types, offsets, group)
        runs: list[PendingRun | None] = []
        for dest, payloads in zip(self.destinations, chunk.outputs, strict=True):
            first, after = payloads.span(start, end)
            run = None
            if after > first:
                run = payloads.run(first, after, rows_of, now)
                group.owed += after - first
            runs.append(run)
            skips, unencodable = payloads.apart(start, end)
            if skips:
                self._skipped(dest.name, skips)
            for row, detail in unencodable:
                position = Position(stream[0], stream[1], offsets[row])
                self._unencodable(dest, position, types[row], detail)
        for engine, run in zip(self.engines, runs, strict=True):
            if run is not None:
                engine.offer_many((run,), beyond_room=True)
        group.owed -= 1
        if not group.owed:
            self.on_ack([group])
        return end

    async def redeliver(
        self, destination: str, payload: Payload, event_type: str, position: Position
    ) -> None:
        """Redrive's way in: send ``payload`` (a dead-lettered event) again to the enabled destination
        named ``destination``, waiting while its engine is full. It counts as read in the summary; its
        retry window starts now."""
        engine = self._engine_of[destination]
        self.summary.read[event_type] += 1
        await engine.submit(engine.destination.pending(payload, event_type, position, self._clock()))

    def _run_end(self, chunk: Chunk, start: int) -> int:
        """Where the run of ``chunk``'s rows from ``start`` ends for :meth:`queue_run`: after the row that
        fills an engine, or at the end. Found per destination by bisection over its payloads' ends."""
        end = len(chunk)
        for engine, payloads in zip(self.engines, chunk.outputs, strict=True):
            events, room_bytes = engine.room()
            first, after = payloads.span(start, end)
            if after == first:
                continue
            # the payload that fills the engine by count, and by bytes (payloads first..i take
            # ends[i] - end_before(ends, first) bytes, a separator each)
            by_count = first + max(events, 1) - 1
            ends = payloads.ends
            by_bytes = bisect_left(ends, room_bytes + end_before(ends, first), first, after)
            filling = min(by_count, by_bytes)
            if filling < after:
                end = min(end, payloads.rows[filling] + 1)
        return end

    def _count_read(self, event_types: list[str]) -> None:
        """Count records read, one event type each (a bad row's is empty: not a record), in the summary
        and the metrics."""
        for event_type, n in Counter(event_types).items():
            if event_type:
                self.summary.read[event_type] += n
                self.metrics.count(self.metrics.read, event_type, n)

    def _skipped(self, name: str, skips: list[tuple[int, str]]) -> None:
        """Count the rows destination ``name`` skipped, by reason."""
        for reason, n in Counter([reason for _, reason in skips]).items():
            self.summary.skip(name, reason, n)
            self.metrics.count(self.metrics.skipped, reason, n, destination=name)

    def _unencodable(self, dest: Destination, position: Position, event_type: str, detail: str) -> None:
        self._write_dead("unencodable", position, destination=dest.name, event_type=event_type, detail=detail)
        self.summary.dead(dest.name, "unencodable")
        self.metrics.count(self.metrics.dead_lettered, "unencodable", destination=dest.name)

    def dead_letter_input(
        self,
        position: Position,
        reason: str,
        detail: str,
        *,
        raw: bytes | None = None,
        event_type: str | None = None,
    ) -> None:
        """Record input that never became an event (undecodable bytes, unreadable file); its position is
        the caller's to acknowledge (a bad row's, with its group). A record that cannot be written is a
        fault, reported and raised."""
        self._write_dead(reason, position, raw=raw, detail=detail, event_type=event_type)
        self.summary.dead_input(reason)
        self.metrics.count(self.metrics.dead_lettered, reason, destination=INPUT)

    def _write_dead(self, reason: str, position: Position, **fields: Any) -> None:
        try:
            self.dead.write(reason, position, **fields)
        except Fault as fault:
            self.faults.report(fault)
            raise

    # -- the engines as one ----------------------------------------------------------------------
    @property
    def has_room(self) -> bool:
        """Whether every destination takes more events without waiting."""
        return all(e.has_room for e in self.engines)

    async def wait_room(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until every destination takes more events, at most ``timeout`` seconds; whether they do."""
        deadline = time.monotonic() + timeout
        for engine in self.engines:
            if not await engine.wait_room(max(0.0, deadline - time.monotonic())):
                return False
        return True

    @property
    def pending(self) -> int:
        """Payloads taken and not yet done, over all destinations."""
        return sum(e.pending for e in self.engines)

    def throttled_keys(self) -> int:
        """Devices/users with events waiting aside, over all destinations."""
        return sum(e.throttled_keys() for e in self.engines)

    @property
    def last_progress(self) -> float:
        """When a destination last accepted something."""
        return max(e.last_progress for e in self.engines)

    def flush(self) -> None:
        """Send every partial batch now."""
        for e in self.engines:
            e.flush()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Send everything now and wait until no destination has anything pending; ``False`` on timeout."""
        results = await asyncio.gather(*(e.drain(timeout) for e in self.engines))
        return all(results)

    async def settle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for every destination's requests in flight to be answered."""
        await asyncio.gather(*(e.settle(timeout) for e in self.engines))

    async def close(self) -> None:
        """Stop every engine; pending events are abandoned (never acknowledged). Sinks stay open: whoever
        built the destinations closes them (:func:`~consumer.app.destinations.close_all`)."""
        for e in self.engines:
            await e.close()

    def progress_line(self) -> str:
        """The progress figures every command prints: read, delivered, skipped, dead-lettered, pending,
        held devices. With several destinations each has its own figures (``amplitude: delivered N
        skipped N dead-lettered N``): summed, the skips of three destinations would exceed ``read``."""
        s = self.summary
        tail = f"pending {self.pending} held-devices {self.throttled_keys()}"
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

    def update_gauges(self, backlog: int = 0) -> None:
        """Refresh the per-destination gauges (``backlog``: records read but not yet ingested)."""
        m = self.metrics
        for d, e in zip(self.destinations, self.engines, strict=True):
            m.pending.labels(d.name).set(e.pending + backlog)
            m.oldest_pending_age.labels(d.name).set(e.oldest_pending_age())
            m.throttled_devices.labels(d.name).set(e.throttled_keys())
        m.last_progress.set(self.last_progress)


def _untracked(_group: Group) -> None:
    """A pipeline whose groups nobody tracks (redrive acknowledges nothing per event)."""
