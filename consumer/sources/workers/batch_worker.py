"""A worker process that prepares Kafka message batches for the ``run`` daemon (``--workers``).

Decoding and mapping take most of the daemon's CPU; :class:`MessageWorker` moves them to one process
(:mod:`.worker_process`) while the main process delivers. Batches are answered in request order, so
several can be with the worker at once. A worker that dies fails every batch it held with
:class:`WorkerDied`; the daemon prepares those in its own process and restarts the worker.

The event loop itself writes the batches to the worker's socket and reads its answers (asyncio streams
over the pipe, in :mod:`multiprocessing.connection`'s framing), with no thread in between: a thread
handing each batch over had to win the GIL back from the busy event loop for every read and write, up
to a switch interval (5 ms) each time, and the main process waited 2.5 s of a 7 s run for answers the
workers had long finished (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from consumer.decode.avro import MessageRun
from consumer.sources.storage.selection import Selection
from consumer.sources.workers.process import RestartBudget, Worker, dumps, spawn, stop
from consumer.sources.workers.wire import PrepareBatch

if TYPE_CHECKING:
    from consumer.transform.base import Mapper

log = logging.getLogger("currents.workers")

READ_LIMIT = 1 << 20
"""The stream reader's buffer limit (an answer of 256 prepared messages is about 100 KiB)."""


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
        self._worker: Worker | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._dead = False

    async def start(self) -> None:
        """Start the process, and the task that reads its answers."""
        self._dead = False
        worker = self._worker = spawn(self._mappers, Selection())
        # A duplicate of the pipe's socket for the event loop; ``worker.conn`` stays for stopping it.
        sock = socket.socket(fileno=os.dup(worker.conn.fileno()))
        reader, self._writer = await asyncio.open_connection(sock=sock, limit=READ_LIMIT)
        self._receiver = asyncio.create_task(self._receive(worker, reader), name="from-worker")

    def prepare(
        self, batch: list[MessageRun], schemas: dict[int, Any], unusable: dict[int, str]
    ) -> asyncio.Future[bytes]:
        """Queue ``batch``; the future gives the pickled list of chunks, one per run, or raises
        :class:`WorkerDied`.
        ``schemas``/``unusable`` are everything known so far; only what the worker lacks is sent."""
        worker, writer = self._worker, self._writer
        assert worker is not None and writer is not None, "start() first"
        new_schemas = {i: s for i, s in schemas.items() if i not in self._sent_schemas}
        new_unusable = {i: r for i, r in unusable.items() if i not in self._sent_unusable}
        self._sent_schemas.update(new_schemas)
        self._sent_unusable.update(new_unusable)
        task = PrepareBatch(batch, self._topic_types, self._has_registry, new_schemas, new_unusable)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if self._dead:  # the receiving task saw the pipe close: nothing would answer
            future.set_exception(WorkerDied(worker.process.pid, worker.process.exitcode))
            return future
        self._waiting.append(future)
        # Buffered by the transport (the batches with a worker are bounded by the daemon); a dead
        # worker is reported by the receiving side.
        writer.write(_frame(dumps(task)))
        return future

    async def _receive(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = struct.unpack("!i", await reader.readexactly(4))
                if size == -1:  # the framing of answers over 2 GiB
                    (size,) = struct.unpack("!Q", await reader.readexactly(8))
                # unpickled by the caller on the event loop, which frees what it allocates (see
                # worker_process._send_chunk)
                answer = await reader.readexactly(size)
                future = self._waiting.popleft()
                if not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, OSError):
            pass
        except Exception:  # a broken answer (framing, one answer too many): the worker is useless now
            log.exception("worker process %s: its answers cannot be read; it is replaced", worker.process.pid)
        # Whatever ended the reading, every batch still waiting is failed (WorkerDied): none waits for ever.
        await asyncio.to_thread(worker.process.join, 1.0)
        code = worker.process.exitcode
        self._dead = True
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(WorkerDied(worker.process.pid, code))

    async def restart(self, died: int | None) -> bool:
        """Replace the worker process ``died`` (a pid from :class:`WorkerDied`); ``False`` if it was
        replaced already (every batch it held reports its death). A worker that keeps dying is a
        :class:`~consumer.ops.faults.Fault` (see :class:`~.worker_process.RestartBudget`)."""
        old = self._worker
        if old is None or old.process.pid != died:
            return False
        self.budget.spend("worker processes", old.process.exitcode)
        self._sent_schemas.clear()
        self._sent_unusable.clear()
        self._close_streams()
        with contextlib.suppress(OSError):
            old.conn.close()
        await self.start()
        return True

    @property
    def pid(self) -> int | None:
        """The worker process's id (for tests and logs)."""
        return self._worker.process.pid if self._worker is not None else None

    def close(self) -> None:
        """Stop the worker process (and stop reading from it)."""
        self._close_streams()
        worker = self._worker
        if worker is not None:
            stop([worker])

    def _close_streams(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            self._receiver = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _frame(data: bytes) -> bytes:
    """``data`` framed as :meth:`multiprocessing.connection.Connection.send_bytes` frames it (what the
    worker's ``recv`` reads)."""
    n = len(data)
    if n > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", n) + data
    return struct.pack("!i", n) + data
