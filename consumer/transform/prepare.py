"""A record made ready for every destination: mapped, encoded and keyed, in plain values.

:class:`Preparer` runs each destination's :class:`~consumer.transform.base.Mapper` over one decoded record
and keeps only what delivery needs: per destination, a :class:`~consumer.transform.base.Skip`, an
:class:`Unencodable`, or the payloads as ``(bytes, limiter keys)``. These values are small and cheap to
pickle, so the same step runs in the main process (the Kafka daemon, ``--workers 0``) or in worker
processes that decode and prepare whole files for ``replay`` (:mod:`consumer.sources.workers.file_pool`);
either way the
:class:`~consumer.app.pipeline.Pipeline` takes the result through
:meth:`~consumer.app.pipeline.Pipeline.queue_run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumer.decode.avro import DecodeError, Message, SchemaResolver, decode_message
from consumer.events import CurrentsRecord, Position
from consumer.transform.base import Skip

if TYPE_CHECKING:
    from consumer.transform.base import Mapper


@dataclass(frozen=True, slots=True)
class Unencodable:
    """A destination's payload could not be encoded (cannot happen with Avro input; never lost silently)."""

    detail: str


Encoded = tuple[bytes, tuple[str, ...]]
"""One payload as it travels (its bytes) with its limiter keys."""

Output = Skip | Unencodable | list[Encoded]
"""What one destination makes of one record."""

Prepared = tuple[int, str, tuple[Output, ...]]
"""One record ready for delivery: (record offset, event type, one output per destination, in order)."""

ReadyRecord = tuple[Position, str, tuple[Output, ...]]
"""One prepared record as the pipeline queues it (:meth:`~consumer.app.pipeline.Pipeline.queue_run`): its
position, event type and one output per destination."""

MessageResult = str | tuple[str, tuple[Output, ...]]
"""What one Kafka message became: why it cannot be decoded, or (event type, one output per destination)."""


class Preparer:
    """Map, encode and key one record for every destination (``mappers`` in destination order)."""

    def __init__(self, mappers: Sequence[Mapper]) -> None:
        self.mappers = tuple(mappers)

    def outputs(self, event_type: str, record: dict[str, Any]) -> tuple[Output, ...]:
        """One :data:`Output` per destination."""
        out: list[Output] = []
        for mapper in self.mappers:
            result = mapper.map(event_type, record)
            if isinstance(result, Skip):
                out.append(result)
                continue
            try:
                out.append([(mapper.encode(p), mapper.keys(p)) for p in result])
            except TypeError as exc:
                out.append(Unencodable(str(exc)))
        return tuple(out)

    def prepare(self, record: CurrentsRecord) -> Prepared:
        """One record of a file, keyed by its index (the file source makes it a :data:`ReadyRecord`)."""
        event_type = record.event_type
        return (record.position.offset, event_type, self.outputs(event_type, record.record))


def prepare_messages(
    batch: list[Message],
    topic_types: dict[str, str],
    schemas: SchemaResolver | None,
    unusable: dict[int, str],
    preparer: Preparer,
) -> list[MessageResult]:
    """Decode and prepare each message of ``batch`` (in the main process or in a worker)."""
    out: list[MessageResult] = []
    for message in batch:
        try:
            record = decode_message(message, topic_types, schemas, unusable)
        except DecodeError as exc:
            out.append(exc.reason)
            continue
        out.append((record.event_type, preparer.outputs(record.event_type, record.record)))
    return out
