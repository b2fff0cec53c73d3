"""Per-device and per-user rate limiting in front of Amplitude (pure, injected clock).

Amplitude throttles at 30 events/s per device and per user (HTTP V2) and caps each at 500,000 events
per day. :class:`KeyLimiter` keeps a one-second sliding window per key (``d:<device>``, ``u:<user>``) and a
per-UTC-day count, so the pipeline can send each event only when all its keys have room, and hold
back only the events of keys that are over — never everyone else's.

The delivery engine records a send when a request *leaves* (see :mod:`consumer.delivery.engine`), so the
windows count what Amplitude sees, whatever batching and retries do before.

Memory: the send times of each key in its last window (a key idle for a window is swept within
:data:`SWEEP_SHARE` of a window, and so are penalties that have run out), and a daily count for each
swept key that sent at least :data:`DAILY_KEEP_SHARE` of its daily limit in the current UTC day (cleared
when the day changes). The daily counts therefore grow with the keys that send a lot, not with every key
seen: a day of ten million devices that each send a few events keeps none of them once they are idle.

The daily count is a guard, not the authority: Amplitude counts too, and answers a request with events
over a daily quota with a 429 naming those ids, which the delivery engine dead-letters
(``daily_quota``). A key swept with fewer sends than the share starts again from zero when it comes
back, so for a key that keeps pausing between small bursts the guard may count fewer than Amplitude
does and Amplitude's answer is what stops it; the guard never counts more than was sent, so it never
holds back an event Amplitude would take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

ADMIT = 0.0
DAILY_QUOTA = -1.0
WINDOW_GUARD = 0.1
"""Seconds added to each key's window to absorb differences in request latency."""
DAILY_KEEP_SHARE = 0.01
"""A swept key keeps its daily count when it has sent at least this share of the daily limit today
(every count is kept for limits under 100)."""
SWEEP_SHARE = 0.25
"""Keys are swept every this share of the configured window: a key idle for its window stays in memory at
most this much longer."""
SLOW_FOR = 3600.0
"""How long a key Amplitude throttled keeps its slower rate."""
MIN_WAIT = 0.001
"""The shortest wait :meth:`KeyLimiter.admit` names. Rounding at UNIX-time magnitudes can leave a key a
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

    :meth:`admit` either admits an event (recording it on every key and one daily unit) and returns
    :data:`ADMIT`, returns :data:`DAILY_QUOTA` when any key is over its daily limit, or returns the
    number of seconds until every key has room (at least :data:`MIN_WAIT`). :meth:`check` answers the
    same without recording anything; :meth:`admit_many` answers for each event of a request in turn.

    Cost (:meth:`admit_many` runs for every event of a request as it leaves): the day change and the
    sweep are one comparison against the next of the two instants, made once per call with the state
    bound to locals, not once per event. A key that sent lately has one list, ``[daily count, send
    times, oldest first]``, so one dict look-up per key serves its daily limit and its window, and one
    more the record of a send. The shape of the configured rate is computed once (only keys Amplitude
    slowed down pay for :meth:`_shape`). A sweep, every :data:`SWEEP_SHARE` of the configured window, walks
    the keys that sent lately and forgets those whose last send has left their window but for their
    daily count, if that is large enough to keep (about 40 ns a key, a few milliseconds a second at the
    benchmark's 45,000 events/s). Memory so follows the keys that sent in the last window and a quarter.
    """

    def __init__(self, rate: float, daily_limit: int) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.daily_limit = daily_limit
        self._window, self._allowed = self._shape(rate)
        self._trim_at = min(self._allowed, 64)  # a key's list is trimmed when it holds more sends
        self._keep_daily = max(1, int(daily_limit * DAILY_KEEP_SHARE))  # a swept key's count kept from it on
        # key -> [daily count, send times inside its window, oldest first] for the keys that sent in about
        # the last window (sweeps drop the others)
        self._sending: dict[str, list[float]] = {}
        # key -> count this UTC day of the swept keys that sent at least _keep_daily; a key's list, if any,
        # is newer
        self._daily: dict[str, float] = {}
        self._blocked_until: dict[str, float] = {}
        self._slow: dict[str, tuple[float, float]] = {}  # key -> (rate, until): throttled by Amplitude
        self._day_start = 0.0  # the current UTC day is [_day_start, _day_end)
        self._day_end = 0.0
        self._next_sweep = 0.0  # every send so far was before it (sends happen before the next tick)
        self._next_tick = 0.0  # min(_next_sweep, _day_end): before it there is nothing to do

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

    def _tick(self, now: float) -> None:
        """A new UTC day clears the daily counts; idle keys are swept once per longest window."""
        if not self._day_start <= now < self._day_end:
            day = now // 86400
            self._day_start, self._day_end = day * 86400, (day + 1) * 86400
            self._daily.clear()
            for state in self._sending.values():
                state[0] = 0
        if now >= self._next_sweep:
            self._sweep(now)
        self._next_tick = min(self._next_sweep, self._day_end)

    def check(self, keys: tuple[str, ...], now: float) -> float:
        """What :meth:`admit` would answer at ``now``, without recording anything."""
        return self._verdicts((keys,), now, False, None)

    def admit(self, keys: tuple[str, ...], now: float) -> float:
        """Admit one event for ``keys`` at ``now`` (seconds), recording its send on every key, or say how
        long to wait (or that a daily quota is reached)."""
        return self._verdicts((keys,), now, True, None)

    def admit_many(self, keys_list: Sequence[tuple[str, ...]], now: float) -> list[float]:
        """:meth:`admit` for each of ``keys_list`` at ``now``, in order (each event admitted is recorded
        before the next is looked at): the verdicts, one per entry."""
        verdicts: list[float] = []
        if keys_list:  # no event, no look at the clock (a sweep due would not run either)
            self._verdicts(keys_list, now, True, verdicts.append)
        return verdicts

    # Complexity: the limiter's inner loop, run for every key of every event a request carries; its
    # state is bound to locals once per call, which functions per branch would undo (callgrind counts
    # instructions per event for it: docs/performance.md).
    def _verdicts(  # noqa: C901
        self,
        keys_list: Sequence[tuple[str, ...]],
        now: float,
        record: bool,
        emit: Callable[[float], None] | None,
    ) -> float:
        """The one body of :meth:`admit`, :meth:`check` and :meth:`admit_many`: the verdict of each of
        ``keys_list`` goes to ``emit``; the last one is returned. The clock is looked at and the state
        bound to locals once per call, not once per event."""
        if now >= self._next_tick or now < self._day_start:
            self._tick(now)  # the next tick is then after ``now``: one call serves every event at ``now``
        sending = self._sending
        daily = self._daily
        limit = self.daily_limit
        blocked = self._blocked_until
        slow = self._slow
        window_default = window = self._window
        allowed_default = allowed = self._allowed
        trim_at = self._trim_at
        verdict = ADMIT
        for keys in keys_list:
            verdict = ADMIT
            wait = 0.0
            for key in keys:
                state = sending.get(key)
                if state is None:
                    if daily.get(key, 0) >= limit:
                        verdict = DAILY_QUOTA
                        break
                elif state[0] >= limit:
                    verdict = DAILY_QUOTA
                    break
                if blocked:
                    until = blocked.get(key)
                    if until is not None:
                        if until > now:
                            if until - now > wait:
                                wait = until - now
                            continue
                        del blocked[key]
                if state is None:
                    continue
                if slow:  # Amplitude throttled some keys: this one may have a slower rate
                    slowed = slow.get(key)
                    if slowed is not None and slowed[1] > now:
                        window, allowed = self._shape(slowed[0])
                    else:
                        window, allowed = window_default, allowed_default
                if len(state) > allowed:  # ``allowed`` sends recorded: are they all still in the window?
                    _trim(state, now - window)
                    if len(state) > allowed:  # yes: room once the oldest of the last ``allowed`` leaves
                        room = state[len(state) - allowed] + window - now
                        if room > wait:
                            wait = room
            else:  # no key is over its daily limit
                if wait > 0.0:
                    verdict = max(wait, MIN_WAIT)
                elif record:
                    for key in keys:
                        state = sending.get(key)
                        if state is None:
                            sending[key] = [daily.get(key, 0) + 1, now]
                            continue
                        if len(state) > trim_at:  # forget the sends that left the window (memory only)
                            # The configured window serves a slowed key too: a longer window means a rate
                            # under 1/s, one send per window, and this one was admitted, so its others
                            # have all left.
                            _trim(state, now - window_default)
                        state[0] += 1
                        state.append(now)
            if emit is not None:
                emit(verdict)
        return verdict

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
        sending = self._sending
        if not self._blocked_until:
            return len(sending)
        return len(sending) + sum(1 for k in self._blocked_until if k not in sending)

    def _sweep(self, now: float) -> None:
        # A key whose last send left its window has nothing to remember but its daily count; nor has a
        # finished penalty.
        if self._slow:
            for key in [k for k, (_, until) in self._slow.items() if until <= now]:
                del self._slow[key]
        self._forget_idle(now)
        if self._blocked_until:
            for key in [k for k, until in self._blocked_until.items() if until <= now]:
                del self._blocked_until[key]
        self._next_sweep = now + SWEEP_SHARE * self._window

    def _forget_idle(self, now: float) -> None:
        """Forget the keys whose last send has left their window, but for a daily count worth keeping."""
        sending = self._sending
        cut = now - self._window
        # _idle_since, inlined: a call per key doubles the cost of a sweep (1.2 -> 2.2 ms for 30,000 keys).
        idle = [key for key, state in sending.items() if len(state) == 1 or state[-1] <= cut]
        slow = self._slow
        if slow:  # a slowed key's window is longer: it stays until that has passed too
            idle = [
                key
                for key in idle
                if key not in slow or _idle_since(sending[key], now - self._shape(slow[key][0])[0])
            ]
        keep = self._keep_daily
        daily = self._daily
        for key in idle:
            count = sending.pop(key)[0]
            if count >= keep:
                daily[key] = count


def _idle_since(state: list[float], cut: float) -> bool:
    """Whether a key's ``[daily count, send times...]`` has no send after ``cut`` (a list trimmed down to
    its count has none)."""
    return len(state) == 1 or state[-1] <= cut


def _trim(state: list[float], cut: float) -> None:
    """Drop the send times of a key's ``state`` that are at or before ``cut``."""
    end = 1
    while end < len(state) and state[end] <= cut:
        end += 1
    if end > 1:
        del state[1:end]


class ProjectLimiter:
    """One token bucket for the whole project: ``rate`` events per second, burst one second's worth.

    Amplitude also caps a project's events per second. :meth:`admit` lets a request of ``n`` events go
    when the bucket holds ``min(n, rate)`` tokens and then owes the rest, so a request bigger than a
    second's worth still goes and the next one waits longer. A ``rate`` of 0 means no limit.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at: float | None = None

    def admit(self, n: int, now: float) -> float:
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

    def admit(self, keys: tuple[str, ...], now: float) -> float:
        """Always admitted; nothing is recorded (memory stays flat)."""
        return ADMIT

    def admit_many(self, keys_list: Sequence[tuple[str, ...]], now: float) -> list[float]:
        """Every one admitted; nothing is recorded."""
        return [ADMIT] * len(keys_list)

    def penalize(self, key: str, seconds: float, now: float, threshold: float | None = None) -> None:
        """Nothing to slow down."""
