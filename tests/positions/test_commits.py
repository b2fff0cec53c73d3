"""Tests for consumer.positions.tracker: only the contiguous done prefix of a stream is ever committable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.positions.tracker import OffsetTracker

P0 = ("topic", 0)


def tracked(offsets: list[int], stream: tuple[str, int] = P0) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(stream, offset)
    return tracker


def test_nothing_tracked_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.committable(P0) is None
    assert tracker.outstanding(P0) == 0
    tracker.ack(P0, 3)  # unknown stream: ignored
    assert tracker.streams() == []


def test_out_of_order_acks_commit_only_the_contiguous_prefix() -> None:
    tracker = tracked(list(range(10)))
    assert tracker.committable(P0) == 0
    for offset in (3, 1, 2, 9):
        tracker.ack(P0, offset)
        assert tracker.committable(P0) == 0  # offset 0 is not done: nothing may be committed past it
    tracker.ack(P0, 0)
    assert tracker.committable(P0) == 4
    assert tracker.outstanding(P0) == 6  # 4..9, of which 9 is done but cannot be committed yet
    for offset in (8, 6, 5, 7, 4):
        tracker.ack(P0, offset)
    assert tracker.committable(P0) == 10  # everything done: the next offset to read
    assert tracker.outstanding(P0) == 0


def test_gaps_in_offsets_do_not_block_the_commit() -> None:
    """Compaction and transaction markers leave offsets that are never read."""
    tracker = tracked([10, 11, 15, 20])
    tracker.ack(P0, 15)
    assert tracker.committable(P0) == 10
    tracker.ack(P0, 10)
    tracker.ack(P0, 11)
    assert tracker.committable(P0) == 20
    tracker.ack(P0, 20)
    assert tracker.committable(P0) == 21


def test_streams_are_independent() -> None:
    tracker = tracked([0, 1])
    other = ("topic", 1)
    tracker.track(other, 100)
    tracker.ack(other, 100)
    assert tracker.committable(other) == 101
    assert tracker.committable(P0) == 0
    assert sorted(tracker.streams()) == [P0, other]


def test_tracking_must_follow_read_order() -> None:
    tracker = tracked([5])
    with pytest.raises(ValueError, match="out of order"):
        tracker.track(P0, 5)
    with pytest.raises(ValueError, match="out of order"):
        tracker.track(P0, 4)


def test_forget_drops_a_stream_and_ignores_its_late_acks() -> None:
    tracker = tracked([0, 1, 2])
    tracker.forget(P0)
    assert tracker.committable(P0) is None
    tracker.ack(P0, 0)  # the event finished after its partition was revoked
    assert tracker.streams() == []
    # the partition comes back: the stream starts over from the committed position
    tracker.track(P0, 1)
    tracker.ack(P0, 0)  # a late ack from before the revoke means nothing here
    assert tracker.committable(P0) == 1
    tracker.ack(P0, 1)
    assert tracker.committable(P0) == 2


def test_an_ack_for_an_offset_not_yet_tracked_does_not_mark_it_done() -> None:
    """Only the copy read in this stream's life may finish an offset; otherwise the tracker could say
    "done" for an event it has not read yet, and a commit would pass over it."""
    tracker = tracked([0])
    tracker.ack(P0, 1)  # not read yet
    tracker.track(P0, 1)
    tracker.ack(P0, 0)
    assert tracker.committable(P0) == 1


def test_repeated_acks_change_nothing() -> None:
    tracker = tracked([0, 1, 2])
    for _ in range(3):
        tracker.ack(P0, 0)
    tracker.ack(P0, 2)
    tracker.ack(P0, 2)
    assert tracker.committable(P0) == 1
    assert tracker.outstanding(P0) == 2
    tracker.ack(P0, 1)
    assert tracker.committable(P0) == 3


# Ascending offsets with gaps of 1 to 5 (Kafka compaction, filtered records).
OFFSETS = st.tuples(
    st.integers(min_value=0, max_value=1000),
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60),
).map(lambda start_gaps: [start_gaps[0] + sum(start_gaps[1][: i + 1]) for i in range(len(start_gaps[1]))])


@given(data=st.data(), offsets=OFFSETS)
def test_committable_is_always_the_first_offset_not_done(data: st.DataObject, offsets: list[int]) -> None:
    tracker = tracked(offsets)
    order = data.draw(st.permutations(offsets))
    done: set[int] = set()
    for offset in order:
        tracker.ack(P0, offset)
        if data.draw(st.booleans()):
            tracker.ack(P0, offset)  # duplicates are harmless
        done.add(offset)
        not_done = [o for o in offsets if o not in done]
        expected = not_done[0] if not_done else offsets[-1] + 1
        assert tracker.committable(P0) == expected
        assert tracker.outstanding(P0) == len([o for o in offsets if o >= expected])
        assert (tracker.outstanding(P0) == 0) == (not not_done)


@given(data=st.data(), offsets=OFFSETS)
def test_acking_in_groups_is_acking_one_by_one(data: st.DataObject, offsets: list[int]) -> None:
    one_by_one, grouped = tracked(offsets), tracked(offsets)
    # acks in any order, repeated, for gaps, before the first and after the last tracked offset
    strays = st.integers(min_value=offsets[0] - 3, max_value=offsets[-1] + 3)
    acks = data.draw(st.lists(st.one_of(st.sampled_from(offsets), strays), max_size=120))
    while acks:
        size = data.draw(st.integers(min_value=1, max_value=len(acks)))
        group, acks = acks[:size], acks[size:]
        for offset in group:
            one_by_one.ack(P0, offset)
        grouped.ack_many(P0, group)
        assert grouped.committable(P0) == one_by_one.committable(P0)
        assert grouped.outstanding(P0) == one_by_one.outstanding(P0)
    grouped.ack_many(P0, offsets)
    assert grouped.committable(P0) == offsets[-1] + 1 and grouped.outstanding(P0) == 0
    grouped.ack_many(("other", 0), offsets)  # an unknown stream: ignored
