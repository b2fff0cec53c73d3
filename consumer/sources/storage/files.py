"""Finding and reading Currents Avro files, on local disks or in S3, GCS and Azure Blob storage.

Following Braze's advice, files are found by listing everything under the given roots (any depth),
never by parsing their names; a :class:`~consumer.sources.storage.selection.Selection` may prune
``event_type=`` and ``date=`` partitions by name. The path's ``event_type=`` segment is only a fallback
for the event type when a file's writer schema has no usable name. Hidden files and obvious non-Avro side
files (``_SUCCESS``, ``.crc``) are passed over. Roots are local paths or ``s3://``, ``gs://``, ``az://``
URLs (see :mod:`consumer.sources.storage.store`).

Reading tells two failures apart. Bad bytes raise :class:`~consumer.decode.avro.DecodeError`: the damage is
in the object and reading it again fails the same way. Bytes of an object in a store that could not be
*fetched* (network, permissions, the object vanished or changed) raise :class:`ReadError`: nothing is
wrong with the object and the next run reads it again from where this one stopped.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, cast

from consumer.decode.avro import DecodeError, iter_container
from consumer.events import CurrentsRecord, Position
from consumer.sources.storage.selection import LEFT_OUT, RecordFilter, Selection
from consumer.sources.storage.store import LocalStore, Store, StoredObject
from consumer.sources.storage.stores import Stores

_LOCAL = LocalStore()


class ReadError(Exception):
    """An object's bytes could not be fetched: which object, the record reading stopped at, and why."""

    def __init__(self, url: str, record: int, reason: str) -> None:
        self.url = url
        self.record = record
        self.reason = reason
        super().__init__(f"{url} (record {record}): {reason}")


@dataclass
class ReadProgress:
    """How far :func:`read_object` got: records passed (skipped, filtered or yielded) and filtered."""

    records: int = 0
    filtered: int = 0


@dataclass
class Listing:
    """What a listing found: the objects it yielded, and the directories the selection left out, by
    :data:`~consumer.sources.storage.selection.LEFT_OUT` reason (a pruned directory is never listed, so
    what it holds is not counted)."""

    objects: int = 0
    left_out: Counter[str] = field(default_factory=Counter)

    def nothing_found(self, roots: list[str]) -> str | None:
        """Why nothing was found under ``roots`` (a line for people), or ``None`` if something was.

        ``nothing to read: no Avro files under ROOTS``, or ``nothing to read: nothing under ROOTS is
        inside the selection: N date= partitions outside --since/--until, M event_type= partitions of
        other types (--event-type)``.
        """
        if self.objects:
            return None
        where = ", ".join(roots)
        if not self.left_out:
            return f"nothing to read: no Avro files under {where}"
        reasons = ", ".join(f"{n} {LEFT_OUT[why]}" for why, n in sorted(self.left_out.items()))
        return f"nothing to read: nothing under {where} is inside the selection: {reasons}"


def list_objects(
    roots: list[str],
    selection: Selection | None = None,
    stores: Stores | None = None,
    listing: Listing | None = None,
) -> Iterator[StoredObject]:
    """Every candidate object under ``roots`` that ``selection`` may select (in its shard, if it has
    one), in a stable order.

    Every root is checked before anything is listed: a local path that does not exist raises
    ``FileNotFoundError`` naming it, an object-store root that is missing or cannot be reached
    raises :class:`~consumer.sources.storage.store.StoreError`. ``listing``, when given, counts what was found
    and what the selection left out, as the listing goes.
    """
    stores = stores or Stores()
    tally = listing if listing is not None else Listing()
    for root in roots:
        stores.get(root).check(root)

    def keep_dir(segment: str) -> bool:
        reason = selection.left_out(segment) if selection is not None else None
        if reason is not None:
            tally.left_out[reason] += 1
        return reason is None

    for root in roots:
        reason = selection.root_left_out(root) if selection is not None else None
        if reason is not None:
            tally.left_out[reason] += 1
            continue
        in_shard = selection.in_shard if selection is not None and selection.shard is not None else None
        for obj in stores.get(root).walk(root, keep_dir):
            # here, where every store's listing passes, so local and remote roots shard alike
            if in_shard is not None and not in_shard(root, obj.url):
                tally.left_out["shard"] += 1
                continue
            tally.objects += 1
            yield obj


def list_files(paths: list[str]) -> Iterator[str]:
    """Every candidate file under ``paths`` (files are taken as given), sorted per directory.

    A path that does not exist raises ``FileNotFoundError`` naming it, before anything is read.
    """
    return (obj.url for obj in list_objects(paths))


def read_file(path: str, *, skip: int = 0) -> Iterator[CurrentsRecord]:
    """Records of one local container file, starting after the first ``skip`` records.

    Raises :class:`DecodeError` (with the file and record index) when the file is unreadable or
    corrupt; records before the damage have been yielded by then.
    """
    return read_object(_LOCAL, StoredObject(path, 0, ""), skip=skip)


def read_object(
    store: Store,
    obj: StoredObject,
    *,
    skip: int = 0,
    keep: RecordFilter | None = None,
    progress: ReadProgress | None = None,
) -> Iterator[CurrentsRecord]:
    """Records of one object after the first ``skip``, those ``keep`` accepts, in order.

    Raises :class:`DecodeError` for bad bytes (a local file that cannot be opened too, as always) and
    :class:`ReadError` when an object in a store cannot be fetched; records before either have been
    yielded by then. ``progress`` (updated as records pass) says how far reading got.
    """
    progress = progress if progress is not None else ReadProgress()
    progress.records = max(progress.records, skip)
    try:
        raw = store.open(obj)
    except Exception as exc:
        if obj.remote:
            raise ReadError(obj.url, skip, f"cannot open: {_describe(exc)}") from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DecodeError(Position(obj.url, -1, 0), f"cannot open: {reason}") from exc
    watched = _Watched(raw) if obj.remote else None
    fo = cast(IO[bytes], watched) if watched is not None else raw
    try:
        for record in iter_container(fo, obj.url):
            index = record.position.offset
            if index < skip:
                continue
            progress.records = index + 1
            if keep is not None and not keep(record):
                progress.filtered += 1
                continue
            yield record
    except DecodeError as exc:
        failure = watched.failure if watched is not None else None
        if failure is not None:  # the bytes never arrived: not the object's fault
            raise ReadError(obj.url, exc.position.offset, f"read failed: {_describe(failure)}") from failure
        raise
    finally:
        with contextlib.suppress(Exception):  # closing must never hide what reading raised
            raw.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


class _Watched:
    """A read-only view of a store's file object that remembers the first exception its reads raised.

    The Avro decoder turns every exception into a :class:`DecodeError`; this is how a failed fetch is
    told apart from damaged bytes afterwards.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.failure: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._raw.read(n)
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._raw.seekable())

    def close(self) -> None:
        self._raw.close()
