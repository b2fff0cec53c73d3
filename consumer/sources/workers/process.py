"""One worker process: the loop it runs, and the handle the main process keeps for it.

A worker (:func:`spawn`, a fresh ``spawn``-ed interpreter) serves one :data:`~.worker_messages.Task` at
a time until it gets :class:`~.worker_messages.Stop` or its pipe closes: it streams an object's
prepared records (:class:`~.worker_messages.ReadObject`), or answers a batch of Kafka messages
(:class:`~.worker_messages.PrepareBatch`). Records leave as pickled bytes that the main process's
receiving thread passes on unread (see :func:`_send_chunk`). :func:`stop` ends workers, politely first.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.context
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from consumer.decode.avro import DecodeError
from consumer.ops.faults import Fault
from consumer.sources.storage.files import ReadError, ReadProgress, read_object
from consumer.sources.storage.selection import RecordFilter, Selection
from consumer.sources.storage.store import StoredObject
from consumer.sources.storage.stores import Stores
from consumer.sources.workers.wire import (
    BadBytes,
    ChunkFollows,
    Crashed,
    FetchFailed,
    ObjectEnd,
    PrepareBatch,
    ReadObject,
    Stop,
)
from consumer.transform.prepare import Chunk, ChunkBuilder, Preparer, prepare_messages

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    from consumer.transform.base import Mapper

CHUNK = 256
"""Rows per chunk a worker sends."""


def _serve(conn: Connection, cancel: CancelFlag, mappers: Sequence[Mapper], selection: Selection) -> None:
    """A worker process: one task at a time, until told to stop or the pipe closes.

    The schemas and unusable ids of a :class:`PrepareBatch` are those not sent before; they are kept.
    """
    # Ctrl-C reaches the whole process group: the main process stops its workers itself (close), so a
    # worker must not die of the signal first (its object would be reported as a failed read).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preparer = Preparer(mappers)
    keep = selection.record_filter()
    stores = Stores()
    schemas = _KnownSchemas()
    unusable: dict[int, str] = {}
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        match task:
            case PrepareBatch():
                schemas.known.update(task.schemas)
                unusable.update(task.unusable)
                resolver = schemas if task.has_registry else None
                results = prepare_messages(task.batch, task.topic_types, resolver, unusable, preparer)
                conn.send_bytes(dumps(results))
            case ReadObject():
                _stream_object(conn, cancel, preparer, stores, keep, task.obj, task.skip)
            case Stop():
                return
            case _:
                raise TypeError(f"a worker cannot do {type(task).__name__}")


class _KnownSchemas:
    """The schemas a worker has been sent, by id (a :class:`~consumer.decode.avro.SchemaResolver`)."""

    def __init__(self) -> None:
        self.known: dict[int, Any] = {}

    def schema_for_id(self, schema_id: int) -> Any | None:
        return self.known.get(schema_id)


def _stream_object(
    conn: Connection,
    cancel: CancelFlag,
    preparer: Preparer,
    stores: Stores,
    keep: RecordFilter | None,
    obj: StoredObject,
    skip: int,
) -> None:
    """Send ``obj``'s prepared records in chunks, then its end (with the error that ended it, if any)."""
    progress = ReadProgress(records=skip)
    error: BadBytes | FetchFailed | Crashed | None = None
    stream, destinations = (obj.url, -1), len(preparer.mappers)
    chunk = ChunkBuilder(stream, destinations)
    try:
        for rec in read_object(stores.get(obj.url), obj, skip=skip, keep=keep, progress=progress):
            preparer.add(chunk, rec)
            if len(chunk) >= CHUNK:
                _send_chunk(conn, chunk.build(), progress)
                chunk = ChunkBuilder(stream, destinations)
                if cancel.is_set():
                    break
    except DecodeError as exc:
        error = BadBytes(exc.position.offset, exc.reason)
    except ReadError as exc:
        error = FetchFailed(exc.record, exc.reason)
    except Exception:  # a bug below: surface it in the main process, keep serving
        error = Crashed(traceback.format_exc(limit=8))
    if len(chunk):
        _send_chunk(conn, chunk.build(), progress)
    conn.send(ObjectEnd(progress.records, progress.filtered, error))


def _send_chunk(conn: Connection, chunk: Chunk, progress: ReadProgress) -> None:
    """A header, then the chunk's pickled bytes: the receiving thread passes them on unread, and the event
    loop unpickles them, so the columns are allocated by the thread that frees them (a receiving thread
    allocating them made glibc's per-thread heaps grow with the number of objects read)."""
    conn.send(ChunkFollows(progress.records, progress.filtered))
    conn.send_bytes(dumps(chunk))


def dumps(value: Any) -> bytes:
    """``value`` pickled as it crosses a pipe."""
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


class CancelFlag:
    """A worker's cancel flag: one byte of memory shared with the worker, with no lock.

    A ``multiprocessing.Event`` takes a lock shared with the worker to read or set it: a worker killed
    while it read its flag (at every chunk) left that lock held, and the main process's next ``set``
    waited for ever (seen as a replay that hung after a worker died). Here either side reads and
    writes the byte; a worker that dies leaves nothing held."""

    def __init__(self, ctx: multiprocessing.context.SpawnContext) -> None:
        self._byte = ctx.RawValue(ctypes.c_byte, 0)

    def set(self) -> None:
        self._byte.value = 1

    def clear(self) -> None:
        self._byte.value = 0

    def is_set(self) -> bool:
        return bool(self._byte.value)


@dataclass
class Worker:
    """The main process's handle on one worker: its process, its end of the pipe, its cancel flag."""

    process: SpawnProcess
    conn: Connection
    cancel: CancelFlag


def spawn(mappers: Sequence[Mapper], selection: Selection) -> Worker:
    """Start one worker process (``spawn``: a fresh interpreter, nothing inherited but the arguments)."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    cancel = CancelFlag(ctx)
    process = ctx.Process(
        target=_serve, args=(theirs, cancel, mappers, selection), name="currents-worker", daemon=True
    )
    process.start()
    theirs.close()
    return Worker(process, ours, cancel)


def stop(workers: list[Worker]) -> None:
    """Ask each worker to stop, wait a little, then terminate what is left."""
    for worker in workers:
        worker.cancel.set()
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(Stop())
    for worker in workers:
        worker.process.join(2.0)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(2.0)
        worker.conn.close()


class RestartBudget:
    """How many worker deaths a run survives: at most ``limit`` within any ``window`` seconds.

    A worker that dies now and then (the kernel's OOM killer, an operator's ``kill``) is replaced and
    its work done again; one that keeps dying (a mapper that crashes the interpreter, no memory for a
    new one) would otherwise be replaced for ever while nothing progresses. :meth:`spend` records one
    death and raises a :class:`~consumer.ops.faults.Fault` once the budget is spent.
    """

    def __init__(
        self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._deaths: deque[float] = deque()

    def spend(self, what: str, exitcode: int | None) -> None:
        """Record the death of ``what`` (exit code ``exitcode``); :class:`Fault` once there were too many."""
        now = self.clock()
        deaths = self._deaths
        deaths.append(now)
        while deaths and deaths[0] <= now - self.window:
            deaths.popleft()
        if len(deaths) > self.limit:
            raise Fault(
                f"{what} keep dying: {len(deaths)} deaths within {self.window:.0f}s "
                f"(the last with exit code {'unknown' if exitcode is None else exitcode}); "
                "not starting another"
            )
