"""The files / stored objects :class:`~consumer.sources.base.Source` of ``replay`` and ``replay --follow``.

Objects come from a feed — a listing of the roots (``replay``), or a follower's polls and sweeps
(``--follow``) — and are read ahead (:class:`~consumer.sources.storage.readahead.ReadAhead`) in feed
order; each one is a stream ``(url, -1)`` whose positions are record indices. A file has no commit log
of its own: what is done is kept by a :class:`Ledger` (the replay's resume state, or the follower's),
which says where an object resumes, and is told how far each one got and which are finished.

* A chunk of records becomes one :class:`~consumer.sources.base.Batch` (prepared here when there are
  no worker processes).
* The end of an object ends its stream; once every record is done the ledger is told it is finished.
* A damaged object (bad bytes) is named, its damaged record dead-lettered (``unreadable_input``) and its
  stream ended there; with ``finish_damaged`` (a follower) the ledger then records it as finished, so a
  follower dead-letters it once, while a one-shot replay leaves it unfinished and names it again next run.
* An object whose bytes could not be fetched is named and left unfinished: the ledger is told how far it
  got (a follower reads it again later, a replay at its next run).
* An object a follower found rewritten after it was read (``rejected``) is named and dead-lettered
  (``rewritten_input``) instead of being read and sent again, then reported finished.
* The first listing failing before anything was listed is raised (a usage or access problem); a listing
  that breaks off later ends the source after what was listed, naming the failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from consumer.decode.avro import DecodeError
from consumer.events import CurrentsRecord, Position
from consumer.sources.base import BadInput, Batch, Owner, Stream
from consumer.sources.storage.files import ReadError
from consumer.sources.storage.readahead import ObjectFeed, ObjectPool, ObjectReader, ReadAhead
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import StoredObject, StoreError
from consumer.sources.storage.stores import Stores
from consumer.transform.prepare import Chunk

log = logging.getLogger("currents.files")


class Ledger(Protocol):
    """What is done of the objects a :class:`FileSource` reads; every call is made on the event loop."""

    def admit(self, obj: StoredObject) -> int | None:
        """Records to skip in ``obj`` (its done prefix), or ``None`` to pass it over (finished already)."""
        ...

    def progress(self, obj: StoredObject, next_record: int) -> None:
        """``obj`` is done up to ``next_record`` (exclusive) and not finished."""
        ...

    def finished(self, obj: StoredObject, records: int) -> None:
        """Every one of ``obj``'s ``records`` is done."""
        ...

    def abandoned(self, obj: StoredObject) -> None:
        """Reading ``obj`` stopped before its end (its progress was recorded); it may be offered again."""
        ...

    def save(self) -> None:
        """Make what the ledger was told durable (a :class:`~consumer.ops.faults.Fault` if it cannot)."""
        ...


@dataclass
class _Open:
    """An object being read or delivered: what its stream's end tells the ledger."""

    obj: StoredObject
    records: int = 0
    fully_read: bool = False
    damaged: bool = False


@dataclass
class FileStats:
    """What a file source got through, for progress lines and the summary."""

    files_done: int = 0
    bytes_done: int = 0
    """The listed size of the objects finished."""
    filtered: int = 0
    """Records the selection left out (another event type, outside the ``--event-time`` window)."""


class FileSource:
    """Objects from ``feed``, read ahead and handed out chunk by chunk; implements
    :class:`~consumer.sources.base.Source`.

    ``objects`` is a listing (an iterator, run in a thread) or a feed (a follower's). ``prepare`` turns
    decoded records of one file into a :class:`~consumer.transform.prepare.Chunk` when there is no
    ``pool`` (records decoded in a thread of this process); with a pool, worker processes send chunks.
    """

    def __init__(
        self,
        objects: Iterator[StoredObject] | ObjectFeed,
        selection: Selection,
        ledger: Ledger,
        prepare: Callable[[Stream, list[CurrentsRecord]], Chunk],
        *,
        in_flight: int,
        pool: ObjectPool | None = None,
        stores: Stores | None = None,
        finish_damaged: bool = False,
        rejected: Callable[[], list[tuple[StoredObject, str]]] | None = None,
    ) -> None:
        self._objects = objects
        self._selection = selection
        self.ledger = ledger
        self._prepare = prepare
        self._in_flight = in_flight
        self._pool = pool
        self.stores = stores if stores is not None else Stores()
        self._finish_damaged = finish_damaged
        self._rejected = rejected
        self._ahead: ReadAhead | None = None
        self._reader: ObjectReader | None = None
        self._open: dict[str, _Open] = {}
        self._paused = False
        self._done = False
        self.stats = FileStats()
        self.unfinished: set[str] = set()
        """Objects left unfinished (damaged, or not fetched): read again by a later run."""

    @property
    def listed(self) -> int:
        """How many objects the feed has given so far."""
        return self._ahead.listed if self._ahead is not None else 0

    # -- the Source contract ---------------------------------------------------------------------
    async def start(self, owner: Owner, stopping: asyncio.Event, beat: Callable[[], None]) -> bool:
        """Start the feed (a listing thread, or the follower) and the read-ahead."""
        objects = self._objects
        listing, feed = (None, objects) if isinstance(objects, ObjectFeed) else (objects, None)
        self._ahead = ReadAhead(
            listing,
            self.stores,
            feed=feed,
            in_flight=self._in_flight,
            admit=self.ledger.admit,
            keep=self._selection.record_filter(),
            pool=self._pool,
        )
        return not stopping.is_set()

    async def read(self, timeout: float) -> Batch | None:  # noqa: ASYNC109
        """The next chunk of records, a stream's end or a failure; ``None`` once the feed has ended."""
        if self._paused:
            return Batch()
        rejected = self._rejected() if self._rejected is not None else None
        if rejected:
            return self._dead_letter_rewritten(rejected)
        try:
            async with asyncio.timeout(timeout):
                return await self._next()
        except TimeoutError:
            return Batch()

    async def _next(self) -> Batch | None:
        """Cancel-safe: nothing changes before an awaited item has arrived."""
        while not self._done:
            reader = self._reader
            if reader is None:
                try:
                    reader = await self._next_reader()
                except StoreError as exc:
                    if not self.listed:
                        raise  # nothing could be listed: a usage or access problem, the command's to report
                    # Listing broke off midway: deliver and save what was read; a later run goes on.
                    log.error("listing failed, stopping: %s", exc)
                    self._done = True
                    return Batch(problems=[str(exc)])
                if reader is None:
                    return None
            try:
                chunk = await reader.next_chunk()
            except DecodeError as exc:
                return self._damaged(reader, exc)
            except ReadError as exc:
                return self._not_fetched(reader, exc)
            if chunk is None:
                return self._read_to_end(reader)
            if chunk:
                return self._batch(reader, chunk)
        return None

    async def _next_reader(self) -> ObjectReader | None:
        """The next object's reader, ``None`` once the feed ended (its failure raised)."""
        assert self._ahead is not None, "start() first"
        reader = await self._ahead.next()
        if reader is not None:
            self._reader = reader
            self._open[reader.obj.url] = _Open(reader.obj, records=reader.skip)
        return reader

    def _batch(self, reader: ObjectReader, chunk: Chunk | list[CurrentsRecord]) -> Batch:
        url = reader.obj.url
        # With a pool, worker processes prepared the chunk; otherwise a thread here decoded the records.
        prepared = chunk if isinstance(chunk, Chunk) else self._prepare((url, -1), chunk)
        self._open[url].records = prepared.offsets[-1] + 1
        return Batch([prepared])

    def _read_to_end(self, reader: ObjectReader) -> Batch:
        self._reader = None
        opened = self._open[reader.obj.url]
        opened.records = max(opened.records, reader.progress.records)
        opened.fully_read = True
        self.stats.filtered += reader.progress.filtered
        return Batch(ended=[(reader.obj.url, -1)])

    def _damaged(self, reader: ObjectReader, exc: DecodeError) -> Batch:
        self._reader = None
        url = reader.obj.url
        self._open[url].damaged = True
        self.stats.filtered += reader.progress.filtered
        log.error("unreadable input %s", exc)
        # The damaged record's index stands for the unreachable rest of the file.
        stream = (url, -1)
        return Batch(
            bad=[BadInput(exc, "unreadable_input")],
            ended=[stream],
            problems=[f"{url}: {exc.reason} (record {exc.position.offset})"],
        )

    def _not_fetched(self, reader: ObjectReader, exc: ReadError) -> Batch:
        # Nothing is wrong with the object: it stays unfinished, and is read again from the first record
        # not done (nothing is dead-lettered, so nothing is skipped).
        self._reader = None
        self.stats.filtered += reader.progress.filtered
        log.error("cannot read %s", exc)
        url = reader.obj.url
        return Batch(ended=[(url, -1)], problems=[f"{url}: {exc.reason} (record {exc.record})"])

    def _dead_letter_rewritten(self, rejected: list[tuple[StoredObject, str]]) -> Batch:
        """Objects rewritten after they were read: each dead-lettered whole (its first record's position)
        and ended, so the ledger records the new version as finished."""
        batch = Batch()
        for obj, version in rejected:
            stream = (obj.url, -1)
            reason = (
                f"rewritten after it was read: version {version} was read and delivered, the store now holds "
                f"version {obj.version}, which is not sent (replay this object alone to send it)"
            )
            self._open[obj.url] = _Open(obj, damaged=True)
            batch.bad.append(BadInput(DecodeError(Position(obj.url, -1, 0), reason), "rewritten_input"))
            batch.ended.append(stream)
            batch.problems.append(f"{obj.url}: {reason}")
        return batch

    def pause(self) -> None:
        """Hand out no further chunk until :meth:`resume` (reading ahead stops when its window is full)."""
        self._paused = True

    def resume(self) -> None:
        """Hand out chunks again."""
        self._paused = False

    def streams(self) -> Iterable[Stream]:
        """The objects being read or delivered."""
        return [(url, -1) for url in self._open]

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Tell the ledger how far each object got, and make it durable; always ``True``."""
        for (url, _), nxt in offsets.items():
            opened = self._open.get(url)
            if opened is not None:
                self.ledger.progress(opened.obj, nxt)
        self.ledger.save()
        return True

    def finished(self, stream: Stream, next_position: int) -> None:
        """Every position read of ``stream`` is done: tell the ledger whether the object is finished."""
        opened = self._open.pop(stream[0], None)
        if opened is None:
            return
        obj = opened.obj
        if opened.fully_read or (opened.damaged and self._finish_damaged):
            self.ledger.finished(obj, max(opened.records, next_position))
            self.unfinished.discard(obj.url)
            self.stats.files_done += 1
            self.stats.bytes_done += obj.size
            return
        self.ledger.progress(obj, next_position)
        self.ledger.abandoned(obj)
        self.unfinished.add(obj.url)

    def ready(self) -> bool:
        """A file source can always work once started."""
        return self._ahead is not None

    def backlog(self) -> int:
        """Nothing is held here beyond the chunk being handed out."""
        return 0

    async def close(self) -> None:
        """Stop reading ahead (worker threads stop at their next hand-over) and close the feed."""
        if self._ahead is not None:
            self._ahead.close()
        self.unfinished.update(self._open)
