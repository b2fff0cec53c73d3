"""A worker process that prepares Kafka message batches for the ``run`` daemon (``--workers``).

Decoding and mapping take most of the daemon's CPU; :class:`MessageWorker` moves them to one process
(:mod:`.worker_process`) while the main process delivers. Batches are answered in request order, so
several can be with the worker at once. A worker that dies fails every batch it held with
:class:`WorkerDied`; the daemon prepares those in its own process and restarts the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from consumer.decode.avro import Message
from consumer.sources.selection import Selection
from consumer.sources.worker_messages import PrepareBatch
from consumer.sources.worker_process import RestartBudget, Worker, spawn, stop

if TYPE_CHECKING:
    from consumer.transform.base import Mapper


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
        self.budget = RestartBudget()
        self._waiting: deque[asyncio.Future[bytes]] = deque()
        self._lock = threading.Lock()
        # One sender thread: requests reach the pipe in the order their futures were queued, and a
        # send waiting for the worker to read never blocks the event loop.
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="to-worker")
        self._worker: Worker | None = None
        self._dead = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the process and the thread that receives its answers."""
        self._loop = asyncio.get_running_loop()
        self._dead = False
        self._worker = spawn(self._mappers, Selection())
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
        task = PrepareBatch(batch, self._topic_types, self._has_registry, new_schemas, new_unusable)
        future: asyncio.Future[bytes] = loop.create_future()
        with self._lock:
            if self._dead:  # the receiving thread saw the pipe close: nothing would answer
                future.set_exception(WorkerDied(worker.process.pid, worker.process.exitcode))
                return future
            self._waiting.append(future)
        self._sender.submit(_send_quietly, worker.conn, task)
        return future

    def _receive(self, worker: Worker) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                # unpickled by the event loop, which frees what it allocates (see worker_process._send_chunk)
                answer = worker.conn.recv_bytes()
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
        replaced already (every batch it held reports its death). A worker that keeps dying is a
        :class:`~consumer.ops.faults.Fault` (see :class:`~.worker_process.RestartBudget`)."""
        old = self._worker
        if old is None or old.process.pid != died:
            return False
        self.budget.spend("worker processes", old.process.exitcode)
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
            stop([worker])


def _send_quietly(conn: Connection, task: PrepareBatch) -> None:
    with contextlib.suppress(OSError, ValueError):  # a dead worker is reported by the receiving side
        conn.send(task)


def _settle(future: asyncio.Future[Any], answer: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)
