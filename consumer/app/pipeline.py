"""The stages every source shares: count, map per destination, skip or hand to delivery, acknowledge.

The run's loop (:mod:`consumer.app.loop`) reads prepared records (each destination's payloads, made by
:class:`~consumer.transform.prepare.Preparer` in a worker process or here) in position order and hands
runs of them to :meth:`Pipeline.queue_run`, after tracking their positions; redrive re-sends dead-lettered
events one at a time (:meth:`Pipeline.redeliver`). A record goes to every
enabled :class:`~consumer.delivery.destination.Destination` (fan-out): each has mapped it to zero or more
payloads (or skipped it) and its own delivery engine takes them. The record's position is acknowledged once,
when every destination has finished every payload of it (delivered or dead-lettered; a skip finishes
at once), so a commit never passes an event some destination still owes. Undecodable inputs are
dead-lettered and acknowledged at once.

Back-pressure: the loop queues a run up to the record that fills an engine (:meth:`Pipeline.queue_run`
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
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from consumer.delivery.destination import Destination
from consumer.delivery.engine import DeliveryEngine
from consumer.events import SEPARATOR_BYTES, Pending, Position
from consumer.ops.faults import Fault, Faults
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.positions.deadletter import DeadLetterOutput
from consumer.transform.base import Payload, Skip
from consumer.transform.prepare import Output, Preparer, ReadyRecord

AckCallback = Callable[[list[Position]], None]
"""Told the positions of records finished (in any order, a request's events at once)."""

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
        clock: Callable[[], float] | None = None,
        faults: Faults | None = None,
    ) -> None:
        if not destinations:
            raise ValueError("a pipeline needs at least one destination")
        self.destinations = list(destinations)
        self.dead = dead_letter
        self.metrics = metrics
        self.on_ack = on_ack
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
        # Payloads still owed per position (registered when two or more are owed).
        self._owed: dict[Position, int] = {}
        self._engine_of = {d.name: engine for d, engine in zip(self.destinations, self.engines, strict=True)}

    @property
    def engine(self) -> DeliveryEngine:
        """The first destination's engine (the only one in a single-destination run)."""
        return self.engines[0]

    # -- acknowledgement -------------------------------------------------------------------------
    def _done_by(self, destination: Destination) -> Callable[[list[Pending], str, str], None]:
        name = destination.name
        summary, metrics = self.summary, self.metrics

        def done(items: list[Pending], outcome: str, reason: str) -> None:
            if outcome == "delivered":
                types = Counter([item.event_type for item in items])
                summary.delivered(name, types)
                for event_type, n in types.items():
                    metrics.count(metrics.delivered, event_type, n, destination=name)
            else:
                summary.dead(name, reason, len(items))
                metrics.count(metrics.dead_lettered, reason, len(items), destination=name)
            if self._owed:
                last = self._last_payload
                self.on_ack([item.position for item in items if last(item.position)])
            else:
                self.on_ack([item.position for item in items])

        return done

    def _last_payload(self, position: Position) -> bool:
        """One of ``position``'s payloads has finished: whether it was the last one owed."""
        # Only positions owing two or more payloads are registered (the one-payload case, a single
        # destination's usual one, costs no bookkeeping); the last payload finds none.
        owed = self._owed
        left = owed.get(position)
        if left is None:
            return True
        if left > 2:
            owed[position] = left - 1
        else:
            del owed[position]
        return False

    # -- input -----------------------------------------------------------------------------------
    def queue_run(self, records: Sequence[ReadyRecord], start: int = 0) -> int:
        """The run loop's way in: queue ``records[start:]`` for delivery, in order, without ever waiting,
        up to and including the record that fills an engine (``--max-pending`` events or
        ``--max-pending-bytes``), as taking records one by one while :attr:`has_room` would; returns the
        index after the last record queued (``len(records)`` when all were).

        For a source that must keep polling while delivery is full (the Kafka daemon): the caller queues
        while :attr:`has_room` and otherwise waits for room (:meth:`wait_room`); the payloads of the
        record that fills an engine are queued all the same. The per-record bookkeeping (read counts, the
        clock, the hand-over to each engine) is done once per run."""
        self.faults.raise_first()
        end = self._run_end(records, start)
        run = records[start:end]
        self._count_read([record[1] for record in run])
        for engine, items in zip(self.engines, self._place_all(run), strict=True):
            engine.offer_many(items, beyond_room=True)
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

    def _run_end(self, records: Sequence[ReadyRecord], start: int) -> int:
        """Where the run of ``records`` from ``start`` ends for :meth:`queue_run`: after the record that
        fills an engine, or at the end."""
        rooms = [engine.room() for engine in self.engines]
        for i in range(start, len(records)):
            for room, out in zip(rooms, records[i][2], strict=True):
                if isinstance(out, list):  # payloads (not a skip): what they take of the engine
                    room[0] -= len(out)
                    for encoded, _ in out:  # a list of Encoded
                        room[1] -= len(encoded) + SEPARATOR_BYTES  # a Pending's size
                    if room[0] <= 0 or room[1] <= 0:
                        return i + 1
        return len(records)

    def _place_all(self, records: Iterable[ReadyRecord]) -> list[list[Pending]]:
        """:meth:`_place` for each of ``records`` at one instant: each engine's queue (destination order);
        the records no destination has a payload of are acknowledged together."""
        now = self._clock()
        queues: list[list[Pending]] = [[] for _ in self.engines]
        acked: list[Position] = []
        place = self._place
        for position, event_type, outputs in records:
            place(position, event_type, outputs, now, queues, acked)
        if acked:
            self.on_ack(acked)
        return queues

    def _count_read(self, event_types: list[str]) -> None:
        """Count records read, one event type each, in the summary and the metrics."""
        for event_type, n in Counter(event_types).items():
            self.summary.read[event_type] += n
            self.metrics.count(self.metrics.read, event_type, n)

    def _place(
        self,
        position: Position,
        event_type: str,
        outputs: tuple[Output, ...],
        now: float,
        queues: list[list[Pending]],
        acked: list[Position],
    ) -> None:
        """Queue one record's payloads for their engines (``queues``, in destination order); skips and
        unencodable payloads end here, and a record with no payload goes to ``acked``."""
        owed = 0
        for dest, out, queue in zip(self.destinations, outputs, queues, strict=True):
            if isinstance(out, list):
                for encoded, keys in out:
                    queue.append(Pending(event_type, position, encoded, now, keys))
                    owed += 1
            elif isinstance(out, Skip):
                self.summary.skip(dest.name, out.reason)
                self.metrics.count(self.metrics.skipped, out.reason, destination=dest.name)
            else:
                self._unencodable(dest, position, event_type, out.detail)
        if owed == 0:
            acked.append(position)
        elif owed > 1:
            # Registered before any engine sees a payload: a payload can finish inside ``offer``.
            self._owed[position] = owed

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
        """Record input that never became an event (undecodable bytes, unreadable file) and acknowledge it."""
        self._write_dead(reason, position, raw=raw, detail=detail, event_type=event_type)
        self.summary.dead_input(reason)
        self.metrics.count(self.metrics.dead_lettered, reason, destination=INPUT)
        self.on_ack([position])

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
