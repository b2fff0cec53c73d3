"""Tests for consumer.delivery.holdback: per-key waiting queues, oldest first, one live timer per key."""

from __future__ import annotations

import math

from amplitude_harness import event, pending

from consumer.delivery.holdback import HoldBack


def test_append_only_queues_behind_a_key_that_is_waiting() -> None:
    held = HoldBack()
    first, second, third = (pending(event(i), i) for i in range(3))
    assert not held.append("d:a", first)
    assert len(held) == 0
    held.hold("d:a", [first], 10.0)
    assert held.append("d:a", second)
    held.hold("d:a", [third], 12.0)  # held again: older than what waits, so it goes in front
    assert list(held.queue("d:a") or []) == [third, first, second]
    assert len(held) == 1


def test_one_live_timer_per_key_and_the_earliest_wins() -> None:
    held = HoldBack()
    item = pending(event(0), 0)
    held.hold("d:a", [item], 10.0)
    held.arm("d:a", 15.0)  # later: ignored
    held.arm("d:a", 5.0)  # earlier: replaces
    held.hold("d:b", [pending(event(1), 1)], 7.0)
    assert held.next_due() == 5.0
    assert list(held.due(4.9)) == []
    assert list(held.due(9.0)) == ["d:a", "d:b"]
    assert not held.armed("d:a")
    assert list(held.due(100.0)) == []  # the superseded 10.0 and 15.0 timers fire for nobody
    assert held.next_due() == math.inf


def test_empty_queues_are_forgotten() -> None:
    held = HoldBack()
    item = pending(event(0), 0)
    held.hold("d:a", [item], 1.0)
    held.forget_if_empty("d:a")
    assert len(held) == 1
    queue = held.queue("d:a")
    assert queue is not None
    queue.popleft()
    held.forget_if_empty("d:a")
    held.forget_if_empty("d:never")
    assert len(held) == 0 and held.queue("d:a") is None
