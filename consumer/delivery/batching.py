"""Batching: requests built from ready events by count, bytes and age, without I/O.

A :class:`Batcher` keeps one open batch and the queue of requests ready to leave. An event joins the
open batch; the batch is sealed (queued as a request) when the next event would pass the request's
event cap (``events_cap``) or byte cap (``bytes_cap``, the sink's ``overhead`` included), when it is
``batch_age`` seconds old, or when the engine flushes. Events released from held-back queues ("hot")
leave before any queued request, up to the caps, so that a hot key's token time is the time Amplitude
sees its event. Requests put back at the front (:meth:`Batcher.front`) are the parts of a refused
request that go again at once. Time comes from the caller (``now``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from consumer.events import Pending
from consumer.sinks.base import RequestCaps


@dataclass(frozen=True, slots=True)
class Request:
    """A batch ready to send: its ``attempt`` (0 for a first send) and whether it is ``admitted``
    (already holds its rate tokens, so it is sent as it is)."""

    batch: list[Pending]
    attempt: int = 0
    admitted: bool = False


class Batcher:
    """The open batch and the ready requests of one destination; see the module docstring."""

    def __init__(self, caps: RequestCaps, overhead: int) -> None:
        self.caps = caps
        self.overhead = overhead
        self.ready: deque[Request] = deque()
        self.hot: deque[Pending] = deque()
        """Events released from held queues: they go first, at the next free request slot."""
        self._batch: list[Pending] = []
        self._bytes = 0
        self._started = 0.0

    def fits(self, item: Pending) -> bool:
        """Whether ``item`` fits a request at all (one that does not can never be sent)."""
        return item.size + self.overhead <= self.caps.bytes_cap

    def add(self, item: Pending, now: float) -> None:
        """Put ``item`` (which :meth:`fits`) in the open batch, sealing the batch first if ``item`` would
        not fit in it."""
        self.add_many((item,), now)

    def add_many(self, items: Iterable[Pending], now: float) -> None:
        """:meth:`add` each of ``items`` (all of which :meth:`fits`) in turn, with the caps and the open
        batch bound once for all of them."""
        batch, size = self._batch, self._bytes
        events_cap, room = self.caps.events_cap, self.caps.bytes_cap - self.overhead
        ready = self.ready
        for item in items:
            if batch and (len(batch) >= events_cap or size + item.size > room):
                ready.append(Request(batch))
                batch, size = [], 0
            if not batch:
                self._started = now
            batch.append(item)
            size += item.size
        self._batch, self._bytes = batch, size

    def seal(self) -> None:
        """Queue the open batch as a request (nothing if it is empty)."""
        if self._batch:
            self.ready.append(Request(self._batch))
            self._batch = []
            self._bytes = 0

    def seal_if_due(self, now: float, flush: bool) -> None:
        """Seal the open batch if it has reached its age (or ``flush`` says send everything now)."""
        if self._batch and (flush or now - self._started >= self.caps.batch_age):
            self.seal()

    def due(self) -> float:
        """When the open batch reaches its age (``inf`` when there is none)."""
        return self._started + self.caps.batch_age if self._batch else float("inf")

    def front(self, batch: list[Pending], attempt: int) -> None:
        """Put an admitted ``batch`` first in line."""
        self.ready.appendleft(Request(batch, attempt, True))

    def queue(self, batch: list[Pending], attempt: int) -> None:
        """Put ``batch`` last in line (a retry that is due), to take tokens again as it leaves."""
        self.ready.append(Request(batch, attempt))

    def waiting(self) -> bool:
        """Whether a request is ready (queued or from released events)."""
        return bool(self.ready or self.hot)

    def next(self) -> Request | None:
        """The next request to send: released events first (up to the request caps), else a queued one."""
        hot = self.hot
        if not hot:
            return self.ready[0] if self.ready else None
        batch: list[Pending] = []
        size = self.overhead
        for item in hot:
            if len(batch) >= self.caps.events_cap or size + item.size > self.caps.bytes_cap:
                break
            batch.append(item)
            size += item.size
        return Request(batch)

    def pop(self, request: Request) -> None:
        """Remove the request :meth:`next` gave from where it waited."""
        if self.hot:
            for _ in request.batch:
                self.hot.popleft()
        else:
            self.ready.popleft()
