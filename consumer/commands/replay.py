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

from consumer.app.lease import Lease
from consumer.app.loop import RunLoop
from consumer.app.pipeline import Pipeline
from consumer.commands.closing import ReplayResult, replay_lines
from consumer.commands.follow import Following
from consumer.commands.replay_plan import plan
from consumer.delivery.destination import Destination
from consumer.ops.faults import Fault
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.ops.progress import ProgressView, Snapshot, progress_view
from consumer.positions.lock import JobLock
from consumer.positions.resume import ResumeLedger, ResumeState
from consumer.settings import Settings
from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.source import FileSource
from consumer.sources.storage.stores import Stores
from consumer.sources.workers.file_pool import WorkerPool

log = logging.getLogger("currents.replay")


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
        checkpoint_interval: float | None = None,
        clock: Callable[[], float] | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.selection = Selection.of_input(settings.input)
        self.names = tuple(d.name for d in destinations)
        self.clock = clock or time.time
        self.metrics = metrics
        self.following: Following | None = None
        """The follower's state and ledger (``--follow``); ``None`` for a one-shot replay."""
        self.state: ResumeState | None = None
        self._load_state()  # an unreadable state is said now (exit 2); read again once the lock is held
        self.loop = RunLoop(destinations, settings.dead_letter, metrics, clock=clock)
        self.result = ReplayResult(self.loop.pipeline.summary)
        self.progress_interval = progress_interval
        self.checkpoint_interval = checkpoint_interval or (1.0 if self.following is not None else 5.0)
        """How often progress is saved: a follower saves every second what changed (a restart then sends
        again little more than the files in flight), a one-shot replay every five."""
        self.health: Health | None = None
        self.pool = pool
        """The worker processes (``--workers``): given started (their mappers those of ``destinations``,
        their selection this replay's), or started by :meth:`run`; closed when it returns."""
        self.listing = Listing()
        self.source: FileSource | None = None
        self.grace = 30.0
        """The grace :meth:`run` was given (for :meth:`closing_lines`)."""

    def _load_state(self) -> None:
        """Read the job's state (``ValueError`` if it cannot be): the follower's, or the resume state."""
        settings, selection = self.settings, self.selection
        if settings.follow.follow:
            self.following = Following.load(
                self.paths, settings, selection, self.names, self.metrics, self.clock
            )
        else:
            self.state = ResumeState.load(
                settings.state_dir, self.paths, selection.key(), self.names, selection.shard
            )
            self.ledger = ResumeLedger(self.state)

    @property
    def pipeline(self) -> Pipeline:
        """The run's pipeline."""
        return self.loop.pipeline

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self.loop.stopping.is_set()

    def ready(self) -> bool:
        """Readiness: the files are being read (the lock held) and the run is not stopping."""
        return self.loop.ready()

    def update_gauges(self) -> None:
        """Refresh the point-in-time gauges (called before each scrape)."""
        self.loop.update_gauges()
        if self.following is not None:
            self.following.ledger.update_gauges()

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
        lease = self._lease()
        view = progress_view(self.settings.log_format, bar=self.following is None)
        snapshot: Callable[[], Snapshot] | None = None
        self.loop.beat = self._beat
        periodic = [] if lease is None or lease.local else [(lease.interval, lease.renew)]
        interval = 0.5 if view.listing_ahead else self.progress_interval
        try:
            if lease is not None:
                await lease.acquire(self.loop.stopping)
                self.loop.hold = lease.unconfirmed
                try:
                    self._load_state()  # as the last holder left it
                except ValueError as exc:
                    raise Fault(str(exc)) from None
            source = self.source = self._source()
            # The bar's totals: a listing ahead, as --dry-run's (a listing error ends the run here).
            snapshot = self._snapshots(await asyncio.to_thread(self._to_read) if view.listing_ahead else None)
            # Checkpoints go on while the last events drain (a hot device's backlog can take minutes):
            # a file finished meanwhile must not be replayed after a crash.
            await self.loop.drive(
                source,
                grace=grace,
                commit_interval=self.checkpoint_interval,
                periodic=[(interval, self._reporter(view, snapshot)), *periodic],
                on_close=self._close_pool,
            )
        finally:
            if lease is not None:
                await lease.release()
            await self._close_pool()
            if self.source is not None:
                self._collect(self.source)
            view.close(snapshot() if snapshot is not None else None)
        if not self.stopped:  # a stopped listing did not see everything
            self.result.nothing_found = self.listing.nothing_found(self.paths)
        return self.result

    def _source(self) -> FileSource:
        """A follower's file source (``--follow``), or one over a listing of the roots."""
        prepare, pool = self.pipeline.preparer.chunk, self.pool
        if self.following is not None:
            return self.following.source(self.settings, prepare, pool)
        stores = Stores()
        return FileSource(
            list_objects(self.paths, self.selection, stores, self.listing),
            self.selection,
            self.ledger,
            prepare,
            in_flight=self.settings.input.files_in_flight,
            pool=pool,
            stores=stores,
        )

    def _lease(self) -> Lease | None:
        """The job's lock beside its state (none without a state directory)."""
        if self.following is not None:
            keeper, name = self.following.keeper, self.following.lock_name
        else:
            assert self.state is not None
            keeper = self.state.keeper
            name = self.state.lock_name() if keeper is not None else ""
        if keeper is None:
            return None
        settings = self.settings
        return Lease(JobLock(keeper, name, lease=settings.lock_lease), settings.lock_wait)

    async def _close_pool(self) -> None:
        if self.pool is not None:  # idempotent
            self.pool.close()

    def _collect(self, source: FileSource) -> None:
        result = self.result
        result.files_resumed = self.ledger.resumed if self.following is None else 0
        result.files_done = source.stats.files_done
        result.bytes_done = source.stats.bytes_done
        result.filtered = source.stats.filtered
        result.unfinished = sorted(source.unfinished)

    def closing_lines(self, fault: Fault | None) -> list[str]:
        """What the run leaves behind, for people, after the summary (:func:`replay_lines`)."""
        following = self.following is not None
        kept = bool(self.settings.state_dir)
        return replay_lines(
            self.result, self.loop.unfinished, self.grace, fault, self.stopped, following, kept
        )

    def _to_read(self) -> tuple[int, int]:
        """Files and bytes still to read, from a listing like ``--dry-run``'s (finished ones left out)."""
        files = size = 0
        assert self.state is not None
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
