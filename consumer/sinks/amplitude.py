"""The Amplitude sink: one HTTP exchange -> one typed outcome. Never retries, never sleeps.

:meth:`AmplitudeSink.send` posts one batch of pre-encoded events and classifies the answer following
Amplitude's contract (``amplitude-api.md``): delivered; some events rejected (drop exactly those);
payload too large (split); some devices/users throttled or over the daily quota; retry later (5xx,
timeouts, connection errors, credentials); or a fatal answer for the whole batch. What to do about
each outcome is decided one level up, in :mod:`consumer.delivery.engine`.

An answer Amplitude never gives says the URL is wrong, not the events: a 404 or 405 (a path other than
``/2/httpapi`` or ``/batch``), a redirect, a 2xx whose body is not Amplitude's (JSON with ``code`` or
``events_ingested``), or a body that is not JSON where Amplitude answers JSON (every status below 500;
a proxy's 5xx page stays an outage). It is ``RetryLater(endpoint=<masked URL>)``: held like refused
credentials, never dead-lettered for it.

One exchange never outlasts ``timeout`` (``--request-timeout``), from waiting for a pooled connection
to the last byte of the answer, however slowly the answer comes: it ends as ``RetryLater("timeout")``.

The API key is only ever written into the request body; it never appears in an outcome, a log line or
an exception message raised from here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson
from zlib_ng import zlib_ng

from consumer.events import Queued, key_column, key_ids
from consumer.settings import AmplitudeSettings
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Outcome,
    Rejected,
    RetryLater,
    SendResult,
    Throttled,
    TooLarge,
    masked_url,
    retry_after,
)


def build_body(api_key: str, encoded: Sequence[bytes], min_id_length: int) -> bytes:
    """The JSON request body from already-encoded events (no re-encoding of events on resends): each of
    ``encoded`` is one event, or a run of them already separated by commas."""
    return b"".join(
        (
            b'{"api_key":',
            orjson.dumps(api_key),
            b',"events":[',
            b",".join(encoded),
            b'],"options":{"min_id_length":',
            str(min_id_length).encode(),
            b"}}",
        )
    )


def _indices(mapping: Any, what: str, reasons: dict[int, str], size: int) -> None:
    if not isinstance(mapping, dict):
        return
    for name, indices in mapping.items():
        if isinstance(indices, list):
            for i in indices:
                if isinstance(i, int) and 0 <= i < size:
                    reasons.setdefault(i, f"{what}:{name}")


NOT_JSON = object()
"""The ``body`` to :func:`classify` of an answer that is empty or not JSON."""


def classify(
    status: int, body: Any, headers: httpx.Headers, batch: Sequence[Queued], *, url: str = ""
) -> Outcome:
    """Map one Amplitude answer to an :data:`Outcome` (pure; tested against every documented body).

    ``body`` is the parsed JSON (:data:`NOT_JSON` when there was none); ``url`` (masked) is what an
    answer that is not Amplitude's names as the wrong endpoint."""
    data = body if isinstance(body, dict) else {}
    if 200 <= status < 300:
        return Delivered() if _amplitude_accepted(status, data) else _not_amplitude(body, url)
    if status == 413:
        return TooLarge()
    if status == 429:
        return _classify_429(data, headers)
    if status == 403:
        return RetryLater("forbidden", retry_after(headers), credentials=True)
    if status >= 500 or status == 408:
        return RetryLater(f"http_{status}", retry_after(headers))
    if status in (404, 405) or 300 <= status < 400:
        return RetryLater(f"http_{status}", retry_after(headers), endpoint=url or "?")
    if not isinstance(body, dict):
        return _not_amplitude(body, url)
    if status == 400:
        return _classify_400(data, headers, batch)
    return Fatal(f"http_{status}", str(data.get("error", ""))[:200])


def _amplitude_accepted(status: int, data: dict[str, Any]) -> bool:
    """Whether a 2xx body is Amplitude's: it carries ``code`` (the status) or ``events_ingested``."""
    return data.get("code") == status or isinstance(data.get("events_ingested"), int)


def _not_amplitude(body: Any, url: str) -> RetryLater:
    """An answer Amplitude never sends: the URL is not Amplitude's endpoint."""
    return RetryLater("not_json" if body is NOT_JSON else "not_amplitude", endpoint=url or "?")


def _classify_400(data: dict[str, Any], headers: httpx.Headers, batch: Sequence[Queued]) -> Outcome:
    """A 400: a bad API key (retried once credentials change), the events Amplitude names as invalid or
    silenced (dropped), or, when it names none, a fatal error."""
    error = str(data.get("error", ""))
    if "api key" in error.lower() or data.get("missing_field") == "api_key":
        return RetryLater("invalid_api_key", retry_after(headers), credentials=True)
    reasons: dict[int, str] = {}
    keys = key_column(batch)  # Amplitude names events by their index in the request
    size = len(keys)
    _indices(data.get("events_with_invalid_fields"), "invalid_field", reasons, size)
    _indices(data.get("events_with_missing_fields"), "missing_field", reasons, size)
    _indices(data.get("events_with_invalid_id_lengths"), "invalid_id_length", reasons, size)
    _silenced(data, keys, reasons)
    if reasons:
        return Rejected(reasons)
    return Fatal("http_400", error[:200])


def _silenced(data: dict[str, Any], keys: list[tuple[str, ...]], reasons: dict[int, str]) -> None:
    """Mark the silenced events (``keys``: each event's limiter keys), by index and by device, that have no
    other reason yet."""
    size = len(keys)
    for i in data.get("silenced_events") or []:
        if isinstance(i, int) and 0 <= i < size:
            reasons.setdefault(i, "silenced")
    silenced = {d for d in data.get("silenced_devices") or [] if isinstance(d, str)}
    if silenced:
        for i, each in enumerate(keys):
            if key_ids(each)[0] in silenced:
                reasons.setdefault(i, "silenced")


def _classify_429(data: dict[str, Any], headers: httpx.Headers) -> Outcome:
    """A 429: the throttled devices, users and events, or, when none is named, the whole project."""

    def names(key: str) -> frozenset[str]:
        value = data.get(key)
        return frozenset(value) if isinstance(value, dict) else frozenset()

    events = data.get("throttled_events")
    indices = [i for i in events if isinstance(i, int)] if isinstance(events, list) else []
    throttled = Throttled(
        devices=names("throttled_devices"),
        users=names("throttled_users"),
        events=frozenset(indices),
        quota_devices=names("exceeded_daily_quota_devices"),
        quota_users=names("exceeded_daily_quota_users"),
    )
    if throttled == Throttled():
        # Project-wide throttling: Amplitude asks to wait (60 s by its documentation).
        after = retry_after(headers)
        return RetryLater("project_throttled", 60.0 if after is None else after)
    eps = data.get("eps_threshold")
    threshold = float(eps) if isinstance(eps, int | float) and not isinstance(eps, bool) and eps > 0 else None
    return dataclasses.replace(throttled, after=retry_after(headers), eps_threshold=threshold)


GZIP_LEVEL = 2
"""zlib-ng's level 2 on request bodies (``bench/micro_gzip.py``, the bench's 1 MB bodies): 1.66 CPU-µs
and 116 bytes per event, 4.5 times smaller. Level 1 takes 1.05 µs but sends 167 bytes (+44 %);
stdlib zlib's level 1 takes 2.46 µs for 128 bytes. Compression runs in a thread, off the event loop:
0.6 µs of the tree's 40 is not worth 44 % more bytes on the way to Amplitude."""


def _gzip(body: bytes) -> bytes:
    compressor = zlib_ng.compressobj(GZIP_LEVEL, zlib_ng.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


class RequestBody:
    """A request body that httpx sends once and the sender empties as soon as the exchange ends.

    httpx keeps each request, its body included, in a reference cycle (request, response and their
    streams) that only the garbage collector frees. A body handed over as ``bytes`` lives until a
    collection runs, and one still in flight during a collection is promoted to an older generation,
    where it may wait for a full collection: with bodies of a few hundred kilobytes, peak RSS grew with
    the length of a run. Emptied, the body is freed at once, whatever becomes of the cycle.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def headers(self) -> dict[str, str]:
        """The length header (httpx would otherwise send an iterable body chunked)."""
        return {"Content-Length": str(len(self.data))}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data

    def release(self) -> None:
        """Drop the bytes (the exchange is over)."""
        self.data = b""


class AmplitudeSink:
    """Posts batches to one Amplitude endpoint over a shared keep-alive connection pool."""

    def __init__(self, settings: AmplitudeSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.url = settings.endpoint
        self.masked_url = masked_url(self.url)
        """The URL as log lines and metrics may show it."""
        self._key = settings.api_key.reveal()
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(
                max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
            ),
            headers={"User-Agent": "currents-consumer", "Accept": "application/json"},
        )

    @property
    def overhead(self) -> int:
        """Bytes of a request body around its events (key, options)."""
        return len(build_body(self._key, [], self.settings.min_id_length))

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        """One attempt: post ``batch`` and classify the answer."""
        body = build_body(self._key, [item.part() for item in batch], self.settings.min_id_length)
        size = len(body)
        headers = {"Content-Type": "application/json"}
        if self.settings.gzip:
            # zlib releases the GIL: compressing in a worker thread puts it on the other core. The
            # uncompressed body is not kept while the request is out.
            body = await asyncio.to_thread(_gzip, body)
            headers["Content-Encoding"] = "gzip"
        content = RequestBody(body)
        del body
        headers |= content.headers
        started = time.perf_counter()
        try:
            # httpx's timeouts bound each connect, write and read on its own: an answer trickled a few
            # bytes a second never trips them. The deadline bounds the whole exchange, body included.
            async with asyncio.timeout(self.settings.timeout):
                response = await self._client.post(self.url, content=content, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            return SendResult(RetryLater("timeout"), 0, time.perf_counter() - started, size)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            # The URL itself is unusable (no scheme, bad host): a wrong endpoint, not an outage.
            unusable = RetryLater(f"connection:{type(exc).__name__}", endpoint=self.masked_url)
            return SendResult(unusable, 0, time.perf_counter() - started, size)
        except httpx.TransportError as exc:
            # The exception text can carry the URL but never the body (where the key is).
            return SendResult(
                RetryLater(f"connection:{type(exc).__name__}"), 0, time.perf_counter() - started, size
            )
        finally:
            content.release()
        seconds = time.perf_counter() - started
        try:
            data = orjson.loads(response.content) if response.content else NOT_JSON
        except orjson.JSONDecodeError:
            data = NOT_JSON
        outcome = classify(response.status_code, data, response.headers, batch, url=self.masked_url)
        if isinstance(outcome, Fatal) and self._key and self._key in outcome.detail:
            # A proxy or a future error text that echoes the key must not carry it to dead-letter files.
            outcome = Fatal(outcome.reason, outcome.detail.replace(self._key, "***"))
        return SendResult(outcome, response.status_code, seconds, size)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
