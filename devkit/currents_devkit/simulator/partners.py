"""The simulator's Movable Ink and Remerge modes: validation, answers, counters and stored events.

Movable Ink Customer Data API (:class:`MovableInkApi`): ``POST /behavioral/<key>`` with
``Authorization: Basic base64(user:password)`` and one JSON event per request. Checked in this order:
401 (Basic auth missing, malformed, or not an accepted user/password pair), 404 (``<key>`` not an
accepted key), 413 (body over ``max_bytes``), 400 ``{"error": reason}`` (see
:func:`check_movableink_event`); else 200 ``{"status": "ok"}`` and the event is kept with its key.

Remerge event tracking (:class:`RemergeApi`): ``GET /event?partner=&app_id=&key=&ts=&idfa=|aaid=&event=
&non_app_event=&data=``. 400 if ``key`` is missing, 403 if it is not accepted, 400 (plain-text reason,
see :func:`check_remerge_query`) for any other missing or invalid parameter; else 204 with no body and
the parsed parameters are kept. The key itself is never kept nor echoed: rows carry :func:`key_id`.

An empty set of accepted credentials or keys accepts any (auth must still be present and well-formed).
Both classes are pure request -> response logic; the simulator routes to them, applies faults
(:mod:`currents_devkit.simulator.faults`) and counts every answer in the API's :class:`PartnerLog`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from consumer.ops.web import json_response
from currents_devkit.simulator.wire import Request

__all__ = [
    "MAX_SECONDS_TS",
    "MIN_MILLIS_TS",
    "MOVABLEINK_MAX_BYTES",
    "MOVABLEINK_PREFIX",
    "REMERGE_PATH",
    "MovableInkApi",
    "PartnerApi",
    "PartnerLog",
    "RemergeApi",
    "basic_credentials",
    "check_movableink_event",
    "check_remerge_query",
    "key_id",
    "parse_credentials",
]

MOVABLEINK_PREFIX = "/behavioral/"
REMERGE_PATH = "/event"
MOVABLEINK_MAX_BYTES = 32 * 1024
MIN_MILLIS_TS = 100_000_000_000
"""Smallest Movable Ink ``timestamp`` taken as milliseconds (1973-03-03); smaller ones are seconds."""
MAX_SECONDS_TS = 10_000_000_000
"""Remerge ``ts`` must be below this (2286-11-20 in seconds); larger ones are milliseconds."""


def parse_credentials(values: Iterable[str]) -> frozenset[tuple[str, str]]:
    """``"user:password"`` strings (password may contain ``:``) as pairs; ValueError without a colon."""
    pairs = set()
    for value in values:
        user, sep, password = value.partition(":")
        if not sep:
            raise ValueError("credentials must be given as user:password")
        pairs.add((user, password))
    return frozenset(pairs)


def key_id(key: str) -> str:
    """A short, stable fingerprint of a key (12 hex digits of its SHA-256): stored instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of an ``Authorization: Basic`` header; None if absent or malformed."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def check_movableink_event(body: Any) -> str | None:
    """Why a decoded Movable Ink body is invalid, or None if it is valid.

    An object; ``type`` "track" or "identify"; ``timestamp`` an integer in milliseconds (at least
    :data:`MIN_MILLIS_TS`); ``user_id`` / ``anonymous_id`` non-empty strings where present, at least
    one of them (both for "identify"); "track" needs a non-empty ``event`` and, if present, an object
    ``properties``; ``timezone`` a string if present. Other fields are allowed.
    """
    if type(body) is not dict:
        return "body must be a JSON object"
    kind = body.get("type")
    if kind not in ("track", "identify"):
        return 'type must be "track" or "identify"'
    error = _movableink_timestamp_error(body.get("timestamp")) or _movableink_identity_error(body, kind)
    if error is None and kind == "track":
        error = _movableink_track_error(body)
    if error is None and "timezone" in body and not isinstance(body["timezone"], str):
        error = "timezone must be a string"
    return error


def _movableink_timestamp_error(timestamp: Any) -> str | None:
    if type(timestamp) is not int:
        return "timestamp must be an integer (milliseconds since the epoch)"
    if timestamp < MIN_MILLIS_TS:
        return "timestamp must be in milliseconds since the epoch"
    return None


def _movableink_identity_error(body: dict[str, Any], kind: str) -> str | None:
    for name in ("user_id", "anonymous_id"):
        if name in body and not _non_empty_str(body[name]):
            return f"{name} must be a non-empty string"
    present = [name for name in ("user_id", "anonymous_id") if name in body]
    if not present:
        return "user_id or anonymous_id is required"
    if kind == "identify" and len(present) < 2:
        return "identify requires both user_id and anonymous_id"
    return None


def _movableink_track_error(body: dict[str, Any]) -> str | None:
    if not _non_empty_str(body.get("event")):
        return "track requires a non-empty event"
    if "properties" in body and type(body["properties"]) is not dict:
        return "properties must be an object"
    return None


def check_remerge_query(query: dict[str, str]) -> dict[str, Any] | str:
    """The parsed Remerge parameters (``key`` left out), or why they are invalid.

    ``partner``, ``app_id``, ``event`` non-empty; ``ts`` decimal digits, seconds (below
    :data:`MAX_SECONDS_TS`); exactly one of ``idfa`` / ``aaid``, non-empty; ``non_app_event`` "true" or
    "false" (parsed as a bool); ``data`` optional, a JSON object (parsed). Other parameters are ignored.
    """
    out: dict[str, Any] = {}
    for name in ("partner", "app_id", "event"):
        if not query.get(name):
            return f"missing parameter: {name}"
        out[name] = query[name]
    ts = _remerge_ts(query.get("ts", ""))
    if isinstance(ts, str):
        return ts
    out["ts"] = ts
    ids = [name for name in ("idfa", "aaid") if name in query]
    if len(ids) != 1:
        return "exactly one of idfa and aaid is required"
    if not query[ids[0]]:
        return f"{ids[0]} must not be empty"
    out[ids[0]] = query[ids[0]]
    flag = query.get("non_app_event")
    if flag not in ("true", "false"):
        return 'non_app_event must be "true" or "false"'
    out["non_app_event"] = flag == "true"
    if "data" in query:
        data = _remerge_data(query["data"])
        if data is None:
            return "data must be a JSON object"
        out["data"] = data
    return out


def _remerge_ts(ts: str) -> int | str:
    """``ts`` as seconds since the epoch, or why it is invalid."""
    if not ts:
        return "missing parameter: ts"
    if not (ts.isascii() and ts.isdigit()):
        return "ts must be an integer (seconds since the epoch)"
    if int(ts) >= MAX_SECONDS_TS:
        return "ts must be in seconds since the epoch"
    return int(ts)


def _remerge_data(raw: str) -> dict[str, Any] | None:
    """The ``data`` parameter as a JSON object; None when it is not one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if type(data) is dict else None


class PartnerLog:
    """Counters and kept events of one partner API. Rows are kept as JSON bytes, decoded on access."""

    def __init__(self, keep_events: bool = True) -> None:
        self.keep_events = keep_events
        self.requests_by_status: dict[int, int] = {}
        """Every data request answered (faults included; status 0: connection dropped)."""
        self.accepted = 0
        """Events accepted (a fault with ``ingest`` counts here and under its status)."""
        self._rows: list[bytes] = []

    @property
    def requests_total(self) -> int:
        """Data requests answered (or dropped), faults included."""
        return sum(self.requests_by_status.values())

    def count(self, status: int) -> None:
        """Count one answered request."""
        self.requests_by_status[status] = self.requests_by_status.get(status, 0) + 1

    def accept(self, row: dict[str, Any]) -> None:
        """Count one accepted event and keep ``row`` (if keeping events)."""
        self.accepted += 1
        if self.keep_events:
            self._rows.append(orjson.dumps(row))

    def events(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Kept rows in arrival order (``offset``/``limit`` select a page), freshly decoded."""
        end = None if limit is None else offset + max(0, limit)
        return [orjson.loads(row) for row in self._rows[offset:end]]

    def as_dict(self) -> dict[str, Any]:
        """JSON form: requests, accepted, rejections (non-2xx answers) by status, events kept."""
        rejected = {k: v for k, v in sorted(self.requests_by_status.items()) if not 200 <= k < 300}
        return {
            "requests_total": sum(self.requests_by_status.values()),
            "accepted": self.accepted,
            "rejected": sum(rejected.values()),
            "rejected_by_status": {str(k): v for k, v in rejected.items()},
            "events_kept": len(self._rows),
        }


class PartnerApi:
    """What the simulator's router needs of a partner API: name, path test, method, answers, log."""

    name = ""
    method = ""

    def __init__(self, keep_events: bool) -> None:
        self.log = PartnerLog(keep_events)

    def matches(self, path: str) -> bool:
        """Whether ``path`` belongs to this API."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> web.Response:
        """An error answer in this API's format."""
        raise NotImplementedError

    def handle(self, request: Request, now: float) -> web.Response:
        """Validate one request (already routed, method checked); keep it if accepted; the answer."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Counters as served in ``GET /_sim/stats`` (never a key or credential)."""
        return self.log.as_dict()

    def summary(self) -> str:
        """One log-line fragment: ``name: N requests, N accepted, N rejected``."""
        log = self.log
        rejected = log.requests_total - sum(v for k, v in log.requests_by_status.items() if 200 <= k < 300)
        return f"{self.name}: {log.requests_total} requests, {log.accepted} accepted, {rejected} rejected"


class MovableInkApi(PartnerApi):
    """Movable Ink's Customer Data API: ``POST /behavioral/<key>``, Basic auth, one JSON event."""

    name = "movableink"
    method = "POST"

    def __init__(
        self,
        credentials: Iterable[tuple[str, str]] = (),
        keys: Iterable[str] = (),
        max_bytes: int = MOVABLEINK_MAX_BYTES,
        keep_events: bool = True,
    ) -> None:
        super().__init__(keep_events)
        self.credentials = set(credentials)
        """Accepted (user, password) pairs; empty: any well-formed Basic auth."""
        self.keys = set(keys)
        """Accepted ``<key>`` path segments; empty: any."""
        self.max_bytes = max_bytes

    def matches(self, path: str) -> bool:
        """Paths under ``/behavioral/``."""
        return path.startswith(MOVABLEINK_PREFIX)

    def error(self, status: int, message: str) -> web.Response:
        """``{"error": message}``."""
        return json_response(status, {"error": message})

    def handle(self, request: Request, now: float) -> web.Response:
        """401, 404, 413, 400 or 200 (see the module docstring); an accepted event is kept."""
        creds = basic_credentials(request.headers.get("authorization"))
        if creds is None or (self.credentials and creds not in self.credentials):
            return self.error(401, "Unauthorized")
        key = request.path[len(MOVABLEINK_PREFIX) :]
        if not key or "/" in key or (self.keys and key not in self.keys):
            return self.error(404, "Not found")
        if len(request.body) > self.max_bytes:
            return self.error(413, f"Payload too large (limit {self.max_bytes} bytes)")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self.error(400, "body is not valid JSON")
        problem = check_movableink_event(body)
        if problem is not None:
            return self.error(400, problem)
        self.log.accept({"received_at": now, "key": key, "event": body})
        return json_response(200, {"status": "ok"})

    def describe(self) -> dict[str, Any]:
        """Counters plus how many keys and credentials are configured."""
        return self.log.as_dict() | {
            "keys_configured": len(self.keys),
            "credentials_configured": len(self.credentials),
        }


class RemergeApi(PartnerApi):
    """Remerge event tracking: ``GET /event`` with query parameters, answered 204."""

    name = "remerge"
    method = "GET"

    def __init__(self, keys: Iterable[str] = (), keep_events: bool = True) -> None:
        super().__init__(keep_events)
        self.keys = set(keys)
        """Accepted ``key`` values; empty: any non-empty key."""

    def matches(self, path: str) -> bool:
        """Exactly ``/event``."""
        return path == REMERGE_PATH

    def error(self, status: int, message: str) -> web.Response:
        """A plain-text reason."""
        return web.Response(status=status, text=message, content_type="text/plain")

    def handle(self, request: Request, now: float) -> web.Response:
        """400 (no key), 403 (key not accepted), 400 (other parameters) or 204; accepted events kept."""
        key = request.query.get("key", "")
        if not key:
            return self.error(400, "missing parameter: key")
        if self.keys and key not in self.keys:
            return self.error(403, "invalid key")
        parsed = check_remerge_query(request.query)
        if isinstance(parsed, str):
            return self.error(400, parsed)
        self.log.accept({"received_at": now, "key_id": key_id(key), "event": parsed})
        return web.Response(status=204, content_type="text/plain")

    def describe(self) -> dict[str, Any]:
        """Counters plus how many keys are configured."""
        return self.log.as_dict() | {"keys_configured": len(self.keys)}
