"""What the Amplitude simulator keeps of the events it ingested, for tests to inspect.

Events are stored as the JSON bytes received (or re-encoded once when some were dropped), one row per
request, and decoded only on access: bytes are compact and invisible to the cyclic GC, which parsed
dicts kept by the million would make crawl. Duplicates are kept apart from ingested events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_Row = tuple[float, str, bytes, int]
"""(received_at, path, JSON holding ``{"events": [...]}``, event count)."""


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One event as stored, with its receive time (simulator clock) and endpoint path."""

    event: dict[str, Any]
    received_at: float
    path: str


class EventStore:
    """Ingested and duplicate events in arrival order; grows with every kept request."""

    def __init__(self) -> None:
        self._ingested: list[_Row] = []
        self._duplicates: list[_Row] = []

    def keep(
        self,
        now: float,
        path: str,
        fresh: list[dict[str, Any]],
        dups: list[dict[str, Any]],
        body: bytes | None,
    ) -> None:
        """Store one accepted request; ``body`` (the bytes received) is reused when it holds exactly
        ``fresh``, i.e. when nothing was dropped or rewritten."""
        blob = body if body is not None and not dups else orjson.dumps({"events": fresh})
        self._ingested.append((now, path, blob, len(fresh)))
        if dups:
            self._duplicates.append((now, path, orjson.dumps({"events": dups}), len(dups)))

    @property
    def kept(self) -> int:
        """Ingested events stored (duplicates excluded)."""
        return sum(row[3] for row in self._ingested)

    def events(self) -> list[IngestedEvent]:
        """Ingested events in arrival order, freshly decoded on each call."""
        return _expand(self._ingested)

    def duplicates(self) -> list[IngestedEvent]:
        """Events answered 200 but dropped as duplicates, freshly decoded on each call."""
        return _expand(self._duplicates)

    def counts_per_second(self, id_field: str) -> dict[str, dict[int, int]]:
        """Ingested events per id and whole clock second: ``{id: {second: count}}``."""
        out: dict[str, dict[int, int]] = {}
        for item in self.events():
            key = item.event.get(id_field)
            if key is not None:
                per = out.setdefault(key, {})
                second = int(item.received_at)
                per[second] = per.get(second, 0) + 1
        return out


def _expand(rows: list[_Row]) -> list[IngestedEvent]:
    return [IngestedEvent(ev, t, path) for t, path, blob, _ in rows for ev in orjson.loads(blob)["events"]]
