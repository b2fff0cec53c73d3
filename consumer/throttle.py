"""Per-device and per-user rate limiting in front of Amplitude (pure, injected clock).

Amplitude throttles at 30 events/s per device and per user (HTTP V2) and caps each at 500,000 events
per day. :class:`KeyLimiter` keeps one token bucket per key (``d:<device_id>``, ``u:<user_id>``) and a
per-UTC-day count, so the pipeline can send each event only when all its keys have room, and hold
back only the events of keys that are over — never everyone else's.

The delivery engine takes a token when a request *leaves* (see :mod:`consumer.delivery`), so the
spacing the buckets enforce is the spacing Amplitude sees, whatever batching and retries do before.

Memory: one small entry per key seen in the last moment (buckets of idle keys and penalties that
have run out are swept) and one counter per key seen in the current UTC day (cleared when the day
changes).
"""

from __future__ import annotations

ADMIT = 0.0
DAILY_QUOTA = -1.0
SLOW_FOR = 3600.0
"""How long a key Amplitude throttled keeps its slower rate."""
MIN_WAIT = 0.001
"""The shortest wait :meth:`KeyLimiter.take` names. Rounding at UNIX-time magnitudes can leave a key a
hair short of a token; a wait smaller than the clock's resolution would have its caller ask again at
the very same instant, forever."""


class KeyLimiter:
    """Token buckets (``rate`` per second) and daily counts per key.

    The default burst is one event: a bucket with burst ``b`` lets ``b + rate * W`` events through in
    any closed window of ``W`` seconds, so only a burst of 1 keeps every half-open window of ``W``
    seconds, Amplitude's 30-second average and a strict 1-second one alike, at or under ``rate * W``
    (consecutive events of a key are at least ``1 / rate`` seconds apart).

    :meth:`take` either admits an event (consuming one token and one daily unit on every key) and
    returns :data:`ADMIT`, returns :data:`DAILY_QUOTA` when any key is over its daily limit, or
    returns the number of seconds until every key will have a token (at least :data:`MIN_WAIT`).
    :meth:`check` answers the same without consuming anything.
    """

    def __init__(self, rate: float, daily_limit: int, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self.daily_limit = daily_limit
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, updated_at]
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

    def _tokens(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket[0] + (now - bucket[1]) * self.rate_of(key, now))

    def check(self, keys: tuple[str, ...], now: float) -> float:
        """What :meth:`take` would answer at ``now``, without consuming anything."""
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
            tokens = self._tokens(key, now)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / self.rate_of(key, now))
        return max(wait, MIN_WAIT) if wait > 0.0 else ADMIT

    def take(self, keys: tuple[str, ...], now: float) -> float:
        """Admit one event for ``keys`` at ``now`` (seconds), or say how long to wait."""
        verdict = self.check(keys, now)
        if verdict != ADMIT:
            return verdict
        for key in keys:
            tokens = self._tokens(key, now)
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [tokens - 1.0, now]
            else:
                bucket[0] = tokens - 1.0
                bucket[1] = now
            self._daily[key] = self._daily.get(key, 0) + 1
        return ADMIT

    def penalize(self, key: str, seconds: float, now: float, threshold: float | None = None) -> None:
        """Amplitude throttled ``key``: send nothing for it for ``seconds``, empty its bucket, and for
        :data:`SLOW_FOR` seconds hold it to 90 % of Amplitude's ``threshold`` (or half its current
        rate when the 429 gave none), whichever is lower than what it had."""
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), now + seconds)
        self._buckets[key] = [0.0, now + seconds]
        current = self.rate_of(key, now)
        slower = 0.9 * threshold if threshold else current / 2
        self._slow[key] = (max(min(current, slower), 0.01), now + seconds + SLOW_FOR)

    def blocked_keys(self, now: float) -> int:
        """How many keys are currently held back by a penalty (a gauge)."""
        return sum(1 for until in self._blocked_until.values() if until > now)

    def active_keys(self) -> int:
        """Keys with a bucket or a penalty in memory (idle ones are swept; daily counts not included)."""
        return len(self._buckets.keys() | self._blocked_until.keys())

    def _sweep(self, now: float) -> None:
        # A bucket idle for longer than it takes to refill is full: forgetting it changes nothing.
        # A penalty that has run out changes nothing either (its bucket refills from its end).
        horizon = self.burst / self.rate
        for key in [k for k, (_, until) in self._slow.items() if until <= now]:
            del self._slow[key]
        stale = [k for k, (_, at) in self._buckets.items() if now - at > horizon and k not in self._slow]
        for key in stale:
            del self._buckets[key]
        ended = [k for k, until in self._blocked_until.items() if until <= now]
        for key in ended:
            del self._blocked_until[key]
        self._next_sweep = now + max(1.0, horizon)


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


def limiter_keys(event: dict[str, object]) -> tuple[str, ...]:
    """The throttling keys of an Amplitude event: its device and its user, as Amplitude counts them."""
    device = event.get("device_id")
    user = event.get("user_id")
    if device and user:
        return (f"d:{device}", f"u:{user}")
    if device:
        return (f"d:{device}",)
    return (f"u:{user}",)
