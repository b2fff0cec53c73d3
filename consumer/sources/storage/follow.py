"""Following a bucket (``replay --follow``): find the objects that land, without listing the history again.

The :class:`Follower` is the object feed of a following :class:`~consumer.sources.storage.source.FileSource`:
it never ends, and what it lists costs what can be new, not the history.

* **Polls** (every ``--poll-interval``) list only the folders that can still receive files. Currents
  writes ``…/event_type=<type>/date=<YYYY-MM-DD-HH>/…``, where ``date`` is the hour the events were
  queued, so new files land in the current hour's folder and, for a while after the hour turns, the
  previous one. A poll walks the directories down to the ``event_type=`` ones (a few listings) and, in
  each, lists the ``date=`` folders of the live hours only (one flat listing each): hours from the one
  live when the last poll started (so a restart catches up on what landed while it was down, up to a
  sweep interval back) to now, ``--late-window`` after each hour's end. An ``event_type=`` folder's
  history is never listed.
* **Sweeps** (every ``--sweep-interval``, and at the first start) list everything under the roots (the
  selection's partitions only), directory by directory in a fixed order (:func:`sweep_order`), to catch
  what a changed layout or a very late writer put elsewhere: an object a sweep finds that no poll did is
  counted (``currents_follow_swept_objects_total``). A sweep hands its objects out as the reader takes
  them (at most :data:`SWEEP_WINDOW` unfinished at once), and an interrupted sweep resumes after the last
  object it finished.
* **What to hand out** is the ledger's to say (:class:`FollowLedger`: objects done, or already queued or
  in flight, are passed over); objects found by polls go before a sweep's, so a long first sweep of a
  large bucket does not hold back what lands now.
* **A store that fails** (credentials, network, a bucket gone) is logged once when listings start
  failing and once when they work again, and retried with a doubling back-off up to the poll interval:
  the follower never exits for it, and readiness does not depend on it.

Listing runs in threads (store clients block); everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from consumer.ops.faults import Fault
from consumer.ops.metrics import Metrics
from consumer.ops.waits import either
from consumer.settings.fields import format_duration
from consumer.sources.storage.follow_listing import (
    Lister,
    date_segment,
    live_hours,
    next_n,
    poll_walk,
    sweep_walk,
)
from consumer.sources.storage.readahead import End
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import StoredObject, StoreError
from consumer.sources.storage.stores import Stores

log = logging.getLogger("currents.follow")

SWEEP_WINDOW = 2000
"""Objects a sweep has handed out and not seen finished, at most (bounds memory and the state)."""
QUEUED = 64
"""Objects queued ahead of the reader, at most (a poll may queue more: all it found)."""


class FollowLedger(Protocol):
    """What the follower asks of what is done (the follower's state, :mod:`consumer.positions.follow`)."""

    @property
    def polled_at(self) -> float | None:
        """When the last poll that listed everything it looked at started."""
        ...

    @property
    def swept_at(self) -> float | None:
        """When the last completed sweep started (``None``: none has completed)."""
        ...

    @property
    def sweeping(self) -> bool:
        """Whether a sweep is in progress (one an earlier process began resumes first)."""
        ...

    def offer(self, obj: StoredObject, swept: bool) -> bool:
        """Whether to hand ``obj`` out (not done, not queued or in flight); ``swept``: a sweep found it."""
        ...

    def polled(self, started: float) -> None:
        """A poll that started at ``started`` listed everything it looks at."""
        ...

    def sweep_begins(self, started: float) -> dict[str, str | None]:
        """A sweep starts at ``started`` (or the one in progress resumes): per root, the key after which
        it resumes (``None``: from the beginning); roots it already finished are left out."""
        ...

    def sweep_listed(self, root: str | None) -> None:
        """The sweep has listed every object under ``root`` (``None``: under every root)."""
        ...

    def sweep_unsettled(self) -> int:
        """Objects the sweep handed out whose end it has not seen yet."""
        ...

    def retries(self, now: float) -> list[StoredObject]:
        """Objects whose reading stopped before their end, due to be offered again."""
        ...

    def vanished(self, obj: StoredObject) -> None:
        """``obj``, due to be read again, is no longer in the store."""
        ...


@dataclass
class _Sweeping:
    """A sweep's listing in progress: its objects one by one, in :func:`sweep_order`; ``late``: an
    earlier sweep completed, so what this one finds that no poll did landed late or elsewhere."""

    started: float
    objects: Iterator[tuple[str, StoredObject]]
    late: bool


class Follower:
    """The objects landing under ``roots``; implements :class:`~consumer.sources.storage.readahead.ObjectFeed`
    (see the module docstring). ``clock`` is wall-clock UNIX seconds."""

    def __init__(
        self,
        roots: list[str],
        selection: Selection,
        ledger: FollowLedger,
        metrics: Metrics,
        *,
        poll_interval: float,
        sweep_interval: float,
        late_window: float,
        stores: Stores | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.roots = roots
        self.selection = selection
        self.ledger = ledger
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.late_window = late_window
        self.stores = stores if stores is not None else Stores()
        self.clock = clock
        self._fresh: deque[StoredObject] = deque()
        self._swept: deque[StoredObject] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweeping: _Sweeping | None = None
        self._listed_all = False
        self._failing: set[str] = set()
        """The reasons listings failed for since they last worked (each is said once)."""
        self._failures = 0
        # A listing with no answer within two poll intervals (10 s to 60 s) is a failed one: a store that
        # hangs must not stall the follower (the clients' own retries are included).
        self._lister = Lister(self._count, min(60.0, max(10.0, 2 * poll_interval)))
        self.last_listing: float | None = None
        """When a listing last succeeded (UNIX seconds)."""

    # -- the ObjectFeed contract -----------------------------------------------------------------
    def get_nowait(self) -> StoredObject | End | None:
        """The next object found, polls' first; ``None`` if none is queued. A follower whose schedule
        ended on a bug says so as a :class:`~consumer.ops.faults.Fault` (the run stops; never a silent
        stall)."""
        self._start()
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise Fault(f"the follower stopped: {type(task.exception()).__name__}: {task.exception()}")
        queue = self._fresh or self._swept
        if not queue:
            return None
        obj = queue.popleft()
        self._room.set()
        return obj

    async def get(self) -> StoredObject | End:
        """The next object found, waiting for one; cancel-safe. The feed never ends."""
        while True:
            obj = self.get_nowait()
            if obj is not None:
                return obj
            self._arrived.clear()
            await self._arrived.wait()  # set by every object queued, and by the schedule's end

    def cancel(self) -> None:
        """Stop listing."""
        if self._task is not None:
            self._task.cancel()

    @property
    def queued(self) -> int:
        """Objects found and not handed out yet."""
        return len(self._fresh) + len(self._swept)

    def wake(self) -> None:
        """Look again now (an object's reading ended: a retry may be due, the sweep may go on)."""
        self._wake.set()

    # -- the schedule ----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="follower")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The schedule ended (a bug: it runs until cancelled): logged, and the reader woken to hear it."""
        if not task.cancelled() and task.exception() is not None:
            log.error("the follower stopped", exc_info=task.exception())
        self._arrived.set()

    async def _run(self) -> None:
        """Poll every ``poll_interval`` (sooner after a failure, with back-off), sweep every
        ``sweep_interval``, offer retries when due; forever."""
        next_poll = self.clock()
        backoff = 1.0
        while True:
            now = self.clock()
            for obj in self.ledger.retries(now):
                if await asyncio.to_thread(self._exists, obj):
                    self._queue(obj, swept=False)
                else:
                    self.ledger.vanished(obj)
            if now >= next_poll:
                ok = await self._poll()
                backoff = 1.0 if ok else min(self.poll_interval, backoff * 2)
                next_poll = self.clock() + (self.poll_interval if ok else backoff)
            if self._sweeping is None and self._sweep_due():
                self._begin_sweep()
            if self._sweeping is not None and self._sweep_has_room() and not await self._sweep_step():
                next_poll = min(next_poll, self.clock() + backoff)
            self._room.clear()
            self._wake.clear()
            wait = max(0.0, next_poll - self.clock())
            if self._sweeping is not None and self._sweep_has_room():
                wait = 0.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await either(self._wake, self._room if self._sweeping is not None else None)

    def _exists(self, obj: StoredObject) -> bool:
        """Whether ``obj`` (due to be read again) is still in the store (in a thread)."""
        url = obj.url
        parent = url.rsplit("/", 1)[0]
        try:
            _, objects = self._lister.level(self.stores.get(url), parent)
        except StoreError:
            return True  # cannot tell: reading it again says why
        return any(o.url == url for o in objects)

    def _sweep_due(self) -> bool:
        """Whether a sweep is to begin: none has completed, one an earlier process began is to resume,
        or the last one began ``sweep_interval`` ago; never while what this process listed is not all
        finished (the ledger completes that sweep)."""
        ledger = self.ledger
        if ledger.sweeping:
            return not self._listed_all
        swept = ledger.swept_at
        return swept is None or self.clock() - swept >= self.sweep_interval

    def _sweep_has_room(self) -> bool:
        return len(self._swept) < QUEUED and self.ledger.sweep_unsettled() < SWEEP_WINDOW

    # -- polls -----------------------------------------------------------------------------------
    async def _poll(self) -> bool:
        """One poll: the live hours' folders of every root; ``False`` if a listing failed."""
        started = self.clock()
        last = self.ledger.polled_at
        # Catch up on the hours that were live since the last poll (a restart), but not further back than
        # a sweep interval: after a longer pause a sweep is due, and it lists everything.
        since = started if last is None else max(min(last, started), started - self.sweep_interval)
        hours = live_hours(started, since, self.late_window)
        try:
            found = await asyncio.to_thread(self._poll_listing, hours)
        except StoreError as exc:
            self._failed("poll", exc)
            return False
        self._listed("poll", len(found))
        for obj in found:
            self._queue(obj, swept=False)
        self.ledger.polled(started)
        return True

    def _poll_listing(self, hours: list[int]) -> list[StoredObject]:
        """The candidate objects of the live hours under every root (in a thread)."""
        dates = [date_segment(h) for h in hours]
        found: list[StoredObject] = []
        for root in self.roots:
            store = self.stores.get(root)
            found += self._in_shard(root, poll_walk(store, root, dates, self.selection, self._lister))
        return found

    def _in_shard(self, root: str, objects: list[StoredObject]) -> list[StoredObject]:
        if self.selection.shard is None:
            return objects
        return [obj for obj in objects if self.selection.in_shard(root, obj.url)]

    def _count(self, kind: str, keys: int) -> None:
        """One listing request of ``kind`` (``level`` or ``flat``) that gave ``keys`` keys."""
        self.metrics.count(self.metrics.follow_list_requests, kind)
        self.metrics.count(self.metrics.follow_listed_keys, kind, keys)

    # -- sweeps ----------------------------------------------------------------------------------
    def _begin_sweep(self) -> None:
        started = self.clock()
        late = self.ledger.swept_at is not None
        resume = self.ledger.sweep_begins(started)
        self._sweeping = _Sweeping(started, self._sweep_objects(resume), late)
        self._listed_all = False
        where = ", ".join(f"{root} after {key}" for root, key in resume.items() if key)
        log.info("sweep of %s begins%s", ", ".join(self.roots), f" (resuming {where})" if where else "")

    def _sweep_objects(self, resume: dict[str, str | None]) -> Iterator[tuple[str, StoredObject]]:
        """Every candidate object of the roots the sweep has left, in order (run in a thread, a few
        at a time); after each root, ``(root, None)``-like markers are given by :meth:`_sweep_step`."""
        for root in self.roots:
            if root not in resume:
                continue  # finished by this sweep before a restart
            store = self.stores.get(root)
            after = resume[root]
            for obj in sweep_walk(store, root, self.selection, after, self._lister):
                if self.selection.in_shard(root, obj.url):
                    yield root, obj
            yield root, _END_OF_ROOT

    async def _sweep_step(self) -> bool:
        """Take the next objects of the sweep (up to the room left); ``False`` if listing failed."""
        sweeping = self._sweeping
        assert sweeping is not None
        room = max(1, min(QUEUED - len(self._swept), SWEEP_WINDOW - self.ledger.sweep_unsettled()))
        try:
            taken = await asyncio.to_thread(next_n, sweeping.objects, room)
        except StoreError as exc:
            self._failed("sweep", exc)
            self._sweeping = None  # begun again (resuming after what it finished) once listings work
            return False
        if taken:
            self._listed("sweep", sum(1 for _, obj in taken if obj is not _END_OF_ROOT))
        late = sweeping.late
        for root, obj in taken:
            if obj is _END_OF_ROOT:
                self.ledger.sweep_listed(root)
            elif self._queue(obj, swept=True) and late:
                self.metrics.follow_swept.inc()
        if len(taken) < room:  # the listing has ended: the sweep completes once all it listed is finished
            self._sweeping = None
            self._listed_all = True
            self.ledger.sweep_listed(None)
            log.info("sweep of %s listed everything", ", ".join(self.roots))
        return True

    # -- the queue -------------------------------------------------------------------------------
    def _queue(self, obj: StoredObject, *, swept: bool) -> bool:
        """Queue ``obj`` if the ledger has it to do; whether it was queued."""
        if not self.ledger.offer(obj, swept):
            return False
        (self._swept if swept else self._fresh).append(obj)
        self._arrived.set()
        return True

    # -- listing health --------------------------------------------------------------------------
    def _listed(self, kind: str, objects: int) -> None:
        self.last_listing = self.clock()
        self.metrics.follow_last_listing.set(self.last_listing)
        self.metrics.follow_listings.labels(kind, "ok").inc()
        if self._failing:
            log.warning(
                "listing %s works again after %d failed attempts", ", ".join(self.roots), self._failures
            )
            self._failing, self._failures = set(), 0

    def _failed(self, kind: str, exc: StoreError) -> None:
        self.metrics.follow_listings.labels(kind, "failed").inc()
        self._failures += 1
        reason = str(exc)
        if reason not in self._failing:  # polls and sweeps may fail for different reasons in turn
            log.error(
                "listing failed (%s): %s; retrying with back-off up to %s",
                kind,
                reason,
                format_duration(self.poll_interval),
            )
            self._failing.add(reason)


_END_OF_ROOT = StoredObject("", 0, "")
"""The sweep's marker after a root's last object."""
