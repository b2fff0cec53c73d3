"""``currents-consumer replay``: deliver Currents Avro files to Amplitude (backfills).

Files — local, or objects in S3, GCS or Azure Blob storage — are taken in listing order, those the
:class:`~consumer.sources.storage.selection.Selection` picks; the next ``--files-in-flight`` are fetched
and decoded ahead (:class:`~consumer.sources.storage.readahead.ReadAhead`) while records flow, file after
file and each in order, through the shared :class:`~consumer.app.pipeline.Pipeline`. Each file is a
stream in an :class:`~consumer.positions.tracker.OffsetTracker`: its contiguous done prefix is saved in
the resume state every few seconds, and a file whose every record is done is marked finished, so an
interrupted replay continues where it stopped and never fetches a finished object again. A corrupt file
is named, dead-lettered (reason ``unreadable_input``, with the record index where reading stopped) and
the replay goes on; an object whose bytes could not be fetched is named and left unfinished for the next
run. Records the selection leaves out (another type, outside an ``--event-time`` window) are not read
into the pipeline; they are counted apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from consumer.app.destinations import Destination
from consumer.app.loop import RunLoop
from consumer.commands.replay_plan import plan
from consumer.decode.avro import DecodeError
from consumer.ops.faults import Fault
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.ops.progress import ProgressView, Snapshot, progress_view
from consumer.ops.summary import Summary
from consumer.positions.resume import ResumeState, object_identity
from consumer.settings import Settings
from consumer.sources.base import Stream
from consumer.sources.storage.files import ReadError
from consumer.sources.storage.readahead import ObjectReader
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.source import FileSource
from consumer.sources.storage.store import StoredObject, StoreError
from consumer.sources.workers.file_pool import WorkerPool

log = logging.getLogger("currents.replay")


@dataclass
class _FileState:
    ident: str
    fully_read: bool = False
    records: int = 0
    size: int = 0


@dataclass
class ReplayResult:
    """The summary of a replay and how many files an earlier run had already finished."""

    summary: Summary
    files_resumed: int = 0
    files_done: int = 0
    bytes_done: int = 0
    """The listed size of the files finished by this run."""
    unfinished: list[str] = field(default_factory=list)
    filtered: int = 0
    """Records the selection left out (another event type, outside the ``--event-time`` window)."""
    nothing_found: str | None = None
    """Why no object was listed at all (no Avro files, or all outside the selection), else ``None``."""


class Replay:
    """One replay job over files or objects; :meth:`run` returns its :class:`ReplayResult`."""

    def __init__(
        self,
        paths: list[str],
        settings: Settings,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        progress_interval: float = 10.0,
        checkpoint_interval: float = 5.0,
        clock: Callable[[], float] | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.selection = Selection.of_input(settings.input)
        self.state = ResumeState.load(
            settings.state_dir,
            paths,
            self.selection.key(),
            tuple(d.name for d in destinations),
            self.selection.shard,
        )
        self.loop = RunLoop(
            destinations, settings.dead_letter, metrics, on_acked=self._maybe_finish, clock=clock
        )
        self.tracker = self.loop.tracker
        self.dead = self.loop.dead
        self.pipeline = self.loop.pipeline
        self.files: dict[str, _FileState] = {}
        self.result = ReplayResult(self.pipeline.summary)
        self.progress_interval = progress_interval
        self.checkpoint_interval = checkpoint_interval
        self.health: Health | None = None
        self.pool = pool
        """The worker processes (``--workers``): given started (their mappers those of ``destinations``,
        their selection this replay's), or started by :meth:`run`; closed when it returns."""
        self.source: FileSource | None = None
        self.grace = 30.0
        """The grace :meth:`run` was given (for :meth:`closing_lines`)."""

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self.loop.stopping.is_set()

    def update_gauges(self) -> None:
        """Refresh the point-in-time gauges (called before each scrape)."""
        self.pipeline.update_gauges()

    def stop(self) -> None:
        """Stop reading (a signal): what was read is still delivered within the grace time, then saved."""
        self.loop.stop()

    def _maybe_finish(self, stream: Stream) -> None:
        path = stream[0]
        fs = self.files.get(path)
        if fs is None or not fs.fully_read or self.tracker.outstanding((path, -1)):
            return
        self.state.mark_done(fs.ident, fs.records)
        self.tracker.forget((path, -1))
        del self.files[path]
        self.result.files_done += 1
        self.result.bytes_done += fs.size

    def _save(self, offsets: Mapping[Stream, int]) -> None:
        """Record each unfinished file's done prefix (and the files finished meanwhile) in the state."""
        for (path, _), nxt in offsets.items():
            fs = self.files.get(path)
            if fs is not None:
                self.state.next_record[fs.ident] = nxt
        self.state.save()

    async def checkpoint(self) -> None:
        """Persist progress: sync dead-letters first, then record each file's done prefix."""
        assert self.source is not None
        await self.loop.commit(self.source, self.loop.done_prefix((path, -1) for path in self.files))

    def _admit(self, obj: StoredObject) -> int | None:
        """Records to skip in ``obj``, or ``None`` when an earlier run finished it (not fetched again)."""
        ident = object_identity(obj)
        if self.state.is_done(ident):
            self.result.files_resumed += 1
            return None
        return self.state.next_record.get(ident, 0)

    async def _read(self, source: FileSource, reader: ObjectReader) -> None:
        path = reader.obj.url
        fs = self.files[path] = _FileState(
            object_identity(reader.obj), records=reader.skip, size=reader.obj.size
        )
        stream = (path, -1)
        prepare = self.pipeline.preparer.prepare
        stopping = self.loop.stopping
        try:
            async for chunk in source.chunks(reader):
                if stopping.is_set():
                    return
                if not chunk:
                    continue
                if self.pool is None:  # records decoded in a thread of this process: prepared here
                    chunk = [prepare(record) for record in chunk]
                self.tracker.track_many(stream, [record[0] for record in chunk])
                fs.records = chunk[-1][0] + 1
                await self.pipeline.take_chunk(path, -1, chunk)
        except DecodeError as exc:
            self.result.summary.unreadable.append(f"{path}: {exc.reason} (record {exc.position.offset})")
            log.error("unreadable input %s", exc)
            # The damaged record's index stands for the unreachable rest of the file. The file is never
            # marked finished, so a later run reports the damage again instead of passing over it.
            self.tracker.track(stream, exc.position.offset)
            self.pipeline.dead_letter_input(exc.position, "unreadable_input", exc.reason)
            return
        except ReadError as exc:
            # Nothing is wrong with the object: it stays unfinished, the next run reads it from the
            # first record not done (nothing is dead-lettered, so nothing is skipped).
            self.result.summary.unreadable.append(f"{path}: {exc.reason} (record {exc.record})")
            log.error("cannot read %s", exc)
            return
        finally:
            self.result.filtered += reader.progress.filtered
        fs.records = max(fs.records, reader.progress.records)
        fs.fully_read = True
        self._maybe_finish(stream)

    async def _read_all(self, source: FileSource) -> None:
        """Read every selected object, ``--files-in-flight`` at a time, until done or stopped."""
        try:
            async with source.readers() as readers:
                async for reader in readers:
                    if self.stopped:
                        break
                    await self._read(source, reader)
        except StoreError as exc:
            if not source.listed:
                raise  # nothing could be listed: a usage or access problem, reported by the command
            # Listing broke off midway: deliver and save what was read; the next run goes on from there.
            self.result.summary.unreadable.append(str(exc))
            log.error("listing failed, stopping: %s", exc)

    async def run(self, grace: float = 30.0) -> ReplayResult:
        """Replay every selected file, wait for every event to finish, save the state, return the result.

        After :meth:`stop`, events already read get ``grace`` seconds to finish; the rest are left for
        the next run (the resume state records only what is done).
        """
        self.grace = grace
        if not self.selection.empty:
            log.info("replaying %s", self.selection.describe())
        workers = self.settings.input.workers
        if workers and self.pool is None:
            self.pool = WorkerPool(workers, self.pipeline.preparer.mappers, self.selection)
            self.pool.start()
        source = self.source = FileSource(
            self.paths,
            self.selection,
            in_flight=self.settings.input.files_in_flight,
            admit=self._admit,
            save=self._save,
            pool=self.pool,
        )
        view = progress_view(self.settings.log_format)
        snapshot: Callable[[], Snapshot] | None = None
        try:
            # The bar's totals: a listing ahead, as --dry-run's (a listing error ends the run here).
            snapshot = self._snapshots(await asyncio.to_thread(self._to_read) if view.listing_ahead else None)
            # Checkpoints go on while the last events drain (a hot device's backlog can take minutes):
            # a file finished meanwhile must not be replayed after a crash.
            async with self.loop.running(
                (0.5 if view.listing_ahead else self.progress_interval, self._reporter(view, snapshot)),
                (self.checkpoint_interval, self.checkpoint),
                on_close=self._close,
            ):
                try:
                    await self._read_all(source)
                    await self.loop.finish(grace)
                finally:
                    if self.pool is not None:
                        self.pool.close()
        finally:
            if self.pool is not None:  # the listing ahead failed: the workers are stopped here (idempotent)
                self.pool.close()
            view.close(snapshot() if snapshot is not None else None)
        self.result.unfinished = sorted(self.files)
        if not self.stopped:  # a stopped listing did not see everything
            self.result.nothing_found = source.listing.nothing_found(self.paths)
        return self.result

    def closing_lines(self, fault: Fault | None) -> list[str]:
        """What the run leaves behind, for people, after the summary: files an earlier run finished,
        records the selection left out, why nothing was read, and after a fault or a signal what
        happens to what is unfinished and how the next run goes on (which, without a state directory,
        is from the beginning)."""
        result, lines = self.result, []
        if result.files_resumed:
            lines.append(f"  files already finished by an earlier run: {result.files_resumed}")
        if result.filtered:
            lines.append(f"  records left out by the selection: {result.filtered}")
        if result.nothing_found is not None:
            lines.append(f"currents-consumer: {result.nothing_found}")
        if fault is not None:
            lines.append(f"currents-consumer: stopped: {fault}")
        if fault is not None or self.stopped:
            lines += self._unfinished_lines(stopped_by="stopped" if fault is not None else "interrupted")
        return lines

    def _unfinished_lines(self, stopped_by: str) -> list[str]:
        """After a fault or a signal: what became of the events still in flight, and where the next run
        begins (where this one stopped, or from the beginning without a state directory)."""
        lines = []
        kept = bool(self.settings.state_dir)
        if self.loop.unfinished:
            within = f" within --grace {self.grace:g}s" if stopped_by == "interrupted" else ""
            then = (
                "their files are not recorded as done in the resume state, so the next run reads them again"
                if kept
                else "no resume state is kept (--state-dir ''), only a new run from the beginning sends them"
            )
            lines.append(
                f"  {self.loop.unfinished} events were neither delivered nor dead-lettered{within}: {then}"
            )
        if not kept:
            lines.append(
                f"  {stopped_by}: without a state directory (--state-dir '') nothing records what was done,"
                " so running again starts from the beginning and sends everything again (Amplitude drops"
                " the events it already has by insert_id, within 7 days)"
            )
        elif stopped_by == "stopped":
            lines.append("  nothing unfinished was recorded as done: fix the cause and run again")
        else:
            lines.append("  interrupted: run the same command again to resume")
        return lines

    async def _close(self) -> None:
        assert self.source is not None
        try:
            await self.checkpoint()  # commits nothing after a fault
        finally:
            await self.source.close()

    def _to_read(self) -> tuple[int, int]:
        """Files and bytes still to read, from a listing like ``--dry-run``'s (finished ones left out)."""
        files = size = 0
        for obj, status in plan(self.paths, self.selection, self.state):
            if status != "done":
                files += 1
                size += obj.size
        return files, size

    def _snapshots(self, totals: tuple[int, int] | None) -> Callable[[], Snapshot]:
        """What each progress tick shows: the run's figures now, against ``totals`` (files, bytes)."""
        started = time.monotonic()
        files_total, bytes_total = totals if totals is not None else (None, None)

        def snapshot() -> Snapshot:
            read = sum(self.result.summary.read.values())
            rate = read / max(1e-9, time.monotonic() - started)
            done = self.result.files_done
            line = f"files done {done} {self.loop.counts()} ({rate:,.0f} ev/s)"
            return Snapshot(done, read, rate, line, files_total, self.result.bytes_done, bytes_total)

        return snapshot

    def _reporter(self, view: ProgressView, snapshot: Callable[[], Snapshot]) -> Callable[[], None]:
        def report() -> None:
            if self.health is not None:
                self.health.beat()  # /livez: the replay's loop is turning
            view.update(snapshot())

        return report
