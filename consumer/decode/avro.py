"""Bytes to Currents records, for every input the product meets.

Three inputs:

* Avro Object Container Files (what Currents writes to S3/GCS/Azure), any codec (``null``,
  ``deflate``, ``snappy``), always read with the writer schema embedded in the file so that optional
  fields Braze adds later never break decoding;
* Kafka values in Confluent wire format (``0x00``, 4-byte big-endian schema id, Avro body), the writer
  schema found by id through a :class:`SchemaResolver`;
* plain Avro binary whose schema the caller knows (topic -> event type).

Every failure is a :class:`DecodeError` that names the input (file, or topic/partition/offset), the
record index or byte offset when known, and the reason, so that callers can dead-letter exactly that
input and go on. Nothing else escapes from these functions for bad bytes.
"""

from __future__ import annotations

import io
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import IO, Any, Protocol, cast

import fastavro

from consumer.decode.schemas import event_type_of, parsed_schema
from consumer.events import CurrentsRecord, Position, Stream

Message = tuple[str, int, int, "bytes | None"]
"""One Kafka message as decoding needs it: (topic, partition, offset, value)."""


@dataclass(slots=True)
class MessageRun:
    """Consecutive messages of one partition as columns (their offsets, ascending, and their values): how
    the daemon hands messages to a worker process, a few objects however many messages."""

    topic: str
    partition: int
    offsets: array[int]
    values: list[bytes | None]

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def stream(self) -> Stream:
        """Its partition, ``(topic, partition)``."""
        return (self.topic, self.partition)

    def split(self, n: int) -> tuple[MessageRun, MessageRun]:
        """Its first ``n`` messages, and the rest."""
        topic, partition, offsets, values = self.topic, self.partition, self.offsets, self.values
        return (
            MessageRun(topic, partition, offsets[:n], values[:n]),
            MessageRun(topic, partition, offsets[n:], values[n:]),
        )

    def messages(self) -> Iterator[Message]:
        """Each message as decoding takes it."""
        topic, partition = self.topic, self.partition
        for offset, value in zip(self.offsets, self.values, strict=True):
            yield (topic, partition, offset, value)


CONFLUENT_MAGIC = 0
CONTAINER_MAGIC = b"Obj\x01"
"""The first four bytes of every Avro Object Container File."""
_PATH_EVENT_TYPE = re.compile(r"event_type=([A-Za-z0-9_.]+)")
# Bad bytes surface from fastavro (and its codecs) as almost any exception type: ValueError, EOFError,
# IndexError, KeyError, zlib.error, cramjam errors, SchemaParseException for a damaged header... At this
# boundary every failure to turn bytes into a record is a decode failure of that input.
_DECODE_FAILURES = (Exception,)


class DecodeError(Exception):
    """Input that cannot be decoded: which input, where in it, and why.

    ``raw`` holds the undecodable bytes when they are small enough to keep (a Kafka value), so that
    the dead-letter output can carry them; for files it is ``None`` (the file itself is the evidence).
    """

    def __init__(self, position: Position, reason: str, raw: bytes | None = None) -> None:
        self.position = position
        self.reason = reason
        self.raw = raw
        super().__init__(f"{_describe(position)}: {reason}")


def _describe(position: Position) -> str:
    if position.partition < 0:
        return f"{position.source} (record {position.offset})"
    return f"{position.source}[{position.partition}]@{position.offset}"


def event_type_from_path(path: str) -> str | None:
    """The ``event_type=...`` segment of a Currents storage path, if there is one."""
    found = _PATH_EVENT_TYPE.findall(path)
    return found[-1] if found else None


def _schema_event_type(schema: Any) -> str | None:
    if isinstance(schema, dict):
        name = schema.get("name")
        namespace = schema.get("namespace")
        if isinstance(name, str):
            full = f"{namespace}.{name}" if namespace and "." not in name else name
            return event_type_of(full)
    return None


def iter_container(fo: IO[bytes], source: str) -> Iterator[CurrentsRecord]:
    """Yield every record of one Avro container file, in order, with its position.

    The event type comes from the writer schema's full name, else from the ``event_type=`` path
    segment. Records before a corruption are yielded; the corruption then raises :class:`DecodeError`
    with the index of the first record that could not be read (the rest of the file is unreachable
    once a block is damaged, since Avro blocks have no independent framing to resync on). Bytes that
    do not start with :data:`CONTAINER_MAGIC` (a ``.toml``, a gzip, an empty file) are "not an Avro
    container file", said before fastavro reads them (it would try to read a header out of anything).
    """
    index = 0
    try:
        reader = fastavro.reader(_checked_container(fo, source))
        event_type = _schema_event_type(reader.writer_schema) or event_type_from_path(source)
        if event_type is None:
            raise DecodeError(Position(source, -1, 0), "cannot tell the event type (schema name or path)")
        for record in reader:
            if not isinstance(record, dict):
                raise DecodeError(Position(source, -1, index), "record is not an Avro record")
            yield CurrentsRecord(event_type, record, Position(source, -1, index))
            index += 1
    except DecodeError:
        raise
    except _DECODE_FAILURES as exc:
        raise DecodeError(Position(source, -1, index), _reason(exc)) from exc


def _checked_container(fo: IO[bytes], source: str) -> IO[bytes]:
    """``fo`` read from its start again, once its first bytes proved it is an Avro container file."""
    head = b""
    while len(head) < len(CONTAINER_MAGIC):  # a raw stream may hand out fewer bytes than asked
        more = fo.read(len(CONTAINER_MAGIC) - len(head))
        if not more:
            break
        head += more
    if head != CONTAINER_MAGIC:
        starts = f"it starts with {head!r}" if head else "it is empty"
        raise DecodeError(Position(source, -1, 0), f"not an Avro container file ({starts})")
    return cast(IO[bytes], _Rewound(head, fo))


class _Rewound:
    """A reader that gives back ``head`` (bytes already read) before the rest of ``fo``.

    Seeking back instead would cost an object store a second request; fastavro reads records with
    ``read`` alone (``tell`` only when reading raw blocks, which this module never does).
    """

    def __init__(self, head: bytes, fo: IO[bytes]) -> None:
        self._head = head
        self._fo = fo

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._fo.read(n)
        head = self._head
        if 0 <= n < len(head):
            self._head = head[n:]
            return head[:n]
        self._head = b""
        return head + self._fo.read(-1 if n < 0 else n - len(head))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}"


class SchemaResolver(Protocol):
    """Finds the writer schema of a Confluent schema id.

    ``schema_for_id`` returns a fastavro-parsed schema or ``None`` when the id is unknown *locally*;
    asynchronous lookups (a Schema Registry over HTTP) happen before decoding, through the registry
    client, which then answers here from its cache.
    """

    def schema_for_id(self, schema_id: int) -> Any | None:
        """The parsed writer schema for ``schema_id``, or ``None`` if not known."""
        ...


FRAMING = itemgetter(slice(0, 5))
"""A value's first five bytes, its Confluent framing (magic byte, schema id): all :func:`schema_id_of`
reads. A C callable, so that ``map(FRAMING, values)`` runs no Python code per value."""


def schema_id_of(value: bytes | None) -> int | None:
    """The schema id of a well-framed Confluent value, without copying its body; ``None`` for any
    other value (:func:`split_confluent` says what is wrong with it)."""
    if value and len(value) >= 5 and value[0] == CONFLUENT_MAGIC:
        return int.from_bytes(value[1:5], "big")
    return None


def split_confluent(value: bytes | None, position: Position) -> tuple[int, bytes]:
    """Check the Confluent framing of a Kafka value and return ``(schema_id, avro_body)``."""
    if not value:
        raise DecodeError(position, "empty message value", value or b"")
    if value[0] != CONFLUENT_MAGIC:
        raise DecodeError(position, f"wrong magic byte 0x{value[0]:02x} (expected 0x00)", value)
    if len(value) < 5:
        raise DecodeError(position, f"truncated header ({len(value)} bytes, need 5)", value)
    return int.from_bytes(value[1:5], "big"), value[5:]


def decode_body(body: bytes, schema: Any, position: Position, raw: bytes | None = None) -> dict[str, Any]:
    """Decode one Avro binary body with ``schema``; the whole body must be consumed."""
    evidence = raw if raw is not None else body
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except _DECODE_FAILURES as exc:
        raise DecodeError(position, _reason(exc), evidence) from exc
    if not isinstance(record, dict):
        raise DecodeError(position, "body is not an Avro record", evidence)
    left = len(body) - buf.tell()
    if left:
        raise DecodeError(position, f"{left} trailing bytes after the record", evidence)
    return record


def decode_confluent(value: bytes | None, resolver: SchemaResolver, position: Position) -> CurrentsRecord:
    """Decode one Confluent-framed Kafka value into a record with its event type."""
    schema_id, body = split_confluent(value, position)
    schema = resolver.schema_for_id(schema_id)
    if schema is None:
        raise DecodeError(position, f"unknown schema id {schema_id}", value)
    event_type = _schema_event_type(schema)
    if event_type is None:
        raise DecodeError(position, f"schema id {schema_id} is not a named record", value)
    return CurrentsRecord(event_type, decode_body(body, schema, position, value), position)


def decode_plain(value: bytes | None, event_type: str, position: Position) -> CurrentsRecord:
    """Decode a plain Avro binary value whose event type the caller knows (topic mapping)."""
    if not value:
        raise DecodeError(position, "empty message value", value or b"")
    try:
        schema = parsed_schema(event_type)
    except KeyError:
        raise DecodeError(position, f"no shipped schema for event type {event_type!r}", value) from None
    return CurrentsRecord(event_type, decode_body(value, schema, position), position)


def decode_message(
    message: Message,
    topic_types: dict[str, str],
    schemas: SchemaResolver | None,
    unusable: dict[int, str],
) -> CurrentsRecord:
    """Decode one message whose schema is loaded (``schemas``) or known unusable; :class:`DecodeError`
    for bad input. ``schemas`` is ``None`` when there is no registry."""
    topic, partition, offset, value = message
    position = Position(topic, partition, offset)
    event_type = topic_types.get(topic)
    if event_type is not None:
        return decode_plain(value, event_type, position)
    schema_id, _ = split_confluent(value, position)
    if schemas is None:
        raise DecodeError(position, "Confluent-framed value but no --schema-registry-url", value)
    reason = unusable.get(schema_id)
    if reason is not None:
        raise DecodeError(position, reason, value)
    return decode_confluent(value, schemas, position)
