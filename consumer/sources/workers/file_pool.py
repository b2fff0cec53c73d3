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
  :class:`~consumer.sources.storage.files.ReadError`, with the same object, record index and reason as
  in-process decoding. A worker that dies (killed, out of memory) is reported as a :class:`ReadError` of
  the object it was reading (left unfinished, read again by the next run) and replaced.
* **State.** A mapper's memory lives in its process: Movable Ink's memory of identified users is one per
  worker, so a user may be identified once per worker instead of once per replay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from consumer.decode.avro import DecodeError
from consumer.events import Position
from consumer.ops.faults import Fault
from consumer.sources.storage.files import ReadError, ReadProgress
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import StoredObject
from consumer.sources.workers.process import RestartBudget, Worker, spawn, stop
from consumer.sources.workers.wire import (
    BadBytes,
    ChunkFollows,
    FetchFailed,
    FromReader,
    ObjectEnd,
    ReadObject,
)

if TYPE_CHECKING:
    from consumer.transform.base import Mapper

log = logging.getLogger("currents.workers")

POLL = 0.5
"""Seconds between checks that a worker a thread waits on is still alive."""


class WorkerPool:
    """``size`` worker processes preparing records with ``mappers`` (records ``selection`` keeps)."""

    def __init__(self, size: int, mappers: Sequence[Mapper], selection: Selection) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._mappers = tuple(mappers)
        self._selection = selection
        self._cv = threading.Condition()
        self._free: list[Worker] = []
        self._all: list[Worker] = []
        self._tickets = 0
        self._turn = 0
        self._closed = False
        self.budget = RestartBudget()
        self._broken: Fault | None = None
        """Set once workers died too often: every later read raises it (the run stops)."""

    def start(self) -> None:
        """Start the processes (they load in parallel with whatever the caller does next)."""
        for _ in range(self.size):
            self._free.append(self._spawn())

    def _spawn(self) -> Worker:
        worker = spawn(self._mappers, self._selection)
        self._all.append(worker)
        return worker

    def ticket(self) -> int:
        """The next object's place in line (call in listing order, as objects are opened)."""
        ticket = self._tickets
        self._tickets += 1
        return ticket

    def _acquire(self, ticket: int, cancelled: threading.Event) -> Worker | None:
        """A worker for ``ticket`` once every earlier ticket has had its turn; ``None`` if cancelled."""
        with self._cv:
            while True:
                if self._broken is not None:
                    raise self._broken
                gone = cancelled.is_set() or self._closed
                if ticket == self._turn and (gone or self._free):
                    self._turn += 1
                    self._cv.notify_all()
                    return None if gone else self._free.pop()
                self._cv.wait(0.1)

    def _release(self, worker: Worker) -> None:
        with self._cv:
            if not self._closed:
                self._free.append(worker)
            self._cv.notify_all()

    def read(
        self, ticket: int, obj: StoredObject, skip: int, progress: ReadProgress, cancelled: threading.Event
    ) -> Iterator[bytes]:
        """The prepared records of ``obj`` after ``skip``, in pickled chunks (each one
        :class:`~consumer.transform.prepare.Chunk`), read by a worker in ``ticket``'s turn.

        Raises :class:`DecodeError` or :class:`ReadError` as reading the object in-process would;
        ``progress`` follows the worker's. Closing the iterator early stops the worker at its next chunk.
        """
        worker = self._acquire(ticket, cancelled)
        if worker is None:
            return
        worker.cancel.clear()
        ended = False
        try:
            try:
                worker.conn.send(ReadObject(obj, skip))
            except OSError as exc:  # it died while it waited for work
                raise ReadError(obj.url, progress.records, f"worker died ({type(exc).__name__})") from exc
            while True:
                header = self._header(worker, obj, progress)
                progress.records, progress.filtered = header.records, header.filtered
                if isinstance(header, ObjectEnd):
                    ended = True
                    _raise(header, obj)
                    return
                yield self._chunk(worker, obj, progress)
        finally:
            if ended:
                self._release(worker)
            else:
                self._recover(worker, obj, progress)

    @classmethod
    def _header(cls, worker: Worker, obj: StoredObject, progress: ReadProgress) -> FromReader:
        """The worker's next message about ``obj``: a chunk follows, or the object has ended."""
        message = cls._receive(worker, obj, progress, raw=False)
        if not isinstance(message, ChunkFollows | ObjectEnd):
            raise RuntimeError(f"a worker reading {obj.url} sent {type(message).__name__}")
        return message

    @classmethod
    def _chunk(cls, worker: Worker, obj: StoredObject, progress: ReadProgress) -> bytes:
        """The pickled bytes of the chunk a :class:`ChunkFollows` announced."""
        data = cls._receive(worker, obj, progress, raw=True)
        assert isinstance(data, bytes)  # recv_bytes gives nothing else
        return data

    @staticmethod
    def _receive(worker: Worker, obj: StoredObject, progress: ReadProgress, *, raw: bool) -> object:
        """The worker's next message, or with ``raw`` the next bytes; a worker that died is a
        :class:`ReadError` of ``obj``."""
        while not worker.conn.poll(POLL):
            if not worker.process.is_alive():
                code = worker.process.exitcode
                raise ReadError(obj.url, progress.records, f"worker died (exit code {code})")
        try:
            return worker.conn.recv_bytes() if raw else worker.conn.recv()
        except (EOFError, OSError) as exc:
            raise ReadError(obj.url, progress.records, f"worker died ({type(exc).__name__})") from exc

    def _recover(self, worker: Worker, obj: StoredObject, progress: ReadProgress) -> None:
        """After an early stop or a death: read up to the worker's end and give it back, or replace it."""
        worker.cancel.set()
        try:
            while True:
                if isinstance(self._header(worker, obj, progress), ObjectEnd):
                    self._release(worker)
                    return
                self._chunk(worker, obj, progress)
        except ReadError:
            pass
        with self._cv:
            if worker in self._all:
                self._all.remove(worker)
            if self._closed:
                return
        worker.conn.close()
        log.warning("worker process %s ended; starting another", worker.process.pid)
        self._replace(worker.process.exitcode)

    def _replace(self, exitcode: int | None) -> None:
        """Start a worker in place of one that died (with ``exitcode``), within the restart budget; a
        replacement that dies while starting is one more death. Once the budget is spent every later
        read raises its :class:`~consumer.ops.faults.Fault`."""
        try:
            while True:
                self.budget.spend("worker processes", exitcode)
                try:
                    replacement = self._spawn()
                    break
                except (OSError, EOFError) as exc:  # it died before it had read its arguments
                    log.warning("a new worker process died while starting (%s)", type(exc).__name__)
        except Fault as fault:
            with self._cv:
                self._broken = fault
                self._cv.notify_all()
            return
        self._release(replacement)

    def close(self) -> None:
        """Stop every worker (waiting a little for each) and wake threads still waiting for one."""
        with self._cv:
            self._closed = True
            workers, self._all, self._free = self._all, [], []
            self._cv.notify_all()
        stop(workers)


def _raise(end: ObjectEnd, obj: StoredObject) -> None:
    """Raise what ended ``obj`` early, as reading it in this process would have."""
    match end.error:
        case None:
            return
        case BadBytes(offset, reason):
            raise DecodeError(Position(obj.url, -1, offset), reason)
        case FetchFailed(record, reason):
            raise ReadError(obj.url, record, reason)
        case crashed:
            raise RuntimeError(f"a worker failed reading {obj.url}:\n{crashed.text}")
