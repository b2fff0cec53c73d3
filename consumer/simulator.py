"""An Amplitude-compatible ingestion server (HTTP V2 and Batch APIs) for tests, demos and benchmarks.

Implements ``shared/reference/amplitude-api.md``: ``POST /2/httpapi`` and ``POST /batch`` take
``{"api_key", "events", "options": {"min_id_length"}}`` and answer exactly the documented bodies, each
with ``code``. A refused request (400/413/429) ingests none of its events. This module routes requests
and holds the state; each stage of a data request has its own module: :mod:`consumer.simfaults`
(scripted failures), :mod:`consumer.simvalidation` (400/413: size, JSON, key, count, fields, ids),
:mod:`consumer.simlimits` (429: per-device and per-user rates and daily quota; deduplication) and
:mod:`consumer.simstore` (the events kept). All settings are in :class:`SimulatorConfig`. Duplicates
are answered 200 but not ingested; they are counted apart.

Memory: ingested events are kept only with ``keep_events`` (default on), as the JSON bytes received
(decoded on access, invisible to the cyclic GC); counters always. The clock is
injected (``clock``) so rate and quota behaviour is deterministic in tests, and so is the response delay
(``sleep``). Faults are scripted from Python through :attr:`AmplitudeSimulator.faults`
(:class:`FaultController`) or over HTTP: ``POST /_sim/faults`` (body: see :meth:`FaultController.apply`,
plus ``add_api_keys`` / ``remove_api_keys``), ``GET /_sim/stats``, ``GET /_sim/events?offset=&limit=``,
``POST /_sim/reset``. The ``/_sim/`` endpoints are never faulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumer.httpserver import DropConnection, HttpServer, Request, Response
from consumer.simfaults import Fault, FaultController
from consumer.simlimits import DailyQuota, Dedup, RateWindow, throttled_body
from consumer.simstore import EventStore, IngestedEvent
from consumer.simvalidation import PLACEHOLDER_IDS, Checked, check_payload, parse_body

__all__ = [
    "BATCH_PATH",
    "HTTP_V2_PATH",
    "PLACEHOLDER_IDS",
    "AmplitudeSimulator",
    "Fault",
    "FaultController",
    "IngestedEvent",
    "SimulatorConfig",
    "SimulatorStats",
    "run_simulator",
    "serve_forever",
]

log = logging.getLogger(__name__)

HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator enforces; an empty ``api_keys`` accepts any non-empty key, always."""

    host: str = "127.0.0.1"
    port: int = 0
    api_keys: frozenset[str] = frozenset()
    http_v2_max_bytes: int = 1_000_000
    http_v2_max_events: int = 2000
    http_v2_eps: int = 30
    batch_max_bytes: int = 20_000_000
    batch_max_events: int = 2000
    batch_eps: int = 1000
    rate_window_s: float = 1.0
    daily_quota: int = 500_000
    min_id_length: int = 5
    first_invalid_index_only: bool = False
    """List only the first offending index per field in 400 bodies, as the current HTTP V2 page says."""
    keep_events: bool = True
    dedup_capacity: int = 1_000_000
    """Dedup keys remembered (at least half of them the most recent); 0 disables deduplication."""
    log_interval_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", frozenset(self.api_keys))


@dataclass(slots=True)
class SimulatorStats:
    """Counters only: they do not grow with traffic. Status ``0`` counts dropped connections.

    ``events_rejected`` counts events of refused requests whose body parsed as JSON (a body refused for
    its byte size is not parsed); ``events_ingested`` excludes duplicates.
    """

    requests_by_status: dict[int, int] = field(default_factory=dict)
    requests_by_path: dict[str, int] = field(default_factory=dict)
    events_ingested: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    bytes_received: int = 0

    @property
    def requests_total(self) -> int:
        """Data requests answered (or dropped), faults included."""
        return sum(self.requests_by_status.values())

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
        }


@dataclass(slots=True)
class _Api:
    """Limits and rate windows of one endpoint."""

    path: str
    max_bytes: int
    max_events: int
    strip_short_ids: bool
    rates: RateWindow


class AmplitudeSimulator:
    """An in-process Amplitude ingestion endpoint: start it, point a sink at :attr:`url`, inspect."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = cfg = config or SimulatorConfig()
        self._clock = clock
        self._sleep = sleep
        self.faults = FaultController()
        """Scripted failures for the data endpoints (never for ``/_sim/``)."""
        max_body = max(cfg.http_v2_max_bytes, cfg.batch_max_bytes)
        self._server = HttpServer(self._handle, max_body_bytes=max_body)
        self._log_task: asyncio.Task[None] | None = None
        self._host = "127.0.0.1"
        self.reset()

    def reset(self) -> None:
        """Forget events, counters, rate windows, dedup keys and faults; API keys back to the config."""
        cfg = self.config
        self.api_keys: set[str] = set(cfg.api_keys)
        self._any_key = not cfg.api_keys
        self.stats = SimulatorStats()
        self.faults.clear()
        self._apis = {
            path: _Api(path, size, count, path == BATCH_PATH, RateWindow(eps, cfg.rate_window_s))
            for path, size, count, eps in (
                (HTTP_V2_PATH, cfg.http_v2_max_bytes, cfg.http_v2_max_events, cfg.http_v2_eps),
                (BATCH_PATH, cfg.batch_max_bytes, cfg.batch_max_events, cfg.batch_eps),
            )
        }
        self._quota = DailyQuota(cfg.daily_quota)
        self._dedup = Dedup(cfg.dedup_capacity) if cfg.dedup_capacity > 0 else None
        self._store = EventStore()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = a free port); return the port."""
        bound = await self._server.start(host, port)
        self._host = host
        if self.config.log_interval_s > 0:
            self._log_task = asyncio.create_task(self._log_summaries(self.config.log_interval_s))
        return bound

    async def stop(self) -> None:
        """Stop serving (idle connections closed, in-flight requests given a second)."""
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._log_task
            self._log_task = None
        await self._server.stop()

    def accept_api_key(self, key: str) -> None:
        """Make ``key`` valid from the next request on (an invalid key that becomes valid)."""
        self.api_keys.add(key)

    def revoke_api_key(self, key: str) -> None:
        """Make ``key`` invalid from the next request on (no effect if the config lists no keys)."""
        self.api_keys.discard(key)

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._server.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    @property
    def http_v2_url(self) -> str:
        """URL of the HTTP V2 endpoint."""
        return self.url + HTTP_V2_PATH

    @property
    def batch_url(self) -> str:
        """URL of the Batch endpoint."""
        return self.url + BATCH_PATH

    @property
    def connections_total(self) -> int:
        """TCP connections accepted so far (keep-alive checks)."""
        return self._server.connections_total

    @property
    def events(self) -> list[IngestedEvent]:
        """Ingested events in arrival order, freshly decoded on each call (empty unless ``keep_events``)."""
        return self._store.events()

    @property
    def duplicates(self) -> list[IngestedEvent]:
        """Events answered 200 but dropped as duplicates (empty unless ``keep_events``)."""
        return self._store.duplicates()

    def counts_per_second(self, id_field: str = "device_id") -> dict[str, dict[int, int]]:
        """Ingested events per id and whole clock second: ``{id: {second: count}}`` (needs kept events)."""
        return self._store.counts_per_second(id_field)

    def describe(self) -> dict[str, Any]:
        """Stats, fault state and kept-event count as served by ``GET /_sim/stats``."""
        return {
            "code": 200,
            "stats": self.stats.as_dict(),
            "faults": self.faults.describe(),
            "events_kept": self._store.kept,
            "api_keys_configured": len(self.api_keys),
        }

    async def _handle(self, request: Request) -> Response:
        """Route: control endpoints, else a data request through faults, processing and the delay."""
        if request.path.startswith("/_sim/"):
            return self._control(request)
        api = self._apis.get(request.path)
        if api is None:
            return Response.json(404, {"code": 404, "error": "Not found"})
        if request.method != "POST":
            return Response.json(405, {"code": 405, "error": "Method not allowed"})
        stats = self.stats
        stats.requests_by_path[api.path] = stats.requests_by_path.get(api.path, 0) + 1
        stats.bytes_received += request.wire_size
        fault = self.faults.take()
        if fault is None:
            response = Response.json(*self._ingest(api, request))
        else:
            if fault.ingest:
                self._ingest(api, request)
            response = fault.response()
        code = 0 if fault is not None and fault.close else response.status
        stats.requests_by_status[code] = stats.requests_by_status.get(code, 0) + 1
        if self.faults.delay_s > 0:
            await self._sleep(self.faults.delay_s)
        if code == 0:
            raise DropConnection
        return response

    def _ingest(self, api: _Api, request: Request) -> tuple[int, dict[str, Any]]:
        """Process one data request; all-or-nothing. Returns the status and the JSON body."""
        body = request.body
        payload = parse_body(body, api.max_bytes)
        if isinstance(payload, tuple):
            return payload
        cfg = self.config
        checked = check_payload(
            payload,
            api_keys=None if self._any_key else self.api_keys,
            max_events=api.max_events,
            min_id_length=cfg.min_id_length,
            strip_short_ids=api.strip_short_ids,
            first_invalid_index_only=cfg.first_invalid_index_only,
        )
        status, answer = checked if isinstance(checked, tuple) else self._limit_and_accept(api, checked, body)
        events = payload.get("events")
        if status != 200 and type(events) is list:
            self.stats.events_rejected += len(events)
        return status, answer

    def _limit_and_accept(self, api: _Api, checked: Checked, body: bytes) -> tuple[int, dict[str, Any]]:
        """The 429 if an id would go over its rate or daily quota, else ingest and answer 200."""
        now = self._clock()
        devices, users = checked.devices, checked.users
        rate_over = api.rates.over(devices, users, now)
        throttled = throttled_body(
            checked.events, api.rates, rate_over, self._quota.over(devices, users, now)
        )
        if throttled is not None:
            return 429, throttled
        self._accept(api, checked, now, None if checked.stripped else body)
        return 200, {
            "code": 200,
            "events_ingested": len(checked.events),
            "payload_size_bytes": len(body),
            "server_upload_time": int(now * 1000),
        }

    def _accept(self, api: _Api, checked: Checked, now: float, body: bytes | None) -> None:
        """Count the request against the limits, drop duplicates, keep the rest (``body``: as received)."""
        api.rates.add(checked.devices, checked.users, now)
        self._quota.add(checked.devices, checked.users)
        events = checked.events
        fresh, dups = (events, []) if self._dedup is None else self._dedup.split(events)
        self.stats.events_ingested += len(fresh)
        self.stats.events_duplicate += len(dups)
        if self.config.keep_events:
            self._store.keep(now, api.path, fresh, dups, body)

    def _control(self, request: Request) -> Response:
        """``/_sim/stats``, ``/_sim/events``, ``/_sim/reset`` and ``/_sim/faults``; a bad input is a 400."""
        action = (request.method, request.path[len("/_sim/") :])
        try:
            if action == ("GET", "stats"):
                return Response.json(200, self.describe())
            if action == ("GET", "events"):
                offset = int(request.query.get("offset", "0"))
                limit = int(request.query.get("limit", "1000"))
                chosen = self.events[offset : offset + limit]
                rows = [{"received_at": e.received_at, "path": e.path, "event": e.event} for e in chosen]
                return Response.json(200, {"code": 200, "events": rows})
            if action == ("POST", "reset"):
                self.reset()
                return Response.json(200, {"code": 200})
            if action == ("POST", "faults"):
                spec = orjson.loads(request.body or b"{}")
                if type(spec) is not dict:
                    raise TypeError("expected a JSON object")
                self.faults.apply(spec)
                self.api_keys.update(str(k) for k in spec.get("add_api_keys", ()))
                self.api_keys.difference_update(str(k) for k in spec.get("remove_api_keys", ()))
                return Response.json(200, {"code": 200, "faults": self.faults.describe()})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return Response.json(400, {"code": 400, "error": f"Invalid control request: {exc}"})
        return Response.json(404, {"code": 404, "error": "Not found"})

    async def _log_summaries(self, interval_s: float) -> None:
        """One INFO line per interval with activity: requests by status, events and rate."""
        last_requests, last_events = 0, 0
        while True:
            await asyncio.sleep(interval_s)
            stats = self.stats
            if stats.requests_total == last_requests:
                continue
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.requests_by_status.items()))
            log.info(
                "simulator: %d requests (%s), %d events ingested (%.0f ev/s), %d duplicates, %d rejected",
                stats.requests_total,
                statuses,
                stats.events_ingested,
                (stats.events_ingested - last_events) / interval_s,
                stats.events_duplicate,
                stats.events_rejected,
            )
            last_requests, last_events = stats.requests_total, stats.events_ingested


async def serve_forever(config: SimulatorConfig) -> None:
    """Run a simulator on ``config.host:config.port`` until cancelled or SIGINT/SIGTERM."""
    sim = AmplitudeSimulator(config)
    await sim.start(config.host, config.port)
    log.info("Amplitude simulator on %s (HTTP V2 %s, Batch %s)", sim.url, HTTP_V2_PATH, BATCH_PATH)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await sim.stop()
        log.info("Amplitude simulator stopped: %s", sim.stats.as_dict())


def run_simulator(
    host: str = "127.0.0.1", port: int = 9000, api_keys: tuple[str, ...] = (), **settings: Any
) -> None:
    """Blocking entry point for ``currents-consumer simulate``; ``settings`` are SimulatorConfig fields."""
    config = SimulatorConfig(host=host, port=port, api_keys=frozenset(api_keys), **settings)
    asyncio.run(serve_forever(config))
