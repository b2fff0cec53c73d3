"""An Amplitude-compatible ingestion server (HTTP V2 and Batch APIs) for tests, demos and benchmarks.

Implements ``shared/reference/amplitude-api.md``: ``POST /2/httpapi`` and ``POST /batch`` take
``{"api_key", "events", "options": {"min_id_length"}}`` and answer exactly the documented bodies, each
with ``code``. A refused request (400/413/429) ingests none of its events. Checks, in order: body size
(413, on the decoded body), JSON, ``api_key`` (400 missing / invalid), event count (413), per-event fields
(400 with index lists), per-device and per-user rate and daily quota (429), then deduplication.

Interpretations, all settings in :class:`SimulatorConfig`:

- Rates are measured per ``device_id`` and per ``user_id`` over a sliding window of ``rate_window_s``
  seconds (default 1 s, so tests are quick; Amplitude averages over 30 s). A request is throttled when,
  for some id, the events *accepted* in the window plus this request's exceed ``eps * rate_window_s``;
  refused requests do not count. The 429 reports ``ceil(total / rate_window_s)`` per id.
  ``throttled_events`` lists every event of a throttled or over-quota id.
- The daily quota counts accepted events per id and UTC day (``daily_quota=0`` disables it; its
  counters grow with the number of distinct ids per day). ``*_eps=0`` disables a rate limit.
- An event with neither id is reported as ``events_with_missing_fields: {"user_id_or_device_id": [i]}``.
  On ``/batch`` a too-short id is removed from the event; if no id remains the event is listed under
  ``events_with_invalid_id_lengths``.
- Duplicates ``(insert_id, device_id or user_id)`` are answered 200 but not ingested; they are counted
  apart. The dedup memory is bounded by ``dedup_capacity`` keys (64-bit hashes, two generations).

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
import http
import itertools
import logging
import math
import random
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumer.httpserver import DropConnection, HttpServer, Request, Response

log = logging.getLogger(__name__)

HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"
PLACEHOLDER_IDS = frozenset(
    {"anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""', "{}", "lmy47d", "0", "-1"}
    | {"00000000-0000-0000-0000-000000000000"}
)
"""Ids Amplitude refuses (compared lower-cased); an all-zero ``device_id`` is refused as well."""
_PLACEHOLDER_VARIANTS = frozenset(
    "".join(spelling)
    for word in PLACEHOLDER_IDS
    for spelling in itertools.product(*({c.lower(), c.upper()} for c in word))
)
"""Every upper/lower-case spelling of the placeholders: one set lookup per id on the hot path."""

_ABSENT, _OK, _REFUSED, _STRIPPED = range(4)
_TOO_LARGE: dict[str, Any] = {"code": 413, "error": "Payload too large"}


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


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One event as stored, with its receive time (simulator clock) and endpoint path."""

    event: dict[str, Any]
    received_at: float
    path: str


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


class _SlidingCounts:
    """Events per id over the last ``window_s`` seconds, exact at request granularity, O(1) amortised."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._log: deque[tuple[float, dict[str, int]]] = deque()
        self.counts: dict[str, int] = {}

    def expire(self, now: float) -> None:
        cutoff = now - self._window
        log_, counts = self._log, self.counts
        while log_ and log_[0][0] <= cutoff:
            for key, n in log_.popleft()[1].items():
                left = counts[key] - n
                if left:
                    counts[key] = left
                else:
                    del counts[key]

    def add(self, now: float, batch: dict[str, int]) -> None:
        self._log.append((now, batch))
        _add_counts(self.counts, batch)


class _Dedup:
    """Remembers between ``capacity / 2`` and ``capacity`` recent keys in two generations of sets."""

    def __init__(self, capacity: int) -> None:
        self._half = max(1, capacity // 2)
        self._new: set[int] = set()
        self._old: set[int] = set()

    def split(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(fresh, duplicates)`` by ``(insert_id, device_id or user_id)``; no insert_id: always fresh."""
        fresh: list[dict[str, Any]] = []
        dups: list[dict[str, Any]] = []
        new, old, half = self._new, self._old, self._half
        for ev in events:
            insert_id = ev.get("insert_id")
            if insert_id:
                key = hash((insert_id, ev.get("device_id") or ev.get("user_id")))
                if key in new or key in old:
                    dups.append(ev)
                    continue
                new.add(key)
                if len(new) >= half:
                    self._old, self._new = old, new = new, set()
            fresh.append(ev)
        return fresh, dups


@dataclass(slots=True)
class _Api:
    """Limits and rate windows of one endpoint."""

    path: str
    max_bytes: int
    max_events: int
    eps: int
    strip_short_ids: bool
    devices: _SlidingCounts
    users: _SlidingCounts


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer to a data request, given instead of the normal one.

    ``ingest``: process the request normally first (events stored if it would be accepted), then answer
    ``status`` anyway, like a 500/502/504 after which Amplitude may have kept the events. ``close``: drop
    the connection without answering. ``body`` defaults to ``{"code": status, "error": ...}``.
    """

    status: int
    body: dict[str, Any] | None = None
    retry_after: float | None = None
    ingest: bool = False
    close: bool = False

    def response(self) -> Response:
        """The HTTP response this fault answers with."""
        body = self.body
        if body is None:
            body = {"code": self.status, "error": _FAULT_MESSAGES.get(self.status) or _phrase(self.status)}
            if self.status == 429:
                body |= {"eps_threshold": 0, "throttled_devices": {}, "throttled_users": {}}
                body |= {"throttled_events": []}
        headers = {} if self.retry_after is None else {"retry-after": f"{self.retry_after:g}"}
        return Response.json(self.status, body, headers)


_FAULT_MESSAGES = {
    400: "Invalid API key: (simulated)",
    403: "Forbidden",
    413: "Payload too large",
    429: "Too many requests for some devices and users",
}


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(slots=True)
class _Storm:
    probability: float
    rng: random.Random
    seed: int | None
    statuses: tuple[int, ...]
    retry_after: float | None


class FaultController:
    """Scripted failures for the data endpoints. Precedence: down mode, then the queue, then a storm.

    All state changes take effect on the next request; the delay applies to every data response
    (after the request is processed, so a client that times out may still have its events stored).
    """

    def __init__(self) -> None:
        self.delay_s = 0.0
        """Seconds every data response is held back."""
        self._queue: deque[Fault] = deque()
        self._down: Fault | None = None
        self._storm: _Storm | None = None

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
        ingest: bool = False,
    ) -> None:
        """Answer the next ``count`` data requests (after those already queued) with ``status``."""
        self._queue.extend(itertools.repeat(Fault(status, body, retry_after, ingest), count))

    def close_next(self, count: int) -> None:
        """Drop the connection of the next ``count`` data requests without answering."""
        self._queue.extend(itertools.repeat(Fault(0, close=True), count))

    def invalid_api_key_next(self, count: int) -> None:
        """Answer the next ``count`` data requests with Amplitude's invalid-API-key 400."""
        self.fail_next(count, 400, body={"code": 400, "error": _FAULT_MESSAGES[400]})

    def storm(
        self,
        probability: float,
        *,
        seed: int | None = None,
        statuses: tuple[int, ...] = (500, 502, 503, 504),
        retry_after: float | None = None,
    ) -> None:
        """Fail each data request with ``probability``, status drawn from ``statuses``; a seed replays."""
        if not 0.0 <= probability <= 1.0 or not statuses:
            raise ValueError("storm needs 0 <= probability <= 1 and at least one status")
        self._storm = _Storm(probability, random.Random(seed), seed, tuple(statuses), retry_after)

    def down(self, mode: str = "503") -> None:
        """Every data request fails until :meth:`up`: ``"503"`` answers 503, ``"close"`` drops connections."""
        if mode not in ("503", "close"):
            raise ValueError(f"down mode must be '503' or 'close', not {mode!r}")
        self._down = Fault(0, close=True) if mode == "close" else Fault(503)

    def up(self) -> None:
        """Leave down mode."""
        self._down = None

    def clear(self) -> None:
        """Remove every fault: queue, storm, down mode and delay."""
        self._queue.clear()
        self._down = self._storm = None
        self.delay_s = 0.0

    def take(self) -> Fault | None:
        """The fault for the request being handled, if any (consumes one queued fault)."""
        if self._down is not None:
            return self._down
        if self._queue:
            return self._queue.popleft()
        storm = self._storm
        if storm is not None and storm.rng.random() < storm.probability:
            return Fault(storm.rng.choice(storm.statuses), retry_after=storm.retry_after)
        return None

    def apply(self, spec: dict[str, Any]) -> None:
        """Apply a JSON spec, keys in this order, all optional::

            {"clear": true,
             "fail_next": {"count": 2, "status": 503, "body": {...}, "retry_after": 1, "ingest": false},
             "close_next": 1, "invalid_api_key_next": 1, "delay_s": 0.5,
             "storm": {"probability": 0.1, "seed": 7, "statuses": [500, 503], "retry_after": null},
             "down": "503" | "close" | null}

        ``fail_next`` may also be a list of such objects; ``"storm": null`` ends a storm.
        """
        if spec.get("clear"):
            self.clear()
        items = spec.get("fail_next", [])
        for item in items if isinstance(items, list) else [items]:
            self.fail_next(
                int(item.get("count", 1)),
                int(item["status"]),
                body=item.get("body"),
                retry_after=item.get("retry_after"),
                ingest=bool(item.get("ingest", False)),
            )
        self.close_next(int(spec.get("close_next", 0)))
        self.invalid_api_key_next(int(spec.get("invalid_api_key_next", 0)))
        if "delay_s" in spec:
            self.delay_s = max(0.0, float(spec["delay_s"]))
        if "storm" in spec:
            storm = spec["storm"]
            if storm is None:
                self._storm = None
            else:
                self.storm(
                    float(storm["probability"]),
                    seed=storm.get("seed"),
                    statuses=tuple(int(s) for s in storm.get("statuses", (500, 502, 503, 504))),
                    retry_after=storm.get("retry_after"),
                )
        if "down" in spec:
            if spec["down"] is None:
                self.up()
            else:
                self.down(str(spec["down"]))

    def describe(self) -> dict[str, Any]:
        """The current fault state, JSON-ready."""
        storm = self._storm
        return {
            "queued": len(self._queue),
            "next": [f.status for f in itertools.islice(self._queue, 10)],
            "down": None if self._down is None else ("close" if self._down.close else "503"),
            "delay_s": self.delay_s,
            "storm": None
            if storm is None
            else {"probability": storm.probability, "seed": storm.seed, "statuses": list(storm.statuses)},
        }


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
            path: _Api(path, size, count, eps, path == BATCH_PATH, *_windows(cfg.rate_window_s))
            for path, size, count, eps in (
                (HTTP_V2_PATH, cfg.http_v2_max_bytes, cfg.http_v2_max_events, cfg.http_v2_eps),
                (BATCH_PATH, cfg.batch_max_bytes, cfg.batch_max_events, cfg.batch_eps),
            )
        }
        self._day = -1
        self._daily_devices: dict[str, int] = {}
        self._daily_users: dict[str, int] = {}
        self._dedup = _Dedup(cfg.dedup_capacity) if cfg.dedup_capacity > 0 else None
        # (received_at, path, JSON holding {"events": [...]}, count): bytes are compact and invisible to
        # the cyclic GC, which parsed dicts kept by the million would make crawl.
        self._ingested: list[tuple[float, str, bytes, int]] = []
        self._duplicates: list[tuple[float, str, bytes, int]] = []

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
        return _expand(self._ingested)

    @property
    def duplicates(self) -> list[IngestedEvent]:
        """Events answered 200 but dropped as duplicates (empty unless ``keep_events``)."""
        return _expand(self._duplicates)

    def counts_per_second(self, id_field: str = "device_id") -> dict[str, dict[int, int]]:
        """Ingested events per id and whole clock second: ``{id: {second: count}}`` (needs kept events)."""
        out: dict[str, dict[int, int]] = {}
        for item in self.events:
            key = item.event.get(id_field)
            if key is not None:
                per = out.setdefault(key, {})
                second = int(item.received_at)
                per[second] = per.get(second, 0) + 1
        return out

    def describe(self) -> dict[str, Any]:
        """Stats, fault state and kept-event count as served by ``GET /_sim/stats``."""
        return {
            "code": 200,
            "stats": self.stats.as_dict(),
            "faults": self.faults.describe(),
            "events_kept": sum(row[3] for row in self._ingested),
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
        if len(body) > api.max_bytes:
            return 413, _TOO_LARGE
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if type(payload) is not dict:
            return 400, {"code": 400, "error": "Invalid JSON request body"}
        events = payload.get("events")
        status, answer = self._check_and_accept(api, payload, events, body)
        if status != 200 and type(events) is list:
            self.stats.events_rejected += len(events)
        return status, answer

    def _check_and_accept(
        self, api: _Api, payload: dict[str, Any], events: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Key, shape, per-event and limit checks on a parsed body; ingests only if all pass."""
        api_key = payload.get("api_key")
        if not api_key or type(api_key) is not str:
            return 400, {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
        if not self._any_key and api_key not in self.api_keys:
            return 400, {"code": 400, "error": f"Invalid API key: {_mask(api_key)}"}
        if not events:
            return 400, {"code": 400, "error": "Request missing required field", "missing_field": "events"}
        if type(events) is not list:
            return 400, {"code": 400, "error": "Invalid field: events must be an array"}
        if len(events) > api.max_events:
            return 413, _TOO_LARGE
        options = payload.get("options")
        min_len = options.get("min_id_length") if type(options) is dict else None
        if min_len is None:
            min_len = self.config.min_id_length
        elif type(min_len) is not int or min_len < 0:
            return 400, {"code": 400, "error": "Invalid field: options.min_id_length"}
        problems, devices, users, stripped = _validate(events, min_len, api.strip_short_ids)
        if problems:
            return 400, _problem_body(problems, self.config.first_invalid_index_only)
        now = self._clock()
        throttled = self._throttle(api, events, devices, users, now)
        if throttled is not None:
            return 429, throttled
        self._accept(api, events, devices, users, now, None if stripped else body)
        return 200, {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": len(body),
            "server_upload_time": int(now * 1000),
        }

    def _throttle(
        self, api: _Api, events: list[Any], devices: dict[str, int], users: dict[str, int], now: float
    ) -> dict[str, Any] | None:
        """The 429 body if this request would push an id over its rate or daily quota, else None."""
        window = self.config.rate_window_s
        td: dict[str, int] = {}
        tu: dict[str, int] = {}
        if api.eps > 0:
            api.devices.expire(now)
            api.users.expire(now)
            td = _over(devices, api.devices.counts, api.eps * window)
            tu = _over(users, api.users.counts, api.eps * window)
        qd: dict[str, int] = {}
        qu: dict[str, int] = {}
        if self.config.daily_quota > 0:
            day = int(now // 86400)
            if day != self._day:
                self._day, self._daily_devices, self._daily_users = day, {}, {}
            qd = _over(devices, self._daily_devices, self.config.daily_quota)
            qu = _over(users, self._daily_users, self.config.daily_quota)
        if not (td or tu or qd or qu):
            return None
        bad_devices, bad_users = td.keys() | qd.keys(), tu.keys() | qu.keys()
        throttled_events = [
            i
            for i, ev in enumerate(events)
            if ev.get("device_id") in bad_devices or ev.get("user_id") in bad_users
        ]
        return {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": api.eps,
            "throttled_devices": {k: math.ceil(v / window) for k, v in td.items()},
            "throttled_users": {k: math.ceil(v / window) for k, v in tu.items()},
            "throttled_events": throttled_events,
            "exceeded_daily_quota_devices": qd,
            "exceeded_daily_quota_users": qu,
        }

    def _accept(
        self,
        api: _Api,
        events: list[Any],
        devices: dict[str, int],
        users: dict[str, int],
        now: float,
        body: bytes | None,
    ) -> None:
        """Count the request against the limits, drop duplicates, keep the rest (``body``: as received)."""
        if api.eps > 0:
            api.devices.add(now, devices)
            api.users.add(now, users)
        if self.config.daily_quota > 0:
            _add_counts(self._daily_devices, devices)
            _add_counts(self._daily_users, users)
        fresh, dups = (events, []) if self._dedup is None else self._dedup.split(events)
        self.stats.events_ingested += len(fresh)
        self.stats.events_duplicate += len(dups)
        if self.config.keep_events:
            blob = body if body is not None and not dups else orjson.dumps({"events": fresh})
            self._ingested.append((now, api.path, blob, len(fresh)))
            if dups:
                self._duplicates.append((now, api.path, orjson.dumps({"events": dups}), len(dups)))

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


def _expand(rows: list[tuple[float, str, bytes, int]]) -> list[IngestedEvent]:
    return [IngestedEvent(ev, t, path) for t, path, blob, _ in rows for ev in orjson.loads(blob)["events"]]


def _windows(window_s: float) -> tuple[_SlidingCounts, _SlidingCounts]:
    return _SlidingCounts(window_s), _SlidingCounts(window_s)


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


def _over(request_counts: dict[str, int], known: dict[str, int], cap: float) -> dict[str, int]:
    """Ids whose known count plus this request's exceeds ``cap``, with that total."""
    over: dict[str, int] = {}
    for key, n in request_counts.items():
        total = known.get(key, 0) + n
        if total > cap:
            over[key] = total
    return over


def _mask(api_key: str) -> str:
    """Enough of a key to recognise it, never all of it."""
    return api_key[:4] + "..." if len(api_key) >= 8 else "..."


def _id_state(
    ev: dict[str, Any],
    name: str,
    i: int,
    min_len: int,
    strip: bool,
    invalid: dict[str, list[int]],
    short: dict[str, list[int]],
) -> int:
    """Classify one id field of event ``i``; records refusals in ``invalid``/``short``."""
    value = ev.get(name)
    if value is None or value == "":
        return _ABSENT
    if type(value) is not str:
        invalid.setdefault(name, []).append(i)
        return _REFUSED
    if len(value) < min_len:
        if strip:
            del ev[name]
            return _STRIPPED
        short.setdefault(name, []).append(i)
        return _REFUSED
    if value in _PLACEHOLDER_VARIANTS or (name == "device_id" and not value.strip("0-")):
        invalid.setdefault(name, []).append(i)
        return _REFUSED
    return _OK


def _validate(
    events: list[Any], min_len: int, strip_short_ids: bool
) -> tuple[dict[str, dict[str, list[int]]], dict[str, int], dict[str, int], bool]:
    """Per-event checks in one pass: problems by response key, event counts per device and per user, and
    whether a too-short id was removed from some event (Batch API)."""
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    short: dict[str, list[int]] = {}
    devices: dict[str, int] = {}
    users: dict[str, int] = {}
    stripped = False
    placeholders = _PLACEHOLDER_VARIANTS
    zeros = ("", "0", "-")  # an empty id, or one that may be all zeros, takes the slow path
    for i, ev in enumerate(events):
        if type(ev) is not dict:
            invalid.setdefault("event", []).append(i)
            continue
        event_type = ev.get("event_type")
        if type(event_type) is not str or not event_type:
            (missing if event_type is None or event_type == "" else invalid).setdefault(
                "event_type", []
            ).append(i)
        event_time = ev.get("time")
        if event_time is not None and type(event_time) is not int:
            invalid.setdefault("time", []).append(i)
        insert_id = ev.get("insert_id")
        if insert_id is not None and type(insert_id) is not str:
            invalid.setdefault("insert_id", []).append(i)
        # fast path for the usual well-formed id; anything else gets the full classification
        uid: Any = ev.get("user_id")
        if uid is None:
            user = _ABSENT
        elif type(uid) is str and len(uid) >= min_len and uid not in placeholders and uid:
            user = _OK
        else:
            user = _id_state(ev, "user_id", i, min_len, strip_short_ids, invalid, short)
        did: Any = ev.get("device_id")
        if did is None:
            device = _ABSENT
        elif type(did) is str and len(did) >= min_len and did not in placeholders and did[:1] not in zeros:
            device = _OK
        else:
            device = _id_state(ev, "device_id", i, min_len, strip_short_ids, invalid, short)
        if user == _REFUSED or device == _REFUSED:
            continue
        if user == _OK:
            users[uid] = users.get(uid, 0) + 1
        if device == _OK:
            devices[did] = devices.get(did, 0) + 1
        if user == _STRIPPED or device == _STRIPPED:
            stripped = True
        if user != _OK and device != _OK:
            if user == _STRIPPED or device == _STRIPPED:
                for name, state in (("user_id", user), ("device_id", device)):
                    if state == _STRIPPED:
                        short.setdefault(name, []).append(i)
            else:
                missing.setdefault("user_id_or_device_id", []).append(i)
    problems = {
        key: found
        for key, found in (
            ("events_with_invalid_fields", invalid),
            ("events_with_missing_fields", missing),
            ("events_with_invalid_id_lengths", short),
        )
        if found
    }
    return problems, devices, users, stripped


def _problem_body(problems: dict[str, dict[str, list[int]]], first_only: bool) -> dict[str, Any]:
    """The 400 body for per-event problems."""
    only_lengths = problems.keys() == {"events_with_invalid_id_lengths"}
    error = "Invalid id length for user_id or device_id" if only_lengths else "Request missing required field"
    body: dict[str, Any] = {"code": 400, "error": error}
    for key, found in problems.items():
        body[key] = {name: idx[:1] if first_only else idx for name, idx in found.items()}
    return body


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
