"""Which positions may be committed: the contiguous done prefix of each stream (pure).

Events finish out of order (per-device throttling, retries, concurrent requests). A stream (a Kafka
partition, or one file) may only advance its committed position past rows whose events are all done —
delivered, skipped or dead-lettered. Committing past a failed batch because a later one succeeded is how
Vector's Kafka source loses data on restart; this tracker makes that impossible.

It tracks :class:`~consumer.events.Group`\\ s, not single positions: the rows of one chunk taken into
delivery together are one range, done once its ``owed`` count (kept by the pipeline: one per payload not
ended, plus one while the group is being placed) is down to zero. So the tracker's work per event is
nothing; per group it is one append and, once the group is at the head and done, one pop.
"""

from __future__ import annotations

from collections import deque

from consumer.events import Group, Stream


class _Stream:
    __slots__ = ("groups", "last_tracked")

    def __init__(self) -> None:
        self.groups: deque[Group] = deque()
        self.last_tracked = -1


class OffsetTracker:
    """Tracks each stream's groups in flight and answers the next position safe to commit.

    ``track`` must be called in increasing position order per stream (the order a source reads);
    positions need not be contiguous (Kafka compaction and transaction markers leave gaps, which belong
    to the group around them). A group is done when its ``owed`` is zero; groups of a stream forgotten
    (revoked, finished) and tracked again later are not the new life's: only the groups tracked since
    count.
    """

    def __init__(self) -> None:
        self._streams: dict[Stream, _Stream] = {}

    def track(self, group: Group) -> None:
        """Register ``group`` (its positions ``first`` to ``last``) as read and taken, done once its ``owed``
        reaches zero."""
        stream = group.stream
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        if group.first <= s.last_tracked or group.last < group.first:
            last = s.last_tracked
            raise ValueError(
                f"positions {group.first}..{group.last} tracked out of order on {stream} (last {last})"
            )
        s.groups.append(group)
        s.last_tracked = group.last

    def _settled(self, stream: Stream) -> _Stream | None:
        """``stream``'s state with the done groups at its head dropped (they are committable)."""
        s = self._streams.get(stream)
        if s is not None:
            groups = s.groups
            while groups and groups[0].owed <= 0:
                groups.popleft()
        return s

    def committable(self, stream: Stream) -> int | None:
        """The position to commit (Kafka convention: the next one to read), ``None`` if nothing tracked.

        All tracked groups done -> last tracked + 1; otherwise the first position of the first group not
        done.
        """
        s = self._settled(stream)
        if s is None or s.last_tracked < 0:
            return None
        return s.groups[0].first if s.groups else s.last_tracked + 1

    def outstanding(self, stream: Stream) -> int:
        """How many tracked groups of ``stream`` are not committable yet: 0 once every one is done.

        Groups done behind one that is not still count (they cannot be committed).
        """
        s = self._settled(stream)
        return len(s.groups) if s else 0

    def forget(self, stream: Stream) -> None:
        """Drop a stream (partition revoked, file finished); its groups no longer count."""
        self._streams.pop(stream, None)

    def streams(self) -> list[Stream]:
        """Every stream currently tracked."""
        return list(self._streams)
