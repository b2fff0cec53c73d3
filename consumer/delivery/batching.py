"""Batching: requests built from ready events by count, bytes and age, without I/O.

A :class:`Batcher` keeps one open batch and the queue of requests ready to leave. An event joins the
open batch; the batch is sealed (queued as a request) when the next event would pass the request's
event cap (``events_cap``) or byte cap (``bytes_cap``, the sink's ``overhead`` included), when it is
``batch_age`` seconds old, or when the engine flushes. Events released from held-back queues ("hot")
leave before any queued request, up to the caps, so that a hot key's token time is the time Amplitude
sees its event. Requests put back at the front (:meth:`Batcher.front`) are the parts of a refused
request that go again at once. Time comes from the caller (``now``).

A run of payloads (:class:`~consumer.events.PendingRun`) joins the open batch whole when it fits, else is
split where the caps cut it (found by bisection over its payloads' ends), its tail starting the next
batch; ``split`` tells the engine of each split (the tail is held from then on).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from consumer.events import Pending, PendingRun, Queued
from consumer.sinks.base import RequestCaps


@dataclass(frozen=True, slots=True)
class Request:
    """A batch ready to send: its ``attempt`` (0 for a first send) and whether it is ``admitted``
    (already holds its rate tokens, so it is sent as it is)."""

    batch: Sequence[Queued]
    attempt: int = 0
    admitted: bool = False

    @property
    def events(self) -> int:
        """The payloads it carries."""
        return sum([item.count for item in self.batch])


class Batcher:
    """The open batch and the ready requests of one destination; see the module docstring."""

    def __init__(
        self, caps: RequestCaps, overhead: int, split: Callable[[PendingRun, PendingRun], None] | None = None
    ) -> None:
        self.caps = caps
        self.overhead = overhead
        self.ready: deque[Request] = deque()
        self.hot: deque[Pending] = deque()
        """Events released from held queues: they go first, at the next free request slot."""
        self._split = split if split is not None else _unheld
        self._batch: list[Queued] = []
        self._count = 0
        self._bytes = 0
        self._started = 0.0

    def fits(self, item: Pending) -> bool:
        """Whether ``item`` fits a request at all (one that does not can never be sent)."""
        return item.size + self.overhead <= self.caps.bytes_cap

    def add(self, item: Pending, now: float) -> None:
        """Put ``item`` (which :meth:`fits`) in the open batch, sealing the batch first if ``item`` would
        not fit in it."""
        self.add_many((item,), now)

    def add_many(self, items: Iterable[Queued], now: float) -> None:
        """:meth:`add` each of ``items`` (every payload of which :meth:`fits`) in turn, with the caps and
        the open batch bound once for all of them; a run the caps cut is split."""
        batch, count, size = self._batch, self._count, self._bytes
        events_cap, room = self.caps.events_cap, self.caps.bytes_cap - self.overhead
        ready = self.ready
        for item in items:
            while True:
                if count + item.count <= events_cap and size + item.size <= room:
                    break  # it fits whole
                if isinstance(item, PendingRun) and (n := item.fitting(events_cap - count, room - size)):
                    tail = item.split(n)  # the part that fits ends this batch, the tail starts the next
                    self._split(item, tail)
                elif batch:
                    ready.append(Request(batch))
                    batch, count, size = [], 0, 0
                    continue
                else:
                    break  # alone in its request (each payload fits one)
                if not batch:
                    self._started = now
                batch.append(item)
                ready.append(Request(batch))
                batch, count, size = [], 0, 0
                item = tail
            if not batch:
                self._started = now
            batch.append(item)
            count += item.count
            size += item.size
        self._batch, self._count, self._bytes = batch, count, size

    def seal(self) -> None:
        """Queue the open batch as a request (nothing if it is empty)."""
        if self._batch:
            self.ready.append(Request(self._batch))
            self._batch = []
            self._count = 0
            self._bytes = 0

    def seal_if_due(self, now: float, flush: bool) -> None:
        """Seal the open batch if it has reached its age (or ``flush`` says send everything now)."""
        if self._batch and (flush or now - self._started >= self.caps.batch_age):
            self.seal()

    def due(self) -> float:
        """When the open batch reaches its age (``inf`` when there is none)."""
        return self._started + self.caps.batch_age if self._batch else float("inf")

    def front(self, batch: Sequence[Queued], attempt: int) -> None:
        """Put an admitted ``batch`` first in line."""
        self.ready.appendleft(Request(batch, attempt, True))

    def queue(self, batch: Sequence[Queued], attempt: int) -> None:
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
        batch: list[Queued] = []
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


def _unheld(_item: PendingRun, _tail: PendingRun) -> None:
    """A batcher whose splits nobody follows."""
