"""One process per job: a lock kept beside the job's positions.

:class:`JobLock` takes the lock ``name`` in a :class:`~consumer.positions.keeper.Keeper`'s location.
A second process asking for it is refused with :class:`LockHeld` naming the holder (host, pid, since
when, last renewal), so two replays of one job never deliver the same files at once.

**Local directory**: ``flock(LOCK_EX | LOCK_NB)`` on the file ``name`` in the directory, kept open
as long as the lock is held. The kernel releases it when the process ends, however it ends (``kill
-9`` included), so a dead holder never blocks. The holder's JSON is written into the file after the
lock is taken, for the refusal to name it. The file itself is never removed (removing it would let a
waiter lock a file that is no longer the one others open). NFS: Linux emulates ``flock`` there with
POSIX byte-range locks held through the server's lock manager; a client cut off from the server can
lose them without noticing, and very old kernels (< 2.6.12) lock only locally. Keep a directory shared
between hosts in an object store instead.

**Object store**: a lease object ``name`` holding the holder's JSON with ``renewed_at`` (the holder's
clock) and ``lease`` (seconds). Acquiring creates it (:meth:`Keeper.create`); if it exists it is taken
over only when it is free: ``released``, or stale — not renewed for its lease plus :data:`CLOCK_SKEW`
seconds, or recorded by this host under this process's pid (a restarted container is pid 1 again)
or a pid no longer alive here. Taking over is a :meth:`Keeper.replace` of the version read, so of two
takers one wins and the other sees the winner. The holder renews every ``lease / 3`` seconds
(:meth:`JobLock.renew`, scheduled by the caller), each renewal conditional on its own last version: if
another process took the lock over meanwhile the renewal fails with :class:`LockLost`. Releasing marks
the lease ``released``, conditional on the holder's version, so it never clobbers a new holder.

Time: a lease is judged by comparing the recorded ``renewed_at`` with the reader's clock, so the
hosts' clocks must agree within :data:`CLOCK_SKEW` seconds (NTP keeps them far closer). A holder that
could not renew for a whole lease must assume it lost the lock (:attr:`JobLock.confirmed_at`). Host
names must tell processes apart: pods and plain containers have their own; containers sharing the
host's network (and so its name) do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any

from consumer.ops.faults import Fault
from consumer.positions.keeper import Conflict, Keeper, KeeperError, LocalKeeper
from consumer.positions.private import private_dir

__all__ = ["CLOCK_SKEW", "Holder", "JobLock", "LockHeld", "LockLost"]

CLOCK_SKEW = 10.0
"""Seconds two hosts' clocks may disagree: a lease is stale only this long after it ran out."""

_POLL = 1.0
_HOLDER_WAIT = 0.5  # seconds a refused local locker waits for the holder to write its name
_RACES = 5  # create/read/replace rounds lost to other takers before an acquire attempt gives up


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) a lock: host name, pid, when it started (ISO UTC), a token of its own."""

    host: str
    pid: int
    started: str
    token: str

    @classmethod
    def me(cls) -> Holder:
        """This process, with a new token (each lock taken has its own)."""
        started = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started, uuid.uuid4().hex)

    @classmethod
    def of(cls, record: dict[str, Any]) -> Holder:
        """The holder a lock's JSON names (unknown fields as ``?``, an unreadable pid as 0)."""
        try:
            pid = int(record.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0
        return cls(
            str(record.get("host", "?")), pid, str(record.get("started", "?")), str(record.get("token", ""))
        )

    def describe(self) -> str:
        """``<host> pid <pid> since <started>``."""
        return f"{self.host} pid {self.pid} since {self.started}"


def _iso(instant: Any) -> str:
    try:
        return datetime.fromtimestamp(float(instant), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return "?"


class LockHeld(Exception):
    """Another live process holds the lock; ``str()`` names the lock and its holder in one line."""

    def __init__(self, where: str, record: dict[str, Any]) -> None:
        self.holder = Holder.of(record)
        if not record:
            super().__init__(f"the lock {where} is held by a process that has not written its name in it")
            return
        renewed = (
            "local flock" if "renewed_at" not in record else f"last renewed {_iso(record['renewed_at'])}"
        )
        super().__init__(f"the lock {where} is held by {self.holder.describe()} ({renewed})")


class LockLost(Fault):
    """Another process took the lock over (or it was removed): this one must stop its work."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown: assume alive (0 and negatives would name process groups)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _parse(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


class JobLock:
    """The lock ``name`` in ``keeper``'s location, for one process at a time (see the module)."""

    def __init__(
        self,
        keeper: Keeper,
        name: str,
        *,
        lease: float = 60.0,
        clock: Callable[[], float] = time.time,
        me: Holder | None = None,
    ) -> None:
        self.keeper = keeper
        self.name = name
        self.lease = lease
        self.clock = clock
        self.me = me or Holder.me()
        self._file: IO[bytes] | None = None  # local: the open, flocked lock file
        self._version: str | None = None  # object store: the version of our last write
        self._confirmed_at = float("-inf")

    @property
    def confirmed_at(self) -> float:
        """``clock()`` of the last successful acquire or renewal (``-inf`` before the first)."""
        return self._confirmed_at

    @property
    def where(self) -> str:
        """The lock's path or URL, for messages."""
        return self.keeper.where(self.name)

    def acquire(self, wait: float = 0.0, stopping: threading.Event | None = None) -> None:
        """Take the lock, trying again every second for up to ``wait`` seconds; :class:`LockHeld` if a
        live holder still has it then (at once when ``stopping`` is set); :class:`KeeperError` if the
        location cannot be reached."""
        deadline = time.monotonic() + wait
        while True:
            held = self._try_local() if isinstance(self.keeper, LocalKeeper) else self._try_lease()
            if held is None:
                self._confirmed_at = self.clock()
                return
            left = deadline - time.monotonic()
            if left <= 0 or (stopping is not None and stopping.is_set()):
                raise LockHeld(self.where, held)
            if stopping is not None:
                stopping.wait(min(_POLL, left))
            else:
                time.sleep(min(_POLL, left))

    def renew(self) -> None:
        """Keep the lease (a no-op for a local lock); :class:`LockLost` if another process holds the
        lock now, :class:`KeeperError` if the location cannot be reached."""
        if isinstance(self.keeper, LocalKeeper):
            if self._file is None:
                raise LockLost(f"the lock {self.where} is not held by this process")
            self._confirmed_at = self.clock()
            return
        if self._version is None:
            raise LockLost(f"the lock {self.where} is not held by this process")
        for _ in range(2):
            now = self.clock()
            try:
                self._version = self.keeper.replace(self.name, self._record(now), self._version)
            except Conflict:
                self._version = self._still_mine()
                continue  # our own write whose answer was lost: renew once more from its version
            self._confirmed_at = now
            return
        raise LockLost(f"the lock {self.where} keeps changing under this process")

    def release(self) -> None:
        """Let the lock go; idempotent, and never touches a lock another process holds now.
        :class:`KeeperError` if the store cannot be reached (the lease then runs out by itself)."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.truncate(0)  # while still held: a refusal never names a holder that left
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()
            return
        version, self._version = self._version, None
        if version is not None:
            with contextlib.suppress(Conflict):  # taken over meanwhile: it is not ours to release
                self.keeper.replace(self.name, self._record(self.clock(), released=True), version)

    # -- local directory: flock ----------------------------------------------------------------------
    def _try_local(self) -> dict[str, Any] | None:
        """``None`` once the flock is ours, else what the holder wrote into the file."""
        if self._file is not None:
            return None
        assert isinstance(self.keeper, LocalKeeper)
        path = self.keeper.directory / self.name
        file: IO[bytes] | None = None
        try:
            private_dir(self.keeper.directory)
            file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), "r+b", buffering=0)
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            assert file is not None
            with file:
                return self._local_holder(file)
        except OSError as exc:
            if file is not None:
                file.close()
            raise KeeperError(self.where, f"[Errno {exc.errno}] {exc.strerror}") from None
        with contextlib.suppress(OSError):  # only for the refusal's message
            file.truncate(0)
            os.pwrite(file.fileno(), json.dumps(asdict(self.me)).encode(), 0)
        self._file = file
        return None

    @staticmethod
    def _local_holder(file: IO[bytes]) -> dict[str, Any]:
        """What the holder of the flock on ``file`` wrote into it; it writes just after taking the
        lock, so an empty file is read again for up to :data:`_HOLDER_WAIT` seconds."""
        deadline = time.monotonic() + _HOLDER_WAIT
        while True:
            held = _parse(os.pread(file.fileno(), 4096, 0))
            if held or time.monotonic() > deadline:
                return held
            time.sleep(0.01)

    # -- object store: a lease -----------------------------------------------------------------------
    def _record(self, now: float, *, released: bool = False) -> bytes:
        record = {**asdict(self.me), "renewed_at": now, "lease": self.lease, "released": released}
        return json.dumps(record).encode()

    def _try_lease(self) -> dict[str, Any] | None:
        """``None`` once the lease is ours, else the live holder's record."""
        record: dict[str, Any] = {}
        for _ in range(_RACES):
            try:
                self._version = self.keeper.create(self.name, self._record(self.clock()))
                return None
            except Conflict:
                pass
            stored = self.keeper.read(self.name)
            if stored is None:
                continue  # removed meanwhile: create it
            record = _parse(stored.data)
            if record.get("token") == self.me.token and not record.get("released"):
                self._version = stored.version  # ours (an answer lost, and the write retried)
                return None
            if not self._free(record):
                return record
            try:
                self._version = self.keeper.replace(self.name, self._record(self.clock()), stored.version)
                return None
            except Conflict:
                continue  # another taker won: read who
        return record

    def _free(self, record: dict[str, Any]) -> bool:
        """Whether the lease in ``record`` may be taken over (see the module)."""
        if record.get("released") or not record:
            return True  # released, or not a lease at all (unreadable): a conditional write decides
        try:
            expires = float(record["renewed_at"]) + float(record.get("lease", self.lease))
        except (KeyError, TypeError, ValueError):
            return True
        if expires + CLOCK_SKEW < self.clock():
            return True
        holder = Holder.of(record)
        return holder.host == self.me.host and (holder.pid == self.me.pid or not _pid_alive(holder.pid))

    def _still_mine(self) -> str:
        """The version of the lease if it is still ours; :class:`LockLost` naming the new holder if not."""
        stored = self.keeper.read(self.name)
        if stored is None:
            raise LockLost(f"lost the lock {self.where}: it was removed")
        record = _parse(stored.data)
        if record.get("token") != self.me.token or record.get("released"):
            raise LockLost(f"lost the lock {self.where}: taken over by {Holder.of(record).describe()}")
        return stored.version
