"""The events one delivery engine holds, from taken to ended, and the one ending each of them gets.

A :class:`LiveEvents` counts what its engine holds (events and bytes, against ``--max-pending`` and
``--max-pending-bytes``), signals room (the engine takes more: back-pressure lifts) and idleness
(nothing held: a drain is over), and ends each event exactly once: delivered, or dead-lettered once its
dead-letter record is written, every ending told to ``on_done(events, outcome, reason)``. A dead-letter
record that cannot be written is a :class:`~consumer.ops.faults.Fault`, reported to the run's faults and
raised; that event does not end (it stays held, its position never acknowledged).

The engine adds events itself: :meth:`~consumer.delivery.engine.DeliveryEngine.offer_many`, its hot
path, updates :attr:`LiveEvents.items`, :attr:`LiveEvents.bytes` and the signals inline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from consumer.events import Pending, Queued
from consumer.ops.faults import Fault, Faults
from consumer.positions.deadletter import DeadLetterOutput
from consumer.settings import LimitSettings

log = logging.getLogger("currents.delivery")

DoneCallback = Callable[[list[Queued], str, str], None]
"""Told the events that ended together (payloads alone or in runs), their outcome (``delivered`` or
``dead_lettered``) and reason."""


class LiveEvents:
    """The events a destination's engine holds; ``name`` is the destination's (the ``destination`` field
    of dead-letter records), ``decode`` turns a held event back into the dict its record carries."""

    def __init__(
        self,
        name: str,
        limits: LimitSettings,
        dead_letter: DeadLetterOutput,
        decode: Callable[[bytes], dict[str, Any]],
        on_done: DoneCallback,
        faults: Faults,
    ) -> None:
        self.name = name
        self.limits = limits
        self.dead_letter = dead_letter
        self.decode = decode
        self.on_done = on_done
        self.faults = faults
        self.items: dict[int, Queued] = {}
        """What is held, by ``id``: payloads alone and runs of them (a run split or taken apart is held as
        its parts from then on, :meth:`replace`)."""
        self.events = 0
        """The payloads held (a run counts each of its own)."""
        self.bytes = 0
        """Their bytes (:attr:`~consumer.events.Pending.size`)."""
        self.room = asyncio.Event()
        """Set while the engine takes more events."""
        self.room.set()
        self.idle = asyncio.Event()
        """Set while no event is held."""
        self.idle.set()

    def room_left(self) -> list[int]:
        """``[events, bytes]`` the engine takes before it is full (zeros while it is)."""
        if not self.room.is_set():
            return [0, 0]
        limits = self.limits
        return [limits.max_pending - self.events, limits.max_pending_bytes - self.bytes]

    def replace(self, item: Queued, parts: Sequence[Queued]) -> None:
        """Hold ``parts`` (the same payloads: a run split or taken apart) instead of ``item``."""
        live = self.items
        if live.pop(id(item), None) is not None:
            live.update([(id(part), part) for part in parts])

    def oldest(self) -> float | None:
        """When the oldest payload held was first taken (``None`` when none is)."""
        if not self.items:
            return None
        return min([item.first_attempt for item in self.items.values()])

    def dead(self, item: Pending, reason: str, detail: str = "", last: tuple[str, int] | None = None) -> None:
        """Dead-letter ``item``; ``last`` is the last answer it had (reason, HTTP status), if any."""
        try:
            self.dead_letter.write(
                reason,
                item.position,
                destination=self.name,
                event=self.decode(item.encoded),
                event_type=item.event_type,
                detail=detail,
                first_attempt=item.first_attempt,
                last_answer=last,
            )
        except Fault as fault:  # the event does not end: it stays pending, never acknowledged
            self.faults.report(fault)
            raise
        self.finish([item], "dead_lettered", reason)

    def finish(self, items: Sequence[Queued], outcome: str, reason: str) -> None:
        """End those of ``items`` still held with ``outcome`` (``delivered``, ``dead_lettered``)."""
        live = self.items
        ended = [item for item in items if live.pop(id(item), None) is not None]
        if not ended:
            return
        self.events -= sum([item.count for item in ended])
        self.bytes -= sum([item.size for item in ended])
        if self.events < self.limits.max_pending and self.bytes < self.limits.max_pending_bytes:
            self.room.set()
        if not live:
            self.idle.set()
        try:
            self.on_done(ended, outcome, reason)
        except Exception:  # the events have ended either way; a failing callback must not strand others
            log.exception("%s: the callback for %d ended events failed", self.name, len(ended))
