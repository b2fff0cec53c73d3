"""Sinks of the destinations that take one event per request: Movable Ink (POST) and Remerge (GET).

Like :class:`~consumer.sinks.amplitude.AmplitudeSink`, each :meth:`~OneEventSink.send` makes exactly one HTTP
attempt and classifies it with :func:`classify_single`; retrying, dead-lettering and alerting are the
engine's (:mod:`consumer.delivery.engine`). The engine gives these sinks one event per request (``events_cap``
1); a longer batch is refused as ``Fatal("batch_not_supported")`` without any request, never by
raising. One exchange never outlasts the destination's ``timeout``, however slowly its answer comes.

Secrets: the Movable Ink key is part of the URL path and its password goes in the ``Authorization``
header; the Remerge key is a query parameter added here (never part of an encoded payload). Outcomes
carry only fixed reasons (``http_<status>``, ``timeout``, ``connection:<ExceptionType>``) and, for a wrong
endpoint, the URL with its key masked: no exception text, no response body, so neither a dead-letter
record nor a log line can carry a secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from urllib.parse import quote

import httpx

from consumer.events import Pending, Queued, apart
from consumer.settings.partners import MovableInkSettings, RemergeSettings
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Outcome,
    Rejected,
    RetryLater,
    SendResult,
    TooLarge,
    masked_url,
    retry_after,
)

_CREDENTIALS = frozenset({401, 403})
_ENDPOINT = frozenset({404, 405})
_TRANSIENT = frozenset({408, 429})
_TOO_LARGE = frozenset({413, 414})


def classify_single(
    status: int, headers: httpx.Headers, *, url: str = "", key_in_path: bool = False
) -> Outcome:
    """One answer about one event -> an outcome (pure).

    2xx delivered; 413/414 too large (the engine dead-letters a single event); 408, 429 and 5xx retry
    later, after ``Retry-After`` seconds when given; 401/403 (wrong key or password) retry later flagged
    as credentials, and 404/405 and redirects (httpx follows none) as a wrong endpoint ``url``, so events
    stay within the retry window while an alert fires; other 4xx (400, 422, ...) reject the event. With
    ``key_in_path`` (Movable Ink's ``/behavioral/<key>``) a 404 may be the key, so it counts as credentials.
    """
    if 200 <= status < 300:
        return Delivered()
    if status in _TOO_LARGE:
        return TooLarge()
    reason = f"http_{status}"
    if status in _TRANSIENT or status >= 500:
        return RetryLater(reason, retry_after(headers))
    if status in _CREDENTIALS or (status == 404 and key_in_path):
        return RetryLater(reason, retry_after(headers), credentials=True)
    if 400 <= status < 500 and status not in _ENDPOINT:
        return Rejected({0: reason})
    return RetryLater(reason, retry_after(headers), endpoint=url or "?")


class OneEventSink:
    """One request per event over a keep-alive pool of ``concurrency`` connections; subclasses say how
    the request is made (:meth:`_request`). Satisfies :class:`~consumer.sinks.base.Sink`."""

    overhead: int = 0
    """Bytes a request adds around its event: the byte cap counts the encoded event alone."""
    key_in_path: bool = False
    """Whether the key is part of the URL's path (then a 404 may mean the key is wrong)."""

    def __init__(
        self, timeout: float, concurrency: int, client: httpx.AsyncClient | None, *, shown_url: str
    ) -> None:
        self._deadline = timeout
        self.masked_url = masked_url(shown_url)
        """The URL as log lines and metrics may show it (no key, password or query)."""
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"User-Agent": "currents-consumer"},
        )

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        """One attempt for a batch of exactly one event; see the module docstring."""
        items = apart(batch)  # a run of one payload, as the request caps cut it, or a payload alone
        if len(items) != 1:
            return SendResult(Fatal("batch_not_supported"), 0, 0.0)
        item = items[0]
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
            outcome = RetryLater(f"connection:{type(exc).__name__}", endpoint=self.masked_url)
        except httpx.RequestError as exc:
            # The exception text can carry the URL, hence the key: only its type is kept.
            outcome = RetryLater(f"connection:{type(exc).__name__}")
        else:
            seconds = time.perf_counter() - started
            status = response.status_code
            outcome = classify_single(
                status, response.headers, url=self.masked_url, key_in_path=self.key_in_path
            )
            return SendResult(outcome, status, seconds, size)
        return SendResult(outcome, 0, time.perf_counter() - started, size)

    async def _request(self, item: Pending) -> httpx.Response:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection pool; no send follows."""
        await self._client.aclose()


class MovableInkSink(OneEventSink):
    """Posts each event's JSON to the Movable Ink Customer Data API with HTTP Basic authentication."""

    key_in_path = True

    def __init__(self, settings: MovableInkSettings, client: httpx.AsyncClient | None = None) -> None:
        # The key is in the URL's path: the URL shown has *** in its place.
        shown = f"{settings.endpoint.rstrip('/')}/behavioral/***"
        super().__init__(settings.timeout, settings.concurrency, client, shown_url=shown)
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
        super().__init__(settings.timeout, settings.concurrency, client, shown_url=settings.endpoint)
        separator = "&" if "?" in settings.endpoint else "?"
        self._base = settings.endpoint + separator
        self._key = "&key=" + quote(settings.key.reveal(), safe="")

    async def _request(self, item: Pending) -> httpx.Response:
        return await self._client.get(self._base + item.encoded.decode() + self._key)
