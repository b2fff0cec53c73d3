"""Bounded read-ahead: list, fetch and decode the next few objects while the pipeline takes records.

The consumer sees objects strictly in the order they are listed (or, following a bucket, found) and each
object's records in order, so the resume state (one stream per object) is deterministic; what runs ahead
is bounded:

* a listing runs in its own thread, at most ``4 * in_flight + 16`` objects ahead (a follower's feed is
  bounded by the follower);
* at most ``in_flight`` objects are open at once (the one being consumed included), each read and
  decoded in its own worker thread (an object store's reads block on the network, and the Avro
  decoder pulls bytes synchronously, so neither may run on the event loop);
* each open object holds at most :data:`DEPTH` chunks of :data:`CHUNK` decoded records plus its
  store's read-ahead block (see :mod:`consumer.sources.storage.cloud`).

Throughput therefore grows with ``in_flight`` while the time to fetch an object (first-byte latency,
transfer) dominates, up to the point where decoding or Amplitude's limits bind. Worker threads are
daemons and stop at their next hand-over once their object is closed; one stuck in a network read
never holds up a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from consumer.decode.avro import DecodeError
from consumer.events import CurrentsRecord
from consumer.sources.storage.files import ReadError, ReadProgress, read_object
from consumer.sources.storage.selection import RecordFilter
from consumer.sources.storage.store import Store, StoredObject
from consumer.sources.storage.stores import Stores
from consumer.transform.prepare import Chunk


class ObjectPool(Protocol):
    """Worker processes that read and prepare whole objects (the ``WorkerPool`` of
    :mod:`consumer.sources.workers.file_pool`): a ticket per object, taken in listing order, then its
    prepared chunks as pickled bytes."""

    def ticket(self) -> int:
        """The next object's place in line (taken on the event loop, as objects are opened)."""
        ...

    def read(
        self, ticket: int, obj: StoredObject, skip: int, progress: ReadProgress, cancelled: threading.Event
    ) -> Iterator[bytes]:
        """``obj``'s prepared records after ``skip``, in pickled chunks, read in ``ticket``'s turn."""
        ...


def loads(data: bytes) -> Any:
    """A chunk a worker process sent as pickled bytes."""
    return pickle.loads(data)


CHUNK = 256
"""Records per hand-over from a worker thread to the event loop."""
DEPTH = 8
"""Chunks an object's worker may decode ahead of the consumer."""

T = TypeVar("T")


@dataclass(frozen=True)
class End:
    """The last item of a hand-over or a feed: the error that ended it, if any."""

    error: BaseException | None = None


class Handoff(Generic[T]):
    """A bounded queue from one worker thread to the event loop.

    :meth:`put` (worker) blocks while the queue is full and returns ``False`` once :meth:`cancel` was
    called; :meth:`get` (event loop) waits without blocking the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[T | End] = queue.Queue(depth)
        self._ready = asyncio.Event()
        self._cancelled = threading.Event()

    def put(self, item: T | End) -> bool:
        """Hand ``item`` over; ``False`` (item dropped) once the consumer has gone."""
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._ready.set)
            return True
        return False

    def get_nowait(self) -> T | End | None:
        """The next item if one is ready, else ``None``."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    async def get(self) -> T | End:
        """The next item, waiting for it."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            self._ready.clear()
            if self._queue.empty():  # a put after this check sets the event again: no lost wake-up
                await self._ready.wait()

    def cancel(self) -> None:
        """The consumer has gone: the worker's next (or current) :meth:`put` returns ``False``."""
        self._cancelled.set()

    @property
    def cancelled(self) -> threading.Event:
        """Set once the consumer has gone."""
        return self._cancelled


def _daemon(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


class ObjectReader:
    """The records of one object, decoded in a worker thread; iterate for chunks of records.

    Without a pool a chunk holds :class:`~consumer.events.CurrentsRecord` values decoded in the thread;
    with a :class:`~consumer.sources.workers.file_pool.WorkerPool` a chunk is one
    :class:`~consumer.transform.prepare.Chunk` that a worker process decoded and prepared, and the thread
    only receives it.

    Iteration ends normally at the end of the object, or raises :class:`DecodeError` (bad bytes)
    or :class:`~consumer.sources.storage.files.ReadError` (bytes not fetched) after the records before the
    failure.
    Afterwards ``progress.records`` is the index reading got to and ``progress.filtered`` how many
    records the selection left out.
    """

    def __init__(
        self,
        store: Store,
        obj: StoredObject,
        skip: int,
        keep: RecordFilter | None,
        pool: ObjectPool | None = None,
    ) -> None:
        self.obj = obj
        self.skip = skip
        self.progress = ReadProgress(records=skip)
        self._store = store
        self._keep = keep
        self._pool = pool
        self._handoff: Handoff[list[CurrentsRecord] | bytes] | None = None
        self._finished = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading in a worker thread."""
        self._handoff = Handoff(loop, DEPTH)
        pool = self._pool
        if pool is None:
            _daemon(self._produce, f"read {self.obj.url[-60:]}")
        else:
            ticket = pool.ticket()  # taken here, on the event loop: objects get workers in listing order
            _daemon(lambda: self._receive(pool, ticket), f"receive {self.obj.url[-60:]}")

    def _chunks(self) -> Iterator[list[CurrentsRecord]]:
        chunk: list[CurrentsRecord] = []
        records = read_object(self._store, self.obj, skip=self.skip, keep=self._keep, progress=self.progress)
        for record in records:
            chunk.append(record)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _produce(self) -> None:
        self._hand_over(self._chunks())

    def _receive(self, pool: ObjectPool, ticket: int) -> None:
        assert self._handoff is not None
        self._hand_over(pool.read(ticket, self.obj, self.skip, self.progress, self._handoff.cancelled))

    def _hand_over(self, chunks: Iterator[Any]) -> None:
        handoff = self._handoff
        assert handoff is not None
        end = End()
        with contextlib.closing(chunks):  # type: ignore[type-var]  # generators have close()
            try:
                for chunk in chunks:
                    if not handoff.put(chunk):
                        return
            except (DecodeError, ReadError) as exc:
                end = End(exc)
            except Exception as exc:  # a bug below; surface it in the consumer rather than in a thread
                end = End(exc)
        handoff.put(end)

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> Chunk | list[CurrentsRecord]:
        chunk = await self.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def records(self) -> AsyncIterator[CurrentsRecord]:
        """Each decoded record in turn (an object read in this process, with no worker pool)."""
        async for chunk in self:
            if isinstance(chunk, Chunk):
                raise TypeError(f"{self.obj.url} is read by worker processes: it gives chunks, not records")
            for record in chunk:
                yield record

    async def next_chunk(self) -> Chunk | list[CurrentsRecord] | None:
        """The next chunk, or ``None`` at the object's end; raises what ended it early. Cancel-safe: a
        cancelled wait takes nothing from the hand-over."""
        if self._finished or self._handoff is None:
            return None
        item = await self._handoff.get()
        if isinstance(item, End):
            self._finished = True
            if item.error is not None:
                raise item.error
            return None
        if isinstance(item, bytes):  # a worker's pickled chunk: unpickled here, on the event loop
            chunk: Chunk = loads(item)
            return chunk
        return item

    @property
    def finished(self) -> bool:
        """Whether the whole object was handed over (or its failure raised)."""
        return self._finished

    def close(self) -> None:
        """Stop the worker (at its next hand-over); records not taken yet are dropped."""
        if self._handoff is not None:
            self._handoff.cancel()


@runtime_checkable
class ObjectFeed(Protocol):
    """Where the objects to read come from, in order, on the event loop: a listing run in a thread
    (:func:`listing_feed`), or a follower's polls (:mod:`consumer.sources.storage.follow`). Ends with an
    :class:`End` (carrying the failure that ended it, if any); a follower's never does."""

    def get_nowait(self) -> StoredObject | End | None:
        """The next object (or the end) if one is ready, else ``None``."""
        ...

    async def get(self) -> StoredObject | End:
        """The next object (or the end), waiting for it; cancel-safe."""
        ...

    def cancel(self) -> None:
        """The reader has gone: stop producing."""
        ...


def listing_feed(objects: Iterator[StoredObject], loop: asyncio.AbstractEventLoop, depth: int) -> ObjectFeed:
    """``objects`` listed in a thread of their own (store listings block on the network), at most ``depth``
    ahead of the reader; a listing failure (``StoreError``, ``FileNotFoundError``...) ends the feed."""
    handoff: Handoff[StoredObject] = Handoff(loop, depth)

    def produce() -> None:
        try:
            for obj in objects:
                if not handoff.put(obj):
                    return
        except BaseException as exc:  # raised to the reader, after the objects listed before it
            handoff.put(End(exc))
            return
        handoff.put(End())

    _daemon(produce, "list objects")
    return handoff


class ReadAhead:
    """Objects in feed order, each already being read while the ones before it are consumed.

    ``admit(obj)`` (called on the event loop, in feed order) returns the number of records to skip,
    or ``None`` to pass the object over without opening it (finished by an earlier run). The objects
    come from ``objects`` (listed in a thread, at most ``4 * in_flight + 16`` ahead) or from ``feed``.
    """

    def __init__(
        self,
        objects: Iterator[StoredObject] | None,
        stores: Stores,
        *,
        in_flight: int,
        admit: Callable[[StoredObject], int | None] = lambda _: 0,
        keep: RecordFilter | None = None,
        pool: ObjectPool | None = None,
        feed: ObjectFeed | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        if (objects is None) == (feed is None):
            raise ValueError("give the objects or a feed of them")
        self._objects = objects
        self._feed = feed
        self._stores = stores
        self._in_flight = in_flight
        self._admit = admit
        self._keep = keep
        self._pool = pool
        self.listed = 0
        self._window: deque[ObjectReader] = deque()
        self._current: ObjectReader | None = None
        self._ended: End | None = None

    def _open_feed(self, loop: asyncio.AbstractEventLoop) -> ObjectFeed:
        if self._feed is None:
            assert self._objects is not None
            self._feed = listing_feed(self._objects, loop, 4 * self._in_flight + 16)
        return self._feed

    async def next(self) -> ObjectReader | None:
        """The next admitted object's reader (the one returned before is closed), with up to
        ``in_flight - 1`` more already being read behind it; ``None`` once the feed has ended. A feed's
        failure is raised after the readers of the objects it gave before it. Cancel-safe: nothing is
        taken from the feed unless it is opened."""
        if self._current is not None:
            self._current.close()
            self._current = None
        loop = asyncio.get_running_loop()
        feed = self._open_feed(loop)
        self._fill(feed, loop)
        while not self._window:
            if self._ended is not None:
                if self._ended.error is not None:
                    raise self._ended.error
                return None
            self._from_feed(await feed.get(), loop)
            self._fill(feed, loop)
        self._current = self._window.popleft()
        self._fill(feed, loop)
        return self._current

    def _fill(self, feed: ObjectFeed, loop: asyncio.AbstractEventLoop) -> None:
        """Open what the feed has ready while fewer than ``in_flight`` objects are open."""
        while self._ended is None and len(self._window) + (self._current is not None) < self._in_flight:
            item = feed.get_nowait()
            if item is None:
                return  # nothing ready yet: go on with what is open
            self._from_feed(item, loop)

    def _from_feed(self, item: StoredObject | End, loop: asyncio.AbstractEventLoop) -> None:
        """One item of the feed: its end, or an object to admit and, admitted, start reading."""
        if isinstance(item, End):
            self._ended = item
            return
        self.listed += 1
        skip = self._admit(item)
        if skip is None:
            return
        reader = ObjectReader(self._stores.get(item.url), item, skip, self._keep, self._pool)
        reader.start(loop)
        self._window.append(reader)

    async def readers(self) -> AsyncGenerator[ObjectReader, None]:
        """Each admitted object's reader, in feed order (:meth:`next` until the end); close the
        generator (``aclosing``) to stop early."""
        try:
            while (reader := await self.next()) is not None:
                yield reader
        finally:
            self.close()

    def close(self) -> None:
        """Stop the feed and every read in flight (worker threads stop at their next hand-over)."""
        if self._feed is not None:
            self._feed.cancel()
        if self._current is not None:
            self._current.close()
            self._current = None
        for reader in self._window:
            reader.close()
        self._window.clear()
