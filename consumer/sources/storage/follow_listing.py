"""What a bucket follower lists (:mod:`consumer.sources.storage.follow`): a poll's live folders and a sweep
of everything, in a fixed order, over any :class:`~consumer.sources.storage.store.Store`.

* A **poll** walks the directories down to the ``event_type=`` ones (a delimiter listing each) and, in
  each, lists only the ``date=`` folders of the live hours (one flat listing each, an absent one empty):
  never an ``event_type=`` folder itself, whose sub-folders are the whole history. A root that names an
  ``event_type=`` folder is listed the same way; one that names a ``date=`` folder is listed whole.
* A **sweep** walks everything under a root the selection may select, directory by directory (each
  ``date=`` folder in one flat listing), yielding objects in :func:`sweep_order` of their key under the
  root, and when resumed, only those after a key, without listing the directories wholly before it.

Every request goes through a :class:`Lister`, which counts it and bounds how long a bucket may take to
answer (its client's retries included).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

from consumer.instants import format_instant
from consumer.sources.storage.selection import Selection, relative_key
from consumer.sources.storage.store import Store, StoredObject, listing_key

OrderKey = tuple[tuple[int, tuple[tuple[str | int, ...], str]], ...]
"""Where an object comes in a sweep (:func:`sweep_order`)."""


def sweep_order(relative: str) -> OrderKey:
    """Where the object at ``relative`` (its key under its root) comes in a sweep: directory by directory,
    a directory's objects before its sub-directories, names with digit runs compared as numbers."""
    parts = relative.split("/")
    return (*((1, listing_key(p)) for p in parts[:-1]), (0, listing_key(parts[-1])))


def live_hours(now: float, since: float, late: float) -> list[int]:
    """The starts of the hours whose ``date=`` folders can have received files after ``since`` (UNIX
    seconds) up to ``now``: every hour up to ``now`` that ended less than ``late`` seconds before
    ``since``; newest first."""
    hours = []
    hour = int(now // 3600 * 3600)
    while hour + 3600 + late > since:
        hours.append(hour)
        hour -= 3600
    return hours


def date_segment(hour: int) -> str:
    """``date=YYYY-MM-DD-HH`` of the hour starting at ``hour``."""
    text = format_instant(hour)  # 2024-05-01T13:00:00Z
    return f"date={text[:10]}-{text[11:13]}"


class Lister:
    """The listing requests of one follower: each counted by ``count(kind, keys)`` (``level`` or
    ``flat``), each given ``within`` seconds at most."""

    def __init__(self, count: Callable[[str, int], None], within: float) -> None:
        self.count = count
        self.within = within

    def level(self, store: Store, path: str) -> tuple[list[str], list[StoredObject]]:
        """The sub-directories and objects directly under ``path``."""
        dirs, objects = store.list_level(path, self.within)
        self.count("level", len(dirs) + len(objects))
        return dirs, objects

    def flat(self, store: Store, path: str) -> list[StoredObject]:
        """Every object under ``path``."""
        found = store.list_flat(path, self.within)
        self.count("flat", len(found))
        return found


def _join(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}"


def poll_walk(
    store: Store, root: str, dates: list[str], selection: Selection, lister: Lister
) -> list[StoredObject]:
    """What a poll lists under ``root``: directories down to ``event_type=`` ones, and in those only the
    ``date=`` folders of ``dates`` (one flat listing each, none of the history)."""
    leaf = posixpath.basename(root.rstrip("/"))
    if leaf.startswith("event_type="):
        return _live_dates(store, root, dates, selection, lister)
    if leaf.startswith("date="):  # a root that names one hour: it is all there is to look at
        return lister.flat(store, root)
    dirs, objects = lister.level(store, root)
    found = list(objects)
    for sub in dirs:
        name = posixpath.basename(sub)
        if not selection.keep_dir(name):
            continue
        if name.startswith("event_type="):
            found += _live_dates(store, sub, dates, selection, lister)
        elif not name.startswith("date="):  # a date= folder outside event_type=: the sweep's to find
            found += poll_walk(store, sub, dates, selection, lister)
    return found


def _live_dates(
    store: Store, folder: str, dates: list[str], selection: Selection, lister: Lister
) -> list[StoredObject]:
    found: list[StoredObject] = []
    for date in dates:
        if selection.keep_dir(date):
            found += lister.flat(store, _join(folder, date))
    return found


def sweep_walk(
    store: Store, root: str, selection: Selection, after: str | None, lister: Lister
) -> Iterator[StoredObject]:
    """Every candidate object under ``root`` the selection may select, in :func:`sweep_order` of its key
    relative to the root, those after ``after`` only (directories wholly before it are not listed)."""
    yield from _sweep_dir(store, root, root, selection, sweep_order(after) if after else None, lister)


def _sweep_dir(
    store: Store, root: str, path: str, selection: Selection, mark: OrderKey | None, lister: Lister
) -> Iterator[StoredObject]:
    name = posixpath.basename(path.rstrip("/"))
    if name.startswith("date=") and path != root:
        listed = lister.flat(store, path)
        keyed = sorted(((sweep_order(relative_key(root, o.url)), o) for o in listed), key=lambda k: k[0])
        for key, obj in keyed:
            if mark is None or key > mark:
                yield obj
        return
    dirs, objects = lister.level(store, path)
    for obj in objects:
        if mark is None or sweep_order(relative_key(root, obj.url)) > mark:
            yield obj
    for sub in dirs:
        base = posixpath.basename(sub)
        if not selection.keep_dir(base):
            continue
        if mark is not None:
            # A directory wholly before the mark is not listed: its key prefix sorts before the mark's.
            prefix = sweep_order(relative_key(root, _join(sub, "\uffff")))[:-1]
            if prefix < mark[: len(prefix)]:
                continue
        yield from _sweep_dir(store, root, sub, selection, mark, lister)


def next_n(objects: Iterator[tuple[str, StoredObject]], n: int) -> list[tuple[str, StoredObject]]:
    """The next ``n`` items of ``objects``, or fewer at its end (a sweep's listing advances in a thread)."""
    items = []
    for item in objects:
        items.append(item)
        if len(items) >= n:
            break
    return items
