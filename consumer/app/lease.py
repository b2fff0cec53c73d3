"""One process per job while a run lasts: its lock taken before anything is read, kept, and let go.

:class:`Lease` holds a :class:`~consumer.positions.lock.JobLock` for a run of ``replay`` (with or without
``--follow``): :meth:`Lease.acquire` takes it (waiting up to ``--lock-wait``; :class:`LockHeld` names the
lock and its holder), :meth:`Lease.renew` keeps a bucket's lease (a periodic job of the run; a local
``flock`` needs none), and :meth:`Lease.release` lets it go. A renewal that finds another holder is a
:class:`~consumer.positions.lock.LockLost` fault: the run stops and commits nothing more. A store that
cannot be reached is logged once when it starts failing and once when it works again; while the lease
is not confirmed within its length, :meth:`Lease.unconfirmed` tells the loop to read nothing more (another
process may have taken over), and reading goes on once a renewal proves the lock is still this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from consumer.positions.keeper import KeeperError, LocalKeeper
from consumer.positions.lock import JobLock, LockHeld

log = logging.getLogger("currents.lock")

__all__ = ["Lease", "LockHeld"]


class Lease:
    """``lock`` held for a run; ``wait`` is how long :meth:`acquire` waits for another holder."""

    def __init__(self, lock: JobLock, wait: float) -> None:
        self.lock = lock
        self.wait = wait
        self.local = isinstance(lock.keeper, LocalKeeper)
        self._failing: str | None = None

    async def acquire(self, stopping: asyncio.Event) -> None:
        """Take the lock (in a thread); :class:`LockHeld` if another live process still holds it after
        ``wait`` seconds (or a stop came first), :class:`~consumer.positions.keeper.KeeperError` if its
        location cannot be reached."""
        stop = threading.Event()
        watcher = asyncio.ensure_future(stopping.wait())
        watcher.add_done_callback(lambda _: stop.set())
        try:
            try:
                await asyncio.to_thread(self.lock.acquire, 0.0, stop)
            except LockHeld as held:
                if self.wait <= 0:
                    raise
                log.info("%s; waiting up to %.0fs for it", held, self.wait)
                await asyncio.to_thread(self.lock.acquire, self.wait, stop)
        finally:
            watcher.cancel()
        log.debug("holding the job's lock %s", self.lock.where)

    @property
    def interval(self) -> float:
        """How often :meth:`renew` runs: a third of the lease."""
        return self.lock.lease / 3

    async def renew(self) -> None:
        """Renew the lease (in a thread); a store that fails is logged once per change of state."""
        if self.local:
            return
        try:
            await asyncio.to_thread(self.lock.renew)
        except KeeperError as exc:
            if str(exc) != self._failing:
                log.error("cannot renew the job's lock: %s; reading holds once the lease runs out", exc)
                self._failing = str(exc)
            return
        if self._failing is not None:
            log.warning("the job's lock %s is renewed again", self.lock.where)
            self._failing = None

    def unconfirmed(self) -> bool:
        """Whether the lease went unconfirmed for its whole length (another process may hold it now)."""
        return not self.local and self.lock.clock() - self.lock.confirmed_at > self.lock.lease

    async def release(self) -> None:
        """Let the lock go (a store that cannot be reached lets the lease run out by itself)."""
        with contextlib.suppress(KeeperError):
            await asyncio.to_thread(self.lock.release)
