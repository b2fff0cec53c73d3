"""Tests for consumer.ops.httpserver over real sockets: framing, decoding, limits, keep-alive, shutdown."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest

from consumer.ops.httpserver import DropConnection, HttpServer, Request, Response

MAX_BODY = 4096


class Recorder:
    """A handler that echoes what it received and records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        if request.path == "/drop":
            raise DropConnection
        return Response.json(
            200,
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": request.headers,
                "body": request.body.decode("latin-1"),
                "wire_size": request.wire_size,
            },
            {"x-test": "yes"},
        )


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(recorder: Recorder) -> AsyncIterator[HttpServer]:
    srv = HttpServer(recorder, max_body_bytes=MAX_BODY, max_header_bytes=2048)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as c:
        yield c


async def raw(port: int, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_start_picks_a_free_port(server: HttpServer) -> None:
    assert server.port > 0


async def test_get_with_query_and_lowercased_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/a%20b/c", params={"x": "1", "y": ""}, headers={"X-Custom-Header": "V"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-test"] == "yes"
    data = r.json()
    assert data["method"] == "GET"
    assert data["path"] == "/a b/c"
    assert data["query"] == {"x": "1", "y": ""}
    assert data["headers"]["x-custom-header"] == "V"


async def test_post_body_with_content_length(client: httpx.AsyncClient) -> None:
    r = await client.post("/p", content=b"hello world")
    assert r.json()["body"] == "hello world"
    assert r.json()["wire_size"] == 11


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_compressed_body_is_decoded(
    client: httpx.AsyncClient, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    plain = b'{"k": "' + b"v" * 1000 + b'"}'
    packed = compress(plain)
    r = await client.post("/p", content=packed, headers={"content-encoding": encoding})
    assert r.status_code == 200
    assert r.json()["body"] == plain.decode()
    assert r.json()["wire_size"] == len(packed)


async def test_unknown_content_encoding_is_415(client: httpx.AsyncClient, recorder: Recorder) -> None:
    r = await client.post("/p", content=b"x", headers={"content-encoding": "br"})
    assert r.status_code == 415
    assert r.json()["code"] == 415
    assert recorder.requests == []


async def test_corrupt_gzip_is_400(client: httpx.AsyncClient, recorder: Recorder) -> None:
    r = await client.post("/p", content=b"not gzip at all", headers={"content-encoding": "gzip"})
    assert r.status_code == 400
    assert r.json() == {"code": 400, "error": "Invalid compressed body"}
    truncated = gzip.compress(b"a" * 100)[:-8]
    r = await client.post("/p", content=truncated, headers={"content-encoding": "gzip"})
    assert r.status_code == 400
    assert recorder.requests == []


async def test_gzip_bomb_over_limit_is_413(client: httpx.AsyncClient, recorder: Recorder) -> None:
    bomb = gzip.compress(b"0" * (MAX_BODY * 50))
    assert len(bomb) < MAX_BODY
    r = await client.post("/p", content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413
    assert r.json() == {"code": 413, "error": "Payload too large"}
    assert recorder.requests == []
    # the connection stays usable after an answered 413
    assert (await client.get("/ok")).status_code == 200


async def test_body_over_limit_is_413_and_handler_not_called(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    r = await client.post("/p", content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413
    assert r.json()["code"] == 413
    assert recorder.requests == []
    r = await client.post("/p", content=b"x" * MAX_BODY)
    assert r.status_code == 200


async def test_chunked_upload_is_supported(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"abc", b"def", b"g" * 100):
            yield part

    r = await client.post("/p", content=chunks())
    assert r.status_code == 200
    data = r.json()
    assert data["headers"]["transfer-encoding"] == "chunked"
    assert data["body"] == "abcdef" + "g" * 100


async def test_chunked_upload_over_limit_is_413(client: httpx.AsyncClient, recorder: Recorder) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    r = await client.post("/p", content=chunks())
    assert r.status_code == 413
    assert recorder.requests == []
    assert (await client.get("/ok")).status_code == 200


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient, server: HttpServer) -> None:
    for i in range(5):
        assert (await client.post("/p", content=str(i).encode())).status_code == 200
    assert server.connections_total == 1
    assert server.requests_total == 5


async def test_connection_close_is_honoured(client: httpx.AsyncClient, server: HttpServer) -> None:
    r = await client.get("/p", headers={"connection": "close"})
    assert r.headers["connection"] == "close"
    await client.get("/p")
    assert server.connections_total == 2


async def test_pipelined_requests_answered_in_order(server: HttpServer) -> None:
    data = (
        b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = await raw(server.port, data)
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.index(b'"/first"') < out.index(b'"/second"')
    assert server.connections_total == 1


async def test_http10_closes_after_response(server: HttpServer) -> None:
    out = await raw(server.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" in out


async def test_malformed_request_line_is_400(server: HttpServer, recorder: Recorder) -> None:
    out = await raw(server.port, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request")
    assert orjson.loads(out.split(b"\r\n\r\n", 1)[1])["code"] == 400
    assert recorder.requests == []


async def test_oversized_headers_are_431(server: HttpServer) -> None:
    out = await raw(server.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


async def test_expect_100_continue(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /e HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            final = await reader.read(-1)
    finally:
        writer.close()
    assert final.startswith(b"HTTP/1.1 200 OK")
    assert b'"body":"hello"' in final


async def test_head_sends_no_body(server: HttpServer) -> None:
    out = await raw(server.port, b"HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 0" not in head
    assert body == b""


async def test_handler_exception_is_500_and_connection_survives(
    client: httpx.AsyncClient, server: HttpServer
) -> None:
    r = await client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"code": 500, "error": "Internal server error"}
    assert (await client.get("/fine")).status_code == 200
    assert server.connections_total == 1


async def test_drop_connection_closes_without_answer(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/drop")
    assert (await client.get("/fine")).status_code == 200


async def test_stop_closes_idle_keep_alive_connections(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /a HTTP/1.1\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await server.stop()
        assert await reader.read(-1) == b""
    writer.close()


async def test_stop_lets_in_flight_request_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response(200, b"done", content_type="text/plain")

    srv = HttpServer(slow)
    port = await srv.start()
    response = asyncio.create_task(raw(port, b"GET / HTTP/1.1\r\n\r\n"))
    await entered.wait()
    stopping = asyncio.create_task(srv.stop(grace_s=30))
    await asyncio.sleep(0)  # let stop() begin; the request is still held by the handler
    assert not stopping.done()
    release.set()
    out = await response
    await stopping
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in out
    assert out.endswith(b"done")


async def test_stop_cancels_requests_past_grace() -> None:
    entered = asyncio.Event()

    async def stuck(request: Request) -> Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    srv = HttpServer(stuck)
    port = await srv.start()
    response = asyncio.create_task(raw(port, b"GET / HTTP/1.1\r\n\r\n"))
    await entered.wait()
    await srv.stop(grace_s=0)
    assert await response == b""
