"""A bucket follower's state at work: what the follower hands out and what its file source reports.

:class:`FollowLedger` keeps the :class:`~consumer.positions.follow_state.FollowState` (what is done, small
whatever the history) and what only a running follower needs: the objects queued or being read, the
sweep's order of listed objects (its cursor only moves over a contiguous finished prefix), retries of
objects whose reading stopped, objects rewritten after they were read (set aside to be dead-lettered),
the lag gauges, and saving the state (conditionally: a state another process wrote stops the run). It is
both the :class:`~consumer.sources.storage.source.Ledger` of the file source and the
:class:`~consumer.sources.storage.follow.FollowLedger` of the follower.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.ops.faults import Fault
from consumer.ops.metrics import Metrics
from consumer.positions.follow_state import FollowState, Sweep
from consumer.positions.keeper import KeeperError, LocalKeeper
from consumer.positions.kept import KeptFile
from consumer.sources.storage.selection import Shard
from consumer.sources.storage.store import StoredObject

log = logging.getLogger("currents.follow")

RETRY_AFTER = 30.0
"""Seconds before an object whose reading stopped is offered again (doubling, at most 10 minutes)."""


@dataclass
class _Listed:
    """One object in the sweep's order: its root and key, and whether it is finished."""

    root: str
    relative: str | None
    """``None``: the marker after a root's last object (or, with ``root`` ``""``, after everything)."""
    url: str = ""
    done: bool = False


@dataclass
class _Retry:
    obj: StoredObject
    due: float
    attempts: int


class FollowLedger:
    """The follower's state at work (see the module docstring): ``kept`` is where it is saved (``None``:
    nowhere, every restart begins again), ``clock`` wall-clock UNIX seconds."""

    def __init__(
        self,
        state: FollowState,
        kept: KeptFile | None,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        inherited: Sequence[tuple[Shard | None, FollowState]] = (),
    ) -> None:
        self.state = state
        self.kept = kept
        self.metrics = metrics
        self.clock = clock
        self.inherited = list(inherited)
        """States of this job kept under another sharding, each with its shard: consulted until this
        state's first sweep completes (see :mod:`consumer.commands.follow`)."""
        self.wake: Callable[[], None] = lambda: None
        """Told when an object's reading ended (a retry may be due, the sweep may go on)."""
        self._known: dict[str, StoredObject] = {}
        """Objects queued or being read, by URL."""
        self._order: deque[_Listed] = deque()
        self._waiting: dict[str, list[_Listed]] = {}
        self._retries: dict[str, _Retry] = {}
        self._rejected: list[tuple[StoredObject, str]] = []
        self._newest_finished = -math.inf
        self._dirty = False
        self._unsaved_since: float | None = None

    # -- what the follower asks ------------------------------------------------------------------
    @property
    def polled_at(self) -> float | None:
        """When the last complete poll started."""
        return self.state.polled_at

    @property
    def swept_at(self) -> float | None:
        """When the last completed sweep started."""
        return self.state.swept_at

    @property
    def sweeping(self) -> bool:
        """Whether a sweep is in progress (begun by this process or an earlier one)."""
        return self.state.sweep is not None

    def _done(self, obj: StoredObject) -> bool:
        """Whether ``obj`` is finished: by this state, or — until its first sweep completes — by the state
        of the shard that held it under another sharding (then remembered here too)."""
        state = self.state
        if state.is_done(obj):
            return True
        if not self.inherited or state.swept_at is not None or state.rewritten(obj) is not None:
            return False
        relative = state.locate(obj.url)[1]
        for shard, other in self.inherited:
            if (shard is None or shard.includes(relative)) and other.is_done(obj):
                state.finished(obj)
                self._dirty = True
                return True
        return False

    def offer(self, obj: StoredObject, swept: bool) -> bool:
        """Whether ``obj`` is to be read: not done and neither queued nor being read. An object listed
        again with another version than the one finished is set aside to be dead-lettered
        (:meth:`pop_rejected`) instead."""
        url = obj.url
        known = url in self._known
        done = not known and self._done(obj)
        if swept:
            root, relative = self.state.locate(url)
            listed = _Listed(root, relative, url, done=done)
            self._order.append(listed)
            if not done:
                self._waiting.setdefault(url, []).append(listed)
            self._advance()
        if known or done:
            return False
        self._retries.pop(url, None)
        self._known[url] = obj
        self._dirty = True
        old = self.state.rewritten(obj)
        if old is not None:
            log.error("%s was rewritten after it was read (version %s, now %s)", url, old, obj.version)
            self.metrics.follow_rewritten.inc()
            self._rejected.append((obj, old))
            return False
        return True

    def pop_rejected(self) -> list[tuple[StoredObject, str]]:
        """Objects rewritten after they were read, with the version read: the file source dead-letters each
        (``rewritten_input``) and reports it finished."""
        rejected, self._rejected = self._rejected, []
        return rejected

    def polled(self, started: float) -> None:
        """A poll that started at ``started`` listed everything it looks at."""
        self.state.polled_at = started
        self._dirty = True

    def sweep_begins(self, started: float) -> dict[str, str | None]:
        """A sweep starts now, or the one in progress resumes; per root still to sweep, where it resumes."""
        state = self.state
        if state.sweep is None:
            state.sweep = Sweep(started)
            self._dirty = True
        self._order.clear()
        self._waiting.clear()
        sweep = state.sweep
        return {root: sweep.cursors.get(root) for root in state.roots if root not in sweep.complete}

    def sweep_listed(self, root: str | None) -> None:
        """The sweep listed every object under ``root`` (``None``: under every root)."""
        self._order.append(_Listed(root or "", None, done=True))
        self._advance()

    def sweep_unsettled(self) -> int:
        """Objects the sweep listed whose end it has not seen yet (with the finished ones behind them)."""
        return len(self._order)

    def retries(self, now: float) -> list[StoredObject]:
        """Objects whose reading stopped early and that are due to be offered again."""
        due = [r.obj for r in self._retries.values() if r.due <= now]
        for obj in due:
            self._retries[obj.url].due = math.inf  # offered: a new due time is set if it stops again
        return due

    def vanished(self, obj: StoredObject) -> None:
        """``obj`` is gone from the store before it could be read whole: named, and left out."""
        log.error("%s was deleted before it was read whole; what was not read of it is left out", obj.url)
        self._retries.pop(obj.url, None)
        self.finished(obj, 0)

    # -- what the file source reports (its Ledger) -----------------------------------------------
    def admit(self, obj: StoredObject) -> int | None:
        """Where ``obj`` resumes (the follower hands out only what is to be read)."""
        return self.state.next_record(obj)

    def progress(self, obj: StoredObject, next_record: int) -> None:
        """``obj`` is done up to ``next_record``."""
        self.state.progress(obj, next_record)
        self._dirty = True

    def finished(self, obj: StoredObject, records: int) -> None:
        """``obj`` is finished (read to its end, or dead-lettered whole)."""
        self.state.finished(obj)
        self._known.pop(obj.url, None)
        self._retries.pop(obj.url, None)
        self._newest_finished = max(self._newest_finished, obj.landed)
        for listed in self._waiting.pop(obj.url, []):
            listed.done = True
        self._advance()
        self._dirty = True
        self.wake()

    def abandoned(self, obj: StoredObject) -> None:
        """Reading ``obj`` stopped before its end (its store failed): offered again after a back-off."""
        self._known.pop(obj.url, None)
        previous = self._retries.get(obj.url)
        attempts = previous.attempts + 1 if previous is not None else 1
        delay = min(600.0, RETRY_AFTER * 2 ** (attempts - 1))
        self._retries[obj.url] = _Retry(obj, self.clock() + delay, attempts)
        log.warning("%s will be read again in %.0fs (attempt %d)", obj.url, delay, attempts + 1)
        self.wake()

    def save(self) -> None:
        """Write the state if it changed. A state in a bucket that cannot be written now is retried at the
        next save (logged when it starts failing and when it works again); a local one that cannot be
        written, or one another process wrote, is a :class:`~consumer.ops.faults.Fault`."""
        if not self._dirty or self.kept is None:
            return
        kept = self.kept
        try:
            kept.write(self.state.to_bytes(), "follower state")
        except KeeperError as exc:
            if isinstance(kept.keeper, LocalKeeper):
                raise Fault(f"cannot write the follower state {exc}") from None
            if self._unsaved_since is None:
                self._unsaved_since = self.clock()
                log.error("cannot write the follower state %s; retrying at each checkpoint", exc)
            return
        if self._unsaved_since is not None:
            unsaved = self.clock() - self._unsaved_since
            log.warning("the follower state is written again (%.0fs unsaved)", unsaved)
            self._unsaved_since = None
        self._dirty = False

    # -- gauges ----------------------------------------------------------------------------------
    def update_gauges(self) -> None:
        """The lag gauges, now."""
        now = self.clock()
        pending = list(self._known.values()) + [r.obj for r in self._retries.values()]
        m = self.metrics
        m.follow_pending.set(len(pending))
        m.follow_oldest_pending_age.set(max(0.0, now - min(o.landed for o in pending)) if pending else 0.0)
        if self._newest_finished > -math.inf:
            m.follow_newest_finished_age.set(max(0.0, now - self._newest_finished))

    # -- the sweep's cursor ----------------------------------------------------------------------
    def _advance(self) -> None:
        """Move the sweep's cursor over the finished prefix of what it listed."""
        order = self._order
        moved: dict[str, str | None] = {}
        completed = False
        while order and order[0].done:
            listed = order.popleft()
            if listed.relative is not None:
                moved[listed.root] = listed.relative
            elif listed.root:
                moved[listed.root] = None
            else:
                completed = True
        if moved:
            self.state.swept(moved)
            self._dirty = True
        if completed:
            self.state.sweep_completed()
            self._dirty = True
            log.info("sweep complete: every object landed before %s is finished", _when(self.state.mark))


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
