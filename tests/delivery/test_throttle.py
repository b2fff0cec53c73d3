"""Tests for consumer.delivery.throttle: sliding one-second windows per key with an injected clock (no network)."""

from __future__ import annotations

import heapq
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.delivery.throttle import (
    ADMIT,
    DAILY_KEEP_SHARE,
    DAILY_QUOTA,
    MIN_WAIT,
    SLOW_FOR,
    SWEEP_SHARE,
    WINDOW_GUARD,
    KeyLimiter,
    NoKeyLimit,
)
from consumer.events import limiter_keys

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def drive(limiter: KeyLimiter, arrivals: list[tuple[float, tuple[str, ...]]]) -> dict[str, list[float]]:
    """Offer every arrival to the limiter and again after each wait it names, in clock order.

    Returns the admission times per key.
    """
    admitted: dict[str, list[float]] = {}
    waiting = [(t, i, keys) for i, (t, keys) in enumerate(arrivals)]
    heapq.heapify(waiting)
    while waiting:
        t, i, keys = heapq.heappop(waiting)
        verdict = limiter.admit(keys, t)
        assert verdict != DAILY_QUOTA
        if verdict == ADMIT:
            for key in keys:
                admitted.setdefault(key, []).append(t)
        else:
            assert verdict > 0
            heapq.heappush(waiting, (t + verdict, i, keys))
    return admitted


def max_in_window(times: list[float], width: float) -> int:
    """The most ``times`` that fall in any half-open window ``[t, t + width)``."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + width:
            j += 1
        best = max(best, j - i)
    return best


def test_a_key_may_send_its_rate_at_once_then_waits_for_the_window() -> None:
    limiter = KeyLimiter(rate=4, daily_limit=1000)
    for _ in range(4):
        assert limiter.admit(("d:a",), 100.0) == ADMIT  # a device's events can share one request
    assert limiter.admit(("d:a",), 100.0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.admit(("d:a",), 100.5) == pytest.approx(0.5 + WINDOW_GUARD)
    assert limiter.admit(("d:a",), 101.0 + WINDOW_GUARD) == ADMIT  # the first send has left the window


def test_rates_under_one_per_second_space_single_events() -> None:
    limiter = KeyLimiter(rate=0.5, daily_limit=1000)
    assert limiter.admit(("d:a",), 100.0) == ADMIT
    assert limiter.admit(("d:a",), 101.0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.admit(("d:a",), 102.0 + WINDOW_GUARD) == ADMIT


@settings(max_examples=40, deadline=None)
@given(start=st.floats(min_value=T0, max_value=T0 * 1.1), rate=st.floats(min_value=0.5, max_value=2000))
def test_a_named_wait_always_moves_the_clock(start: float, rate: float) -> None:
    """At UNIX-time magnitudes ``now + wait`` must be a later instant, and at most one more short wait
    follows: otherwise a caller that re-arms a timer at ``now + wait`` spins at the same instant forever."""
    limiter = KeyLimiter(rate=rate, daily_limit=10**9)
    now = start
    while limiter.admit(("d:a",), now) == ADMIT:  # fill the window
        pass
    for _ in range(50):
        wait = limiter.admit(("d:a",), now)
        assert wait > 0
        assert now + wait > now
        now += wait
        extra = limiter.admit(("d:a",), now)
        if extra != ADMIT:  # a hair short of the window's end after rounding
            assert extra == MIN_WAIT
            now += extra
            assert limiter.admit(("d:a",), now) == ADMIT
        while limiter.admit(("d:a",), now) == ADMIT:  # use the rest of the window
            pass


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([1.0, 5.0, 30.0, 1000.0]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=200),
    keys=st.lists(st.sampled_from(["d:a", "d:b", "u:x"]), min_size=1, max_size=200),
)
def test_no_window_ever_sees_more_than_the_rate(rate: float, gaps: list[float], keys: list[str]) -> None:
    """Whatever the arrivals, no one-second window holds more than ``rate`` admissions of a key, so
    Amplitude's 1 s and 30 s windows hold at most the rate; wider windows at most rate x ceil(width)."""
    limiter = KeyLimiter(rate=rate, daily_limit=10**9)
    t = T0
    arrivals: list[tuple[float, tuple[str, ...]]] = []
    for gap, key in zip(gaps, keys * (len(gaps) // len(keys) + 1), strict=False):
        t += gap
        # device events also carry the shared user "u:x", as Amplitude counts both
        arrivals.append((t, (key, "u:y") if key != "u:x" else (key,)))
    admitted = drive(limiter, arrivals)
    assert sum(len(v) for k, v in admitted.items() if k != "u:y") == len(arrivals)
    for times in admitted.values():
        assert max_in_window(times, 1.0) <= rate
        for width in (2.5, 30.0):
            assert max_in_window(times, width) <= rate * math.ceil(width)
        assert max_in_window(times, 30.0) / 30.0 <= rate


def test_both_keys_of_an_event_must_have_a_token() -> None:
    """A user on two devices is limited as a user: the second device waits for the user's token."""
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    assert limiter.admit(("d:a", "u:x"), T0) == ADMIT
    assert limiter.admit(("d:b", "u:x"), T0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.admit(("d:b",), T0) == ADMIT  # the device alone has room
    assert limiter.admit(("d:c", "u:y"), T0) == ADMIT  # other identities are untouched


def test_a_refused_event_consumes_nothing() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    assert limiter.admit(("d:a", "u:x"), T0) == ADMIT
    # d:b has a token but u:x has not: nothing is taken from d:b
    assert limiter.admit(("d:b", "u:x"), T0) > 0
    assert limiter.admit(("d:b",), T0) == ADMIT


def test_check_answers_like_admit_without_consuming() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    for _ in range(3):
        assert limiter.check(("d:a",), T0) == ADMIT
    assert limiter.admit(("d:a",), T0) == ADMIT
    assert limiter.check(("d:a",), T0 + 0.25) == pytest.approx(0.75 + WINDOW_GUARD)


def test_daily_quota_then_a_new_utc_day() -> None:
    limiter = KeyLimiter(rate=1000, daily_limit=3)
    day_end = (T0 // 86400 + 1) * 86400
    t = day_end - 10
    for _ in range(3):
        assert limiter.admit(("d:a", "u:x"), t) == ADMIT
        t += 1
    assert limiter.admit(("d:a",), t) == DAILY_QUOTA
    assert limiter.admit(("d:b", "u:x"), t) == DAILY_QUOTA  # the user is over too
    assert limiter.admit(("d:b",), t) == ADMIT
    assert limiter.check(("d:a",), day_end) == ADMIT  # counts start again at 00:00 UTC
    assert limiter.admit(("d:a",), day_end) == ADMIT


def test_daily_quota_wins_over_a_rate_wait() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1)
    assert limiter.admit(("d:a",), T0) == ADMIT
    assert limiter.admit(("d:a",), T0) == DAILY_QUOTA


def test_penalize_holds_one_key_back_then_it_resumes_slower() -> None:
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    assert limiter.admit(("d:hot",), T0) == ADMIT
    limiter.penalize("d:hot", 30.0, T0)
    assert limiter.blocked_keys(T0) == 1
    assert limiter.admit(("d:hot", "u:x"), T0 + 1) == pytest.approx(29.0)
    assert limiter.admit(("d:cold", "u:x"), T0 + 1) == ADMIT  # nobody else is slowed
    # When the penalty ends the key sends again at the slowed rate (half of 30/s: no threshold given).
    sent = 0
    while limiter.admit(("d:hot",), T0 + 30) == ADMIT:
        sent += 1
    assert sent == 15
    assert limiter.blocked_keys(T0 + 31) == 0


def test_a_shorter_penalty_never_shortens_a_longer_one() -> None:
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    limiter.penalize("d:hot", 30.0, T0)
    limiter.penalize("d:hot", 1.0, T0 + 1)
    assert limiter.admit(("d:hot",), T0 + 5) == pytest.approx(25.0)


def test_idle_keys_and_ended_penalties_are_swept() -> None:
    """Memory follows the keys active in the last moment, not every key ever seen."""
    limiter = KeyLimiter(rate=30, daily_limit=10**9)
    t = T0
    for i in range(20_000):  # 20 000 distinct devices over 200 s
        t += 0.01
        assert limiter.admit((f"d:{i}",), t) == ADMIT
        assert limiter.active_keys() <= 250  # the keys of the last window and a sweep interval
    for i in range(1000):
        limiter.penalize(f"d:p{i}", 2.0, t)
    assert limiter.active_keys() >= 1000
    limiter.admit(("d:late",), t + 10 + SLOW_FOR)  # penalties and their slowdowns both over
    assert limiter.active_keys() <= 2


def test_sweeping_never_lets_a_key_through_early() -> None:
    limiter = KeyLimiter(rate=0.5, daily_limit=1000)  # a two-second window
    assert limiter.admit(("d:a",), T0) == ADMIT
    # a sweep runs here (more than a second later) while d:a's window is still open
    assert limiter.admit(("d:b",), T0 + 1.5) == ADMIT
    assert limiter.admit(("d:a",), T0 + 1.5) == pytest.approx(0.5 + WINDOW_GUARD, abs=1e-6)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        KeyLimiter(rate=0, daily_limit=1)


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        ({"device_id": "D", "user_id": "U"}, ("d:D", "u:U")),
        ({"device_id": "D"}, ("d:D",)),
        ({"user_id": "U"}, ("u:U",)),
        ({"device_id": "", "user_id": "U"}, ("u:U",)),
    ],
)
def test_limiter_keys(event: dict[str, object], keys: tuple[str, ...]) -> None:
    assert limiter_keys(event) == keys


def test_a_key_amplitude_throttled_is_slowed_below_its_threshold_for_a_while() -> None:
    limiter = KeyLimiter(rate=100.0, daily_limit=10**9)
    now = 1_700_000_000.0
    limiter.penalize("d:hot", 30.0, now, threshold=30.0)
    assert limiter.rate_of("d:hot", now) == pytest.approx(27.0)
    assert limiter.rate_of("d:cold", now) == 100.0
    # After the penalty, admissions of the hot key are paced at 27/s: 28 events need just over a second.
    t = now + 30.0
    admitted: list[float] = []
    while len(admitted) < 28:
        wait = limiter.admit(("d:hot",), t)
        if wait == 0.0:
            admitted.append(t)
        else:
            t += wait
    assert admitted[-1] - admitted[0] >= 27 / 27.0 - 1e-6
    # Without a threshold the rate halves; the slowdown ends after SLOW_FOR.
    limiter.penalize("u:other", 1.0, now)
    assert limiter.rate_of("u:other", now) == 50.0
    assert limiter.rate_of("u:other", now + 1.0 + SLOW_FOR + 1) == 100.0


class Model:
    """The limiter's rules with nothing forgotten: every send kept, no sweeps, no trimming."""

    def __init__(self, rate: float, daily_limit: int) -> None:
        self.rate, self.daily_limit = rate, daily_limit
        self.sends: dict[str, list[float]] = {}
        self.daily: dict[str, int] = {}
        self.day = -1.0
        self.blocked: dict[str, float] = {}
        self.slow: dict[str, tuple[float, float]] = {}

    def rate_of(self, key: str, now: float) -> float:
        slow = self.slow.get(key)
        return slow[0] if slow is not None and slow[1] > now else self.rate

    def check(self, keys: tuple[str, ...], now: float) -> float:
        if now // 86400 != self.day:
            self.day, self.daily = now // 86400, {}
        wait = 0.0
        for key in keys:
            if self.daily.get(key, 0) >= self.daily_limit:
                return DAILY_QUOTA
            until = self.blocked.get(key, -math.inf)
            if until > now:
                wait = max(wait, until - now)
                continue
            window, allowed = KeyLimiter._shape(self.rate_of(key, now))
            recent = [t for t in self.sends.get(key, []) if t > now - window]
            if len(recent) >= allowed:
                wait = max(wait, recent[len(recent) - allowed] + window - now)
        return max(wait, MIN_WAIT) if wait > 0.0 else ADMIT

    def admit(self, keys: tuple[str, ...], now: float) -> float:
        verdict = self.check(keys, now)
        if verdict == ADMIT:
            for key in keys:
                self.sends.setdefault(key, []).append(now)
                self.daily[key] = self.daily.get(key, 0) + 1
        return verdict

    def penalize(self, key: str, seconds: float, now: float, threshold: float | None = None) -> None:
        self.blocked[key] = max(self.blocked.get(key, 0.0), now + seconds)
        current = self.rate_of(key, now)
        slower = 0.9 * threshold if threshold else current / 2
        self.slow[key] = (max(min(current, slower), 0.01), now + seconds + SLOW_FOR)

    def blocked_keys(self, now: float) -> int:
        return sum(1 for until in self.blocked.values() if until > now)


KEY_SETS = [("d:a", "u:x"), ("d:b", "u:x"), ("d:c", "u:y"), ("d:a",), ("u:y",), ("d:d",)]


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 30.0]),
    daily_limit=st.sampled_from([3, 8, 10**9]),
    steps=st.lists(
        st.tuples(
            st.one_of(
                st.just(0.0),
                st.floats(min_value=0.0, max_value=1.5),
                st.sampled_from([1.1, 2.1, 2.2, 4.5, 30.0]),
            ),
            st.sampled_from(["admit", "admit", "admit", "check", "penalize"]),
            st.sampled_from(KEY_SETS),
            st.sampled_from([0.5, 10.0, 40.0]),  # 429 thresholds: a slowed key never goes under 0.45/s
            st.floats(min_value=2.5, max_value=40.0),  # penalties outlast the longest window then
        ),
        min_size=1,
        max_size=250,
    ),
)
def test_the_limiter_answers_like_a_model_that_forgets_nothing(
    rate: float, daily_limit: int, steps: list[tuple[float, str, tuple[str, ...], float, float]]
) -> None:
    """Sweeps, generations, trimming and the cached shape only save memory and time: on a clock that
    only moves forward (across a UTC midnight here) every answer is the one of a model that keeps every
    send. (Penalties last longer than the slowest window, as Amplitude's do, so what the limiter forgot
    before a key slowed down cannot matter.)"""
    limiter = KeyLimiter(rate=rate, daily_limit=daily_limit)
    model = Model(rate, daily_limit)
    now = (T0 // 86400 + 1) * 86400 - 20.0  # 20 s before midnight
    for gap, op, keys, threshold, seconds in steps:
        now += gap
        if op == "penalize":
            limiter.penalize(keys[0], seconds, now, threshold)
            model.penalize(keys[0], seconds, now, threshold)
        else:
            assert getattr(limiter, op)(keys, now) == getattr(model, op)(keys, now), (op, keys, now)
        assert limiter.blocked_keys(now) == model.blocked_keys(now)
        for key in keys:
            assert limiter.rate_of(key, now) == model.rate_of(key, now)


def test_a_key_swept_while_idle_keeps_its_daily_count() -> None:
    limiter = KeyLimiter(rate=30, daily_limit=3)
    assert limiter.admit(("d:a", "u:x"), T0) == ADMIT
    assert limiter.admit(("d:a",), T0) == ADMIT
    t = T0
    for i in range(1000):  # ten seconds of other keys: d:a and u:x are swept out of memory
        t += 0.01
        assert limiter.admit((f"d:{i}",), t) == ADMIT
    assert limiter.active_keys() <= 250
    assert limiter.check(("d:a",), t) == ADMIT
    assert limiter.admit(("d:a", "u:x"), t) == ADMIT  # d:a's third, u:x's second
    assert limiter.admit(("d:a",), t + 5) == DAILY_QUOTA
    assert limiter.admit(("u:x",), t + 5) == ADMIT
    assert limiter.admit(("u:x",), t + 10) == DAILY_QUOTA


def test_a_swept_key_keeps_its_daily_count_only_from_a_share_of_the_limit_on() -> None:
    """Daily counts of idle keys are kept from DAILY_KEEP_SHARE of the limit on (memory follows the keys
    that send a lot); a quieter key starts again from zero, never above what it sent."""
    limit = 300
    keep = int(limit * DAILY_KEEP_SHARE)
    assert keep == 3
    limiter = KeyLimiter(rate=10_000, daily_limit=limit)
    for _ in range(keep - 1):
        assert limiter.admit(("d:quiet",), T0) == ADMIT
    for _ in range(keep):
        assert limiter.admit(("d:busy",), T0) == ADMIT
    t = T0 + 5.0  # two sweeps later: both keys are out of the windows' memory
    assert limiter.admit(("d:other",), t) == ADMIT
    assert limiter.admit(("d:late",), t + 3.0) == ADMIT
    assert limiter.active_keys() == 1

    def sends_until_quota(key: str) -> int:
        n = 0
        while limiter.admit((key,), t + 4.0) == ADMIT:
            n += 1
        return n

    assert sends_until_quota("d:quiet") == limit  # forgotten: counts from zero again
    assert sends_until_quota("d:busy") == limit - keep  # kept


def test_a_key_still_counts_after_a_sweep_that_keeps_it() -> None:
    """A key whose sends are still in its window stays limited across the sweeps in between."""
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    assert limiter.admit(("d:x",), T0) == ADMIT
    assert limiter.admit(("d:a",), T0 + 1.0) == ADMIT
    assert limiter.admit(("d:b",), T0 + 1.2) == ADMIT  # a sweep runs: a window since the first one
    assert limiter.admit(("d:a",), T0 + 1.5) == pytest.approx(0.6)
    assert limiter.admit(("d:c",), T0 + 1.9) == ADMIT
    assert limiter.admit(("d:a",), T0 + 2.0) == pytest.approx(0.1)
    assert limiter.admit(("d:a",), T0 + 2.1 + 1e-6) == ADMIT


def test_sweeping_waits_for_the_window_of_a_slowed_key() -> None:
    """A key Amplitude slowed under 1/s has a window longer than a second: sweeps keep it that long."""
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    limiter.penalize("d:a", 3.0, T0, threshold=0.5)  # 0.45/s: one event per 2.32 s
    window = 1 / 0.45 + WINDOW_GUARD
    assert limiter.admit(("d:a",), T0 + 3.0) == ADMIT
    t = T0 + 3.0
    i = 0
    while t + 0.02 < T0 + 3.0 + window:  # other keys keep sweeps coming
        t += 0.02
        i += 1
        assert limiter.admit((f"d:other{i}",), t) == ADMIT
        assert limiter.check(("d:a",), t) == pytest.approx(T0 + 3.0 + window - t)
    assert limiter.admit(("d:a",), T0 + 3.0 + window) == ADMIT


def test_memory_follows_the_keys_of_the_last_window_and_a_sweep() -> None:
    """Busy keys stay while they send; keys idle for a window are gone a sweep later; a long pause empties
    all."""
    limiter = KeyLimiter(rate=1000, daily_limit=10**9)
    t = T0
    for i in range(1000):  # 10 s: ten busy keys, and 100 new keys a second
        t = T0 + i * 0.01
        assert limiter.admit((f"d:busy{i % 10}", f"d:{i}"), t) == ADMIT
        assert limiter.active_keys() <= 10 + 100 * (1 + SWEEP_SHARE) * (1.0 + WINDOW_GUARD) + 2
    assert limiter.active_keys() >= 10 + 100
    assert limiter.admit(("d:late",), t + 2 * (1.0 + WINDOW_GUARD) + 0.01) == ADMIT
    assert limiter.active_keys() == 1


def test_a_slowed_key_keeps_its_long_window_without_holding_every_other_key() -> None:
    """A key slowed to one event per 100 s stays limited for its whole window, while idle keys still go
    a window and a sweep after their last send."""
    limiter = KeyLimiter(rate=30, daily_limit=10**9)
    limiter.penalize("d:slow", 0.0, T0, threshold=0.01 / 0.9)  # 0.01/s: a 100.1 s window
    assert limiter.admit(("d:slow",), T0) == ADMIT
    t = T0
    for i in range(3000):  # 30 s of 100 new keys a second
        t = T0 + i * 0.01
        assert limiter.admit((f"d:{i}",), t) == ADMIT
        assert limiter.active_keys() <= 1 + 100 * (1 + SWEEP_SHARE) * (1.0 + WINDOW_GUARD) + 2
    assert limiter.check(("d:slow",), t) == pytest.approx(T0 + 100 + WINDOW_GUARD - t)


def test_new_utc_day_resets_counts_held_in_memory_and_swept() -> None:
    limiter = KeyLimiter(rate=1000, daily_limit=2)
    day_end = (T0 // 86400 + 1) * 86400
    for key, at in (("d:swept", day_end - 10), ("d:old", day_end - 1.5), ("d:young", day_end - 0.3)):
        assert limiter.admit((key,), at) == ADMIT
        assert limiter.admit((key,), at) == ADMIT
        assert limiter.admit((key,), at) == DAILY_QUOTA
    for key in ("d:swept", "d:old", "d:young"):
        assert limiter.admit((key,), day_end) == ADMIT
        assert limiter.admit((key,), day_end) == ADMIT
        assert limiter.admit((key,), day_end) == DAILY_QUOTA


def test_a_clock_that_steps_back_never_lets_a_key_through_early() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    assert limiter.admit(("d:a",), T0) == ADMIT
    assert limiter.admit(("d:a",), T0 - 0.5) == pytest.approx(1.6)
    assert limiter.admit(("d:a",), T0 + 1.0) == pytest.approx(0.1)


def test_a_clock_stepping_back_over_midnight_starts_that_day_afresh() -> None:
    """The day is the one of the clock's latest reading, whichever way it moved (counts are not kept
    per day)."""
    limiter = KeyLimiter(rate=1000, daily_limit=1)
    day_end = (T0 // 86400 + 1) * 86400
    assert limiter.admit(("d:a",), day_end + 1) == ADMIT
    assert limiter.admit(("d:a",), day_end - 1) == ADMIT
    assert limiter.admit(("d:a",), day_end - 1) == DAILY_QUOTA


def test_a_key_slowed_after_it_sent_is_remembered_for_its_longer_window() -> None:
    """A 429 slows a key down after its sends: the sweep due next waits for the longer window."""
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    assert limiter.admit(("d:x",), T0) == ADMIT
    assert limiter.admit(("d:a",), T0 + 1.0) == ADMIT
    assert limiter.admit(("d:y",), T0 + 1.1) == ADMIT  # a sweep
    limiter.penalize("d:a", 0.1, T0 + 1.2, threshold=0.5)  # 0.45/s from T0 + 1.3: a 2.32 s window
    assert limiter.admit(("d:z",), T0 + 2.2) == ADMIT  # a sweep is due: d:a's window is still open
    assert limiter.admit(("d:a",), T0 + 2.5) == pytest.approx(1.0 + 1 / 0.45 + WINDOW_GUARD - 2.5)


MANY_KEY_SETS = [*KEY_SETS, ("d:a", "d:a"), ("u:x", "d:b", "d:c")]  # a repeated key, three keys


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([1.0, 2.0, 3.0, 5.0]),
    daily_limit=st.sampled_from([2, 5, 12]),
    steps=st.lists(
        st.tuples(
            st.one_of(
                st.just(0.0), st.floats(min_value=0.0, max_value=1.5), st.sampled_from([1.1, 2.2, 30.0])
            ),
            st.sampled_from(["request", "request", "request", "penalize"]),
            st.lists(st.sampled_from(MANY_KEY_SETS), max_size=12),
            st.sampled_from([None, 0.5, 2.0]),  # 429 thresholds (none: the rate halves)
            st.floats(min_value=0.1, max_value=5.0),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_admit_many_answers_and_records_like_one_admit_after_another(
    rate: float, daily_limit: int, steps: list[tuple[float, str, list[tuple[str, ...]], float | None, float]]
) -> None:
    """A request's verdicts from one call are those of an :meth:`admit` per event in order, across
    sweeps, a UTC midnight, penalties and daily limits, and leave the same state behind."""
    many = KeyLimiter(rate=rate, daily_limit=daily_limit)
    one = KeyLimiter(rate=rate, daily_limit=daily_limit)
    now = (T0 // 86400 + 1) * 86400 - 20.0  # 20 s before midnight
    for gap, op, request, threshold, seconds in steps:
        now += gap
        if op == "penalize":
            for limiter in (many, one):
                limiter.penalize(request[0][0] if request else "d:a", seconds, now, threshold)
        else:
            assert many.admit_many(request, now) == [one.admit(keys, now) for keys in request], (request, now)
        assert many.active_keys() == one.active_keys()
        assert many.blocked_keys(now) == one.blocked_keys(now)
        assert [many.check(keys, now) for keys in MANY_KEY_SETS] == [
            one.check(keys, now) for keys in MANY_KEY_SETS
        ]
    for keys in MANY_KEY_SETS * 3:  # what each remembers shows in what it admits next
        now += 0.05
        assert many.admit(keys, now) == one.admit(keys, now)
        assert many.active_keys() == one.active_keys()


def test_admit_many_records_each_admitted_event_before_the_next() -> None:
    limiter = KeyLimiter(rate=2, daily_limit=3)
    waits = limiter.admit_many([("d:a",), ("d:a", "u:x"), ("d:a",), ("u:x",)], T0)
    assert waits[:2] == [ADMIT, ADMIT]
    assert waits[2] == pytest.approx(1.0 + WINDOW_GUARD)  # d:a's two tokens went to the first two
    assert waits[3] == ADMIT
    assert limiter.admit_many([("u:x",), ("u:x",)], T0 + 5) == [ADMIT, DAILY_QUOTA]
    assert limiter.admit_many([], T0 + 5) == []


def test_no_key_limit_admits_every_event_of_a_request() -> None:
    assert NoKeyLimit().admit_many([("d:a",), ("d:a",), ("u:x",)], T0) == [ADMIT] * 3
