"""What a :class:`Keeper` is: named small objects in one place, written only conditionally.

The contract every keeper meets (:mod:`consumer.positions.keeper` picks one for a location): ``create``
writes a name only if it is absent, ``replace`` only if it still holds the version the writer last
read or wrote, so of two writers racing for one name exactly one wins and the other sees
:class:`Conflict` (and can read who won). Every failure to reach, read or write the location is one
:class:`KeeperError` naming the path or URL and the cause in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Conflict", "Keeper", "KeeperError", "Stored", "describe"]

_QUERY = re.compile(r"\?[^\s'\"<>]*")


class Conflict(Exception):
    """A conditional write lost: the name exists (``create``) or changed since ``version`` (``replace``,
    a name that is gone included)."""


class KeeperError(Exception):
    """The location cannot be reached, read or written. ``str()`` is one line: the path or URL of the
    name (never a secret) and the cause."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(f"{where}: {cause}")
        self.where = where
        self.cause = cause


@dataclass(frozen=True)
class Stored:
    """The bytes kept under a name, and the version they were read at."""

    data: bytes
    version: str
    """S3 and Azure: the ETag; GCS: the generation; a local file: ``mtime_ns:size:inode``."""


class Keeper(Protocol):
    """Named objects directly in one location (a directory or a bucket prefix), conditionally written.

    Every method is synchronous and blocking (callers run them in a thread) and raises
    :class:`KeeperError` when the location cannot be reached, read or written.
    """

    location: str
    """The location as the user gave it (a path or a URL), for messages."""

    def where(self, name: str) -> str:
        """The full path or URL of ``name``, for messages."""
        ...

    def read(self, name: str) -> Stored | None:
        """The bytes under ``name`` and their version; ``None`` when there is no such name."""
        ...

    def create(self, name: str, data: bytes) -> str:
        """Write ``name`` if it does not exist; its new version. :class:`Conflict` if it exists."""
        ...

    def replace(self, name: str, data: bytes, version: str) -> str:
        """Write ``name`` if its version is still ``version``; the new version. :class:`Conflict`
        if it changed (or is gone)."""
        ...

    def names(self, prefix: str = "") -> list[str]:
        """The names directly in the location that start with ``prefix``, sorted."""
        ...


def describe(exc: BaseException) -> str:
    """One line for a failure: the exception type and the start of its first line, URL queries (which
    can carry a signature) cut off."""
    lines = str(exc).strip().splitlines()
    text = _QUERY.sub("?…", lines[0] if lines else "")[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
