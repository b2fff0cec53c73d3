"""A :class:`~consumer.positions.keeper_types.Keeper` in a local directory.

The directory is created ``0700`` and every file ``0600`` (:mod:`consumer.positions.private`: what
is kept names input files, which can be personal data). Every write is atomic: the bytes go to a
temporary file in the same directory (``.<name>.<random>.tmp``, never listed), which is fsynced, then
put in place and the directory fsynced, so a power cut leaves the old bytes or the new ones, never
an empty or partial file.

``create`` puts the temporary file in place with ``link(2)``, which fails if the name exists: of two
creators exactly one wins (the filesystem must support hard links, as every local Linux filesystem and
NFS do). ``replace`` checks the version (``mtime_ns:size:inode``, new on every write since each write
is a new inode) and then renames: the check and the rename are two steps, so two processes replacing
at once could both pass the check. Exclusion between processes comes from the job's lock
(:class:`~consumer.positions.lock.JobLock`, ``flock(2)`` in the same directory), not from here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from consumer.positions.keeper_types import Conflict, KeeperError, Stored
from consumer.positions.private import open_private, private_dir

__all__ = ["LocalKeeper"]


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _cause(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"[Errno {exc.errno}] {reason}" if exc.errno is not None else reason


class LocalKeeper:
    """Files directly in one local directory (created ``0700`` on the first write)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.directory = Path(location)

    def where(self, name: str) -> str:
        """The path of ``name``."""
        return str(self.directory / name)

    def _error(self, name: str, exc: OSError) -> KeeperError:
        return KeeperError(self.where(name), _cause(exc))

    def read(self, name: str) -> Stored | None:
        """The file's bytes and the version of the very file read; ``None`` if there is none."""
        try:
            with open(self.directory / name, "rb") as fh:
                st = os.fstat(fh.fileno())
                return Stored(fh.read(), _version(st))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(name, exc) from None

    def create(self, name: str, data: bytes) -> str:
        """Write ``name`` unless it exists (:class:`Conflict`); its version."""
        try:
            temporary, version = self._write_temporary(name, data)
            try:
                os.link(temporary, self.directory / name)
            except FileExistsError:
                raise Conflict(f"{self.where(name)} exists") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            self._sync_directory()
        except OSError as exc:
            raise self._error(name, exc) from None
        return version

    def replace(self, name: str, data: bytes, version: str) -> str:
        """Write ``name`` if its version is still ``version`` (:class:`Conflict` if not, or if it is
        gone); its new version. Not atomic against another process replacing it: see the module."""
        path = self.directory / name
        try:
            try:
                current = _version(os.stat(path))
            except FileNotFoundError:
                raise Conflict(f"{self.where(name)} is gone") from None
            if current != version:
                raise Conflict(f"{self.where(name)} changed (version {current}, not {version})")
            temporary, new_version = self._write_temporary(name, data)
            try:
                os.replace(temporary, path)
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            self._sync_directory()
        except OSError as exc:
            raise self._error(name, exc) from None
        return new_version

    def names(self, prefix: str = "") -> list[str]:
        """The regular files directly in the directory whose names start with ``prefix`` (none if it
        does not exist), temporary files left out."""
        try:
            with os.scandir(self.directory) as entries:
                return sorted(
                    e.name
                    for e in entries
                    if e.name.startswith(prefix) and not _is_temporary(e.name) and e.is_file()
                )
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeeperError(self.location, _cause(exc)) from None

    def _write_temporary(self, name: str, data: bytes) -> tuple[Path, str]:
        """A new ``0600`` file in the directory holding ``data``, fsynced; its path and version."""
        private_dir(self.directory)
        temporary = self.directory / f".{name}.{uuid.uuid4().hex[:16]}.tmp"
        try:
            with open_private(temporary, append=False) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                return temporary, _version(os.fstat(fh.fileno()))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _sync_directory(self) -> None:
        """Make the new directory entry durable (filesystems that cannot fsync a directory pass)."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
                raise
        finally:
            os.close(fd)
