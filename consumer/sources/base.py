"""The Source contract: what every input (a Kafka consumer group, files or stored objects, a followed
bucket) promises to the one loop that reads them all (:class:`~consumer.app.loop.RunLoop`).

A source is read by :meth:`Source.read`, which gives a :class:`Batch`: chunks of prepared rows in
position order per stream (a Kafka partition ``(topic, partition)``, or one file ``(url, -1)``), the
inputs that ended a stream early, and the streams read to their end. Everything after reading —
tracking, taking into delivery, acknowledging, committing — is the loop's, the same for every source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from consumer.decode.avro import DecodeError
from consumer.events import Stream as Stream  # re-exported: the sources' name
from consumer.transform.prepare import Chunk


@dataclass(frozen=True, slots=True)
class BadInput:
    """A file that ended early, dead-lettered with ``reason`` at one position: ``unreadable_input`` (a
    damaged file; its position is the record where reading stopped) or ``rewritten_input``. (An
    undecodable Kafka value is a bad row of its chunk.)"""

    error: DecodeError
    reason: str


@dataclass(slots=True)
class Batch:
    """What one :meth:`Source.read` gives; an empty batch says nothing came within the wait."""

    records: list[Chunk] = field(default_factory=list)
    """Chunks of prepared rows, each of one stream, in position order per stream; the loop tracks each
    part of a chunk as it takes it into delivery."""
    bad: list[BadInput] = field(default_factory=list)
    """Inputs dead-lettered as they are (the loop tracks and acknowledges their positions), each after
    every chunk of its stream."""
    ended: list[Stream] = field(default_factory=list)
    """Streams read to their end (a file): once every position of one is acknowledged, the loop calls
    :meth:`Source.finished`."""
    problems: list[str] = field(default_factory=list)
    """Lines for the run's summary: objects that could not be fetched or were damaged."""


class Owner(Protocol):
    """What a source may ask of the loop that reads it."""

    async def release(self, streams: set[Stream], timeout: float) -> None:  # noqa: ASYNC109
        """The source is losing ``streams`` (a rebalance): records read of them and not yet taken are
        dropped, those taken get ``timeout`` seconds to finish, the done prefix is committed, and the
        streams are forgotten (nothing is committed for them afterwards)."""


class Source(Protocol):
    """An input read in position order per stream and told which positions are done.

    * **Reading.** :meth:`read` waits at most ``timeout`` seconds and returns a :class:`Batch` (empty if
      nothing came), or ``None`` once the source has nothing more, ever (a replay's last file). It never
      hands out more than one batch ahead of what the loop took, so memory does not grow with lag.
    * **Back-pressure.** When delivery is full the loop calls :meth:`pause` and goes on calling
      :meth:`read` (``timeout`` 0) until there is room: a paused source returns empty batches and uses
      the calls to stay alive (Kafka keeps polling, so the group membership holds); :meth:`resume`
      undoes it. Both are idempotent and never wait.
    * **Acknowledging.** A position is acknowledged when its event is finished, whichever way:
      delivered, skipped by a mapping rule, or dead-lettered (the dead-letter record durable first).
      Acknowledgements arrive in any order; the loop tracks them.
    * **Committing.** :meth:`commit` is only ever given, per stream of :meth:`streams`, the
      *contiguous* acknowledged prefix (the next position to read, Kafka's convention), and only what
      moved since the last successful commit (possibly nothing: a source may still have something of
      its own to save). ``False`` means the commit could not be made (a rebalance, a fenced generation):
      the previous one stands, which is safe, and a later commit retries.
    * **Finishing.** A stream the source said had ended (:attr:`Batch.ended`) whose every position is
      done is handed to :meth:`finished` once, then forgotten by the loop.
    * **Shutdown.** The loop stops reading, pauses the source, gives events in flight a bounded grace,
      commits the done prefix, then calls :meth:`close`, which releases the input (leaves the group,
      stops the file threads and workers) without committing anything itself: an event unfinished at
      shutdown is read again by the next run.
    """

    async def start(self, owner: Owner, stopping: asyncio.Event, beat: Callable[[], None]) -> bool:
        """Connect or begin listing (retrying while the input is unreachable, calling ``beat`` between
        attempts); ``False`` if ``stopping`` was set first."""
        ...

    async def read(self, timeout: float) -> Batch | None:  # noqa: ASYNC109
        """The next batch within ``timeout`` seconds (empty if none), or ``None`` at the source's end."""
        ...

    def pause(self) -> None:
        """Hand out nothing more until :meth:`resume` (back-pressure); idempotent."""
        ...

    def resume(self) -> None:
        """Hand out input again after :meth:`pause`; idempotent."""
        ...

    def streams(self) -> Iterable[Stream]:
        """The streams whose done prefix is committed now (Kafka: the partitions owned; files: those open)."""
        ...

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Make ``offsets`` (per stream, the next position to read) where a restart begins; ``False`` if
        the commit failed and the previous one stands."""
        ...

    def finished(self, stream: Stream, next_position: int) -> None:
        """Every position read of ``stream``, which had ended, is done; ``next_position`` is the one after
        the last (what a commit would say)."""
        ...

    def ready(self) -> bool:
        """Whether the source is able to work (the daemon: partitions assigned); readiness, not health."""
        ...

    def backlog(self) -> int:
        """Records read from the input and not handed to the loop yet (gauges, closing lines)."""
        ...

    async def close(self) -> None:
        """Release the input; commits nothing (the loop committed the done prefix before)."""
        ...
