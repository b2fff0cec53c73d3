"""Per-key rate tokens taken as requests leave; events over their key's rate wait aside, without I/O.

A :class:`Departures` stands between the engine's input and its requests. An event whose first key
already has events waiting queues behind them (its device's events stay in order); any other event
joins the open batch (:meth:`Departures.enqueue`). As a request leaves, :meth:`Departures.admit` takes
one token per event for each of its keys: events whose keys have none wait aside in their key's queue,
events over the daily quota are dead-lettered (``daily_quota``). A waiting key's timer
(:meth:`Departures.release_due`) releases the head of its queue as soon as it has a token, one event per
token, to leave before any queued request; every other key keeps flowing. Events whose retry window
ends while waiting are dead-lettered (``retry_window_expired``). Time comes from the caller (``now``).

Runs of payloads (:class:`~consumer.events.PendingRun`) go through whole while none of their keys waits
aside and every payload of a leaving request has a token (the usual case: one look at the limiter for the
request's key column); otherwise they are taken apart (``apart``, which the engine then holds payload by
payload) and each payload goes its own way as above."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consumer.delivery.batching import Batcher
from consumer.delivery.holdback import HoldBack
from consumer.delivery.throttle import ADMIT, DAILY_QUOTA, MIN_WAIT, KeyLimiter, NoKeyLimit
from consumer.events import Pending, PendingRun, Queued, key_column

DeadLetter = Callable[[Pending, str, str], None]
"""Dead-letter one event with (reason, detail); it ends there."""

Apart = Callable[[Sequence[Queued]], list[Pending]]
"""Take runs apart into one payload each, in order (the engine holds those from then on)."""


class Departures:
    """The held-back queues of one destination and the tokens its requests take as they leave.

    ``fits`` dead-letters an event too large for any request (``False``); ``expired`` says whether an
    event's retry window has ended; ``dead`` dead-letters one event.
    """

    def __init__(
        self,
        limiter: KeyLimiter | NoKeyLimit,
        batcher: Batcher,
        *,
        fits: Callable[[Pending], bool],
        expired: Callable[[Pending, float], bool],
        dead: DeadLetter,
        apart: Apart,
    ) -> None:
        self.limiter = limiter
        self.held = HoldBack()
        self._batcher = batcher
        self._fits = fits
        self._expired = expired
        self._dead = dead
        self._apart = apart

    def __len__(self) -> int:
        """Devices/users with events waiting aside."""
        return len(self.held)

    def enqueue(self, item: Pending, now: float) -> None:
        """Take a new event: behind its device's waiting events if it has any, else into the open batch."""
        if not self.held.append(item.keys[0], item) and self._fits(item):
            self._batcher.add(item, now)

    def enqueue_many(self, items: Sequence[Queued], now: float) -> None:
        """:meth:`enqueue` each payload of ``items`` in order; while no key of theirs waits aside (the usual
        case) they join the open batch together, runs whole (those too large for any request are
        dead-lettered first, by ``fits``). A run with a payload whose key waits aside is taken apart."""
        held = self.held
        if not held:
            self._join(items, now)
            return
        for item in items:
            if isinstance(item, PendingRun) and not held.holds_any(item.key_column()):
                self._join((item,), now)
            else:
                for each in self._apart((item,)):
                    self.enqueue(each, now)

    def _join(self, items: Sequence[Queued], now: float) -> None:
        """Put ``items`` (no key of which waits aside) in the open batch."""
        fits = self._fits
        # one look per item at its size; a payload's own size is looked at only in a run over the cap
        cap = self._batcher.caps.bytes_cap - self._batcher.overhead
        if max([item.size for item in items], default=0) > cap:
            if any(isinstance(item, PendingRun) and item.largest() > cap for item in items):
                items = self._apart(items)
            items = [item for item in items if isinstance(item, PendingRun) or item.size <= cap or fits(item)]
        self._batcher.add_many(items, now)

    def hold(self, key: str, items: list[Pending], until: float) -> None:
        """Keep ``items`` aside under ``key`` until ``until`` (a 429's hold-back)."""
        self.held.hold(key, items, until)

    def next_due(self) -> float:
        """When the next key's timer is due (``inf`` when none waits)."""
        return self.held.next_due()

    def release_due(self, now: float) -> None:
        """Run the timers that are due, giving every waiting key a timer first."""
        for key in self.held.unarmed():
            self.held.arm(key, now)  # never leave a waiting device without a timer
        for key in self.held.due(now):
            self._release(key, now)

    def _release(self, key: str, now: float) -> None:
        """``key``'s timer: send the head of its queue if it has a token now, else wait again.

        One event per token: the next is looked at one token later, without waiting for this one to
        leave, so a hot key keeps its full rate however long requests take. Its token is taken when
        its request leaves; one that leaves too early is turned back to the queue's front.
        """
        queue = self.held.queue(key)
        while queue:
            item = queue[0]
            if self._expired(item, now):
                queue.popleft()
                self._dead(item, "retry_window_expired", "")
                continue
            verdict = self.limiter.check(item.keys, now)
            if verdict == DAILY_QUOTA:
                queue.popleft()
                self._dead(item, "daily_quota", "")
                continue
            if verdict > 0:
                self.held.arm(key, now + verdict)
                return
            queue.popleft()
            if self._fits(item):
                self._batcher.hot.append(item)
                if queue:
                    self.held.arm(key, now + max(MIN_WAIT, self.limiter.check(item.keys, now)))
                break
        self.held.forget_if_empty(key)

    def admit(self, batch: Sequence[Queued], now: float) -> Sequence[Queued]:
        """The events of ``batch`` whose keys have a token now (taken): those leave; the others wait aside
        (those over the daily quota are dead-lettered). While every one has a token and no key waits
        aside, ``batch`` leaves as it is (runs whole)."""
        keys = key_column(batch)
        verdicts = self.limiter.admit_many(keys, now)
        if verdicts.count(ADMIT) == len(verdicts):
            send: Sequence[Queued] = batch  # every payload has its tokens: the batch leaves as it is
        else:
            send = self._split_by(verdicts, self._apart(batch), now)
        # A key whose released event just left (or ended) gets its next timer now (no key waits aside
        # in the usual case: then there is nothing to look at).
        if self.held:
            for key in {each[0] for each in keys}:
                queue = self.held.queue(key)
                if queue and not self.held.armed(key):
                    self.held.arm(key, now + max(0.0, self.limiter.check(queue[0].keys, now)))
        return send

    def _split_by(self, verdicts: list[float], items: list[Pending], now: float) -> list[Queued]:
        """The ``items`` whose verdict admits them; the others wait aside under their first key, or, over
        the daily quota, are dead-lettered."""
        send: list[Queued] = []
        denied: dict[str, tuple[list[Pending], float]] = {}
        for item, verdict in zip(items, verdicts, strict=True):
            if verdict == ADMIT:
                send.append(item)
            elif verdict == DAILY_QUOTA:
                self._dead(item, "daily_quota", "")
            else:
                waiting, wait = denied.get(item.keys[0], ([], 0.0))
                waiting.append(item)
                denied[item.keys[0]] = (waiting, max(wait, verdict))
        for key, (waiting, wait) in denied.items():
            self.held.hold(key, waiting, now + wait)
        return send
