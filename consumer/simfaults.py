"""Scripted failures for the Amplitude simulator's data endpoints (``/2/httpapi``, ``/batch``).

A :class:`FaultController` decides, per data request, whether to answer normally or with a
:class:`Fault`: a status and body, a ``Retry-After``, a dropped connection, or an answer given after
the events were stored anyway. Faults come from down mode, a queue of next answers, or a seeded random
storm, and can be scripted from Python or as JSON (``POST /_sim/faults``). Pure bookkeeping: the
simulator asks :meth:`FaultController.take` once per data request and applies the result.
"""

from __future__ import annotations

import http
import itertools
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from consumer.httpserver import Response


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
