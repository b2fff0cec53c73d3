"""``currents-consumer replay``: deliver Currents Avro files to Amplitude (backfills).

Wiring only: the shared :class:`~consumer.app.loop.RunLoop` drives a
:class:`~consumer.sources.storage.source.FileSource` over a listing of the roots (local, or objects in
S3, GCS or Azure Blob storage), those the :class:`~consumer.sources.storage.selection.Selection` picks, in
listing order; the next ``--files-in-flight`` are fetched and decoded ahead. Each file is a stream whose
contiguous done prefix is saved in the resume state every few seconds, and a file whose every record is
done is marked finished, so an interrupted replay continues where it stopped and never fetches a
finished object again. A corrupt file is named, dead-lettered (reason ``unreadable_input``, with the
record index where reading stopped) and the replay goes on; an object whose bytes could not be fetched
is named and left unfinished for the next run. Records the selection leaves out (another type, outside
an ``--event-time`` window) are not read into the pipeline; they are counted apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consumer.app.destinations import Destination
from consumer.app.loop import RunLoop
from consumer.app.pipeline import Pipeline
from consumer.commands.replay_plan import plan
from consumer.ops.faults import Fault
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.ops.progress import ProgressView, Snapshot, progress_view
from consumer.ops.summary import Summary
from consumer.positions.resume import ResumeState, object_identity
from consumer.settings import Settings
from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.source import FileSource
from consumer.sources.storage.store import StoredObject
from consumer.sources.storage.stores import Stores
from consumer.sources.workers.file_pool import WorkerPool

log = logging.getLogger("currents.replay")


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


class ResumeLedger:
    """The replay's resume state as a :class:`~consumer.sources.storage.source.Ledger`: objects by
    identity (URL and version), finished ones passed over, unfinished ones resumed at their done prefix."""

    def __init__(self, state: ResumeState) -> None:
        self.state = state
        self.resumed = 0
        """Objects passed over because an earlier run finished them."""

    def admit(self, obj: StoredObject) -> int | None:
        """Records to skip in ``obj``, or ``None`` when an earlier run finished it (not fetched again)."""
        ident = object_identity(obj)
        if self.state.is_done(ident):
            self.resumed += 1
            return None
        return self.state.next_record.get(ident, 0)

    def progress(self, obj: StoredObject, next_record: int) -> None:
        """``obj`` is done up to ``next_record``."""
        self.state.next_record[object_identity(obj)] = next_record

    def finished(self, obj: StoredObject, records: int) -> None:
        """``obj`` is finished."""
        self.state.mark_done(object_identity(obj), records)

    def abandoned(self, obj: StoredObject) -> None:
        """Left unfinished: the next run reads it from its done prefix."""

    def save(self) -> None:
        """Write the state (a :class:`~consumer.ops.faults.Fault` if it cannot be)."""
        self.state.save()


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
        self.ledger = ResumeLedger(self.state)
        self.loop = RunLoop(destinations, settings.dead_letter, metrics, clock=clock)
        self.result = ReplayResult(self.loop.pipeline.summary)
        self.progress_interval = progress_interval
        self.checkpoint_interval = checkpoint_interval
        self.health: Health | None = None
        self.pool = pool
        """The worker processes (``--workers``): given started (their mappers those of ``destinations``,
        their selection this replay's), or started by :meth:`run`; closed when it returns."""
        self.listing = Listing()
        self.source: FileSource | None = None
        self.grace = 30.0
        """The grace :meth:`run` was given (for :meth:`closing_lines`)."""

    @property
    def pipeline(self) -> Pipeline:
        """The run's pipeline."""
        return self.loop.pipeline

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self.loop.stopping.is_set()

    def update_gauges(self) -> None:
        """Refresh the point-in-time gauges (called before each scrape)."""
        self.loop.update_gauges()

    def stop(self) -> None:
        """Stop reading (a signal): what was read is still delivered within the grace time, then saved."""
        self.loop.stop()

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
        stores = Stores()
        source = self.source = FileSource(
            list_objects(self.paths, self.selection, stores, self.listing),
            self.selection,
            self.ledger,
            self.pipeline.preparer.prepare,
            in_flight=self.settings.input.files_in_flight,
            pool=self.pool,
            stores=stores,
        )
        view = progress_view(self.settings.log_format)
        snapshot: Callable[[], Snapshot] | None = None
        self.loop.beat = self._beat
        try:
            # The bar's totals: a listing ahead, as --dry-run's (a listing error ends the run here).
            snapshot = self._snapshots(await asyncio.to_thread(self._to_read) if view.listing_ahead else None)
            # Checkpoints go on while the last events drain (a hot device's backlog can take minutes):
            # a file finished meanwhile must not be replayed after a crash.
            await self.loop.drive(
                source,
                grace=grace,
                commit_interval=self.checkpoint_interval,
                periodic=[
                    (0.5 if view.listing_ahead else self.progress_interval, self._reporter(view, snapshot))
                ],
                on_close=self._close_pool,
            )
        finally:
            await self._close_pool()
            self._collect(source)
            view.close(snapshot() if snapshot is not None else None)
        if not self.stopped:  # a stopped listing did not see everything
            self.result.nothing_found = self.listing.nothing_found(self.paths)
        return self.result

    async def _close_pool(self) -> None:
        if self.pool is not None:  # idempotent
            self.pool.close()

    def _collect(self, source: FileSource) -> None:
        result = self.result
        result.files_resumed = self.ledger.resumed
        result.files_done = source.stats.files_done
        result.bytes_done = source.stats.bytes_done
        result.filtered = source.stats.filtered
        result.unfinished = sorted(source.unfinished)

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
            stats = self.source.stats if self.source is not None else None
            done = stats.files_done if stats is not None else 0
            line = f"files done {done} {self.loop.counts()} ({rate:,.0f} ev/s)"
            bytes_done = stats.bytes_done if stats is not None else 0
            return Snapshot(done, read, rate, line, files_total, bytes_done, bytes_total)

        return snapshot

    def _reporter(self, view: ProgressView, snapshot: Callable[[], Snapshot]) -> Callable[[], None]:
        def report() -> None:
            view.update(snapshot())

        return report

    def _beat(self) -> None:
        if self.health is not None:
            self.health.beat()  # /livez: the replay's loop is turning
