"""Records made ready for every destination: mapped, encoded and keyed, as columns.

:class:`Preparer` runs each destination's :class:`~consumer.transform.base.Mapper` over one decoded record
and keeps only what delivery needs: per destination, a :class:`~consumer.transform.base.Skip`, an
:class:`Unencodable`, or the payloads as ``(bytes, limiter keys)``. A :class:`ChunkBuilder` lays the rows
of one stream out as a :class:`Chunk` of columns (positions, types, and per destination the payloads'
bytes end to end with their ends, rows and keys): pickled, a chunk is a few objects however many rows
it has, so the same step runs in worker processes (files for ``replay``,
:mod:`consumer.sources.workers.file_pool`; Kafka batches, :mod:`consumer.sources.workers.batch_worker`)
or in the main process, and the :class:`~consumer.app.pipeline.Pipeline` takes rows straight from the
columns (:meth:`~consumer.app.pipeline.Pipeline.queue_run`), with no object per row in between.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from consumer.decode.avro import DecodeError, MessageRun, SchemaResolver, decode_message
from consumer.events import CurrentsRecord, Group, PendingRun, Stream, end_before
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


@dataclass(slots=True)
class Payloads:
    """One destination's payloads of a :class:`Chunk`'s rows, as columns.

    Payload ``i`` is ``blob[end_before(ends, i) + 1:ends[i]]`` (from 0 for the first): the payloads stand
    in the blob separated by commas, as in a request body, so consecutive payloads are one slice of it. It was
    made of row ``rows[i]`` (rows ascending; a row has zero, one or more payloads) and has limiter keys
    ``keys[i]``. The rows this
    destination skipped and those whose payload could not be encoded are listed apart, ``(row, reason)``.
    """

    blob: bytes
    ends: array[int]
    rows: array[int]
    keys: list[tuple[str, ...]]
    skips: list[tuple[int, str]]
    unencodable: list[tuple[int, str]]

    def payload(self, i: int) -> bytes:
        """Payload ``i``'s bytes."""
        ends = self.ends
        return self.blob[end_before(ends, i) + 1 : ends[i]]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The payloads ``[first, after)`` made of rows ``[start, end)``."""
        rows = self.rows
        return bisect_left(rows, start), bisect_left(rows, end)

    def run(
        self,
        first: int,
        after: int,
        rows_of: tuple[Sequence[str], Sequence[int], Group],
        first_attempt: float,
    ) -> PendingRun:
        """Payloads ``[first, after)`` on their way together; ``rows_of`` is their chunk's (types, offsets)
        and the group they owe to."""
        return PendingRun((self.blob, self.ends, self.rows, self.keys), rows_of, first, after, first_attempt)

    def apart(self, start: int, end: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """The skips and unencodable rows among rows ``[start, end)``."""
        return rows_in(self.skips, start, end), rows_in(self.unencodable, start, end)


R = TypeVar("R", bound=tuple[Any, ...])


def rows_in(listed: list[R], start: int, end: int) -> list[R]:
    """The entries of ``listed`` (ascending by their first item, a row) for rows ``[start, end)``."""
    if not listed:
        return listed
    row = itemgetter(0)
    return listed[bisect_left(listed, start, key=row) : bisect_left(listed, end, key=row)]


@dataclass(slots=True)
class Chunk:
    """Prepared rows of one stream, in position order, as columns: what a worker sends the main process
    (pickled, a chunk is a few objects whatever its length) and what the run loop takes into delivery.

    Row ``r`` is the input at position ``offsets[r]`` of ``stream``, of event type ``types[r]``; ``outputs``
    holds each destination's :class:`Payloads` (in destination order). ``bad`` lists the rows that never
    became a record, ``(row, reason, raw bytes)`` (an undecodable Kafka value; its type is ``""``).
    """

    stream: Stream
    offsets: array[int]
    types: list[str]
    outputs: tuple[Payloads, ...]
    bad: list[tuple[int, str, bytes | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def rows(self) -> list[tuple[int, str, tuple[Output, ...]]]:
        """Each row as ``(position, event type, one output per destination)`` (bad rows have none): the
        chunk read back row by row, for logs and tests; delivery reads the columns."""
        out: list[tuple[int, str, list[Output]]] = [
            (o, t, []) for o, t in zip(self.offsets, self.types, strict=True)
        ]
        bad = {row for row, _, _ in self.bad}
        for payloads in self.outputs:
            per_row: dict[int, Output] = {}
            for i, row in enumerate(payloads.rows):
                made = per_row.setdefault(row, [])
                assert isinstance(made, list)
                made.append((payloads.payload(i), payloads.keys[i]))
            per_row.update((row, Skip(reason)) for row, reason in payloads.skips)
            per_row.update((row, Unencodable(detail)) for row, detail in payloads.unencodable)
            for row, (_, _, outputs) in enumerate(out):
                if row not in bad:
                    outputs.append(per_row.get(row, []))
        return [(o, t, tuple(outputs)) for o, t, outputs in out]


class ChunkBuilder:
    """Builds one :class:`Chunk` of ``stream``, a row at a time (``destinations``: how many outputs a row
    has)."""

    def __init__(self, stream: Stream, destinations: int) -> None:
        self.stream = stream
        self.offsets = array("q")
        self.types: list[str] = []
        self.bad: list[tuple[int, str, bytes | None]] = []
        self._parts: list[list[bytes]] = [[] for _ in range(destinations)]
        self._out = [Payloads(b"", array("q"), array("l"), [], [], []) for _ in range(destinations)]

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, offset: int, event_type: str, outputs: Sequence[Output]) -> None:
        """One record's row: its position, its type and each destination's output."""
        row = len(self.offsets)
        self.offsets.append(offset)
        self.types.append(event_type)
        for output, payloads, parts in zip(outputs, self._out, self._parts, strict=True):
            if isinstance(output, list):
                ends = payloads.ends
                for encoded, keys in output:
                    parts.append(encoded)
                    ends.append(end_before(ends, len(ends)) + 1 + len(encoded))  # after a comma
                    payloads.rows.append(row)
                    payloads.keys.append(keys)
            elif isinstance(output, Skip):
                payloads.skips.append((row, output.reason))
            else:
                payloads.unencodable.append((row, output.detail))

    def add_bad(self, offset: int, reason: str, raw: bytes | None = None) -> None:
        """A row for an input that never became a record."""
        self.bad.append((len(self.offsets), reason, raw))
        self.offsets.append(offset)
        self.types.append("")

    def build(self) -> Chunk:
        """The chunk of every row added."""
        for payloads, parts in zip(self._out, self._parts, strict=True):
            payloads.blob = b",".join(parts)
        return Chunk(self.stream, self.offsets, self.types, tuple(self._out), self.bad)


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

    def chunk(self, stream: Stream, records: Iterable[CurrentsRecord]) -> Chunk:
        """``records`` of one file (``stream``), prepared as one :class:`Chunk`."""
        builder = ChunkBuilder(stream, len(self.mappers))
        for record in records:
            self.add(builder, record)
        return builder.build()

    def add(self, builder: ChunkBuilder, record: CurrentsRecord) -> None:
        """``record`` prepared as the next row of ``builder``."""
        event_type = record.event_type
        builder.add(record.position.offset, event_type, self.outputs(event_type, record.record))


def prepare_messages(
    runs: Sequence[MessageRun],
    topic_types: dict[str, str],
    schemas: SchemaResolver | None,
    unusable: dict[int, str],
    preparer: Preparer,
) -> list[Chunk]:
    """Decode and prepare each message of ``runs`` (in the main process or in a worker): one chunk per
    run, in order; a message that cannot be decoded is a bad row (with its reason and bytes)."""
    chunks: list[Chunk] = []
    destinations = len(preparer.mappers)
    outputs = preparer.outputs
    for run in runs:
        builder = ChunkBuilder(run.stream, destinations)
        for message in run.messages():
            try:
                record = decode_message(message, topic_types, schemas, unusable)
            except DecodeError as exc:
                builder.add_bad(message[2], exc.reason, message[3])
                continue
            builder.add(message[2], record.event_type, outputs(record.event_type, record.record))
        chunks.append(builder.build())
    return chunks
