"""Where Currents files are stored: local paths and object-store URLs behind one small interface.

A :class:`Store` lists the objects under a root and opens one for reading; :func:`store_for` picks the
implementation from the root: a local path (:class:`LocalStore`), or ``s3://bucket/prefix``,
``gs://bucket/prefix`` and ``az://container/prefix`` (:class:`~consumer.sources.storage.cloud.CloudStore`,
through fsspec and the optional extras ``[s3]``, ``[gcs]``, ``[azure]``).

Listing follows Braze's advice: everything under the root is listed, at any depth, without parsing file
names. Names are ordered with their digit runs compared as numbers (:func:`listing_key`), so the files of
one partition come in offset order whether the offsets are zero-padded, as in older keys
(``+0+0000123456``), or not, as today (``+0+99999`` before ``+0+100000``). The caller's ``keep_dir``
callback may prune whole directories by their name (the ``event_type=`` and ``date=`` partitions), which
is what keeps a narrow backfill from listing a whole bucket. Hidden entries (``.name``), names starting
with ``_`` (``_SUCCESS``) and obvious side files (``.crc``, ``.json``, ...) are passed over. Memory stays
bounded by the largest single directory: nothing is accumulated across directories.

Each :class:`StoredObject` carries a ``version`` (ETag, generation, or size and modification time of
a local file): the resume state identifies an object by URL and version, so a rewritten object is
replayed again and an unchanged one is skipped. It also carries when it *landed*: its store's creation
time of this content (S3 ``LastModified``, GCS ``timeCreated``, Azure ``last_modified``, a local file's
``ctime``, which no copy can set back), which a bucket follower's state is kept against.

Besides the walk, a store lists one directory level (:meth:`Store.list_level`) and everything under a
prefix at once (:meth:`Store.list_flat`): what a follower's polls and sweeps are made of.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

SIDE_FILE_SUFFIXES = (".crc", ".json", ".txt", ".md", ".tmp", ".lock")
"""Names of files that are never Currents data: checksums, notes, temporary files, and a job's state and
lock (``--state-dir`` may sit under a followed root)."""
URL_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss")

_DIGIT_RUNS = re.compile(r"(\d+)")

KeepDir = Callable[[str], bool]
"""``keep_dir(name)``: whether to descend into the directory ``name`` (one path segment)."""


class StoreError(Exception):
    """A root cannot be listed or an object store cannot be reached; the message names the URL."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One file or object: ``url`` is what positions, logs and dead-letters name it by.

    ``url`` is the local path (as listed) or ``scheme://bucket/key``; ``version`` changes whenever the
    content may have changed; ``remote`` is true for object-store objects; ``landed`` is when the store
    created it (UNIX seconds; 0 when unknown).
    """

    url: str
    size: int
    version: str
    remote: bool = False
    landed: float = 0.0


class Store(Protocol):
    """Lists and opens the objects under roots of one kind (local, or one cloud).

    ``walk`` yields objects in a stable order (sorted per directory by :func:`listing_key`,
    directories depth first) and
    raises :class:`StoreError` when the root does not exist or cannot be listed. ``open`` returns a
    binary file object that streams the object (it never loads a whole object up front); it may
    block on the network, so callers run it, and every ``read`` of it, off the event loop. Failures
    of ``open`` or ``read`` are ``OSError`` or the backend's own exceptions.
    """

    def check(self, root: str) -> None:
        """Raise :class:`StoreError` (or ``FileNotFoundError`` for a local path) if ``root`` is absent."""
        ...

    def walk(self, root: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        """Every candidate object under ``root`` (a single object if ``root`` names one)."""
        ...

    def open(self, obj: StoredObject) -> IO[bytes]:
        """A streaming binary reader of ``obj``."""
        ...

    def list_level(self, path: str, within: float | None = None) -> tuple[list[str], list[StoredObject]]:
        """The visible sub-directories (full paths or URLs) and candidate objects directly under the
        directory ``path``, each sorted by name; nothing when it does not exist. A bucket's listing
        given no answer within ``within`` seconds is a :class:`StoreError`."""
        ...

    def list_flat(self, path: str, within: float | None = None) -> list[StoredObject]:
        """Every candidate object under the directory ``path``, at any depth, in hidden directories none;
        nothing when it does not exist (one listing request per thousand objects in a bucket); as
        :meth:`list_level` for ``within``."""
        ...


def is_url(path: str) -> bool:
    """Whether ``path`` is an object-store URL (``s3://``, ``gs://``, ``az://``...) rather than a path."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def listing_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """The sort key of one name in a listing: digit runs compare as numbers, ties by the name itself.

    ``a+0+9.avro`` < ``a+0+10.avro``; names that differ only in leading zeros keep a stable order. Any
    two keys compare without a type error: split on digit runs, a name alternates text and number
    from the same start, and keys of different lengths differ before the shorter one ends.
    """
    runs = _DIGIT_RUNS.split(name)
    return tuple(int(run) if i % 2 else run for i, run in enumerate(runs)), name


def path_listing_key(path: str) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """:func:`listing_key` of each ``/``-separated segment: directories depth first, each level ordered."""
    return tuple(listing_key(segment) for segment in path.split("/"))


def is_candidate(name: str) -> bool:
    """Whether a file named ``name`` may be a Currents file (not hidden, ``_SUCCESS`` or a side file)."""
    return bool(name) and not name.startswith((".", "_")) and not name.endswith(SIDE_FILE_SUFFIXES)


def is_visible_dir(name: str) -> bool:
    """Whether a directory may hold Currents files (hidden directories are passed over)."""
    return bool(name) and not name.startswith(".")


class LocalStore:
    """Files on a local or mounted file system (the behaviour ``replay`` always had)."""

    def check(self, root: str) -> None:
        """A missing path raises ``FileNotFoundError`` naming it."""
        if not os.path.exists(root):
            raise FileNotFoundError(f"no such file or directory: {root}")

    def walk(self, root: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        """``os.walk`` with sorted, pruned directories; a file given as root is taken as it is."""
        root = str(Path(root))  # "./in/" lists as "in/...", as it always did
        if os.path.isfile(root):
            yield self._object(root)
            return
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted((d for d in dirs if is_visible_dir(d) and keep_dir(d)), key=listing_key)
            for name in sorted(names, key=listing_key):
                if is_candidate(name):
                    yield self._object(os.path.join(top, name))

    @staticmethod
    def _object(path: str) -> StoredObject:
        try:
            st = os.stat(path)
        except OSError:
            # Vanished or unreadable since it was listed: reading it will name the reason.
            return StoredObject(path, 0, "0|0")
        return StoredObject(path, st.st_size, f"{st.st_size}|{st.st_mtime_ns}", landed=st.st_ctime)

    def list_level(self, path: str, within: float | None = None) -> tuple[list[str], list[StoredObject]]:
        """``os.scandir`` of ``path``: its visible sub-directories and candidate files (a local disk
        answers or fails: ``within`` is not needed)."""
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir():
                        if is_visible_dir(entry.name):
                            dirs.append(entry.name)
                    elif is_candidate(entry.name):
                        files.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        dirs.sort(key=listing_key)
        files.sort(key=listing_key)
        return [os.path.join(path, d) for d in dirs], [self._object(os.path.join(path, f)) for f in files]

    def list_flat(self, path: str, within: float | None = None) -> list[StoredObject]:
        """``os.walk`` of ``path`` (hidden directories left out)."""
        found: list[StoredObject] = []
        for top, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if is_visible_dir(d)]
            found += [self._object(os.path.join(top, n)) for n in names if is_candidate(n)]
        return found

    def open(self, obj: StoredObject) -> IO[bytes]:
        """The file, opened for reading (buffered by the OS page cache; nothing is loaded up front)."""
        return Path(obj.url).open("rb")
