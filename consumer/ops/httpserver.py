"""A small asyncio HTTP/1.1 server: the Amplitude simulator, Prometheus ``/metrics`` and health probes.

No framework, one handler: every request is read completely, decoded and passed to an async
``Handler`` that returns a :class:`Response`. Guarantees:

- HTTP/1.1 keep-alive (HTTP/1.0 only with ``Connection: keep-alive``); pipelined requests are answered
  in order, one at a time per connection.
- Request bodies come with ``Content-Length`` or ``Transfer-Encoding: chunked``; ``Expect:
  100-continue`` is honoured. ``Content-Encoding: gzip`` / ``deflate`` bodies are decoded before the
  handler sees them.
- Bounded: a body larger than ``max_body_bytes`` on the wire *or* after decoding is answered 413 without
  calling the handler; header blocks larger than ``max_header_bytes`` get 431; reads time out.
- Errors the server produces itself (400, 413, 415, 431, 500, 501; routing is the handler's job)
  are JSON ``{"code": status, "error": message}`` unless ``error_response`` says otherwise.
- A handler may raise :class:`DropConnection` to close the connection without answering; any other
  exception becomes a 500 and is logged.
- :meth:`HttpServer.stop` stops accepting, closes idle keep-alive connections at once, lets in-flight
  requests finish for ``grace_s`` seconds and then cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

log = logging.getLogger(__name__)

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_MESSAGES = {413: "Payload too large", 500: "Internal server error"}
_DISCARD_LIMIT = 64 * 1024 * 1024  # read and drop an oversized body up to this size so the 413 arrives


@dataclass(slots=True)
class Request:
    """One decoded HTTP request: header names lower-cased, body already content-decoded."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    remote: str = ""
    wire_size: int = 0
    """Body size as received, before ``Content-Encoding`` decoding."""


@dataclass(slots=True)
class Response:
    """What a handler answers; ``content-length`` and ``connection`` headers are added by the server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        """A JSON response encoded with orjson."""
        return cls(status, orjson.dumps(payload), headers or {})


Handler = Callable[[Request], Awaitable[Response]]
"""The one application callback: gets a complete request, returns the response to send."""


class DropConnection(Exception):
    """Raised by a handler to close the connection without sending any response."""


class _HttpError(Exception):
    """A request the server answers itself; ``close`` when the stream position is unknown."""

    def __init__(self, status: int, message: str, *, close: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def default_error_response(status: int, message: str) -> Response:
    """``{"code": status, "error": message}``: the shape Amplitude clients expect of every body."""
    return Response.json(status, {"code": status, "error": message})


@dataclass(slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    idle: bool = True
    keep_alive: bool = False


class HttpServer:
    """An HTTP/1.1 server around one :data:`Handler`; see the module docstring for its guarantees."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        max_header_bytes: int = 64 * 1024,
        idle_timeout_s: float = 75.0,
        read_timeout_s: float = 30.0,
        error_response: Callable[[int, str], Response] = default_error_response,
    ) -> None:
        self._handler = handler
        self._max_body = max_body_bytes
        self._max_header = max_header_bytes
        self._idle_timeout = idle_timeout_s
        self._read_timeout = read_timeout_s
        self._error_response = error_response
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], _Connection] = {}
        self._closing = False
        self.port = 0
        """The bound port once :meth:`start` returned."""
        self.connections_total = 0
        """Connections accepted since start (tests use it to check keep-alive reuse)."""
        self.requests_total = 0
        """Requests read completely, including those the server answered itself."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the bound port."""
        self._closing = False
        self._server = await asyncio.start_server(self._serve, host, port, limit=self._max_header)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace_s`` seconds, cancel the rest."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        for conn in self._connections.values():
            if conn.idle:
                conn.writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(writer)
        self._connections[task] = conn
        self.connections_total += 1
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        try:
            while not self._closing:
                conn.idle = True
                try:
                    async with asyncio.timeout(self._idle_timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self._send(writer, self._error_response(431, "Request header too large"), True)
                    return
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    return
                conn.idle = False
                conn.keep_alive = False
                try:
                    async with asyncio.timeout(self._read_timeout):
                        request = await self._read_request(head, reader, writer, remote, conn)
                except _HttpError as exc:
                    self.requests_total += 1
                    close = exc.close or not conn.keep_alive or self._closing
                    await self._send(writer, self._error_response(exc.status, exc.message), close)
                    if close:
                        return
                    continue
                self.requests_total += 1
                try:
                    response = await self._handler(request)
                except DropConnection:
                    writer.transport.abort()
                    return
                except Exception:
                    log.exception("HTTP handler failed for %s %s", request.method, request.path)
                    response = self._error_response(500, _MESSAGES[500])
                keep_alive = conn.keep_alive and not self._closing
                await self._send(writer, response, not keep_alive, request.method == "HEAD")
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the peer went away or stalled mid-request: nothing to answer
        finally:
            del self._connections[task]
            writer.close()

    # Complexity: the HTTP servers are being rewritten on another branch; split there, not here.
    async def _read_request(  # noqa: C901
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: str,
        conn: _Connection,
    ) -> Request:
        """Parse the header block, read and decode the body; record keep-alive on ``conn``."""
        lines = head.lstrip(b"\r\n")[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HttpError(400, "Malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep or not name.strip():
                raise _HttpError(400, "Malformed header line")
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        connection = headers.get("connection", "").lower()
        conn.keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection

        expect_continue = headers.get("expect", "").lower() == "100-continue"
        transfer = headers.get("transfer-encoding", "").lower()
        if transfer:
            if transfer != "chunked":
                raise _HttpError(501, f"Unsupported transfer-encoding: {transfer}")
            if expect_continue:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await self._read_chunked(reader)
        else:
            length = _content_length(headers.get("content-length"))
            if length > self._max_body:
                if expect_continue or length > _DISCARD_LIMIT:
                    raise _HttpError(413, _MESSAGES[413])
                await _discard(reader, length)
                raise _HttpError(413, _MESSAGES[413], close=False)
            if expect_continue and length:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await reader.readexactly(length) if length else b""

        wire_size = len(body)
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, self._max_body)
        elif encoding == "deflate":
            body = _inflate(body, zlib.MAX_WBITS, self._max_body)
        elif encoding not in ("", "identity"):
            raise _HttpError(415, f"Unsupported content-encoding: {encoding}", close=False)

        path, _, query_string = target.partition("?")
        query = dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
        return Request(method, unquote(path), query, headers, body, remote, wire_size)

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        """Read a chunked body (trailers ignored); past the body cap, read on and discard, then 413."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HttpError(400, "Malformed chunk size") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                if total > self._max_body:
                    raise _HttpError(413, _MESSAGES[413], close=False)
                return b"".join(chunks)
            total += size
            if total > _DISCARD_LIMIT:
                raise _HttpError(413, _MESSAGES[413])
            if total > self._max_body:
                chunks.clear()
                await _discard(reader, size)
            else:
                chunks.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise _HttpError(400, "Malformed chunk")

    async def _send(
        self, writer: asyncio.StreamWriter, response: Response, close: bool, head_only: bool = False
    ) -> None:
        """Write one response; ``close`` adds ``connection: close`` (the caller then closes)."""
        body = b"" if head_only else response.body
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"content-type: {response.content_type}",
            f"content-length: {len(response.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if close:
            lines.append("connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(body) < 65536:
            writer.write(head + body)
        else:
            writer.write(head)
            writer.write(body)
        await writer.drain()


def _content_length(value: str | None) -> int:
    """The declared body length; a missing header means an empty body (requests never read to EOF)."""
    if value is None:
        return 0
    try:
        length = int(value)
    except ValueError:
        raise _HttpError(400, "Invalid content-length") from None
    if length < 0:
        raise _HttpError(400, "Invalid content-length")
    return length


async def _discard(reader: asyncio.StreamReader, length: int) -> None:
    """Read and drop ``length`` bytes so an early answer does not make the kernel reset the socket."""
    while length > 0:
        chunk = await reader.read(min(length, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(chunk)


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """Decode a gzip/zlib body, refusing output over ``limit`` bytes (decompression bombs)."""
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error:
        raise _HttpError(400, "Invalid compressed body", close=False) from None
    if len(out) > limit:
        raise _HttpError(413, _MESSAGES[413], close=False)
    if not decoder.eof:
        raise _HttpError(400, "Truncated compressed body", close=False)
    return out


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[HttpServer]:
    """Run an :class:`HttpServer` for the duration of an ``async with`` block; yields the server."""
    server = HttpServer(handler, **options)
    await server.start(host, port)
    try:
        yield server
    finally:
        await server.stop()
