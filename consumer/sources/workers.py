"""Worker processes that read, decode and prepare whole objects for ``replay`` (``--workers``).

Decoding Avro and mapping records take most of a replay's CPU, and one Python process runs Python code
on one core at a time. With ``--workers N`` (default 1) a replay starts N processes; each takes one object
at a time: it opens it with its own store clients, decodes it, prepares every record for every
destination (:class:`~consumer.transform.prepare.Preparer`, with the destinations' own mappers, pickled
once at
start) and streams the prepared records back over a pipe in chunks. The main process then only delivers:
batching, limits, requests, acknowledgements. ``--workers 0`` decodes in threads of the main process.

* **Order.** Objects get a worker strictly in listing order (:meth:`WorkerPool.ticket` on the event
  loop, as objects are opened). Every worker is therefore busy with the object being delivered or one
  after it, never with an object that waits behind a stalled one: no deadlock, whatever ``N`` and
  ``--files-in-flight``.
* **Back-pressure.** A reader thread stops receiving when its object's hand-over is full; the pipe
  fills and the worker blocks on sending. Memory stays bounded as with in-process decoding.
* **Stopping early.** Closing an object's reader sets its worker's cancel flag; the worker stops at its
  next chunk and says so, the thread reads up to that end and gives the worker back.
* **Failures.** Bad bytes come back as :class:`~consumer.decode.avro.DecodeError` and a failed fetch as
  :class:`~consumer.sources.files.ReadError`, with the same object, record index and reason as in-process
  decoding. A worker that dies (killed, out of memory) is reported as a :class:`ReadError` of the object
  it was reading (left unfinished, read again by the next run) and replaced.
* **State.** A mapper's memory lives in its process: Movable Ink's memory of identified users is one per
  worker, so a user may be identified once per worker instead of once per replay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from consumer.decode.avro import DecodeError, Message
from consumer.events import Position
from consumer.sources.files import ReadError, ReadProgress, read_object
from consumer.sources.selection import RecordFilter, Selection
from consumer.sources.store import StoredObject
from consumer.sources.stores import Stores
from consumer.transform.prepare import Prepared, Preparer, prepare_messages

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess
    from multiprocessing.synchronize import Event as ProcessEvent

    from consumer.transform.base import Mapper

log = logging.getLogger("currents.workers")

CHUNK = 256
"""Prepared records per message from a worker."""
POLL = 0.5
"""Seconds between checks that a worker a thread waits on is still alive."""

# Messages from a worker reading an object: ("records", records, filtered, None) followed by the pickled
# chunk as raw bytes, repeated; then one ("end", records, filtered, error) where error is None,
# ("decode", offset, reason), ("read", record, reason) or ("bug", text).


def _serve(conn: Connection, cancel: ProcessEvent, mappers: Sequence[Mapper], selection: Selection) -> None:
    """A worker process: one task at a time, until told to stop (``None``) or the pipe closes.

    Tasks: ``("object", obj, skip)`` streams an object's prepared records; ``("messages", batch,
    topic_types, has_registry, schemas, unusable)`` answers one list of :data:`MessageResult` (the
    schemas and unusable ids not sent before come with the batch that first needs them).
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
        if task is None:
            return
        if task[0] == "messages":
            _, batch, topic_types, has_registry, new_schemas, new_unusable = task
            schemas.known.update(new_schemas)
            unusable.update(new_unusable)
            resolver = schemas if has_registry else None
            conn.send_bytes(_dumps(prepare_messages(batch, topic_types, resolver, unusable, preparer)))
            continue
        _, obj, skip = task
        _stream_object(conn, cancel, preparer, stores, keep, obj, skip)


class _KnownSchemas:
    """The schemas a worker has been sent, by id (a :class:`~consumer.decode.avro.SchemaResolver`)."""

    def __init__(self) -> None:
        self.known: dict[int, Any] = {}

    def schema_for_id(self, schema_id: int) -> Any | None:
        return self.known.get(schema_id)


def _stream_object(
    conn: Connection,
    cancel: ProcessEvent,
    preparer: Preparer,
    stores: Stores,
    keep: RecordFilter | None,
    obj: StoredObject,
    skip: int,
) -> None:
    """Send ``obj``'s prepared records in chunks, then its end (with the error that ended it, if any)."""
    progress = ReadProgress(records=skip)
    end: tuple[Any, ...] | None = None
    chunk: list[Prepared] = []
    try:
        for rec in read_object(stores.get(obj.url), obj, skip=skip, keep=keep, progress=progress):
            chunk.append(preparer.prepare(rec))
            if len(chunk) >= CHUNK:
                _send_chunk(conn, chunk, progress)
                chunk = []
                if cancel.is_set():
                    break
    except DecodeError as exc:
        end = ("decode", exc.position.offset, exc.reason)
    except ReadError as exc:
        end = ("read", exc.record, exc.reason)
    except Exception:  # a bug below: surface it in the main process, keep serving
        end = ("bug", traceback.format_exc(limit=8))
    if chunk:
        _send_chunk(conn, chunk, progress)
    conn.send(("end", progress.records, progress.filtered, end))


def _send_chunk(conn: Connection, chunk: list[Prepared], progress: ReadProgress) -> None:
    """A header, then the chunk's pickled bytes: the receiving thread passes them on unread, and the event
    loop unpickles them, so the records are allocated by the thread that frees them (a receiving thread
    allocating them made glibc's per-thread heaps grow with the number of objects read)."""
    conn.send(("records", progress.records, progress.filtered, None))
    conn.send_bytes(_dumps(chunk))


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


@dataclass
class _Worker:
    process: SpawnProcess
    conn: Connection
    cancel: ProcessEvent


def _spawn(mappers: Sequence[Mapper], selection: Selection) -> _Worker:
    """Start one worker process (``spawn``: a fresh interpreter, nothing inherited but the arguments)."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    cancel = ctx.Event()
    process = ctx.Process(
        target=_serve, args=(theirs, cancel, mappers, selection), name="currents-worker", daemon=True
    )
    process.start()
    theirs.close()
    return _Worker(process, ours, cancel)


class WorkerPool:
    """``size`` worker processes preparing records with ``mappers`` (records ``selection`` keeps)."""

    def __init__(self, size: int, mappers: Sequence[Mapper], selection: Selection) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._mappers = tuple(mappers)
        self._selection = selection
        self._cv = threading.Condition()
        self._free: list[_Worker] = []
        self._all: list[_Worker] = []
        self._tickets = 0
        self._turn = 0
        self._closed = False

    def start(self) -> None:
        """Start the processes (they load in parallel with whatever the caller does next)."""
        for _ in range(self.size):
            self._free.append(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _spawn(self._mappers, self._selection)
        self._all.append(worker)
        return worker

    def ticket(self) -> int:
        """The next object's place in line (call in listing order, as objects are opened)."""
        ticket = self._tickets
        self._tickets += 1
        return ticket

    def _acquire(self, ticket: int, cancelled: threading.Event) -> _Worker | None:
        """A worker for ``ticket`` once every earlier ticket has had its turn; ``None`` if cancelled."""
        with self._cv:
            while True:
                gone = cancelled.is_set() or self._closed
                if ticket == self._turn and (gone or self._free):
                    self._turn += 1
                    self._cv.notify_all()
                    return None if gone else self._free.pop()
                self._cv.wait(0.1)

    def _release(self, worker: _Worker) -> None:
        with self._cv:
            if not self._closed:
                self._free.append(worker)
            self._cv.notify_all()

    def read(
        self, ticket: int, obj: StoredObject, skip: int, progress: ReadProgress, cancelled: threading.Event
    ) -> Iterator[bytes]:
        """The prepared records of ``obj`` after ``skip``, in pickled chunks (each a list of
        :data:`~consumer.transform.prepare.Prepared`), read by a worker in ``ticket``'s turn.

        Raises :class:`DecodeError` or :class:`ReadError` as reading the object in-process would;
        ``progress`` follows the worker's. Closing the iterator early stops the worker at its next chunk.
        """
        worker = self._acquire(ticket, cancelled)
        if worker is None:
            return
        worker.cancel.clear()
        ended = False
        try:
            worker.conn.send(("object", obj, skip))
            while True:
                kind, progress.records, progress.filtered, end = self._receive(worker, obj, progress)
                if kind == "end":
                    ended = True
                    _raise(end, obj)
                    return
                yield self._receive(worker, obj, progress, raw=True)
        finally:
            if ended:
                self._release(worker)
            else:
                self._recover(worker, obj, progress)

    @staticmethod
    def _receive(worker: _Worker, obj: StoredObject, progress: ReadProgress, *, raw: bool = False) -> Any:
        """The worker's next message (a header), or with ``raw`` the bytes of the chunk that follows one;
        a worker that died is a :class:`ReadError` of ``obj``."""
        while not worker.conn.poll(POLL):
            if not worker.process.is_alive():
                code = worker.process.exitcode
                raise ReadError(obj.url, progress.records, f"worker died (exit code {code})")
        try:
            return worker.conn.recv_bytes() if raw else worker.conn.recv()
        except (EOFError, OSError) as exc:
            raise ReadError(obj.url, progress.records, f"worker died ({type(exc).__name__})") from exc

    def _recover(self, worker: _Worker, obj: StoredObject, progress: ReadProgress) -> None:
        """After an early stop or a death: read up to the worker's end and give it back, or replace it."""
        worker.cancel.set()
        try:
            while True:
                if self._receive(worker, obj, progress)[0] == "end":
                    self._release(worker)
                    return
                self._receive(worker, obj, progress, raw=True)
        except ReadError:
            pass
        with self._cv:
            if worker in self._all:
                self._all.remove(worker)
            if self._closed:
                return
        log.warning("worker process %s ended; starting another", worker.process.pid)
        worker.conn.close()
        replacement = self._spawn()
        self._release(replacement)

    def close(self) -> None:
        """Stop every worker (waiting a little for each) and wake threads still waiting for one."""
        with self._cv:
            self._closed = True
            workers, self._all, self._free = self._all, [], []
            self._cv.notify_all()
        _stop(workers)


def _stop(workers: list[_Worker]) -> None:
    """Ask each worker to stop, wait a little, then terminate what is left."""
    for worker in workers:
        worker.cancel.set()
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
    for worker in workers:
        worker.process.join(2.0)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(2.0)
        worker.conn.close()


def _raise(end: tuple[Any, ...] | None, obj: StoredObject) -> None:
    if end is None:
        return
    kind = end[0]
    if kind == "decode":
        raise DecodeError(Position(obj.url, -1, end[1]), end[2])
    if kind == "read":
        raise ReadError(obj.url, end[1], end[2])
    raise RuntimeError(f"a worker failed reading {obj.url}:\n{end[1]}")


class WorkerDied(Exception):
    """The message worker process ended; the batches it held are prepared in this process instead."""

    def __init__(self, pid: int | None, code: int | None) -> None:
        self.pid = pid
        super().__init__(f"worker process {pid} ended (exit code {code})")


class MessageWorker:
    """One worker process preparing Kafka message batches for the daemon; answers come in request order,
    so several batches can be with the worker at once (it prepares while the main process delivers)."""

    def __init__(self, mappers: Sequence[Mapper], topic_types: dict[str, str], has_registry: bool) -> None:
        self._topic_types = topic_types
        self._has_registry = has_registry
        self._sent_schemas: set[int] = set()
        self._sent_unusable: set[int] = set()
        self._mappers = tuple(mappers)
        self._waiting: deque[asyncio.Future[bytes]] = deque()
        self._lock = threading.Lock()
        # One sender thread: requests reach the pipe in the order their futures were queued, and a
        # send waiting for the worker to read never blocks the event loop.
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="to-worker")
        self._worker: _Worker | None = None
        self._dead = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the process and the thread that receives its answers."""
        self._loop = asyncio.get_running_loop()
        self._dead = False
        self._worker = _spawn(self._mappers, Selection())
        threading.Thread(target=self._receive, args=(self._worker,), name="from-worker", daemon=True).start()

    def prepare(
        self, batch: list[Message], schemas: dict[int, Any], unusable: dict[int, str]
    ) -> asyncio.Future[bytes]:
        """Queue ``batch``; the future gives the pickled list of results, one per message, or raises
        :class:`WorkerDied`.
        ``schemas``/``unusable`` are everything known so far; only what the worker lacks is sent."""
        loop, worker = self._loop, self._worker
        assert loop is not None and worker is not None, "start() first"
        new_schemas = {i: s for i, s in schemas.items() if i not in self._sent_schemas}
        new_unusable = {i: r for i, r in unusable.items() if i not in self._sent_unusable}
        self._sent_schemas.update(new_schemas)
        self._sent_unusable.update(new_unusable)
        task = ("messages", batch, self._topic_types, self._has_registry, new_schemas, new_unusable)
        future: asyncio.Future[bytes] = loop.create_future()
        with self._lock:
            if self._dead:  # the receiving thread saw the pipe close: nothing would answer
                future.set_exception(WorkerDied(worker.process.pid, worker.process.exitcode))
                return future
            self._waiting.append(future)
        self._sender.submit(_send_quietly, worker.conn, task)
        return future

    def _receive(self, worker: _Worker) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                answer = worker.conn.recv_bytes()  # unpickled by the event loop (see _send_chunk)
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._waiting.popleft()
            loop.call_soon_threadsafe(_settle, future, answer, None)
        worker.process.join(1.0)
        code = worker.process.exitcode
        with self._lock:
            self._dead = True
            waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, None, WorkerDied(worker.process.pid, code))

    def restart(self, died: int | None) -> bool:
        """Replace the worker process ``died`` (a pid from :class:`WorkerDied`); ``False`` if it was
        replaced already (every batch it held reports its death)."""
        old = self._worker
        if old is None or old.process.pid != died:
            return False
        self._sent_schemas.clear()
        self._sent_unusable.clear()
        with contextlib.suppress(OSError):
            old.conn.close()
        self.start()
        return True

    @property
    def pid(self) -> int | None:
        """The worker process's id (for tests and logs)."""
        return self._worker.process.pid if self._worker is not None else None

    def close(self) -> None:
        """Stop the worker process and the sender thread."""
        worker = self._worker
        self._sender.shutdown(wait=True, cancel_futures=True)
        if worker is not None:
            _stop([worker])


def _send_quietly(conn: Connection, task: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError, ValueError):  # a dead worker is reported by the receiving side
        conn.send(task)


def _settle(future: asyncio.Future[Any], answer: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)
