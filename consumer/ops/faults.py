"""Faults of our own I/O and processes: the run ends cleanly and says why.

Bad input is dead-lettered and processing goes on; a fault of ours — the dead-letter output or the
resume state cannot be written, the metrics port is taken, the schema registry answers something that
is not a registry's answer, worker processes keep dying — is not input, and going on would either lose
events or hang. Such a fault is raised as a :class:`Fault` whose message names the path or endpoint
and the OS error, and reported once to the run's :class:`Faults`:

* the first fault reported is kept (:attr:`Faults.first`) and logged at error level; later ones are
  logged and dropped (they are usually the same cause seen again);
* every listener is told at once (the delivery engines stop starting requests and stop taking
  events, the run loop stops reading and committing), so no task waits for work that cannot finish;
* the command ends with :attr:`Faults.first` as its reason and a non-zero exit code.

:func:`check_writable` is the start-up check of a directory the run will write to: a clear error before
anything is read, and nothing left behind (the writer creates the directory on its first write).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("currents.faults")


class Fault(Exception):
    """A fault of our own I/O or processes: the run must end. ``str()`` names the edge and the cause."""


class Faults:
    """The run's fault latch: the first :class:`Fault` reported and who to tell (see the module)."""

    def __init__(self) -> None:
        self.first: Fault | None = None
        self._listeners: list[Callable[[Fault], None]] = []

    @property
    def failed(self) -> bool:
        """Whether a fault was reported."""
        return self.first is not None

    def listen(self, listener: Callable[[Fault], None]) -> None:
        """Call ``listener(fault)`` when the first fault is reported (at once if one already was)."""
        self._listeners.append(listener)
        if self.first is not None:
            listener(self.first)

    def report(self, fault: Fault) -> None:
        """Record ``fault``; the first one stops the run (every listener is told once)."""
        if self.first is not None:
            if fault is not self.first:
                log.error("also: %s", fault)
            return
        self.first = fault
        log.error("stopping: %s", fault)
        for listener in self._listeners:
            try:
                listener(fault)
            except Exception:  # one listener failing must not keep the others from stopping
                log.exception("a fault listener failed")

    def raise_first(self) -> None:
        """Raise the first fault reported, if any."""
        if self.first is not None:
            raise self.first


def io_fault(what: str, exc: OSError) -> Fault:
    """A :class:`Fault` for an OS error at ``what`` (e.g. ``dead-letter output /data/dl``)."""
    reason = exc.strerror or type(exc).__name__
    code = f"[Errno {exc.errno}] " if exc.errno is not None else ""
    where = f" ({exc.filename})" if exc.filename else ""
    return Fault(f"cannot write the {what}: {code}{reason}{where}")


PRIVATE_DIR_MODE = 0o700
"""Mode of the directories the check makes for a moment (those that hold personal data are 0700)."""


CHECK_ATTEMPTS = 5
"""How many times :func:`check_writable` probes when a directory vanishes under it (another process's
check removing the directory it had made for a moment)."""


def check_writable(directory: str, what: str) -> None:
    """Prove a file can be created in ``directory``, leaving the file system as it was: :class:`Fault`
    naming ``what``, the path and the OS error if not.

    A directory that does not exist yet is not created for good here (its writer creates it, owner-only,
    on its first write; a run that never writes leaves nothing behind): its missing part is made
    (``0700``), a file created in it, and all of it removed again. Several processes starting together
    (shards, replicas) check the same directory at once: one may remove a directory it made while
    another probes in it, so a probe that finds its directory gone is made again."""
    for attempt in range(1, CHECK_ATTEMPTS + 1):
        try:
            _probe(Path(directory))
            return
        except FileNotFoundError as exc:
            if attempt == CHECK_ATTEMPTS:
                raise io_fault(f"{what} {directory}", exc) from None
        except OSError as exc:
            raise io_fault(f"{what} {directory}", exc) from None


def _probe(path: Path) -> None:
    """Make the missing part of ``path``, create and remove a file in it, remove what was made."""
    made: list[Path] = []
    try:
        for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):
            try:
                missing.mkdir(mode=PRIVATE_DIR_MODE)
            except FileExistsError:
                continue  # made meanwhile by another process: its own, not removed here
            made.append(missing)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    finally:
        for created in reversed(made):
            try:
                created.rmdir()
            except FileNotFoundError:  # another process's check removed it already
                continue
            except OSError:  # another process wrote into it meanwhile: it is in use, keep it
                break
