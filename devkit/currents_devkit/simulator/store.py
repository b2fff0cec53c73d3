"""What the Amplitude simulator keeps of the events it ingested, for tests to inspect.

Events are stored as the JSON bytes received (or re-encoded once when some were dropped), one row per
request, and decoded only on access: bytes are compact and invisible to the cyclic GC, which parsed
dicts kept by the million would make crawl. Duplicates are kept apart from ingested events.
:class:`SimulatorStats` holds the Amplitude endpoints' counters, which stay bounded whatever the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(slots=True)
class SimulatorStats:
    """Counters only: they do not grow with traffic. Status ``0`` counts dropped connections.

    ``events_rejected`` counts events of refused requests whose body parsed as JSON (a body refused for
    its byte size is not parsed); ``events_ingested`` excludes duplicates. ``requests_hung`` counts
    requests never answered (a ``hang`` fault; not in ``requests_by_status``); ``open_requests`` the
    data requests being answered now (hung, delayed or trickling), ``max_open_requests`` its peak.
    ``first_ingest_at`` and ``last_ingest_at`` are the simulator clock's times (epoch seconds) of the first
    and the latest request that ingested an event, ``None`` before one did: a client's delivery span.
    """

    requests_by_status: dict[int, int] = field(default_factory=dict)
    requests_by_path: dict[str, int] = field(default_factory=dict)
    events_ingested: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    bytes_received: int = 0
    requests_hung: int = 0
    open_requests: int = 0
    max_open_requests: int = 0
    first_ingest_at: float | None = None
    last_ingest_at: float | None = None

    def ingested(self, count: int, now: float) -> None:
        """Count ``count`` fresh events ingested by one request answered at ``now``."""
        if count:
            self.events_ingested += count
            if self.first_ingest_at is None:
                self.first_ingest_at = now
            self.last_ingest_at = now

    def opened(self) -> None:
        """Count one more data request open (its answer not yet given)."""
        self.open_requests += 1
        self.max_open_requests = max(self.max_open_requests, self.open_requests)

    def closed(self) -> None:
        """Count one data request answered, dropped or abandoned by its client."""
        self.open_requests -= 1

    @property
    def requests_total(self) -> int:
        """Data requests answered (or dropped), faults included."""
        return sum(self.requests_by_status.values())

    def count(self, status: int) -> None:
        """Count one answered (status 0: dropped) data request."""
        self.requests_by_status[status] = self.requests_by_status.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON form (status keys as strings)."""
        return {
            "requests_total": self.requests_total,
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "requests_by_path": dict(self.requests_by_path),
            "events_ingested": self.events_ingested,
            "events_duplicate": self.events_duplicate,
            "events_rejected": self.events_rejected,
            "bytes_received": self.bytes_received,
            "requests_hung": self.requests_hung,
            "open_requests": self.open_requests,
            "max_open_requests": self.max_open_requests,
            "first_ingest_at": self.first_ingest_at,
            "last_ingest_at": self.last_ingest_at,
        }
