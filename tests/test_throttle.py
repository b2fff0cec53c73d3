"""Tests for consumer.throttle: sliding one-second windows per key with an injected clock (no network)."""

from __future__ import annotations

import heapq
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.throttle import ADMIT, DAILY_QUOTA, MIN_WAIT, SLOW_FOR, WINDOW_GUARD, KeyLimiter, limiter_keys

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
        verdict = limiter.take(keys, t)
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
        assert limiter.take(("d:a",), 100.0) == ADMIT  # a device's events can share one request
    assert limiter.take(("d:a",), 100.0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.take(("d:a",), 100.5) == pytest.approx(0.5 + WINDOW_GUARD)
    assert limiter.take(("d:a",), 101.0 + WINDOW_GUARD) == ADMIT  # the first send has left the window


def test_rates_under_one_per_second_space_single_events() -> None:
    limiter = KeyLimiter(rate=0.5, daily_limit=1000)
    assert limiter.take(("d:a",), 100.0) == ADMIT
    assert limiter.take(("d:a",), 101.0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.take(("d:a",), 102.0 + WINDOW_GUARD) == ADMIT


@settings(max_examples=40, deadline=None)
@given(start=st.floats(min_value=T0, max_value=T0 * 1.1), rate=st.floats(min_value=0.5, max_value=2000))
def test_a_named_wait_always_moves_the_clock(start: float, rate: float) -> None:
    """At UNIX-time magnitudes ``now + wait`` must be a later instant, and at most one more short wait
    follows: otherwise a caller that re-arms a timer at ``now + wait`` spins at the same instant forever."""
    limiter = KeyLimiter(rate=rate, daily_limit=10**9)
    now = start
    while limiter.take(("d:a",), now) == ADMIT:  # fill the window
        pass
    for _ in range(50):
        wait = limiter.take(("d:a",), now)
        assert wait > 0
        assert now + wait > now
        now += wait
        extra = limiter.take(("d:a",), now)
        if extra != ADMIT:  # a hair short of the window's end after rounding
            assert extra == MIN_WAIT
            now += extra
            assert limiter.take(("d:a",), now) == ADMIT
        while limiter.take(("d:a",), now) == ADMIT:  # use the rest of the window
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
    assert limiter.take(("d:a", "u:x"), T0) == ADMIT
    assert limiter.take(("d:b", "u:x"), T0) == pytest.approx(1.0 + WINDOW_GUARD)
    assert limiter.take(("d:b",), T0) == ADMIT  # the device alone has room
    assert limiter.take(("d:c", "u:y"), T0) == ADMIT  # other identities are untouched


def test_a_refused_event_consumes_nothing() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    assert limiter.take(("d:a", "u:x"), T0) == ADMIT
    # d:b has a token but u:x has not: nothing is taken from d:b
    assert limiter.take(("d:b", "u:x"), T0) > 0
    assert limiter.take(("d:b",), T0) == ADMIT


def test_check_answers_like_take_without_consuming() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1000)
    for _ in range(3):
        assert limiter.check(("d:a",), T0) == ADMIT
    assert limiter.take(("d:a",), T0) == ADMIT
    assert limiter.check(("d:a",), T0 + 0.25) == pytest.approx(0.75 + WINDOW_GUARD)


def test_daily_quota_then_a_new_utc_day() -> None:
    limiter = KeyLimiter(rate=1000, daily_limit=3)
    day_end = (T0 // 86400 + 1) * 86400
    t = day_end - 10
    for _ in range(3):
        assert limiter.take(("d:a", "u:x"), t) == ADMIT
        t += 1
    assert limiter.take(("d:a",), t) == DAILY_QUOTA
    assert limiter.take(("d:b", "u:x"), t) == DAILY_QUOTA  # the user is over too
    assert limiter.take(("d:b",), t) == ADMIT
    assert limiter.check(("d:a",), day_end) == ADMIT  # counts start again at 00:00 UTC
    assert limiter.take(("d:a",), day_end) == ADMIT


def test_daily_quota_wins_over_a_rate_wait() -> None:
    limiter = KeyLimiter(rate=1, daily_limit=1)
    assert limiter.take(("d:a",), T0) == ADMIT
    assert limiter.take(("d:a",), T0) == DAILY_QUOTA


def test_penalize_holds_one_key_back_then_it_resumes_slower() -> None:
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    assert limiter.take(("d:hot",), T0) == ADMIT
    limiter.penalize("d:hot", 30.0, T0)
    assert limiter.blocked_keys(T0) == 1
    assert limiter.take(("d:hot", "u:x"), T0 + 1) == pytest.approx(29.0)
    assert limiter.take(("d:cold", "u:x"), T0 + 1) == ADMIT  # nobody else is slowed
    # When the penalty ends the key sends again at the slowed rate (half of 30/s: no threshold given).
    sent = 0
    while limiter.take(("d:hot",), T0 + 30) == ADMIT:
        sent += 1
    assert sent == 15
    assert limiter.blocked_keys(T0 + 31) == 0


def test_a_shorter_penalty_never_shortens_a_longer_one() -> None:
    limiter = KeyLimiter(rate=30, daily_limit=1000)
    limiter.penalize("d:hot", 30.0, T0)
    limiter.penalize("d:hot", 1.0, T0 + 1)
    assert limiter.take(("d:hot",), T0 + 5) == pytest.approx(25.0)


def test_idle_keys_and_ended_penalties_are_swept() -> None:
    """Memory follows the keys active in the last moment, not every key ever seen."""
    limiter = KeyLimiter(rate=30, daily_limit=10**9)
    t = T0
    for i in range(20_000):  # 20 000 distinct devices over 200 s
        t += 0.01
        assert limiter.take((f"d:{i}",), t) == ADMIT
        assert limiter.active_keys() <= 250  # the keys of the last window and a sweep interval
    for i in range(1000):
        limiter.penalize(f"d:p{i}", 2.0, t)
    assert limiter.active_keys() >= 1000
    limiter.take(("d:late",), t + 10 + SLOW_FOR)  # penalties and their slowdowns both over
    assert limiter.active_keys() <= 2


def test_sweeping_never_lets_a_key_through_early() -> None:
    limiter = KeyLimiter(rate=0.5, daily_limit=1000)  # a two-second window
    assert limiter.take(("d:a",), T0) == ADMIT
    # a sweep runs here (more than a second later) while d:a's window is still open
    assert limiter.take(("d:b",), T0 + 1.5) == ADMIT
    assert limiter.take(("d:a",), T0 + 1.5) == pytest.approx(0.5 + WINDOW_GUARD, abs=1e-6)


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
    admitted = []
    while len(admitted) < 28:
        wait = limiter.take(("d:hot",), t)
        if wait == 0.0:
            admitted.append(t)
        else:
            t += wait
    assert admitted[-1] - admitted[0] >= 27 / 27.0 - 1e-6
    # Without a threshold the rate halves; the slowdown ends after SLOW_FOR.
    limiter.penalize("u:other", 1.0, now)
    assert limiter.rate_of("u:other", now) == 50.0
    assert limiter.rate_of("u:other", now + 1.0 + SLOW_FOR + 1) == 100.0
