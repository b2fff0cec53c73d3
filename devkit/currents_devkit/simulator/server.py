"""An Amplitude-, Movable Ink- and Remerge-compatible server for tests, demos and benchmarks.

Implements ``shared/reference/amplitude-api.md``: ``POST /2/httpapi`` and ``POST /batch`` take
``{"api_key", "events", "options": {"min_id_length"}}`` and answer exactly the documented bodies, each
with ``code``. A refused request (400/413/429) ingests none of its events. This module routes requests
and holds the state; each stage of a data request has its own module:
:mod:`~currents_devkit.simulator.faults` (scripted failures, slow and missing answers),
:mod:`~currents_devkit.simulator.validation` (400/413: size, JSON, key, count, fields, ids),
:mod:`~currents_devkit.simulator.limits` (429: per-device and per-user rates and daily quota;
deduplication) and :mod:`~currents_devkit.simulator.store` (the events kept). All settings are in
:class:`SimulatorConfig`. Duplicates are answered 200 but not ingested; they are counted apart.
The same port serves Movable Ink (``POST /behavioral/<key>``) and Remerge (``GET /event``), checked
and kept by :mod:`currents_devkit.simulator.partners`; faults target all destinations or one
(``destination``). :mod:`currents_devkit.simulator.daemon` runs it as a process.

Memory: ingested events are kept only with ``keep_events`` (default on), as the JSON bytes received
(decoded on access, invisible to the cyclic GC); counters always. The clock is
injected (``clock``) so rate and quota behaviour is deterministic in tests, and so is the response delay
and trickle (``sleep``). Faults are scripted from Python through :attr:`AmplitudeSimulator.faults`
(:class:`FaultController`) or over HTTP: ``POST /_sim/faults`` (body: see :meth:`FaultController.apply`,
plus ``add_api_keys`` / ``remove_api_keys``), ``GET /_sim/stats``, ``GET /_sim/events?offset=&limit=``,
``GET /_sim/movableink/events``, ``GET /_sim/remerge/events``, ``POST /_sim/reset``. The ``/_sim/``
endpoints are never faulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from consumer.ops.web import WebServer, json_response
from currents_devkit.simulator.faults import Fault, FaultController
from currents_devkit.simulator.limits import DailyQuota, Dedup, RateWindow, throttled_body
from currents_devkit.simulator.partners import (
    MOVABLEINK_MAX_BYTES,
    MovableInkApi,
    PartnerApi,
    RemergeApi,
)
from currents_devkit.simulator.store import EventStore, IngestedEvent, SimulatorStats
from currents_devkit.simulator.validation import PLACEHOLDER_IDS, Checked, check_payload, parse_body
from currents_devkit.simulator.wire import DropConnection, Request, Trickled, never_answer, serve

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
]

log = logging.getLogger(__name__)

HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator enforces; an empty ``api_keys`` accepts any non-empty key, always (so
    do empty ``movableink_credentials`` (user, password pairs), ``movableink_keys`` and ``remerge_keys``)."""

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
    movableink_credentials: frozenset[tuple[str, str]] = frozenset()
    movableink_keys: frozenset[str] = frozenset()
    movableink_max_bytes: int = MOVABLEINK_MAX_BYTES
    remerge_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("api_keys", "movableink_keys", "remerge_keys"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        pairs = frozenset((str(user), str(password)) for user, password in self.movableink_credentials)
        object.__setattr__(self, "movableink_credentials", pairs)


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
        max_body = max(cfg.http_v2_max_bytes, cfg.batch_max_bytes, cfg.movableink_max_bytes)
        routes = [web.route("*", "/{tail:.*}", serve(self._handle, max_body))]
        # aiohttp refuses a body of client_max_size bytes or more; wire.serve decodes bodies itself.
        # handler_cancellation: a hung request ends when its client gives up (see wire.never_answer).
        options = {"auto_decompress": False, "handler_cancellation": True}
        self._server = WebServer(routes, client_max_size=max_body + 1, **options)
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
        mi_auth = (cfg.movableink_credentials, cfg.movableink_keys)
        self.movableink = MovableInkApi(*mi_auth, cfg.movableink_max_bytes, cfg.keep_events)
        """Movable Ink mode (its ``credentials`` and ``keys`` sets may be changed at runtime)."""
        self.remerge = RemergeApi(cfg.remerge_keys, cfg.keep_events)
        self._partners: tuple[PartnerApi, ...] = (self.movableink, self.remerge)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = a free port); return the port."""
        bound = await self._server.start(host, port)
        self._host = host
        if self.config.log_interval_s > 0:
            self._log_task = asyncio.create_task(self._log_summaries(self.config.log_interval_s))
        return bound

    async def stop(self) -> None:
        """Stop serving (idle connections closed, in-flight requests given a second, then cancelled)."""
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

    def movableink_events(self) -> list[dict[str, Any]]:
        """Accepted Movable Ink events in arrival order: ``{"received_at", "key", "event": body}``."""
        return self.movableink.log.events()

    def remerge_events(self) -> list[dict[str, Any]]:
        """Accepted Remerge events in arrival order: ``{"received_at", "key_id", "event": parsed params}``."""
        return self.remerge.log.events()

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
            "movableink": self.movableink.describe(),
            "remerge": self.remerge.describe(),
        }

    async def _handle(self, request: Request) -> web.StreamResponse:
        """Route: control endpoints, else a data request through faults, processing and the delay."""
        if request.path.startswith("/_sim/"):
            return self._control(request)
        partner = next((p for p in self._partners if p.matches(request.path)), None)
        if partner is not None:
            if request.method != partner.method:
                return partner.error(405, "Method not allowed")
            process = partial(partner.handle, request)
            return await self._answer(partner.name, lambda: process(self._clock()), partner.log.count)
        api = self._apis.get(request.path)
        if api is None:
            return json_response(404, {"code": 404, "error": "Not found"})
        if request.method != "POST":
            return json_response(405, {"code": 405, "error": "Method not allowed"})
        stats = self.stats
        stats.requests_by_path[api.path] = stats.requests_by_path.get(api.path, 0) + 1
        stats.bytes_received += request.wire_size
        ingest = partial(self._ingest, api, request)
        return await self._answer("amplitude", lambda: json_response(*ingest()), stats.count)

    async def _answer(
        self, destination: str, process: Callable[[], web.Response], count: Callable[[int], None]
    ) -> web.StreamResponse:
        """Answer one data request: its fault (processing it first if the fault ingests) or ``process``;
        count the status (0: dropped; a hung request: :attr:`SimulatorStats.requests_hung` only), hold
        the answer back by the destination's delay, then trickle it if asked. Counts it open meanwhile."""
        stats = self.stats  # the one counting it open, even if a reset comes meanwhile
        stats.opened()
        try:
            response = await self._faulted(destination, process, count)
        except BaseException:
            stats.closed()
            raise
        trickle = self.faults.trickle_for(destination)
        if trickle > 0:
            return Trickled(response, trickle, self._sleep, stats.closed)  # open until its last byte
        stats.closed()
        return response

    async def _faulted(
        self, destination: str, process: Callable[[], web.Response], count: Callable[[int], None]
    ) -> web.Response:
        fault = self.faults.next_fault(destination)
        if fault is not None and fault.hang:
            self.stats.requests_hung += 1
            return await never_answer()
        if fault is None:
            response = process()
        else:
            if fault.ingest:
                process()
            response = fault.response(destination)
        code = 0 if fault is not None and fault.close else response.status
        count(code)
        delay = self.faults.delay_for(destination)
        if delay > 0:
            await self._sleep(delay)
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
        self.stats.ingested(len(fresh), now)
        self.stats.events_duplicate += len(dups)
        if self.config.keep_events:
            self._store.keep(now, api.path, fresh, dups, body)

    def _control(self, request: Request) -> web.Response:
        """``/_sim/stats``, ``/_sim/events``, ``/_sim/{movableink,remerge}/events``, ``/_sim/reset`` and
        ``/_sim/faults``; a bad input is a 400."""
        action = (request.method, request.path[len("/_sim/") :])
        try:
            if action == ("GET", "stats"):
                return json_response(200, self.describe())
            stores = {f"{p.name}/events": p.log for p in self._partners}
            if action[0] == "GET" and (action[1] == "events" or action[1] in stores):
                offset = int(request.query.get("offset", "0"))
                limit = int(request.query.get("limit", "1000"))
                if offset < 0 or limit < 0:
                    raise ValueError("offset and limit must not be negative")
                if action[1] in stores:
                    rows = stores[action[1]].events(offset, limit)
                else:
                    chosen = self.events[offset : offset + limit]
                    rows = [{"received_at": e.received_at, "path": e.path, "event": e.event} for e in chosen]
                return json_response(200, {"code": 200, "events": rows})
            if action == ("POST", "reset"):
                self.reset()
                return json_response(200, {"code": 200})
            if action == ("POST", "faults"):
                spec = orjson.loads(request.body or b"{}")
                if type(spec) is not dict:
                    raise TypeError("expected a JSON object")
                self.faults.apply(spec)
                self.api_keys.update(str(k) for k in spec.get("add_api_keys", ()))
                self.api_keys.difference_update(str(k) for k in spec.get("remove_api_keys", ()))
                return json_response(200, {"code": 200, "faults": self.faults.describe()})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return json_response(400, {"code": 400, "error": f"Invalid control request: {exc}"})
        return json_response(404, {"code": 404, "error": "Not found"})

    async def _log_summaries(self, interval_s: float) -> None:
        """One INFO line per interval with activity: requests by status, events and rate; partners."""
        last_requests, last_events = 0, 0
        while True:
            await asyncio.sleep(interval_s)
            stats = self.stats
            requests = stats.requests_total + sum(p.log.requests_total for p in self._partners)
            if requests == last_requests:
                continue
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.requests_by_status.items()))
            log.info(
                "simulator: %d requests (%s), %d events ingested (%.0f ev/s), %d duplicates, %d rejected; %s",
                stats.requests_total,
                statuses,
                stats.events_ingested,
                (stats.events_ingested - last_events) / interval_s,
                stats.events_duplicate,
                stats.events_rejected,
                "; ".join(p.summary() for p in self._partners),
            )
            last_requests, last_events = requests, stats.events_ingested
