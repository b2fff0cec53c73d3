"""The simulator's HTTP boundary: an aiohttp request read into a :class:`Request`, body bounded and decoded.

:func:`serve` turns the simulator's request logic into an aiohttp handler: :class:`DropConnection`
closes the connection without an answer, a :class:`Trickled` answer is sent a few bytes at a time,
and any other exception is a logged JSON 500. :func:`never_answer` holds a request open for good; the
server should run with ``handler_cancellation=True`` so that it ends when the client gives up.
:func:`read_request` guarantees what that logic relies on:

- the body is read completely, at most ``max_body`` bytes on the wire (else a 413);
- a ``Content-Encoding: gzip`` / ``x-gzip`` / ``deflate`` body is decoded, at most ``max_body`` bytes
  after decoding (a decompression bomb is a 413), a corrupt or truncated one is a 400, any other
  encoding a 415;
- :attr:`Request.wire_size` is the body size as received, before decoding.

Those refusals are JSON ``{"code": status, "error": message}``, the shape Amplitude clients expect of
every body. The server must run with ``auto_decompress=False`` so the body arrives as sent.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from consumer.ops.web import json_response

__all__ = [
    "DropConnection",
    "Request",
    "Trickled",
    "error_response",
    "never_answer",
    "read_request",
    "serve",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One data or control request, body read and content-decoded; ``headers`` case-insensitive."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    wire_size: int = 0
    """Body size as received, before ``Content-Encoding`` decoding."""


class DropConnection(Exception):
    """Raised by the simulator's logic to close the connection without sending any response."""


class Trickled(web.StreamResponse):
    """``response`` sent slowly: status and headers (with the whole ``Content-Length``) at once, then the
    body at ``bytes_per_s``, in at most ten writes a second, each followed by ``sleep``. ``on_end`` is
    called once when the sending ends, however it ends."""

    def __init__(
        self,
        response: web.Response,
        bytes_per_s: float,
        sleep: Callable[[float], Awaitable[None]],
        on_end: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(status=response.status, reason=response.reason, headers=response.headers)
        body = response.body
        self._data = body if isinstance(body, bytes) else b""
        self.content_length = len(self._data)
        self._step = max(1, int(bytes_per_s / 10))
        self._pause = self._step / bytes_per_s
        self._sleep = sleep
        self._on_end = on_end

    async def send(self, request: web.Request) -> None:
        """Write the whole answer; returns early (quietly) when the client has gone."""
        try:
            await self.prepare(request)
            for start in range(0, len(self._data), self._step):
                await self.write(self._data[start : start + self._step])
                await self._sleep(self._pause)
            await self.write_eof()
        except ConnectionError:
            pass  # the client gave up waiting: that is the point of a trickle
        finally:
            self._on_end()


def error_response(status: int, message: str) -> web.Response:
    """``{"code": status, "error": message}``."""
    return json_response(status, {"code": status, "error": message})


async def never_answer() -> web.Response:
    """Wait until cancelled: the client disconnected (``handler_cancellation``) or the server stopped."""
    never: asyncio.Future[web.Response] = asyncio.get_running_loop().create_future()
    return await never


def serve(logic: Callable[[Request], Awaitable[web.StreamResponse]], max_body: int) -> Handler:
    """An aiohttp handler: read the request (see :func:`read_request`), answer it with ``logic``."""

    async def handle(http_request: web.Request) -> web.StreamResponse:
        request = await read_request(http_request, max_body)
        if isinstance(request, web.Response):
            return request
        try:
            response = await logic(request)
        except DropConnection:
            if http_request.transport is not None:
                http_request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        except Exception:
            log.exception("simulator failed on %s %s", request.method, request.path)
            return error_response(500, "Internal server error")
        if isinstance(response, Trickled):
            await response.send(http_request)
        return response

    return handle


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_request(request: web.Request, max_body: int) -> Request | web.Response:
    """The request with its body read and decoded, or the 400/413/415 answering it instead."""
    if request.content_length is not None and request.content_length > max_body:
        # aiohttp reads and drops the unread body after the answer, so the client sees the 413.
        return error_response(413, "Payload too large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "Payload too large")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            body = _inflate(raw, 16 + zlib.MAX_WBITS, max_body)
        elif encoding == "deflate":
            body = _inflate(raw, zlib.MAX_WBITS, max_body)
        elif encoding in ("", "identity"):
            body = raw
        else:
            raise _Refused(415, f"Unsupported content-encoding: {encoding}")
    except _Refused as exc:
        return error_response(exc.status, exc.message)
    return Request(request.method, request.path, dict(request.query), request.headers, body, len(raw))


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """Decode a gzip/zlib body, refusing output over ``limit`` bytes (decompression bombs)."""
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error:
        raise _Refused(400, "Invalid compressed body") from None
    if len(out) > limit:
        raise _Refused(413, "Payload too large")
    if not decoder.eof:
        raise _Refused(400, "Truncated compressed body")
    return out
