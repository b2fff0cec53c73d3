"""Scripted failures for the simulator's data endpoints (Amplitude, Movable Ink and Remerge).

A :class:`FaultController` decides, per data request, whether to answer normally or with a
:class:`Fault`: a status and body, a ``Retry-After``, a dropped connection, a connection held open with
no answer at all (``hang``), or an answer given after the events were stored anyway. Independently of
faults, every answer can be held back (``delay_s``) and its body trickled a few bytes per second
(``trickle_bps``), as over a congested link. Faults come from down mode, a queue of next answers, or
a seeded random storm, and can be scripted from Python or as JSON (``POST /_sim/faults``). Pure
bookkeeping: the simulator asks :meth:`FaultController.next_fault` once per data request and applies it.

Every fault has a scope: one destination of :data:`DESTINATIONS`, or ``None`` (the default) for all of
them, as before destinations existed. A request to a destination sees the faults of its own scope and
those of the all-destinations scope.
"""

from __future__ import annotations

import http
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from consumer.ops.web import json_response

DESTINATIONS = ("amplitude", "movableink", "remerge")
"""The destinations a fault can target; ``None`` targets all of them."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer to a data request, given instead of the normal one.

    ``ingest``: process the request normally first (events stored if it would be accepted), then answer
    ``status`` anyway, like a 500/502/504 after which Amplitude may have kept the events. ``close``: drop
    the connection without answering. ``hang``: keep the connection open and never answer (until the
    client gives up or the simulator stops). ``body`` defaults to ``{"code": status, "error": ...}``.
    ``auth``: an invalid-credentials answer in the destination's own terms (see :meth:`response`).
    """

    status: int
    body: dict[str, Any] | None = None
    retry_after: float | None = None
    ingest: bool = False
    close: bool = False
    auth: bool = False
    hang: bool = False

    def response(self, destination: str = "amplitude") -> web.Response:
        """The HTTP response this fault answers with, shaped like ``destination``'s own errors.

        Amplitude: ``{"code", "error"}`` (a 429 with empty throttling fields); Movable Ink:
        ``{"error"}``; Remerge: a plain-text reason. An ``auth`` fault is Amplitude's invalid-API-key
        400, Movable Ink's 401 or Remerge's 403. A custom ``body`` is sent as JSON as given.
        """
        status = _AUTH_STATUS[destination] if self.auth else self.status
        message = (_AUTH_MESSAGES if self.auth else _FAULT_MESSAGES).get(status) or _phrase(status)
        headers = {} if self.retry_after is None else {"retry-after": f"{self.retry_after:g}"}
        body = self.body
        if body is None and destination == "remerge":
            return web.Response(status=status, text=message, headers=headers, content_type="text/plain")
        if body is None and destination == "movableink":
            body = {"error": message}
        elif body is None:
            body = {"code": status, "error": message}
            if status == 429:
                body |= {"eps_threshold": 0, "throttled_devices": {}, "throttled_users": {}}
                body |= {"throttled_events": []}
        return json_response(status, body, headers)


_FAULT_MESSAGES = {
    400: "Invalid API key: (simulated)",
    403: "Forbidden",
    413: "Payload too large",
    429: "Too many requests for some devices and users",
}
_AUTH_STATUS = {"amplitude": 400, "movableink": 401, "remerge": 403}
_AUTH_MESSAGES = {400: _FAULT_MESSAGES[400], 401: "Unauthorized (simulated)", 403: "invalid key (simulated)"}


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _down_mode(fault: Fault) -> str:
    return "close" if fault.close else "hang" if fault.hang else "503"


_DOWN_MODES = {"503": Fault(503), "close": Fault(0, close=True), "hang": Fault(0, hang=True)}


def _scope(destination: str | None) -> str | None:
    """``destination`` checked against :data:`DESTINATIONS` (``None``: all destinations)."""
    if destination is not None and destination not in DESTINATIONS:
        raise ValueError(f"destination must be one of {', '.join(DESTINATIONS)}, not {destination!r}")
    return destination


@dataclass(slots=True)
class _Storm:
    probability: float
    rng: random.Random
    seed: int | None
    statuses: tuple[int, ...]
    retry_after: float | None


@dataclass(slots=True)
class _Scope:
    """The faults of one scope; queued faults carry a sequence number so scopes interleave in order."""

    queue: deque[tuple[int, Fault]] = field(default_factory=deque)
    down: Fault | None = None
    storm: _Storm | None = None
    delay_s: float | None = None
    trickle_bps: float | None = None

    def describe(self, delay_s: float | None, trickle_bps: float | None) -> dict[str, Any]:
        storm = self.storm
        return {
            "queued": len(self.queue),
            "next": [f.status for _, f in itertools.islice(self.queue, 10)],
            "down": None if self.down is None else _down_mode(self.down),
            "delay_s": delay_s,
            "trickle_bps": trickle_bps,
            "storm": None
            if storm is None
            else {"probability": storm.probability, "seed": storm.seed, "statuses": list(storm.statuses)},
        }


class FaultController:
    """Scripted failures for the data endpoints. Precedence: down mode, then the queue, then a storm.

    All state changes take effect on the next request; the delay applies to every data response
    (after the request is processed, so a client that times out may still have its events stored).
    Every method takes an optional ``destination`` (see :data:`DESTINATIONS`); without one a fault
    applies to every destination, and :meth:`up` and :meth:`clear` act on every scope.
    """

    def __init__(self) -> None:
        self.delay_s = 0.0
        """Seconds every data response is held back (unless its destination has its own delay)."""
        self.trickle_bps = 0.0
        """Bytes per second every data response body is sent at (0: at once; a destination's own wins)."""
        self._scopes: dict[str | None, _Scope] = {None: _Scope()} | {d: _Scope() for d in DESTINATIONS}
        self._seq = itertools.count()

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
        ingest: bool = False,
        destination: str | None = None,
    ) -> None:
        """Answer the next ``count`` data requests (after those already queued) with ``status``."""
        self._enqueue(count, Fault(status, body, retry_after, ingest), destination)

    def close_next(self, count: int, *, destination: str | None = None) -> None:
        """Drop the connection of the next ``count`` data requests without answering."""
        self._enqueue(count, Fault(0, close=True), destination)

    def hang_next(self, count: int, *, destination: str | None = None) -> None:
        """Hold the connection of the next ``count`` data requests open without ever answering them."""
        self._enqueue(count, Fault(0, hang=True), destination)

    def invalid_api_key_next(self, count: int, *, destination: str | None = None) -> None:
        """Refuse the next ``count`` requests' credentials: Amplitude 400, Movable Ink 401, Remerge 403."""
        status = _AUTH_STATUS[destination or "amplitude"]
        self._enqueue(count, Fault(status, auth=True), destination)

    def _enqueue(self, count: int, fault: Fault, destination: str | None) -> None:
        queue = self._scopes[_scope(destination)].queue
        queue.extend((next(self._seq), fault) for _ in range(count))

    def storm(
        self,
        probability: float,
        *,
        seed: int | None = None,
        statuses: tuple[int, ...] = (500, 502, 503, 504),
        retry_after: float | None = None,
        destination: str | None = None,
    ) -> None:
        """Fail each data request with ``probability``, status drawn from ``statuses``; a seed replays.

        A destination's own storm replaces the all-destinations storm for its requests.
        """
        if not 0.0 <= probability <= 1.0 or not statuses:
            raise ValueError("storm needs 0 <= probability <= 1 and at least one status")
        storm = _Storm(probability, random.Random(seed), seed, tuple(statuses), retry_after)
        self._scopes[_scope(destination)].storm = storm

    def down(self, mode: str = "503", *, destination: str | None = None) -> None:
        """Every data request fails until :meth:`up`: ``"503"`` answers 503, ``"close"`` drops connections,
        ``"hang"`` never answers (requests already hanging keep hanging after :meth:`up`)."""
        if mode not in _DOWN_MODES:
            raise ValueError(f"down mode must be '503', 'close' or 'hang', not {mode!r}")
        self._scopes[_scope(destination)].down = _DOWN_MODES[mode]

    def up(self, *, destination: str | None = None) -> None:
        """Leave down mode: ``destination``'s own, or (no destination) every scope's."""
        if destination is None:
            for scope in self._scopes.values():
                scope.down = None
        else:
            self._scopes[_scope(destination)].down = None

    def set_delay(self, seconds: float, *, destination: str | None = None) -> None:
        """Hold back responses by ``seconds`` (a destination's own delay overrides :attr:`delay_s`)."""
        if destination is None:
            self.delay_s = max(0.0, seconds)
        else:
            self._scopes[_scope(destination)].delay_s = max(0.0, seconds)

    def delay_for(self, destination: str) -> float:
        """Seconds a response of ``destination`` is held back."""
        own = self._scopes[_scope(destination)].delay_s
        return self.delay_s if own is None else own

    def set_trickle(self, bytes_per_s: float, *, destination: str | None = None) -> None:
        """Send response bodies at ``bytes_per_s`` (0: at once), headers first; a destination's own rate
        overrides :attr:`trickle_bps`. The answer itself is unchanged (a 200 still ingests)."""
        if destination is None:
            self.trickle_bps = max(0.0, bytes_per_s)
        else:
            self._scopes[_scope(destination)].trickle_bps = max(0.0, bytes_per_s)

    def trickle_for(self, destination: str) -> float:
        """Bytes per second a response body of ``destination`` is sent at (0: at once)."""
        own = self._scopes[_scope(destination)].trickle_bps
        return self.trickle_bps if own is None else own

    def clear(self, *, destination: str | None = None) -> None:
        """Remove faults: queue, storm, down mode, delay and trickle of ``destination``, or (no
        destination) all."""
        if destination is None:
            self._scopes = {None: _Scope()} | {d: _Scope() for d in DESTINATIONS}
            self.delay_s = 0.0
            self.trickle_bps = 0.0
        else:
            self._scopes[_scope(destination)] = _Scope()

    def next_fault(self, destination: str | None = None) -> Fault | None:
        """The fault for a request to ``destination`` (``None``: all-destination faults only), if any.

        Consumes one queued fault: the earliest queued one of the destination's and the general queue.
        """
        general = self._scopes[None]
        own = general if destination is None else self._scopes[_scope(destination)]
        down = own.down or general.down
        if down is not None:
            return down
        queues = [q for q in (own.queue, general.queue) if q]
        if queues:
            return min(queues, key=lambda q: q[0][0]).popleft()[1]
        storm = own.storm or general.storm
        if storm is not None and storm.rng.random() < storm.probability:
            return Fault(storm.rng.choice(storm.statuses), retry_after=storm.retry_after)
        return None

    def apply(self, spec: dict[str, Any]) -> None:
        """Apply a JSON spec, keys in this order, all optional::

            {"destination": "amplitude" | "movableink" | "remerge" | null,
             "clear": true,
             "fail_next": {"count": 2, "status": 503, "body": {...}, "retry_after": 1, "ingest": false},
             "close_next": 1, "hang_next": 1, "invalid_api_key_next": 1, "delay_s": 0.5,
             "trickle_bps": 4,
             "storm": {"probability": 0.1, "seed": 7, "statuses": [500, 503], "retry_after": null},
             "down": "503" | "close" | "hang" | null}

        ``destination`` scopes everything else in the spec (none or null: all destinations).
        ``fail_next`` may also be a list of such objects; ``"storm": null`` ends a storm.
        """
        dest = spec.get("destination")
        dest = _scope(None if dest is None else str(dest))
        if spec.get("clear"):
            self.clear(destination=dest)
        items = spec.get("fail_next", [])
        for item in items if isinstance(items, list) else [items]:
            self.fail_next(
                int(item.get("count", 1)),
                int(item["status"]),
                body=item.get("body"),
                retry_after=item.get("retry_after"),
                ingest=bool(item.get("ingest", False)),
                destination=dest,
            )
        self.close_next(int(spec.get("close_next", 0)), destination=dest)
        self.hang_next(int(spec.get("hang_next", 0)), destination=dest)
        self.invalid_api_key_next(int(spec.get("invalid_api_key_next", 0)), destination=dest)
        if "delay_s" in spec:
            self.set_delay(float(spec["delay_s"]), destination=dest)
        if "trickle_bps" in spec:
            self.set_trickle(float(spec["trickle_bps"] or 0), destination=dest)
        if "storm" in spec:
            storm = spec["storm"]
            if storm is None:
                self._scopes[dest].storm = None
            else:
                self.storm(
                    float(storm["probability"]),
                    seed=storm.get("seed"),
                    statuses=tuple(int(s) for s in storm.get("statuses", (500, 502, 503, 504))),
                    retry_after=storm.get("retry_after"),
                    destination=dest,
                )
        if "down" in spec:
            if spec["down"] is None:
                self.up(destination=dest)
            else:
                self.down(str(spec["down"]), destination=dest)

    def describe(self) -> dict[str, Any]:
        """The current fault state, JSON-ready: the all-destination faults at the top level (as before
        destinations existed) and each destination's own under ``destinations`` (``delay_s`` and
        ``trickle_bps`` null there: none of its own)."""
        out = self._scopes[None].describe(self.delay_s, self.trickle_bps)
        out["destinations"] = {
            d: self._scopes[d].describe(self._scopes[d].delay_s, self._scopes[d].trickle_bps)
            for d in DESTINATIONS
        }
        return out
