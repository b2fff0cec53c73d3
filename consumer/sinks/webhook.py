"""Sinks of the destinations that take one event per request: Movable Ink (POST) and Remerge (GET).

Like :class:`~consumer.sinks.amplitude.AmplitudeSink`, each :meth:`~OneEventSink.send` makes exactly one HTTP
attempt and classifies it with :func:`classify_single`; retrying, dead-lettering and alerting are the
engine's (:mod:`consumer.delivery.engine`). The engine gives these sinks one event per request (``events_cap``
1); a longer batch is refused as ``Fatal("batch_not_supported")`` without any request, never by
raising. One exchange never outlasts the destination's ``timeout``, however slowly its answer comes.

Secrets: the Movable Ink key is part of the URL path and its password goes in the ``Authorization``
header; the Remerge key is a query parameter added here (never part of an encoded payload). Outcomes
carry only fixed reasons (``http_<status>``, ``timeout``, ``connection:<ExceptionType>``): no
exception text, no URL, no response body, so neither a dead-letter record nor a log line can carry them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from urllib.parse import quote

import httpx

from consumer.events import Pending
from consumer.settings import MovableInkSettings, RemergeSettings
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Outcome,
    Rejected,
    RetryLater,
    SendResult,
    TooLarge,
    retry_after,
)

_CONFIGURATION = frozenset({401, 403, 404})
_TRANSIENT = frozenset({408, 429})
_TOO_LARGE = frozenset({413, 414})


def classify_single(status: int, headers: httpx.Headers) -> Outcome:
    """One answer about one event -> an outcome (pure).

    2xx delivered; 413/414 too large (the engine dead-letters a single event); 408, 429 and 5xx retry
    later, after ``Retry-After`` seconds when given; 401/403/404 (wrong key, path or password) retry
    later flagged as credentials, so events stay within the retry window while an alert fires; other
    4xx (400, 422, ...) reject the event. Anything else (a redirect: httpx follows none, so the endpoint
    is misconfigured) is treated like 404.
    """
    if 200 <= status < 300:
        return Delivered()
    if status in _TOO_LARGE:
        return TooLarge()
    reason = f"http_{status}"
    if status in _TRANSIENT or status >= 500:
        return RetryLater(reason, retry_after(headers))
    if 400 <= status < 500 and status not in _CONFIGURATION:
        return Rejected({0: reason})
    return RetryLater(reason, retry_after(headers), credentials=True)


class OneEventSink:
    """One request per event over a keep-alive pool of ``concurrency`` connections; subclasses say how
    the request is made (:meth:`_request`). Satisfies :class:`~consumer.sinks.base.Sink`."""

    overhead: int = 0
    """Bytes a request adds around its event: the byte cap counts the encoded event alone."""

    def __init__(self, timeout: float, concurrency: int, client: httpx.AsyncClient | None) -> None:
        self._deadline = timeout
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"User-Agent": "currents-consumer"},
        )

    async def send(self, batch: Sequence[Pending]) -> SendResult:
        """One attempt for a batch of exactly one event; see the module docstring."""
        if len(batch) != 1:
            return SendResult(Fatal("batch_not_supported"), 0, 0.0)
        item = batch[0]
        size = len(item.encoded)
        started = time.perf_counter()
        try:
            # As in the Amplitude sink: httpx's timeouts are per read and write, this deadline is for the
            # whole exchange, so an answer trickled a few bytes a second cannot hold the event.
            async with asyncio.timeout(self._deadline):
                response = await self._request(item)
        except (httpx.TimeoutException, TimeoutError):
            outcome: Outcome = RetryLater("timeout")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            # The endpoint setting is unusable (no scheme, bad host): a configuration failure to alert on.
            outcome = RetryLater(f"connection:{type(exc).__name__}", credentials=True)
        except httpx.RequestError as exc:
            # The exception text can carry the URL, hence the key: only its type is kept.
            outcome = RetryLater(f"connection:{type(exc).__name__}")
        else:
            seconds = time.perf_counter() - started
            status = response.status_code
            return SendResult(classify_single(status, response.headers), status, seconds, size)
        return SendResult(outcome, 0, time.perf_counter() - started, size)

    async def _request(self, item: Pending) -> httpx.Response:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection pool; no send follows."""
        await self._client.aclose()


class MovableInkSink(OneEventSink):
    """Posts each event's JSON to the Movable Ink Customer Data API with HTTP Basic authentication."""

    def __init__(self, settings: MovableInkSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings.timeout, settings.concurrency, client)
        self._url = settings.url
        user, password = settings.username.reveal(), settings.password.reveal()
        # httpx.Auth() sends no Authorization header (Movable Ink always issues credentials, though).
        self._auth: httpx.Auth = httpx.Auth()
        if user or password:
            self._auth = httpx.BasicAuth(user, password)

    async def _request(self, item: Pending) -> httpx.Response:
        return await self._client.post(
            self._url,
            content=item.encoded,
            headers={"Content-Type": "application/json"},
            auth=self._auth,
        )


class RemergeSink(OneEventSink):
    """Sends each event as a GET to the Remerge endpoint: the encoded parameters plus ``key``."""

    def __init__(self, settings: RemergeSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings.timeout, settings.concurrency, client)
        separator = "&" if "?" in settings.endpoint else "?"
        self._base = settings.endpoint + separator
        self._key = "&key=" + quote(settings.key.reveal(), safe="")

    async def _request(self, item: Pending) -> httpx.Response:
        return await self._client.get(self._base + item.encoded.decode() + self._key)
