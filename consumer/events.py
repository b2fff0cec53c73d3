"""The values that travel through the pipeline.

A :class:`Position` says where an event came from (Kafka topic/partition/offset, or file and record
index); it travels with the event through every stage so that whatever happens to the event
(delivered, skipped, dead-lettered) its position can be acknowledged and, once contiguous, committed.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

Stream = tuple[str, int]
"""What positions are ordered and committed in: ``(topic, partition)`` for Kafka, ``(path or URL, -1)``
for a file."""

AmplitudeEvent = dict[str, Any]
"""An event in Amplitude's HTTP API shape, ready for JSON encoding."""


def json_payload(encoded: bytes) -> dict[str, Any]:
    """A JSON-encoded payload back as a dict."""
    payload: dict[str, Any] = orjson.loads(encoded)
    return payload


@dataclass(slots=True, unsafe_hash=True)
class Position:
    """Where one input record came from.

    For Kafka: ``source`` is the topic, ``partition`` and ``offset`` the Kafka ones. For files:
    ``source`` is the file path or object URL, ``partition`` is ``-1`` and ``offset`` is the record's
    index in the file (0-based). Positions order naturally within one (source, partition).

    A value: never changed once made (it is a dict key while its payloads are out). It is not declared
    ``frozen`` only because one is made per event and a frozen dataclass takes three times as long to
    build (``object.__setattr__`` per field).
    """

    source: str
    partition: int
    offset: int

    @property
    def stream(self) -> Stream:
        """The (source, partition) whose offsets this position orders within."""
        return (self.source, self.partition)

    def as_dict(self) -> dict[str, Any]:
        """JSON form used in dead-letter records and logs."""
        if self.partition < 0:
            return {"file": self.source, "record": self.offset}
        return {"topic": self.source, "partition": self.partition, "offset": self.offset}


@dataclass(slots=True)
class CurrentsRecord:
    """One decoded Currents event: its type, its Avro record as a dict, where it came from."""

    event_type: str
    record: dict[str, Any]
    position: Position


SEPARATOR_BYTES = 1
"""What a payload adds to a request body besides its own bytes: the comma between events."""


class Group:
    """Rows of one stream taken into delivery together (a chunk, or the part of one that fitted): one range
    for the commit tracker, acknowledged as a whole once every payload any destination made of its rows
    has ended.

    ``first`` and ``last`` are the positions of its first and last row (offsets between them that are no
    row, Kafka's compacted ones, belong to it too); ``owed`` counts the payloads not ended yet. The main
    process makes one per chunk, not one per event: events share it, and acknowledging a request's events
    is a count down per event and one tracker call per group.
    """

    __slots__ = ("first", "last", "owed", "stream")

    def __init__(self, stream: Stream, first: int, last: int, owed: int = 0) -> None:
        self.stream = stream
        self.first = first
        self.last = last
        self.owed = owed

    def __repr__(self) -> str:
        return f"Group({self.stream!r}, {self.first}..{self.last}, owed={self.owed})"


class Pending:
    """One payload on its way to a destination (an Amplitude event, a partner's event).

    ``encoded`` is the payload as it travels, built once and reused for every (re)send; the payload
    itself is not kept (the destination's mapper decodes ``encoded`` for the rare dead-letter record),
    so a waiting event costs its bytes and little else. ``group`` is the :class:`Group` of rows it was
    taken with and ``offset`` its row's position in the group's stream (its :attr:`position`, built only
    when asked: for a dead-letter record). ``first_attempt`` is the wall-clock time (seconds) the
    pipeline first took the event, which starts its retry window; ``keys`` are its limiter keys (the
    first orders its events); ``size`` is what it adds to a request body (its bytes plus a separating
    comma).
    """

    __slots__ = ("encoded", "event_type", "first_attempt", "group", "keys", "offset", "size")

    count = 1
    """Payloads it carries (a :class:`PendingRun` carries several)."""

    def __init__(
        self,
        event_type: str,
        group: Group,
        offset: int,
        encoded: bytes,
        first_attempt: float,
        keys: tuple[str, ...],
    ) -> None:
        self.event_type = event_type
        self.group = group
        self.offset = offset
        self.encoded = encoded
        self.first_attempt = first_attempt
        self.keys = keys
        self.size = len(encoded) + SEPARATOR_BYTES

    @classmethod
    def alone(
        cls, event_type: str, position: Position, encoded: bytes, first_attempt: float, keys: tuple[str, ...]
    ) -> Pending:
        """A payload of a row taken by itself (redrive, tests): its own one-row group, owing it."""
        group = Group(position.stream, position.offset, position.offset, 1)
        return cls(event_type, group, position.offset, encoded, first_attempt, keys)

    def part(self) -> bytes:
        """Its payload as it stands in a request body."""
        return self.encoded

    def key_column(self) -> list[tuple[str, ...]]:
        """Its limiter keys, as a run's column of one."""
        return [self.keys]

    def event_types(self) -> list[str]:
        """Its event type, as a run's column of one."""
        return [self.event_type]

    @property
    def position(self) -> Position:
        """Where its row came from."""
        source, partition = self.group.stream
        return Position(source, partition, self.offset)

    def __repr__(self) -> str:
        size = len(self.encoded)
        return f"Pending({self.event_type!r}, {self.position!r}, {size} bytes, keys={self.keys!r})"


class PendingRun:
    """Consecutive payloads of one destination taken from one chunk's columns, on their way together: what
    the delivery engine holds instead of a :class:`Pending` per payload while nothing singles one out.

    Payload ``i`` (``first <= i < after``) is ``blob[end_before(ends, i) + 1:ends[i]]``
    (:func:`end_before`): the blob holds a chunk's payloads separated by commas, so
    the run's part of a request body is one slice, commas included (:meth:`part`). Payload ``i`` was made
    of row ``rows[i]`` (event type ``types[row]``, position ``offsets[row]`` of the ``group``'s stream)
    and has limiter keys ``keys[i]``. The columns are shared with the chunk and never changed.

    A run is split where a request's caps cut it (:meth:`split`) and taken apart into one
    :class:`Pending` per payload (:meth:`apart`) only when a payload must be handled on its own: its
    device waits aside, a request carrying it was not delivered whole, it is too large for any request.
    ``size`` is what it adds to a request body (its payloads plus a separator each), ``count`` its
    payloads; each payload owes one to ``group`` as a :class:`Pending` does.
    """

    __slots__ = (
        "after",
        "blob",
        "count",
        "ends",
        "first",
        "first_attempt",
        "group",
        "keys",
        "offsets",
        "rows",
        "size",
        "types",
    )

    def __init__(
        self,
        columns: tuple[bytes, Sequence[int], Sequence[int], list[tuple[str, ...]]],
        rows_of: tuple[Sequence[str], Sequence[int], Group],
        first: int,
        after: int,
        first_attempt: float,
    ) -> None:
        self.blob, self.ends, self.rows, self.keys = columns
        self.types, self.offsets, self.group = rows_of
        self.first_attempt = first_attempt
        self._span(first, after)

    def _span(self, first: int, after: int) -> None:
        ends = self.ends
        self.first = first
        self.after = after
        self.count = after - first
        self.size = ends[after - 1] - end_before(ends, first)

    def part(self) -> bytes:
        """Its payloads as they stand in a request body: separated by commas."""
        ends = self.ends
        return self.blob[end_before(ends, self.first) + 1 : ends[self.after - 1]]

    def key_column(self) -> list[tuple[str, ...]]:
        """Each payload's limiter keys, in order."""
        return self.keys[self.first : self.after]

    def event_types(self) -> list[str]:
        """Each payload's event type, in order."""
        types = self.types
        return [types[row] for row in self.rows[self.first : self.after]]

    def largest(self) -> int:
        """The size of its largest payload (a separator included)."""
        ends, first, after = self.ends, self.first, self.after
        before = [end_before(ends, first), *ends[first : after - 1]]  # where each payload's comma is
        largest: int = max(map(operator.sub, ends[first:after], before))
        return largest

    def fitting(self, events: int, room: int) -> int:
        """How many of its first payloads fit ``events`` more events and ``room`` more bytes (0 to count)."""
        ends, first = self.ends, self.first
        last = min(self.after, first + events)  # by count
        if last <= first:
            return 0
        # payloads first..i take ends[i] - end_before(ends, first) bytes: the first i that passes ``room``
        return bisect_right(ends, room + end_before(ends, first), first, last) - first

    def split(self, n: int) -> PendingRun:
        """Keep its first ``n`` payloads (``0 < n < count``); the rest, returned as a new run."""
        tail = PendingRun.__new__(PendingRun)
        tail.blob, tail.ends, tail.rows, tail.keys = self.blob, self.ends, self.rows, self.keys
        tail.types, tail.offsets, tail.group = self.types, self.offsets, self.group
        tail.first_attempt = self.first_attempt
        tail._span(self.first + n, self.after)
        self._span(self.first, self.first + n)
        return tail

    def apart(self) -> list[Pending]:
        """One :class:`Pending` per payload, in order (owing the group what the run did)."""
        blob, ends, rows, keys = self.blob, self.ends, self.rows, self.keys
        types, offsets, group, at = self.types, self.offsets, self.group, self.first_attempt
        items = []
        begin = end_before(ends, self.first) + 1
        for i in range(self.first, self.after):
            row, finish = rows[i], ends[i]
            items.append(Pending(types[row], group, offsets[row], blob[begin:finish], at, keys[i]))
            begin = finish + 1
        return items

    def __repr__(self) -> str:
        return f"PendingRun({self.group!r}, payloads {self.first}..{self.after - 1}, {self.size} bytes)"


def end_before(ends: Sequence[int], i: int) -> int:
    """Where payload ``i - 1`` ends in a blob of payloads separated by commas, ``ends`` being each payload's
    end (``-1`` before the first): payload ``i`` starts one byte later, and payloads ``i`` to ``j`` take
    ``ends[j] - end_before(ends, i)`` bytes in a request body, a separator each."""
    return ends[i - 1] if i else -1


Queued = Pending | PendingRun
"""What a delivery engine holds: a payload on its own, or a run of them."""


def apart(items: Iterable[Queued]) -> list[Pending]:
    """``items`` as one :class:`Pending` per payload, in order."""
    out: list[Pending] = []
    for item in items:
        if isinstance(item, Pending):
            out.append(item)
        else:
            out += item.apart()
    return out


def key_column(items: Iterable[Queued]) -> list[tuple[str, ...]]:
    """The limiter keys of each payload of ``items``, in order."""
    return [keys for item in items for keys in item.key_column()]


def limiter_keys(event: dict[str, object]) -> tuple[str, ...]:
    """The throttling keys of an Amplitude event: its device and its user, as Amplitude counts them."""
    device = event.get("device_id")
    user = event.get("user_id")
    if device and user:
        return (f"d:{device}", f"u:{user}")
    if device:
        return (f"d:{device}",)
    return (f"u:{user}",)


def key_ids(keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The (device id, user id) that :func:`limiter_keys` made ``keys`` of (``None`` for one it has not)."""
    device = user = None
    for key in keys:
        if key.startswith("d:"):
            device = key[2:]
        elif key.startswith("u:"):
            user = key[2:]
    return device, user
