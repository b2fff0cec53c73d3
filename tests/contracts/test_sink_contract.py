"""The Sink contract (consumer.sinks.base), run against every sink with the SAME scripted answers.

Each answer is scripted with ``httpx.MockTransport`` and must map to the typed outcome the sink's
docstring documents. Where the partners legitimately differ the table says so per sink:

* a 400 naming events: Amplitude rejects exactly the events named; a one-event sink rejects its event;
* a 429 naming throttled devices: Amplitude holds back those devices (``Throttled``); a partner API
  names nothing, so a one-event sink retries later after ``Retry-After``;
* credentials: Amplitude refuses a bad key with a 400 ("Invalid API key") and a 403, both retried and
  flagged; its 401 is another 4xx (fatal). The webhook sinks flag 401 and 403 (a bad key or password
  answers there) and treat the 400 like any other refusal of the event;
* a wrong URL (404, 405, a web page): every sink retries later naming the URL (masked) as the wrong
  endpoint, except Movable Ink's 404, which may be its key (in the path) and is flagged as credentials;
  only Amplitude documents its bodies, so only it tells a web page's 200 from a delivery.

Every sink makes exactly one request per send, never raises, and no outcome, result or repr carries
a secret, even when the answer (or a transport error's text) echoes it. No send outlasts the sink's
request timeout, even when the answer's body never ends.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from amplitude_harness import event, pending

from consumer.events import Pending, Position
from consumer.settings import load
from consumer.settings.partners import MovableInkSettings, RemergeSettings
from consumer.sinks.amplitude import AmplitudeSink
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Outcome,
    Rejected,
    RetryLater,
    SendResult,
    Sink,
    Throttled,
    TooLarge,
)
from consumer.sinks.webhook import MovableInkSink, RemergeSink

AMPLITUDE_KEY = "amp-contract-key-5f2a9"
MI_KEY = "mi-contract-key-81c"
MI_PASSWORD = "mi-contract-pass-07d"
RM_KEY = "rm-contract-key-e44"
TIMEOUT_S = 0.5
"""Every sink's request timeout here (MockTransport applies none of httpx's own timeouts)."""
TIMEOUTS = {f"{name}_TIMEOUT": f"{TIMEOUT_S}s" for name in ("CURRENTS_REQUEST", "MOVABLEINK", "REMERGE")}

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass(frozen=True)
class SinkCase:
    """One sink under the contract: how to build it over a transport, what to send, what to hide."""

    name: str
    build: Callable[[httpx.AsyncBaseTransport], Sink]
    batch: list[Pending]
    secrets: tuple[str, ...]


def _amplitude(transport: httpx.AsyncBaseTransport) -> Sink:
    env = {"AMPLITUDE_API_KEY": AMPLITUDE_KEY, "AMPLITUDE_URL": "http://amplitude.test/2/httpapi", **TIMEOUTS}
    return AmplitudeSink(load(None, env=env).amplitude, httpx.AsyncClient(transport=transport))


def _movableink(transport: httpx.AsyncBaseTransport) -> Sink:
    env = {
        "MOVABLEINK_ENDPOINT": "http://movableink.test/v1",
        "MOVABLEINK_KEY": MI_KEY,
        "MOVABLEINK_USERNAME": "mi-user",
        "MOVABLEINK_PASSWORD": MI_PASSWORD,
        **TIMEOUTS,
    }
    return MovableInkSink(
        load(None, env=env).section("movableink", MovableInkSettings), httpx.AsyncClient(transport=transport)
    )


def _remerge(transport: httpx.AsyncBaseTransport) -> Sink:
    env = {"REMERGE_ENDPOINT": "http://remerge.test/event", "REMERGE_KEY": RM_KEY, **TIMEOUTS}
    return RemergeSink(
        load(None, env=env).section("remerge", RemergeSettings), httpx.AsyncClient(transport=transport)
    )


def _one(encoded: bytes) -> list[Pending]:
    return [Pending.alone("users.behaviors.CustomEvent", Position("t", 0, 1), encoded, 0.0, ("device-0",))]


SINKS = [
    SinkCase(
        "amplitude",
        _amplitude,
        [pending(event(i, device=f"device-{i}"), i) for i in range(3)],
        (AMPLITUDE_KEY,),
    ),
    SinkCase(
        "movableink",
        _movableink,
        _one(orjson.dumps({"type": "track", "event": "viewed", "user_id": "u-1"})),
        (MI_KEY, MI_PASSWORD),
    ),
    SinkCase("remerge", _remerge, _one(b"partner=braze&event=viewed"), (RM_KEY,)),
]


def _answer(
    status: int, body: Mapping[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Handler:
    return lambda request: httpx.Response(status, json=dict(body or {}), headers=headers or {})


def _raise(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        # Transport errors quote the URL, which carries Movable Ink's and Remerge's key.
        raise error(f"failed talking to {request.url}", request=request)

    return handler


def _echo(status: int) -> Callable[[SinkCase], Handler]:
    """An answer whose error text quotes every secret of the sink (a careless proxy)."""
    return lambda case: _answer(status, {"error": "refused: " + " ".join(case.secrets)})


def _fixed(handler: Handler) -> Callable[[SinkCase], Handler]:
    return lambda case: handler


# name -> the scripted answer (given the sink, so an echo can quote its secrets).
ANSWERS: dict[str, Callable[[SinkCase], Handler]] = {
    "200": _fixed(_answer(200, {"code": 200})),
    "400-naming-events": _fixed(
        _answer(400, {"error": "Invalid field values", "events_with_invalid_fields": {"time": [1]}})
    ),
    "400-bad-key": lambda case: _answer(400, {"error": "Invalid API key: " + case.secrets[0]}),
    "413": _fixed(_answer(413, {"error": "Payload too large"})),
    "429-throttled": _fixed(
        _answer(
            429,
            {"throttled_devices": {"device-0": 31}, "throttled_events": [0], "eps_threshold": 30},
            headers={"Retry-After": "7"},
        )
    ),
    "500": _fixed(_answer(500)),
    "502": _fixed(_answer(502)),
    "503": _fixed(_answer(503, headers={"Retry-After": "2.5"})),
    "504": _fixed(_answer(504)),
    "timeout": _fixed(_raise(httpx.ReadTimeout)),
    "connection-error": _fixed(_raise(httpx.ConnectError)),
    "401": _echo(401),
    "403": _echo(403),
    # A wrong URL: a path the API does not serve, or a web server that is not the API at all.
    "404": _fixed(_answer(404, {"code": 404, "error": "Not found"})),
    "405": _fixed(_answer(405)),
    "200-html": _fixed(lambda request: httpx.Response(200, text="<html>It works!</html>")),
}

SHARED: dict[str, Outcome] = {
    "200": Delivered(),
    "413": TooLarge(),
    "500": RetryLater("http_500"),
    "502": RetryLater("http_502"),
    "503": RetryLater("http_503", 2.5),
    "504": RetryLater("http_504"),
    "timeout": RetryLater("timeout"),
    "connection-error": RetryLater("connection:ConnectError"),
}
ONE_EVENT: dict[str, Outcome] = {
    **SHARED,
    "200-html": Delivered(),  # their answers' bodies are not documented: the status decides
    "400-naming-events": Rejected({0: "http_400"}),
    "400-bad-key": Rejected({0: "http_400"}),
    "429-throttled": RetryLater("http_429", 7.0),
    "401": RetryLater("http_401", None, credentials=True),
    "403": RetryLater("http_403", None, credentials=True),
}
EXPECTED: dict[str, dict[str, Outcome]] = {
    "amplitude": {
        **SHARED,
        "400-naming-events": Rejected({1: "invalid_field:time"}),
        "400-bad-key": RetryLater("invalid_api_key", None, credentials=True),
        "429-throttled": Throttled(
            devices=frozenset({"device-0"}), events=frozenset({0}), after=7.0, eps_threshold=30.0
        ),
        "401": Fatal("http_401", "refused: ***"),
        "403": RetryLater("forbidden", None, credentials=True),
        "404": RetryLater("http_404", endpoint="http://amplitude.test/2/httpapi"),
        "405": RetryLater("http_405", endpoint="http://amplitude.test/2/httpapi"),
        "200-html": RetryLater("not_json", endpoint="http://amplitude.test/2/httpapi"),
    },
    "movableink": {
        **ONE_EVENT,
        "404": RetryLater("http_404", None, credentials=True),  # the key is in the path
        "405": RetryLater("http_405", endpoint="http://movableink.test/v1/behavioral/***"),
    },
    "remerge": {
        **ONE_EVENT,
        "404": RetryLater("http_404", endpoint="http://remerge.test/event"),
        "405": RetryLater("http_405", endpoint="http://remerge.test/event"),
    },
}


def test_every_sink_has_an_expectation_for_every_answer() -> None:
    for case in SINKS:
        assert set(EXPECTED[case.name]) == set(ANSWERS), case.name


@pytest.mark.parametrize("answer", sorted(ANSWERS))
@pytest.mark.parametrize("case", SINKS, ids=[c.name for c in SINKS])
async def test_each_answer_maps_to_the_documented_outcome(case: SinkCase, answer: str) -> None:
    requests: list[httpx.Request] = []
    script = ANSWERS[answer](case)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return script(request)

    sink = case.build(httpx.MockTransport(handler))
    try:
        result = await sink.send(case.batch)  # never raises: every answer is an outcome
    finally:
        await sink.close()
    assert result.outcome == EXPECTED[case.name][answer]
    assert len(requests) == 1  # one attempt, no retry below the engine
    transport_failure = answer in ("timeout", "connection-error")
    assert result.status == (0 if transport_failure else int(answer.split("-")[0]))
    _assert_no_secret(case, result, sink)


class _EndlessBody(httpx.AsyncByteStream):
    """A body that sends its first byte and then nothing, never ending (an answer trickled to a halt)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.get_running_loop().create_future()


@pytest.mark.parametrize("case", SINKS, ids=[c.name for c in SINKS])
async def test_an_answer_whose_body_never_ends_is_cut_off_at_the_request_timeout(case: SinkCase) -> None:
    """httpx's own timeouts are per read (and MockTransport applies none): only a deadline over the whole
    exchange ends this send, and it is the sink's request timeout."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "100"}, stream=_EndlessBody())

    sink = case.build(httpx.MockTransport(handler))
    try:
        async with asyncio.timeout(20 * TIMEOUT_S):  # a sink without a deadline would wait for ever
            result = await sink.send(case.batch)
    finally:
        await sink.close()
    assert result.outcome == RetryLater("timeout")
    assert result.status == 0
    assert result.seconds >= TIMEOUT_S * 0.9  # the deadline is the configured timeout, not less


def _assert_no_secret(case: SinkCase, result: SendResult, sink: Sink) -> None:
    text = f"{result} {result!r} {result.outcome} {sink!r}"
    for secret in case.secrets:
        assert secret not in text


@pytest.mark.parametrize("case", SINKS, ids=[c.name for c in SINKS])
async def test_the_secrets_checked_for_are_the_ones_each_sink_sends(case: SinkCase) -> None:
    """So the secret checks above look for strings that were really on the wire."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={})

    sink = case.build(httpx.MockTransport(handler))
    try:
        await sink.send(case.batch)
    finally:
        await sink.close()
    (request,) = requests
    body = request.content
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    wire = f"{request.url} {body.decode()}"
    auth = request.headers.get("authorization", "")
    if auth.startswith("Basic "):
        wire += " " + base64.b64decode(auth.removeprefix("Basic ")).decode()
    for secret in case.secrets:
        assert secret in wire
