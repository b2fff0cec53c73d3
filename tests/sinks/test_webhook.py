"""The one-event-per-request sinks against a real local HTTP server: requests made, answers classified,
secrets kept out of every outcome."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from aiohttp import web

from consumer.events import Pending, Position
from consumer.ops.web import WebServer
from consumer.settings import load
from consumer.settings.partners import MovableInkSettings, RemergeSettings
from consumer.sinks.base import Delivered, Fatal, Outcome, Rejected, RetryLater, SendResult, TooLarge
from consumer.sinks.webhook import MovableInkSink, RemergeSink, classify_single

MI_KEY = "mi-path-key-7d1e"
MI_PASSWORD = "mi-pass-word-93b"
RM_KEY = "rm/k&y+4c=0"
URL = "http://partner.test/path"


@dataclass(frozen=True)
class Response:
    """A scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """A request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


class Scripted:
    """A handler answering the scripted statuses in order (then 200) and recording every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: list[Response] = []
        self.delay = 0.0

    async def __call__(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            Request(request.method, request.path, dict(request.query), request.headers, body)
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers.pop(0) if self.answers else Response(200, b"{}")
        return web.Response(
            status=answer.status, body=answer.body, headers=answer.headers, content_type="application/json"
        )


@pytest.fixture
async def server() -> AsyncIterator[tuple[WebServer, Scripted]]:
    handler = Scripted()
    srv = WebServer([web.route("*", "/{tail:.*}", handler.__call__)], grace_s=0.1)
    await srv.start("127.0.0.1", 0)
    yield srv, handler
    await srv.stop()


def mi_settings(endpoint: str, timeout: str = "5s") -> MovableInkSettings:
    env = {
        "MOVABLEINK_ENDPOINT": endpoint,
        "MOVABLEINK_KEY": MI_KEY,
        "MOVABLEINK_USERNAME": "mi-user",
        "MOVABLEINK_PASSWORD": MI_PASSWORD,
        "MOVABLEINK_TIMEOUT": timeout,
        "MOVABLEINK_CONCURRENCY": "2",
    }
    return load(None, env=env).section("movableink", MovableInkSettings)


def rm_settings(endpoint: str, timeout: str = "5s") -> RemergeSettings:
    env = {"REMERGE_ENDPOINT": endpoint, "REMERGE_KEY": RM_KEY, "REMERGE_TIMEOUT": timeout}
    return load(None, env=env).section("remerge", RemergeSettings)


MI_EVENT = {"type": "track", "event": "product_viewed", "properties": {"id": "1"}, "user_id": "u-1"}
RM_PARAMS = {"partner": "braze", "app_id": "012345678", "ts": 1257894000, "idfa": "ABC", "event": "Café"}


def item(encoded: bytes) -> Pending:
    return Pending.alone("users.behaviors.CustomEvent", Position("t", 0, 1), encoded, 0.0, ("k",))


MI_ITEM = item(orjson.dumps(MI_EVENT))
RM_ITEM = item(urlencode(RM_PARAMS).encode())


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_secret(result: SendResult) -> None:
    text = f"{result} {result!r} {result.outcome}"
    for secret in (MI_KEY, MI_PASSWORD, RM_KEY, "rm%2Fk", "rm/k"):
        assert secret not in text


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, Delivered()),
        (204, {}, Delivered()),
        (400, {}, Rejected({0: "http_400"})),
        (422, {}, Rejected({0: "http_422"})),
        (409, {}, Rejected({0: "http_409"})),
        (401, {}, RetryLater("http_401", None, credentials=True)),
        (403, {"Retry-After": "30"}, RetryLater("http_403", 30.0, credentials=True)),
        (404, {}, RetryLater("http_404", None, endpoint=URL)),
        (405, {}, RetryLater("http_405", None, endpoint=URL)),
        (408, {}, RetryLater("http_408")),
        (429, {"Retry-After": "7"}, RetryLater("http_429", 7.0)),
        (429, {"Retry-After": "soon"}, RetryLater("http_429", None)),
        (500, {}, RetryLater("http_500")),
        (503, {"Retry-After": "2.5"}, RetryLater("http_503", 2.5)),
        (413, {}, TooLarge()),
        (414, {}, TooLarge()),
        (301, {}, RetryLater("http_301", None, endpoint=URL)),
    ],
)
def test_classify_single(status: int, headers: dict[str, str], expected: Outcome) -> None:
    assert classify_single(status, httpx.Headers(headers), url=URL) == expected


def test_a_404_is_the_key_when_the_key_is_in_the_path() -> None:
    """Movable Ink's key is in the path (``/behavioral/<key>``): its 404 may be a wrong key."""
    outcome = classify_single(404, httpx.Headers(), url=URL, key_in_path=True)
    assert outcome == RetryLater("http_404", None, credentials=True)


async def test_movable_ink_request(server: tuple[WebServer, Scripted]) -> None:
    srv, handler = server
    sink = MovableInkSink(mi_settings(f"http://127.0.0.1:{srv.port}/"))
    try:
        result = await sink.send([MI_ITEM])
        await sink.send([MI_ITEM])
    finally:
        await sink.close()
    assert result.outcome == Delivered()
    assert result.status == 200
    assert result.body_bytes == len(MI_ITEM.encoded)
    assert len(handler.requests) == 2
    request = handler.requests[0]
    assert request.method == "POST"
    assert request.path == f"/behavioral/{MI_KEY}"
    assert request.query == {}
    token = base64.b64encode(f"mi-user:{MI_PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {token}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "currents-consumer"
    assert orjson.loads(request.body) == MI_EVENT
    assert srv.connections_total == 1  # keep-alive: both requests on one connection
    assert sink.overhead == 0


async def test_remerge_request(server: tuple[WebServer, Scripted]) -> None:
    srv, handler = server
    handler.answers = [Response(204)]
    sink = RemergeSink(rm_settings(f"http://127.0.0.1:{srv.port}/event"))
    try:
        result = await sink.send([RM_ITEM])
    finally:
        await sink.close()
    assert result.outcome == Delivered()
    assert result.status == 204
    (request,) = handler.requests
    assert request.method == "GET"
    assert request.path == "/event"
    assert request.body == b""
    assert request.headers["user-agent"] == "currents-consumer"
    assert request.query == {
        "partner": "braze",
        "app_id": "012345678",
        "ts": "1257894000",
        "idfa": "ABC",
        "event": "Café",
        "key": RM_KEY,
    }


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (Response(204), Delivered()),
        (Response(400, b'{"error": "bad"}'), Rejected({0: "http_400"})),
        (Response(401), RetryLater("http_401", None, credentials=True)),
        (Response(413), TooLarge()),
        (Response(429, headers={"retry-after": "3"}), RetryLater("http_429", 3.0)),
        (Response(503), RetryLater("http_503")),
    ],
)
@pytest.mark.parametrize("kind", ["movableink", "remerge"])
async def test_answers_are_classified(
    server: tuple[WebServer, Scripted], kind: str, response: Response, expected: Outcome
) -> None:
    srv, handler = server
    handler.answers = [response]
    base = f"http://127.0.0.1:{srv.port}"
    if kind == "movableink":
        sink: MovableInkSink | RemergeSink = MovableInkSink(mi_settings(base))
        pending = MI_ITEM
    else:
        sink = RemergeSink(rm_settings(base + "/event"))
        pending = RM_ITEM
    try:
        result = await sink.send([pending])
    finally:
        await sink.close()
    assert result.outcome == expected
    assert result.status == response.status
    assert len(handler.requests) == 1
    assert_no_secret(result)


@pytest.mark.parametrize("status", [404, 405])
@pytest.mark.parametrize("kind", ["movableink", "remerge"])
async def test_a_wrong_path_names_the_url_without_the_key(
    server: tuple[WebServer, Scripted], kind: str, status: int
) -> None:
    srv, handler = server
    handler.answers = [Response(status)]
    base = f"http://127.0.0.1:{srv.port}"
    if kind == "movableink":
        sink: MovableInkSink | RemergeSink = MovableInkSink(mi_settings(base))
        pending, shown = MI_ITEM, f"{base}/behavioral/***"
    else:
        sink, pending, shown = RemergeSink(rm_settings(base + "/event")), RM_ITEM, f"{base}/event"
    try:
        result = await sink.send([pending])
    finally:
        await sink.close()
    if kind == "movableink" and status == 404:  # the key is in its path: a 404 may be the key
        assert result.outcome == RetryLater("http_404", None, credentials=True)
    else:
        assert result.outcome == RetryLater(f"http_{status}", None, endpoint=shown)
    assert_no_secret(result)


async def test_connection_refused_keeps_secrets_out() -> None:
    port = free_port()
    for sink in (
        MovableInkSink(mi_settings(f"http://127.0.0.1:{port}")),
        RemergeSink(rm_settings(f"http://127.0.0.1:{port}/event")),
    ):
        try:
            result = await sink.send([MI_ITEM if isinstance(sink, MovableInkSink) else RM_ITEM])
        finally:
            await sink.close()
        assert result.outcome == RetryLater("connection:ConnectError")
        assert result.status == 0
        assert_no_secret(result)


async def test_timeout(server: tuple[WebServer, Scripted]) -> None:
    srv, handler = server
    handler.delay = 1.0
    sink = RemergeSink(rm_settings(f"http://127.0.0.1:{srv.port}/event", timeout="100ms"))
    try:
        result = await sink.send([RM_ITEM])
    finally:
        await sink.close()
    assert result.outcome == RetryLater("timeout")
    assert result.status == 0
    assert_no_secret(result)


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [("mi.example.com", "UnsupportedProtocol"), ("http://[::g]", "InvalidURL")],
)
async def test_an_unusable_endpoint_is_a_configuration_failure_without_the_key(
    endpoint: str, error: str
) -> None:
    sink = MovableInkSink(mi_settings(endpoint))
    try:
        result = await sink.send([MI_ITEM])
    finally:
        await sink.close()
    assert result.outcome == RetryLater(f"connection:{error}", None, endpoint=f"{endpoint}/behavioral/***")
    assert_no_secret(result)


async def test_more_than_one_event_is_refused_without_a_request(server: tuple[WebServer, Scripted]) -> None:
    srv, handler = server
    sink = MovableInkSink(mi_settings(f"http://127.0.0.1:{srv.port}"))
    try:
        result = await sink.send([MI_ITEM, MI_ITEM])
        empty = await sink.send([])
    finally:
        await sink.close()
    assert result.outcome == Fatal("batch_not_supported")
    assert empty.outcome == Fatal("batch_not_supported")
    assert handler.requests == []
