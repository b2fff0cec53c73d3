"""The messages between the main process and a worker process, one small frozen class per kind.

They are pickled over a :func:`multiprocessing.Pipe` as they are; a slotted frozen dataclass pickles
as its class's name and its field values, a few dozen bytes more than the tagged tuples it replaces,
and crosses the pipe once per task or per chunk of records (not per record), so the cost does not
show. The records themselves travel as the pickled bytes that follow a :class:`ChunkFollows` (one
:class:`~consumer.transform.prepare.Chunk`), or as the pickled answer to a :class:`PrepareBatch` (a list
of chunks, one per run of a partition's messages).

To a worker: :class:`ReadObject`, :class:`PrepareBatch`, :class:`Stop`. From a worker reading an
object: a :class:`ChunkFollows` and the chunk's bytes, repeated, then one :class:`ObjectEnd` whose
``error`` says what ended the object early, if anything (:class:`BadBytes`, :class:`FetchFailed`,
:class:`Crashed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumer.decode.avro import MessageRun
from consumer.sources.storage.store import StoredObject


@dataclass(frozen=True, slots=True)
class ReadObject:
    """Stream the prepared records of ``obj`` after its first ``skip`` records."""

    obj: StoredObject
    skip: int


@dataclass(frozen=True, slots=True)
class PrepareBatch:
    """Decode and prepare one batch of Kafka messages (runs of one partition each); answered with one
    pickled list of chunks, one per run.

    ``schemas`` and ``unusable`` are the schema ids the worker has not been sent before.
    """

    batch: list[MessageRun]
    topic_types: dict[str, str]
    has_registry: bool
    schemas: dict[int, Any]
    unusable: dict[int, str]


@dataclass(frozen=True, slots=True)
class Stop:
    """End the worker process."""


Task = ReadObject | PrepareBatch | Stop
"""What the main process sends a worker."""


@dataclass(frozen=True, slots=True)
class ChunkFollows:
    """A chunk's pickled bytes come next; ``records``/``filtered`` are the object's progress so far."""

    records: int
    filtered: int


@dataclass(frozen=True, slots=True)
class BadBytes:
    """The object's bytes could not be decoded at record ``offset``."""

    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """Reading the object failed at record ``record``."""

    record: int
    reason: str


@dataclass(frozen=True, slots=True)
class Crashed:
    """A bug in the worker; ``text`` is its traceback."""

    text: str


@dataclass(frozen=True, slots=True)
class ObjectEnd:
    """The object's last message: its final progress, and the error that ended it early (if any)."""

    records: int
    filtered: int
    error: BadBytes | FetchFailed | Crashed | None = None


FromReader = ChunkFollows | ObjectEnd
"""What a worker reading an object sends back (besides the chunks' bytes)."""
