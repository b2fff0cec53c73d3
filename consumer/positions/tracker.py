"""Which positions may be committed: the contiguous done prefix of each stream (pure).

Events finish out of order (per-device throttling, retries, concurrent requests). A stream (a Kafka
partition, or one file) may only advance its committed position past offsets whose events are all
done — delivered, skipped or dead-lettered. Committing past a failed batch because a later one
succeeded is how Vector's Kafka source loses data on restart; this tracker makes that impossible.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence


class _Stream:
    __slots__ = ("done", "last_tracked", "offsets")

    def __init__(self) -> None:
        self.offsets: deque[int] = deque()
        self.done: set[int] = set()
        self.last_tracked = -1


class OffsetTracker:
    """Tracks in-flight offsets per stream and answers the next offset safe to commit.

    ``track`` must be called in increasing offset order per stream (the order a source reads);
    offsets need not be contiguous (Kafka compaction and transaction markers leave gaps).
    """

    def __init__(self) -> None:
        self._streams: dict[tuple[str, int], _Stream] = {}

    def track(self, stream: tuple[str, int], offset: int) -> None:
        """Register ``offset`` as read and not yet done."""
        self.track_many(stream, (offset,))

    def track_many(self, stream: tuple[str, int], offsets: Sequence[int]) -> None:
        """Register ``offsets`` (ascending) as read and not yet done."""
        if not offsets:
            return
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        last = s.last_tracked
        for offset in offsets:
            if offset <= last:
                raise ValueError(f"offset {offset} tracked out of order on {stream} (last {last})")
            last = offset
        s.offsets.extend(offsets)
        s.last_tracked = last

    def ack(self, stream: tuple[str, int], offset: int) -> None:
        """Mark ``offset`` done.

        Acks for unknown streams (revoked since), or for offsets before the stream was (re)tracked
        (an event read before a revoke that finished after the partition came back), are ignored.
        So are acks for offsets already committable (a repeated ack) or not tracked yet: only the
        copy of an event that was read in this stream's life can mark its offset done, and nothing
        is remembered for offsets that can no longer matter.
        """
        self.ack_many(stream, (offset,))

    def ack_many(self, stream: tuple[str, int], offsets: Iterable[int]) -> None:
        """Mark each of ``offsets`` done (any order): what :meth:`ack` of each does, with the committable
        prefix advanced once at the end."""
        s = self._streams.get(stream)
        if s is None or not s.offsets:
            return
        queue, done = s.offsets, s.done
        first, last = queue[0], s.last_tracked
        for offset in offsets:
            if first <= offset <= last:
                done.add(offset)
        while queue and queue[0] in done:
            done.discard(queue.popleft())
        if not queue:
            done.clear()  # acks of offsets that were never tracked (gaps) cannot matter any more

    def committable(self, stream: tuple[str, int]) -> int | None:
        """The offset to commit (Kafka convention: the next one to read), ``None`` if nothing tracked.

        All tracked offsets done -> last tracked + 1; otherwise the first offset not done.
        """
        s = self._streams.get(stream)
        if s is None or s.last_tracked < 0:
            return None
        return s.offsets[0] if s.offsets else s.last_tracked + 1

    def outstanding(self, stream: tuple[str, int]) -> int:
        """How many tracked offsets of ``stream`` are not committable yet: 0 once every one is done.

        Offsets done out of order behind one that is not still count (they cannot be committed).
        """
        s = self._streams.get(stream)
        return len(s.offsets) if s else 0

    def forget(self, stream: tuple[str, int]) -> None:
        """Drop a stream (partition revoked, file finished); later acks for it are ignored."""
        self._streams.pop(stream, None)

    def streams(self) -> list[tuple[str, int]]:
        """Every stream currently tracked."""
        return list(self._streams)
