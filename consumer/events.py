"""The values that travel through the pipeline.

A :class:`Position` says where an event came from (Kafka topic/partition/offset, or file and record
index); it travels with the event through every stage so that whatever happens to the event
(delivered, skipped, dead-lettered) its position can be acknowledged and, once contiguous, committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AmplitudeEvent = dict[str, Any]
"""An event in Amplitude's HTTP API shape, ready for JSON encoding."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where one input record came from.

    For Kafka: ``source`` is the topic, ``partition`` and ``offset`` the Kafka ones. For files:
    ``source`` is the file path or object URL, ``partition`` is ``-1`` and ``offset`` is the record's
    index in the file (0-based). Positions order naturally within one (source, partition).
    """

    source: str
    partition: int
    offset: int

    @property
    def stream(self) -> tuple[str, int]:
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


@dataclass(slots=True)
class Pending:
    """An Amplitude event on its way to Amplitude.

    ``encoded`` is the event's JSON, built once and reused for every (re)send; ``first_attempt`` is the
    wall-clock time (seconds) the pipeline first took the event, which starts its retry window.
    """

    event: AmplitudeEvent
    event_type: str
    position: Position
    encoded: bytes
    first_attempt: float
    attempts: int = 0
    keys: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        """Bytes this event adds to a request body (its JSON plus a separating comma)."""
        return len(self.encoded) + 1
