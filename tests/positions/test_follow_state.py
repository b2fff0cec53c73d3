"""A follower's state (consumer.positions.follow): what it calls done, and that it stays small."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from consumer.ops.metrics import Metrics
from consumer.positions.follow import FollowLedger
from consumer.positions.follow_state import FollowState
from consumer.sources.storage.follow_listing import live_hours, sweep_order
from consumer.sources.storage.store import StoredObject

ROOT = "s3://bucket/currents"
T0 = 1_800_000_000.0  # a whole hour: 2027-01-15T08:00:00Z


def obj(key: str, landed: float, version: str = "v1") -> StoredObject:
    return StoredObject(f"{ROOT}/{key}", 10, version, remote=True, landed=landed)


def test_the_sweep_order_puts_a_folders_objects_before_its_folders_and_numbers_in_order() -> None:
    keys = ["b/x+0+10.avro", "a.avro", "b/x+0+9.avro", "b/c/y.avro", "z.avro", "a/q.avro"]
    assert sorted(keys, key=sweep_order) == [
        "a.avro", "z.avro", "a/q.avro", "b/x+0+9.avro", "b/x+0+10.avro", "b/c/y.avro",
    ]  # fmt: skip


def test_the_live_hours_reach_back_to_the_last_poll_and_the_late_window() -> None:
    now = T0 + 3 * 3600 + 1200  # 11:20
    assert live_hours(now, now, late=3600) == [T0 + 3 * 3600, T0 + 2 * 3600]  # 11:00 and 10:00
    assert live_hours(now, now, late=600) == [T0 + 3 * 3600]  # 10:00 ended 20 min ago
    # The last poll was at 08:30: everything that could have landed since is listed again.
    assert live_hours(now, T0 + 1800, late=600) == [T0 + h * 3600 for h in (3, 2, 1, 0)]


def test_an_object_is_done_once_finished_and_a_rewrite_is_told_apart() -> None:
    state = FollowState((ROOT,), margin=60)
    a = obj("event_type=X/date=2027-01-15-08/a.avro", T0 + 5)
    assert not state.is_done(a) and state.next_record(a) == 0
    state.progress(a, 7)
    assert state.next_record(a) == 7 and not state.is_done(a)
    state.finished(a)
    assert state.is_done(a) and state.rewritten(a) is None
    again = obj("event_type=X/date=2027-01-15-08/a.avro", T0 + 500, version="v2")
    assert not state.is_done(again) and state.rewritten(again) == "v1"


def test_a_completed_sweep_moves_the_mark_and_forgets_what_it_covers() -> None:
    state = FollowState((ROOT,), margin=60)
    old = [
        obj(f"event_type=X/date=0{h}/f{i}.avro", T0 - 7200 + h * 60 + i) for h in range(3) for i in range(5)
    ]
    fresh = obj("event_type=X/date=2027-01-15-09/new.avro", T0 + 30)  # within the margin of the sweep
    ledger = FollowLedger(state, None, Metrics(CollectorRegistry()), clock=lambda: T0 + 60)
    ledger.sweep_begins(T0 + 60)
    for o in [*old, fresh]:
        assert ledger.offer(o, swept=True)
    ledger.sweep_listed(ROOT)
    ledger.sweep_listed(None)
    for o in [*old, fresh]:
        ledger.finished(o, 3)
    assert state.sweep is None and state.mark == T0 + 60 - 60 and state.swept_at == T0 + 60
    assert all(state.is_done(o) for o in old) and state.is_done(fresh)
    # What the mark covers is not named; what landed within the margin of the sweep's start is.
    assert list(state.recent) == [fresh.url]
    unseen = obj("event_type=X/date=2027-01-15-09/late.avro", T0 + 10)
    assert not state.is_done(unseen)


def test_the_sweep_cursor_covers_only_a_contiguous_finished_prefix() -> None:
    state = FollowState((ROOT,), margin=0)
    ledger = FollowLedger(state, None, Metrics(CollectorRegistry()), clock=lambda: T0)
    ledger.sweep_begins(T0)
    objs = [obj(f"d/f{i}.avro", T0 - 100 + i) for i in range(5)]
    for o in objs:
        assert ledger.offer(o, swept=True)
    ledger.finished(objs[0], 1)
    ledger.finished(objs[2], 1)
    ledger.finished(objs[3], 1)
    assert state.sweep is not None and state.sweep.cursors == {ROOT: "d/f0.avro"}
    assert set(state.recent) == {objs[2].url, objs[3].url}  # past the cursor: named until it passes them
    ledger.finished(objs[1], 1)
    assert state.sweep.cursors == {ROOT: "d/f3.avro"} and state.recent == {}
    # Saved and read back, a restart resumes the sweep after its cursor.
    back = FollowState.from_bytes(state.to_bytes(), [ROOT], 0)
    assert back.sweep is not None and back.sweep.cursors == {ROOT: "d/f3.avro"}
    assert FollowLedger(back, None, Metrics(CollectorRegistry())).sweep_begins(T0 + 99) == {ROOT: "d/f3.avro"}
    assert all(back.is_done(o) for o in objs[:4]) and not back.is_done(objs[4])


def test_after_a_year_of_history_the_state_holds_only_what_landed_since_the_last_sweep() -> None:
    state = FollowState((ROOT,), margin=900)
    clock = [T0]
    ledger = FollowLedger(state, None, Metrics(CollectorRegistry()), clock=lambda: clock[0])
    year = [obj(f"event_type=T{i % 80}/date=x/{i}.avro", T0 - 365 * 86400 + i * 3000) for i in range(10_000)]
    year.sort(key=lambda o: sweep_order(o.url.removeprefix(ROOT + "/")))  # the order a sweep lists them in
    ledger.sweep_begins(T0)
    for o in year:
        assert ledger.offer(o, swept=True)
        ledger.finished(o, 100)
    ledger.sweep_listed(ROOT)
    ledger.sweep_listed(None)
    assert state.mark == T0 - 900 and state.recent == {} and state.partial == {}
    # An hour of polls afterwards: 80 types, 12 files each.
    for i in range(960):
        new = obj(f"event_type=T{i % 80}/date=now/{i}.avro", T0 + 3 * i)
        assert ledger.offer(new, swept=False)
        ledger.finished(new, 100)
    assert len(state.recent) == 960
    assert len(state.to_bytes()) < 150_000
    assert all(state.is_done(o) for o in year)


def test_a_state_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a follower's state"):
        FollowState.from_bytes(b'{"recent": 3}', [ROOT], 0)
    with pytest.raises(ValueError, match="not a follower's state"):
        FollowState.from_bytes(b"garbage", [ROOT], 0)
    fresh = FollowState.from_bytes(None, [ROOT], 5)
    assert fresh.mark == -math.inf and fresh.margin == 5
