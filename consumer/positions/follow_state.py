"""What a bucket follower (``replay --follow``) has done: small, whatever the bucket's history.

A Currents bucket keeps years of objects; a follower's state must not name each one it finished.
:class:`FollowState` keeps three things instead:

* **A mark.** Every object that *landed* (when its store wrote this content: S3 ``LastModified``, GCS
  ``timeCreated``, Azure ``last_modified``, a local file's ``ctime``, which no copy sets back) before the
  mark is done. The mark moves only when a sweep — a listing of everything under the roots — has
  completed and every object it listed is finished: it becomes the time that sweep started, minus a
  ``margin`` for objects stamped before they could be listed (an S3 multipart upload is stamped when it
  starts; clocks differ).
* **A sweep cursor.** While a sweep runs, every object it listed up to the cursor (per root, in the
  sweep's order) is finished, so those that landed before the sweep's start minus the margin are done
  too. A sweep interrupted by a restart resumes after its cursor, and the state stays small during a
  first backfill of a large bucket.
* **The recent finishes.** Objects finished that neither covers — those that landed since the last
  sweep's start minus the margin, found by polls — by URL, with their version. An object listed again
  with another version was rewritten after it was read (:meth:`FollowState.rewritten`).

So the state holds what landed since the last sweep began (about ``--sweep-interval`` plus
``--landing-margin``), the progress of the objects in flight, the sweep's cursor and the times of the
last sweep and poll: after a year of files it is as small as after a day. The rule only claims done an
object that was listed and finished, so nothing is lost; what may be read twice is an object in flight
at a crash (from its last saved record), and one rewritten after the sweep that covered it. Names are
never parsed (Braze calls the ``+partition+offset`` part internal and says naming may change): the rule
holds for every layout. The state at work is :mod:`consumer.positions.follow`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumer.sources.storage.follow_listing import sweep_order
from consumer.sources.storage.store import StoredObject


@dataclass
class Sweep:
    """The sweep in progress: when its listing started, and how far it is finished per root."""

    started: float
    cursors: dict[str, str] = field(default_factory=dict)
    """Per root, the key (relative to it) up to which every object the sweep listed is finished."""
    complete: list[str] = field(default_factory=list)
    """Roots the sweep listed and finished entirely."""

    def covers(self, root: str, relative: str) -> bool:
        """Whether the sweep listed and finished the object at ``relative`` under ``root`` (if it existed
        when the sweep passed it)."""
        if root in self.complete:
            return True
        cursor = self.cursors.get(root)
        return cursor is not None and sweep_order(relative) <= sweep_order(cursor)


@dataclass
class FollowState:
    """A follower's positions (see the module docstring); ``roots`` are the followed roots."""

    roots: tuple[str, ...]
    margin: float
    mark: float = -math.inf
    recent: dict[str, tuple[str, float]] = field(default_factory=dict)
    """URL -> (version, landed) of finished objects neither the mark nor the sweep covers."""
    partial: dict[str, int] = field(default_factory=dict)
    """``url|version`` -> the first record not done, of objects in flight."""
    sweep: Sweep | None = None
    swept_at: float | None = None
    """When the last completed sweep started."""
    polled_at: float | None = None
    """When the last poll that listed everything it looks at started."""

    def locate(self, url: str) -> tuple[str, str]:
        """The root ``url`` was listed under, and its key relative to it."""
        for root in self.roots:
            prefix = root.rstrip("/") + "/"
            if url.startswith(prefix):
                return root, url[len(prefix) :]
        return "", url

    def covered(self, url: str, landed: float) -> bool:
        """Whether the mark or the sweep in progress covers the object at ``url`` that landed then."""
        if landed < self.mark:
            return True
        sweep = self.sweep
        if sweep is None or landed >= sweep.started - self.margin:
            return False
        return sweep.covers(*self.locate(url))

    def is_done(self, obj: StoredObject) -> bool:
        """Whether ``obj`` (this version of it) is finished."""
        seen = self.recent.get(obj.url)
        if seen is not None:
            return seen[0] == obj.version
        return self.covered(obj.url, obj.landed)

    def rewritten(self, obj: StoredObject) -> str | None:
        """The version of ``obj``'s URL finished before, when it differs from ``obj``'s."""
        seen = self.recent.get(obj.url)
        return seen[0] if seen is not None and seen[0] != obj.version else None

    def next_record(self, obj: StoredObject) -> int:
        """The first record of ``obj`` not done (0 for an object not started)."""
        return self.partial.get(_ident(obj), 0)

    def progress(self, obj: StoredObject, next_record: int) -> None:
        """``obj`` is done up to ``next_record`` (exclusive) and not finished."""
        self.partial[_ident(obj)] = next_record

    def finished(self, obj: StoredObject) -> None:
        """Every record of ``obj`` is done (or the object was dead-lettered whole)."""
        self.partial.pop(_ident(obj), None)
        if self.covered(obj.url, obj.landed):
            self.recent.pop(obj.url, None)
        else:
            self.recent[obj.url] = (obj.version, obj.landed)

    def swept(self, cursors: dict[str, str | None]) -> None:
        """Every object the sweep listed under each root up to its key (inclusive; ``None``: all of the
        root's) is finished."""
        sweep = self.sweep
        if sweep is None:
            return
        for root, relative in cursors.items():
            if relative is None:
                sweep.cursors.pop(root, None)
                if root not in sweep.complete:
                    sweep.complete.append(root)
            else:
                sweep.cursors[root] = relative
        self._prune()

    def sweep_completed(self) -> None:
        """The sweep listed everything and all of it is finished: the mark moves to its start minus the
        margin."""
        sweep = self.sweep
        if sweep is None:
            return
        self.mark = max(self.mark, sweep.started - self.margin)
        self.swept_at = sweep.started
        self.sweep = None
        self._prune()

    def _prune(self) -> None:
        """Forget the recent finishes the mark or the sweep now covers."""
        covered = self.covered
        for url in [url for url, (_, landed) in self.recent.items() if covered(url, landed)]:
            del self.recent[url]

    def to_bytes(self) -> bytes:
        """The state as JSON."""
        data: dict[str, Any] = {
            "mark": None if self.mark == -math.inf else self.mark,
            "recent": self.recent,
            "partial": self.partial,
            "swept_at": self.swept_at,
            "polled_at": self.polled_at,
        }
        if self.sweep is not None:
            sweep = self.sweep
            data["sweep"] = {"started": sweep.started, "cursors": sweep.cursors, "complete": sweep.complete}
        return orjson.dumps(data)

    @classmethod
    def from_bytes(cls, data: bytes | None, roots: Iterable[str], margin: float) -> FollowState:
        """The state :meth:`to_bytes` saved (a new one for ``None``); ``ValueError`` if it is not one."""
        state = cls(tuple(roots), margin)
        if data is None:
            return state
        try:
            raw = orjson.loads(data)
            state.mark = -math.inf if raw.get("mark") is None else float(raw["mark"])
            state.recent = {str(u): (str(v), float(t)) for u, (v, t) in raw.get("recent", {}).items()}
            state.partial = {str(k): int(v) for k, v in raw.get("partial", {}).items()}
            state.swept_at = _seconds(raw.get("swept_at"))
            state.polled_at = _seconds(raw.get("polled_at"))
            if (sweep := raw.get("sweep")) is not None:
                cursors = {str(k): str(v) for k, v in sweep.get("cursors", {}).items()}
                complete = [str(r) for r in sweep.get("complete", [])]
                state.sweep = Sweep(float(sweep["started"]), cursors, complete)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a follower's state ({type(exc).__name__}: {exc})") from None
        return state


def _ident(obj: StoredObject) -> str:
    return f"{obj.url}|{obj.version}"


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
