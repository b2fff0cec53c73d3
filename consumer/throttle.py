"""Per-device and per-user rate limiting in front of Amplitude (pure, injected clock).

Amplitude throttles at 30 events/s per device and per user (HTTP V2) and caps each at 500,000 events
per day. :class:`KeyLimiter` keeps one token bucket per key (``d:<device_id>``, ``u:<user_id>``) and a
per-UTC-day count, so the pipeline can send each event only when all its keys have room, and hold
back only the events of keys that are over — never everyone else's.

Memory: one small entry per key seen in the current second (buckets of idle keys are swept) and one
counter per key seen in the current UTC day (cleared when the day changes).
"""

from __future__ import annotations

ADMIT = 0.0
DAILY_QUOTA = -1.0


class KeyLimiter:
    """Token buckets (``rate`` per second) and daily counts per key.

    The default burst is one event: a bucket with burst ``b`` lets ``b + rate * W`` events through in
    any window of ``W`` seconds, so only a burst of ~1 keeps every window, Amplitude's 30-second
    average and a strict 1-second one alike, at or under ``rate``.

    :meth:`take` either admits an event (consuming one token and one daily unit on every key) and
    returns :data:`ADMIT`, returns :data:`DAILY_QUOTA` when any key is over its daily limit, or
    returns the number of seconds until every key will have a token.
    """

    def __init__(self, rate: float, daily_limit: int, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self.daily_limit = daily_limit
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, updated_at]
        self._blocked_until: dict[str, float] = {}
        self._daily: dict[str, int] = {}
        self._day = -1
        self._next_sweep = 0.0

    def _tokens(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)

    def take(self, keys: tuple[str, ...], now: float) -> float:
        """Admit one event for ``keys`` at ``now`` (seconds), or say how long to wait."""
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
                wait = max(wait, (1.0 - tokens) / self.rate)
        if wait > 0.0:
            return wait
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

    def penalize(self, key: str, seconds: float, now: float) -> None:
        """Amplitude throttled ``key``: send nothing for it for ``seconds`` and empty its bucket."""
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), now + seconds)
        self._buckets[key] = [0.0, now + seconds]

    def blocked_keys(self, now: float) -> int:
        """How many keys are currently held back by a penalty (a gauge)."""
        return sum(1 for until in self._blocked_until.values() if until > now)

    def _sweep(self, now: float) -> None:
        # A bucket idle for longer than it takes to refill is full: forgetting it changes nothing.
        horizon = self.burst / self.rate
        stale = [k for k, (_, at) in self._buckets.items() if now - at > horizon]
        for key in stale:
            del self._buckets[key]
        self._next_sweep = now + max(1.0, horizon)


def limiter_keys(event: dict[str, object]) -> tuple[str, ...]:
    """The throttling keys of an Amplitude event: its device and its user, as Amplitude counts them."""
    device = event.get("device_id")
    user = event.get("user_id")
    if device and user:
        return (f"d:{device}", f"u:{user}")
    if device:
        return (f"d:{device}",)
    return (f"u:{user}",)
