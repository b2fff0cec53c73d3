"""Events waiting aside for their device or user: one queue and at most one timer per key (pure).

The delivery engine puts here the events of a key that has no rate token, or that Amplitude throttled,
and asks which keys' timers have come. Each queue keeps its key's events oldest first, so a key's
events leave in the order they were read; other keys never wait behind it.

Memory: one queue per key with waiting events (removed when empty) and one live timer per such key;
superseded timers are dropped as they come up.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from operator import itemgetter

from consumer.events import Pending


class HoldBack:
    """Per-key queues of waiting events, each with one timer saying when to look at it again."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Pending]] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._armed: dict[str, float] = {}  # key -> due time of its one live timer
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Keys with events waiting."""
        return len(self._queues)

    def queue(self, key: str) -> deque[Pending] | None:
        """``key``'s waiting events, oldest first (``None`` if it has none)."""
        return self._queues.get(key)

    def holds_any(self, keys: Iterable[tuple[str, ...]]) -> bool:
        """Whether any of ``keys`` (events' limiter keys) has its first key waiting here."""
        return not self._queues.keys().isdisjoint(map(itemgetter(0), keys))

    def append(self, key: str, item: Pending) -> bool:
        """Queue ``item`` behind ``key``'s waiting events; ``False`` (nothing done) if it has none."""
        queue = self._queues.get(key)
        if queue is None:
            return False
        queue.append(item)
        return True

    def hold(self, key: str, items: list[Pending], ready_at: float) -> None:
        """Put ``items`` (oldest first) at the front of ``key``'s queue and look again at ``ready_at``.

        They go in front because they are older than the queue's events: they left it, or were read
        before the key had a queue.
        """
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.extendleft(reversed(items))
        self.arm(key, ready_at)

    def arm(self, key: str, at: float) -> None:
        """Look at ``key`` again at ``at`` (an earlier time wins over a later one already set)."""
        due = self._armed.get(key)
        if due is None or at < due:
            self._armed[key] = at
            heapq.heappush(self._timers, (at, next(self._seq), key))

    def armed(self, key: str) -> bool:
        """Whether ``key`` has a timer set."""
        return key in self._armed

    def due(self, now: float) -> Iterator[str]:
        """The keys whose timer has come at ``now``, each disarmed as it is yielded."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, key = heapq.heappop(timers)
            if self._armed.get(key) == at:
                del self._armed[key]
                yield key

    def unarmed(self) -> list[str]:
        """Keys with waiting events but no timer (a safety net: such a key would never be looked at)."""
        return [key for key, queue in self._queues.items() if queue and key not in self._armed]

    def next_due(self) -> float:
        """When the earliest timer comes (``inf`` when none is set)."""
        return self._timers[0][0] if self._timers else float("inf")

    def forget_if_empty(self, key: str) -> None:
        """Drop ``key``'s queue if nothing waits in it any more."""
        if not self._queues.get(key, True):
            del self._queues[key]
