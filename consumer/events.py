"""The values that travel through the pipeline.

A :class:`Position` says where an event came from (Kafka topic/partition/offset, or file and record
index); it travels with the event through every stage so that whatever happens to the event
(delivered, skipped, dead-lettered) its position can be acknowledged and, once contiguous, committed.
"""

from __future__ import annotations

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

    @property
    def position(self) -> Position:
        """Where its row came from."""
        source, partition = self.group.stream
        return Position(source, partition, self.offset)

    def __repr__(self) -> str:
        size = len(self.encoded)
        return f"Pending({self.event_type!r}, {self.position!r}, {size} bytes, keys={self.keys!r})"


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
