"""Per-device and per-user rate limiting in front of Amplitude (pure, injected clock).

Amplitude throttles at 30 events/s per device and per user (HTTP V2) and caps each at 500,000 events
per day. :class:`KeyLimiter` keeps a one-second sliding window per key (``d:<device>``, ``u:<user>``) and a
per-UTC-day count, so the pipeline can send each event only when all its keys have room, and hold
back only the events of keys that are over — never everyone else's.

The delivery engine records a send when a request *leaves* (see :mod:`consumer.delivery`), so the
windows count what Amplitude sees, whatever batching and retries do before.

Memory: the send times of each key in its last window (keys idle for a window and penalties that
have run out are swept) and one counter per key seen in the current UTC day (cleared when the day
changes).
"""

from __future__ import annotations

from collections import deque

ADMIT = 0.0
DAILY_QUOTA = -1.0
WINDOW_GUARD = 0.1
"""Seconds added to each key's window to absorb differences in request latency."""
SLOW_FOR = 3600.0
"""How long a key Amplitude throttled keeps its slower rate."""
MIN_WAIT = 0.001
"""The shortest wait :meth:`KeyLimiter.take` names. Rounding at UNIX-time magnitudes can leave a key a
hair short of a token; a wait smaller than the clock's resolution would have its caller ask again at
the very same instant, forever."""


class KeyLimiter:
    """Per-key sliding windows (at most ``rate`` events in any window of ``window`` seconds) and daily
    counts per key.

    The window is one second (longer for rates under 1/s, so that a window always holds at least one
    event): every one-second span then holds at most ``rate`` events of a key, which keeps both
    Amplitude's 30-second average and a strict per-second count at or under the limit, while a key may
    still send up to ``rate`` events in one request (a session start, a few custom events and a
    purchase of one device travel together instead of one request each).

    :meth:`take` either admits an event (recording it on every key and one daily unit) and returns
    :data:`ADMIT`, returns :data:`DAILY_QUOTA` when any key is over its daily limit, or returns the
    number of seconds until every key has room (at least :data:`MIN_WAIT`). :meth:`check` answers the
    same without recording anything.
    """

    def __init__(self, rate: float, daily_limit: int) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.daily_limit = daily_limit
        self._sent: dict[str, deque[float]] = {}  # key -> send times inside its window, oldest first
        self._blocked_until: dict[str, float] = {}
        self._slow: dict[str, tuple[float, float]] = {}  # key -> (rate, until): throttled by Amplitude
        self._daily: dict[str, int] = {}
        self._day = -1
        self._next_sweep = 0.0

    def rate_of(self, key: str, now: float) -> float:
        """The rate ``key`` is held to: the configured one, or a slower one after Amplitude throttled it."""
        if self._slow:
            slow = self._slow.get(key)
            if slow is not None and slow[1] > now:
                return slow[0]
        return self.rate

    @staticmethod
    def _shape(rate: float) -> tuple[float, int]:
        """(window seconds, events allowed in it) for ``rate``.

        The window is :data:`WINDOW_GUARD` longer than the span it stands for: sends are recorded as
        requests leave, and requests take different times to arrive, so two requests a window apart
        could land in one of Amplitude's seconds without that margin.
        """
        span = 1.0 if rate >= 1.0 else 1.0 / rate
        return span + WINDOW_GUARD, max(1, int(rate * span + 1e-9))

    def _room(self, key: str, now: float) -> float:
        """0 when ``key`` may send now, else seconds until it may."""
        sent = self._sent.get(key)
        if not sent:
            return 0.0
        window, allowed = self._shape(self.rate_of(key, now))
        while sent and sent[0] <= now - window:
            sent.popleft()
        if len(sent) < allowed:
            return 0.0
        return sent[len(sent) - allowed] + window - now

    def check(self, keys: tuple[str, ...], now: float) -> float:
        """What :meth:`take` would answer at ``now``, without recording anything."""
        day = int(now // 86400)
        if day != self._day:
            self._day = day
            self._daily.clear()
        if now >= self._next_sweep:
            self._sweep(now)
        wait = 0.0
        for key in keys:
            if self._daily.get(key, 0) >= self.daily_limit:
                return DAILY_QUOTA
            blocked = self._blocked_until.get(key)
            if blocked is not None:
                if blocked > now:
                    wait = max(wait, blocked - now)
                    continue
                del self._blocked_until[key]
            wait = max(wait, self._room(key, now))
        return max(wait, MIN_WAIT) if wait > 0.0 else ADMIT

    def take(self, keys: tuple[str, ...], now: float) -> float:
        """Admit one event for ``keys`` at ``now`` (seconds), or say how long to wait."""
        verdict = self.check(keys, now)
        if verdict != ADMIT:
            return verdict
        for key in keys:
            sent = self._sent.get(key)
            if sent is None:
                sent = self._sent[key] = deque()
            sent.append(now)
            self._daily[key] = self._daily.get(key, 0) + 1
        return ADMIT

    def penalize(self, key: str, seconds: float, now: float, threshold: float | None = None) -> None:
        """Amplitude throttled ``key``: send nothing for it for ``seconds``, then for :data:`SLOW_FOR`
        seconds hold it to 90 % of Amplitude's ``threshold`` (or half its current rate when the 429
        gave none), whichever is lower than what it had."""
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), now + seconds)
        current = self.rate_of(key, now)
        slower = 0.9 * threshold if threshold else current / 2
        self._slow[key] = (max(min(current, slower), 0.01), now + seconds + SLOW_FOR)

    def blocked_keys(self, now: float) -> int:
        """How many keys are currently held back by a penalty (a gauge)."""
        return sum(1 for until in self._blocked_until.values() if until > now)

    def active_keys(self) -> int:
        """Keys with recent sends or a penalty in memory (idle ones are swept; daily counts not included)."""
        return len(self._sent.keys() | self._blocked_until.keys())

    def _sweep(self, now: float) -> None:
        # A key whose last send left its window has nothing to remember; nor has a finished penalty.
        for key in [k for k, (_, until) in self._slow.items() if until <= now]:
            del self._slow[key]
        slowest = min(self.rate, min((r for r, _ in self._slow.values()), default=self.rate))
        longest = max(1.0, 1.0 / slowest) + WINDOW_GUARD
        for key in [k for k, sent in self._sent.items() if not sent or sent[-1] <= now - longest]:
            del self._sent[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]
        self._next_sweep = now + 1.0


class ProjectLimiter:
    """One token bucket for the whole project: ``rate`` events per second, burst one second's worth.

    Amplitude also caps a project's events per second. :meth:`take` lets a request of ``n`` events go
    when the bucket holds ``min(n, rate)`` tokens and then owes the rest, so a request bigger than a
    second's worth still goes and the next one waits longer. A ``rate`` of 0 means no limit.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at: float | None = None

    def take(self, n: int, now: float) -> float:
        """Admit ``n`` events at ``now`` (:data:`ADMIT`) or say how many seconds to wait."""
        rate = self.rate
        if rate <= 0:
            return ADMIT
        if self._at is not None:
            self._tokens = min(rate, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens >= min(n, rate):
            self._tokens -= n
            return ADMIT
        return max(MIN_WAIT, (min(n, rate) - self._tokens) / rate)

    def refund(self, n: int) -> None:
        """Give back ``n`` tokens taken for events that were not sent after all."""
        if self.rate > 0:
            self._tokens = min(self.rate, self._tokens + n)


UNLIMITED = float("inf")
"""A per-key rate meaning "no per-key limit" (destinations without per-device limits)."""


def key_limiter(rate: float, daily_limit: int) -> KeyLimiter | NoKeyLimit:
    """The per-key limiter for ``rate`` events/s and ``daily_limit`` per day; none for :data:`UNLIMITED`."""
    return NoKeyLimit() if rate == UNLIMITED else KeyLimiter(rate, daily_limit)


class NoKeyLimit:
    """The :class:`KeyLimiter` interface for a destination without per-key limits: always admits."""

    def check(self, keys: tuple[str, ...], now: float) -> float:
        """Always room."""
        return ADMIT

    def take(self, keys: tuple[str, ...], now: float) -> float:
        """Always admitted; nothing is recorded (memory stays flat)."""
        return ADMIT

    def penalize(self, key: str, seconds: float, now: float, threshold: float | None = None) -> None:
        """Nothing to slow down."""


def limiter_keys(event: dict[str, object]) -> tuple[str, ...]:
    """The throttling keys of an Amplitude event: its device and its user, as Amplitude counts them."""
    device = event.get("device_id")
    user = event.get("user_id")
    if device and user:
        return (f"d:{device}", f"u:{user}")
    if device:
        return (f"d:{device}",)
    return (f"u:{user}",)
