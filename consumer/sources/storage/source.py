"""The files / stored objects :class:`~consumer.sources.base.Source` of ``replay``.

Objects are listed and read ahead (:class:`~consumer.sources.storage.readahead.ReadAhead`), each one a stream
``(url, -1)`` whose positions are record indices. A file has no commit log of its own: committing hands
the done prefix to ``save`` (the replay's resume state), which makes it where the next run begins.
Back-pressure: a paused source hands out no further chunk until resumed; a caller that simply does not
ask for the next chunk (it waits on delivery) holds reading just the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from consumer.sources.base import Stream
from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.readahead import ObjectPool, ObjectReader, ReadAhead
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import StoredObject
from consumer.sources.storage.stores import Stores


class FileSource:
    """Readers of the selected objects in listing order; implements :class:`~consumer.sources.base.Source`.

    ``admit(obj)`` gives the records to skip in ``obj`` (its committed prefix) or ``None`` to pass it over
    (finished by an earlier run); ``save(offsets)`` makes ``offsets`` durable.
    """

    def __init__(
        self,
        paths: list[str],
        selection: Selection,
        *,
        in_flight: int,
        admit: Callable[[StoredObject], int | None],
        save: Callable[[Mapping[Stream, int]], None],
        pool: ObjectPool | None = None,
    ) -> None:
        self.stores = Stores()
        self.listing = Listing()
        """What the listing found and what the selection left out (complete once reading ended)."""
        self._ahead = ReadAhead(
            list_objects(paths, selection, self.stores, self.listing),
            self.stores,
            in_flight=in_flight,
            admit=admit,
            keep=selection.record_filter(),
            pool=pool,
        )
        self._save = save
        self._open = asyncio.Event()
        self._open.set()

    @property
    def listed(self) -> int:
        """How many objects the listing has given so far."""
        return self._ahead.listed

    @contextlib.asynccontextmanager
    async def readers(self) -> AsyncIterator[AsyncIterator[ObjectReader]]:
        """The readers, in listing order (a listing failure is raised after the readers listed before
        it); leaving the context stops every read in flight."""
        async with contextlib.aclosing(self._ahead.readers()) as readers:
            yield readers

    async def chunks(self, reader: ObjectReader) -> AsyncIterator[list[Any]]:
        """``reader``'s chunks in record order, none handed out while paused."""
        async for chunk in reader:
            await self._open.wait()
            yield chunk

    def pause(self) -> None:
        """Hand out no further chunk until :meth:`resume`."""
        self._open.clear()

    def resume(self) -> None:
        """Hand out chunks again."""
        self._open.set()

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Hand ``offsets`` (per file, the first record not done) to ``save``; always ``True``."""
        self._save(offsets)
        return True

    async def close(self) -> None:
        """Nothing to release: reading stops when :meth:`readers` is left."""
