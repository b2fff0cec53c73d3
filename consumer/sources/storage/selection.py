"""Which Currents files and records a replay or convert takes: event types and a time window (pure).

Currents storage paths carry two partitions, ``event_type=<type>`` and ``date=<YYYY-MM-DD-HH>`` (the
UTC hour Braze *queued* the events, not the event time). A :class:`Selection` decides on those path
segments alone, so whole partitions are pruned before they are listed:

* ``event_types`` — globs (``users.messages.email.*``); a partition of another type is not read.
  Records are checked too (the type from each file's writer schema), which covers files stored
  outside an ``event_type=`` partition.
* ``since`` (inclusive) / ``until`` (exclusive), UNIX seconds — by default on the queue hour: a
  ``date=`` partition is read if its hour overlaps the window.
* ``event_time`` — the window applies to each record's ``time`` field instead. An event's ``time`` is
  at most the end of the hour it was queued in (bar device clock skew), but it can be much older
  (offline SDK queues), so only partitions queued more than :data:`EVENT_TIME_SLACK` before
  ``since`` are pruned; every later partition is read and its records filtered.

A path segment that does not parse (another layout, a date without the hour) is never pruned:
a Selection only leaves out what it can prove is outside it.

A :class:`Shard` (``--shard I/N``) takes a stable share of the selected objects: those whose key
relative to its root hashes (BLAKE2b, the same in every process and release) to ``I`` modulo ``N``.
The N shards of one selection are disjoint and together cover it; an object's shard depends on its
key alone, so files added later never move a finished file to another shard, and the same tree
under another prefix, bucket or mount shards alike.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from consumer.events import CurrentsRecord
from consumer.instants import format_instant, parse_instant
from consumer.sources.storage.store import is_url

if TYPE_CHECKING:
    from consumer.settings import InputSettings

EVENT_TIME_SLACK = 86400
"""With ``event_time``, partitions queued up to this long before ``since`` are still read (clock skew)."""

_HOUR_SEGMENT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:-(\d{2}))?$")
RecordFilter = Callable[[CurrentsRecord], bool]

LEFT_OUT = {
    "event_type": "event_type= partitions of other types (--event-type)",
    "window": "date= partitions outside --since/--until",
    "shard": "objects in other shards (--shard/--shards)",
}
"""Why a selection leaves a directory (or, for ``shard``, an object) out, and how a line for people
says it."""


def partition_span(segment: str) -> tuple[int, int] | None:
    """``date=2024-05-01-13`` -> the hour it covers ``(start, end)``; ``None`` if it is not one."""
    if not segment.startswith("date="):
        return None
    m = _HOUR_SEGMENT.match(segment[5:])
    if not m:
        return None
    year, month, day, hour = m.groups()
    try:
        start = int(datetime(int(year), int(month), int(day), int(hour or 0), tzinfo=UTC).timestamp())
    except ValueError:  # 2024-02-31, hour 25
        return None
    return start, start + (3600 if hour is not None else 86400)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, as Kubernetes' ``JOB_COMPLETION_INDEX``)."""

    index: int
    count: int

    def includes(self, key: str) -> bool:
        """Whether the object of ``key`` (relative to its root, ``/``-separated) is in this shard."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def describe(self) -> str:
        """``shard 1/3`` (for logs, the dry run and messages)."""
        return f"shard {self.index}/{self.count}"


def relative_key(root: str, url: str) -> str:
    """The key of an object listed under ``root``, relative to it and ``/``-separated.

    An object given as the root itself is keyed by its name. For object stores the bucket (or
    container) and the root's prefix are left out, whatever URL form named them (``az://c/p`` and
    ``abfs://c@account.dfs.core.windows.net/p`` list the same keys).
    """
    if not is_url(root):
        rel = os.path.relpath(url, root)
        return os.path.basename(url) if rel == "." else rel.replace(os.sep, "/")
    root_parts = [p for p in root.partition("://")[2].split("/") if p]
    url_parts = [p for p in url.partition("://")[2].split("/") if p]
    if root_parts:
        root_parts[0] = root_parts[0].split("@", 1)[0]  # abfs://container@account...: the container
    if url_parts[: len(root_parts)] == root_parts and len(url_parts) > len(root_parts):
        return "/".join(url_parts[len(root_parts) :])
    return url_parts[-1] if url_parts else url  # the root named the object itself


@dataclass(frozen=True)
class Selection:
    """Event-type globs and a time window; the empty selection takes everything."""

    event_types: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    event_time: bool = False
    shard: Shard | None = None
    _type_cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        event_types: tuple[str, ...] = (),
        since: str = "",
        until: str = "",
        event_time: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> Selection:
        """From option values (times as :func:`parse_instant` reads them, ``""`` = unbounded; ``shard``
        is ``(index, count)``)."""
        return cls(
            tuple(event_types),
            parse_instant(since) if since else None,
            parse_instant(until) if until else None,
            event_time,
            Shard(*shard) if shard is not None and shard[1] > 1 else None,  # 0/1 is everything
        )

    @classmethod
    def of_input(cls, settings: InputSettings) -> Selection:
        """From the ``input`` settings (``--event-type``, ``--since``, ``--until``, ``--event-time``,
        ``--shard`` / ``--shards``)."""
        return cls.of(
            settings.event_types, settings.since, settings.until, settings.event_time, settings.shard_of()
        )

    @property
    def empty(self) -> bool:
        """Whether everything is selected."""
        return not self.event_types and self.since is None and self.until is None and self.shard is None

    def key(self) -> str:
        """A canonical text of the event types and window ("" when there are none): two runs select
        alike from the same objects iff keys are equal. The shard is not part of it: the resume state
        keys it on its own (:mod:`consumer.positions.resume`)."""
        if not self.event_types and self.since is None and self.until is None:
            return ""
        window = [format_instant(t) if t is not None else "" for t in (self.since, self.until)]
        basis = "event" if self.event_time else "queued"
        return f"types={','.join(sorted(self.event_types))};window={'/'.join(window)};on={basis}"

    def describe(self) -> str:
        """For logs and the dry run: ``event types users.messages.email.*; queued 2024-05-01T00:00:00Z..``."""
        parts = []
        if self.event_types:
            parts.append("event types " + ", ".join(self.event_types))
        if self.since is not None or self.until is not None:
            since = format_instant(self.since) if self.since is not None else ""
            until = format_instant(self.until) if self.until is not None else ""
            parts.append(f"{'event time' if self.event_time else 'queued'} {since}..{until}")
        if self.shard is not None:
            parts.append(self.shard.describe())
        return "; ".join(parts) or "everything"

    # -- paths ---------------------------------------------------------------------------------------
    def type_selected(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the globs (always, without globs)."""
        if not self.event_types:
            return True
        hit = self._type_cache.get(event_type)
        if hit is None:
            hit = self._type_cache[event_type] = any(
                fnmatch.fnmatchcase(event_type, g) for g in self.event_types
            )
        return hit

    def keep_dir(self, segment: str) -> bool:
        """Whether a directory named ``segment`` may hold selected files."""
        return self.left_out(segment) is None

    def left_out(self, segment: str) -> str | None:
        """Why a directory named ``segment`` holds no selected file (a :data:`LEFT_OUT` key), or ``None``
        when it may hold some."""
        if segment.startswith("event_type="):
            return None if self.type_selected(segment[len("event_type=") :]) else "event_type"
        span = partition_span(segment)
        if span is None:
            return None
        start, end = span
        if self.event_time:
            inside = self.since is None or end + EVENT_TIME_SLACK > self.since
        else:
            inside = (self.since is None or end > self.since) and (self.until is None or start < self.until)
        return None if inside else "window"

    def in_shard(self, root: str, url: str) -> bool:
        """Whether an object listed under ``root`` is in this run's shard (always, unsharded)."""
        return self.shard is None or self.shard.includes(relative_key(root, url))

    def keep_root(self, root: str) -> bool:
        """Whether a root path given by the user is inside the selection (``.../event_type=X/...``)."""
        return self.root_left_out(root) is None

    def root_left_out(self, root: str) -> str | None:
        """Why a root path given by the user is outside the selection (a :data:`LEFT_OUT` key), or
        ``None`` when it is not."""
        for segment in root.replace("\\", "/").split("/"):
            reason = self.left_out(segment) if segment else None
            if reason is not None:
                return reason
        return None

    # -- records -------------------------------------------------------------------------------------
    def record_filter(self) -> RecordFilter | None:
        """The per-record check, or ``None`` when the path partitions decide alone."""
        by_type = bool(self.event_types)
        by_time = self.event_time and (self.since is not None or self.until is not None)
        if not by_type and not by_time:
            return None
        since = self.since if self.since is not None else -(2**63)
        until = self.until if self.until is not None else 2**63

        def keep(rec: CurrentsRecord) -> bool:
            if by_type and not self.type_selected(rec.event_type):
                return False
            if by_time:
                t = rec.record.get("time")
                if isinstance(t, int | float) and not isinstance(t, bool) and not since <= t < until:
                    return False
            return True

        return keep
