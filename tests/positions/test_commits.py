"""Tests for consumer.positions.tracker: only the contiguous done prefix of a stream is ever committable.

The tracker tracks groups (the rows one chunk gave delivery: a range of positions) and reads whether each
is done from its ``owed`` count, kept by the pipeline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.events import Group
from consumer.positions.tracker import OffsetTracker

P0 = ("topic", 0)


def tracked(ranges: list[tuple[int, int]], stream: tuple[str, int] = P0) -> tuple[OffsetTracker, list[Group]]:
    """A tracker with one group per range (each owing one payload), and the groups."""
    tracker = OffsetTracker()
    groups = [Group(stream, first, last, 1) for first, last in ranges]
    for group in groups:
        tracker.track(group)
    return tracker, groups


def singles(offsets: list[int]) -> list[tuple[int, int]]:
    return [(offset, offset) for offset in offsets]


def test_nothing_tracked_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.committable(P0) is None
    assert tracker.outstanding(P0) == 0
    assert tracker.streams() == []


def test_out_of_order_completions_commit_only_the_contiguous_prefix() -> None:
    tracker, groups = tracked(singles(list(range(10))))
    assert tracker.committable(P0) == 0
    for offset in (3, 1, 2, 9):
        groups[offset].owed = 0
        assert tracker.committable(P0) == 0  # offset 0 is not done: nothing may be committed past it
    groups[0].owed = 0
    assert tracker.committable(P0) == 4
    assert tracker.outstanding(P0) == 6  # 4..9, of which 9 is done but cannot be committed yet
    for offset in (8, 6, 5, 7, 4):
        groups[offset].owed = 0
    assert tracker.committable(P0) == 10  # everything done: the next offset to read
    assert tracker.outstanding(P0) == 0


def test_a_group_is_one_range_done_only_when_it_owes_nothing() -> None:
    tracker, (first, second) = tracked([(0, 255), (256, 511)])
    first.owed = 3
    second.owed = 0
    assert tracker.committable(P0) == 0
    first.owed = 1  # payloads ending one by one move nothing
    assert tracker.committable(P0) == 0
    first.owed = 0
    assert tracker.committable(P0) == 512


def test_gaps_in_offsets_do_not_block_the_commit() -> None:
    """Compaction and transaction markers leave offsets that are never read: inside a group they are
    its own, between groups they are passed over."""
    tracker, groups = tracked([(10, 11), (15, 15), (20, 24)])
    groups[1].owed = 0
    assert tracker.committable(P0) == 10
    groups[0].owed = 0
    assert tracker.committable(P0) == 20
    groups[2].owed = 0
    assert tracker.committable(P0) == 25


def test_streams_are_independent() -> None:
    tracker, _ = tracked(singles([0, 1]))
    other = Group(("topic", 1), 100, 100, 0)
    tracker.track(other)
    assert tracker.committable(("topic", 1)) == 101
    assert tracker.committable(P0) == 0
    assert sorted(tracker.streams()) == [P0, ("topic", 1)]


def test_tracking_must_follow_read_order() -> None:
    tracker, _ = tracked([(5, 7)])
    for first, last in ((7, 9), (4, 4), (6, 6)):
        with pytest.raises(ValueError, match="out of order"):
            tracker.track(Group(P0, first, last, 1))
    with pytest.raises(ValueError, match="out of order"):
        tracker.track(Group(P0, 10, 9, 1))  # an empty range
    tracker.track(Group(P0, 8, 8, 1))


def test_forget_drops_a_stream_and_its_groups_then_count_for_nothing() -> None:
    tracker, (old,) = tracked([(0, 2)])
    tracker.forget(P0)
    assert tracker.committable(P0) is None
    old.owed = 0  # its events finished after the partition was revoked
    assert tracker.streams() == []
    # the partition comes back: the stream starts over from the committed position
    new = Group(P0, 1, 1, 1)
    tracker.track(new)
    assert tracker.committable(P0) == 1  # the old group, done, means nothing here
    new.owed = 0
    assert tracker.committable(P0) == 2


def _ranges(start: int, steps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges from ``start``: each step is (gap before the range, its width)."""
    out, position = [], start
    for gap, width in steps:
        first = position + gap
        out.append((first, first + width))
        position = first + width
    return out


# Ascending ranges with gaps of 1 to 5 between them (Kafka compaction, filtered records).
RANGES = st.builds(
    _ranges,
    st.integers(min_value=0, max_value=1000),
    st.lists(st.tuples(st.integers(min_value=1, max_value=5), st.integers(0, 300)), min_size=1, max_size=40),
)


@given(data=st.data(), ranges=RANGES)
def test_committable_is_always_the_first_position_of_the_first_group_not_done(
    data: st.DataObject, ranges: list[tuple[int, int]]
) -> None:
    tracker, groups = tracked(ranges)
    order = data.draw(st.permutations(range(len(groups))))
    done: set[int] = set()
    for i in order:
        groups[i].owed = 0
        done.add(i)
        not_done = [j for j in range(len(groups)) if j not in done]
        expected = ranges[not_done[0]][0] if not_done else ranges[-1][1] + 1
        assert tracker.committable(P0) == expected
        assert tracker.outstanding(P0) == (len(groups) - not_done[0] if not_done else 0)
