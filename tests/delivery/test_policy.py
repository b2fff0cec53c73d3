"""Tests for consumer.delivery.policy: each outcome of a request -> the decision, with no network.

The back-off strategy is injected without jitter where a test asserts exact delays; the default one
(with jitter) is checked against its bounds.
"""

from __future__ import annotations

import heapq
from typing import Any

import pytest
from tenacity import RetryCallState, Retrying, wait_exponential
from tenacity.wait import wait_base

from consumer.delivery.policy import Backoff, Retry, RetryPolicy, named_keys
from consumer.events import Pending, Position
from consumer.sinks.base import Delivered, Fatal, Rejected, RetryLater, Throttled, TooLarge

NOW = 1000.0


def item(i: int, device: str | None = None, user: str | None = None, first: float = NOW) -> Pending:
    keys = tuple(k for k in (device and f"d:{device}", user and f"u:{user}") if k) or (f"d:dev-{i}",)
    return Pending.alone("e", Position("t.avro", 0, i), b'{"n":%d}' % i, first, keys)


def policy(**kw: Any) -> RetryPolicy:
    args: dict[str, Any] = {"retry_window": 3600.0, "max_backoff": 30.0, "penalty": 5.0}
    args.update(kw)
    return RetryPolicy(**args)


def exact(max_backoff: float = 30.0) -> RetryPolicy:
    """A policy whose back-off has no jitter: 0.5, 1, 2, 4, ... seconds, capped."""
    return policy(max_backoff=max_backoff, wait=wait_exponential(multiplier=0.5, max=max_backoff))


def test_delivered_ends_the_batch_and_proves_the_credentials() -> None:
    batch = [item(0), item(1)]
    d = policy().decide(batch, 0, Delivered(), NOW)
    assert d.delivered == batch
    assert d.credentials is False
    assert (d.dead, d.resend, d.held, d.retry) == ([], [], {}, None)


def test_rejected_dead_letters_exactly_those_and_resends_the_rest_at_once() -> None:
    batch = [item(i) for i in range(4)]
    d = policy().decide(batch, 2, Rejected({3: "invalid_time", 1: "missing_field"}), NOW)
    assert d.dead == [(batch[1], "missing_field", ""), (batch[3], "invalid_time", "")]
    assert d.resend == [([batch[0], batch[2]], 2)]
    assert d.delivered == [] and d.retry is None and d.credentials is False


def test_rejected_everything_resends_nothing() -> None:
    batch = [item(0)]
    d = policy().decide(batch, 0, Rejected({0: "bad"}), NOW)
    assert d.dead == [(batch[0], "bad", "")]
    assert d.resend == []


def test_too_large_splits_in_halves_in_order() -> None:
    batch = [item(i) for i in range(5)]
    d = policy().decide(batch, 1, TooLarge(), NOW)
    assert d.resend == [(batch[:2], 1), (batch[2:], 1)]
    assert d.dead == [] and d.credentials is None


def test_too_large_for_a_single_event_dead_letters_it() -> None:
    batch = [item(0)]
    d = policy().decide(batch, 0, TooLarge(), NOW)
    assert d.dead == [(batch[0], "payload_too_large", "413 for a single event")]
    assert d.resend == []


def test_throttled_holds_back_the_named_dead_letters_the_quota_and_resends_the_rest() -> None:
    hot = item(0, device="hot", user="u0")
    by_user = item(1, device="d1", user="loud")
    over = item(2, device="quota")
    listed = item(3, device="d3", user="u3")
    calm = item(4, device="calm")
    outcome = Throttled(
        devices=frozenset({"hot"}),
        users=frozenset({"loud"}),
        events=frozenset({3}),
        quota_devices=frozenset({"quota"}),
        eps_threshold=10.0,
    )
    d = policy(penalty=7.0).decide([hot, by_user, over, listed, calm], 4, outcome, NOW)
    assert d.dead == [(over, "daily_quota", "")]
    assert d.held == {"d:hot": [hot], "d:d1": [by_user], "d:d3": [listed]}
    assert d.hold_until == NOW + 7.0
    # named keys only; an event listed only by index penalizes every key it has
    assert d.penalties == [
        ("d:hot", 7.0, 10.0),
        ("u:loud", 7.0, 10.0),
        ("d:d3", 7.0, 10.0),
        ("u:u3", 7.0, 10.0),
    ]
    assert d.resend == [([calm], 0)]
    assert d.credentials is False


def test_throttled_uses_the_servers_retry_after() -> None:
    hot = item(0, device="hot")
    d = policy(penalty=7.0).decide([hot], 0, Throttled(devices=frozenset({"hot"}), after=2.5), NOW)
    assert d.hold_until == NOW + 2.5
    assert d.penalties == [("d:hot", 2.5, None)]


def test_retry_later_backs_off_exponentially_up_to_the_cap() -> None:
    p = exact(max_backoff=3.0)
    delays = []
    for attempt in range(4):
        now = NOW + 100 * attempt  # each answer comes after the gate: a probe
        d = p.decide([item(0)], attempt, RetryLater("http_503"), now)
        assert d.retry is not None
        assert d.retry.attempt == attempt + 1
        assert d.retry.reason == "http_503"
        delays.append(d.retry.due - now)
    assert delays == [0.5, 1.0, 2.0, 3.0]


def test_retry_later_honours_retry_after_uncapped() -> None:
    d = exact(max_backoff=3.0).decide([item(0)], 0, RetryLater("http_503", after=12.0), NOW)
    assert d.retry is not None and d.retry.due == NOW + 12.0 and d.retry.after == 12.0


def test_retry_later_never_goes_past_the_retry_window() -> None:
    batch = [item(0, first=NOW - 50), item(1, first=NOW - 99)]
    d = policy(retry_window=100.0).decide(batch, 0, RetryLater("timeout", after=30.0), NOW)
    assert d.retry is not None and d.retry.due == pytest.approx(NOW + 1.0)


def test_retries_come_due_in_time_order_then_in_the_order_they_were_decided() -> None:
    """The engine keeps retries on a heap: they order by due time, ties by decision order, and their
    batches are never compared (lists of events have no order)."""
    p = policy(retry_window=100.0)
    decided = []
    for i, (after, status) in enumerate([(5.0, 503), (1.0, 0), (5.0, 502), (1.0, 504)]):
        d = p.decide([item(i)], 0, RetryLater(f"http_{status}", after=after), NOW, status)
        assert d.retry is not None and d.retry.last_answer == (f"http_{status}", status)
        decided.append(d.retry)
    heap: list[Retry] = []
    for retry in decided:
        heapq.heappush(heap, retry)
    popped = [heapq.heappop(heap) for _ in decided]
    assert [r.batch[0].position.offset for r in popped] == [1, 3, 0, 2]


def test_retry_later_flags_credentials() -> None:
    assert policy().decide([item(0)], 0, RetryLater("http_401", credentials=True), NOW).credentials is True
    assert policy().decide([item(0)], 0, RetryLater("http_500"), NOW).credentials is None


def test_a_failing_destination_is_probed_one_at_a_time_until_an_answer_about_events() -> None:
    p = exact()
    assert p.slots(NOW, 8) == 8
    first = p.decide([item(0)], 0, RetryLater("http_503"), NOW)
    assert first.retry is not None
    assert p.gate == first.retry.due
    assert p.slots(NOW, 8) == 0  # nothing starts before the back-off has passed
    # a request that was already in flight fails too: not a probe, the back-off does not grow
    p.decide([item(1)], 0, RetryLater("http_503"), NOW + 0.1)
    assert p.failures == 1
    assert p.slots(p.gate, 8) == 1  # then one probe at a time
    probe = p.decide([item(0)], 1, RetryLater("http_503"), p.gate)
    assert p.failures == 2 and probe.retry is not None and probe.retry.after == 1.0
    p.decide([item(0)], 2, TooLarge(), p.gate)  # an answer about events reopens full concurrency
    assert (p.failures, p.gate, p.slots(NOW, 8)) == (0, 0.0, 8)


def test_fatal_dead_letters_the_whole_batch() -> None:
    batch = [item(0), item(1)]
    d = policy().decide(batch, 0, Fatal("http_400", "bad request"), NOW)
    assert d.dead == [(batch[0], "http_400", "bad request"), (batch[1], "http_400", "bad request")]
    assert d.resend == [] and d.retry is None


def test_the_retry_window() -> None:
    p = policy(retry_window=60.0)
    assert not p.expired(item(0, first=NOW - 59.9), NOW)
    assert p.expired(item(0, first=NOW - 60.0), NOW)


def test_the_default_back_off_has_jitter_within_bounds_and_the_cap() -> None:
    p = policy(max_backoff=4.0)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        for _ in range(20):
            assert base <= p.backoff.delay(attempt) <= base + 1.0
    assert all(p.backoff.delay(10) == 4.0 for _ in range(20))


def test_the_wait_strategy_gets_a_real_retry_call_state() -> None:
    seen: list[RetryCallState] = []

    class Recording(wait_base):
        def __call__(self, retry_state: RetryCallState) -> float:
            seen.append(retry_state)
            return 1.5

    assert Backoff(Recording(), cap=1.0).delay(3) == 1.0
    assert isinstance(seen[0].retry_object, Retrying)
    assert seen[0].attempt_number == 3


def test_named_keys_keep_the_events_key_order() -> None:
    outcome = Throttled(devices=frozenset({"a"}), users=frozenset({"b"}))
    assert named_keys(("d:a", "u:b"), outcome) == ["d:a", "u:b"]
    assert named_keys(("d:x", "u:b"), outcome) == ["u:b"]
    assert named_keys(("d:x",), outcome) == []
