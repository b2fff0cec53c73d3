"""Tests for consumer.sinks.amplitude: every documented Amplitude answer -> one typed outcome; the request body."""

from __future__ import annotations

import gc
import gzip
from typing import Any

import httpx
import orjson
import pytest
from amplitude_harness import KEY, event, pending
from hypothesis import given
from hypothesis import strategies as st

from consumer.settings import load
from consumer.sinks.amplitude import NOT_JSON, AmplitudeSink, RequestBody, build_body, classify
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Outcome,
    Rejected,
    RetryLater,
    Throttled,
    TooLarge,
    masked_url,
)

BATCH = [pending(event(i, device=f"device-{i % 3}"), i) for i in range(10)]
NO_HEADERS = httpx.Headers()


def outcome(status: int, body: Any, headers: dict[str, str] | None = None) -> Outcome:
    return classify(status, body, httpx.Headers(headers or {}), BATCH)


def test_200_is_delivered() -> None:
    body = {"code": 200, "events_ingested": 10, "payload_size_bytes": 50, "server_upload_time": 1}
    assert outcome(200, body) == Delivered()


@pytest.mark.parametrize(
    "body",
    [
        {"code": 400, "error": "Invalid API key: 0123..."},
        {"code": 400, "error": "Request missing required field", "missing_field": "api_key"},
    ],
)
def test_a_refused_or_missing_api_key_keeps_the_events_and_flags_credentials(body: dict[str, Any]) -> None:
    result = outcome(400, body)
    assert isinstance(result, RetryLater)
    assert result.credentials
    assert result.after is None


def test_400_naming_events_rejects_exactly_those_with_the_field_as_reason() -> None:
    body = {
        "code": 400,
        "error": "Request missing required field",
        "events_with_invalid_fields": {"time": [3, 4, 7]},
        "events_with_missing_fields": {"event_type": [3, 5]},
        "events_with_invalid_id_lengths": {"user_id": [2], "device_id": [6]},
        "silenced_events": [8],
    }
    assert outcome(400, body) == Rejected(
        {
            3: "invalid_field:time",  # the first reason given for an event is kept
            4: "invalid_field:time",
            7: "invalid_field:time",
            5: "missing_field:event_type",
            2: "invalid_id_length:user_id",
            6: "invalid_id_length:device_id",
            8: "silenced",
        }
    )


def test_400_invalid_id_length_shape() -> None:
    body = {
        "code": 400,
        "error": "Invalid id length for user_id or device_id",
        "events_with_invalid_id_lengths": {"user_id": [0]},
    }
    assert outcome(400, body) == Rejected({0: "invalid_id_length:user_id"})


def test_400_silenced_devices_reject_every_event_of_those_devices() -> None:
    body = {"code": 400, "error": "Request missing required field", "silenced_devices": ["device-1"]}
    assert outcome(400, body) == Rejected({1: "silenced", 4: "silenced", 7: "silenced"})


def test_400_indices_outside_the_batch_are_ignored() -> None:
    body = {"code": 400, "events_with_invalid_fields": {"time": [-1, 10, 99, "3", 2]}}
    assert outcome(400, body) == Rejected({2: "invalid_field:time"})


@pytest.mark.parametrize(
    "body",
    [
        {"code": 400, "error": "Request missing required field", "missing_field": "events"},
        {"code": 400, "error": "Invalid JSON request body"},
        {"code": 400, "events_with_invalid_fields": {"time": [50]}},  # names no event of this batch
    ],
)
def test_400_naming_no_event_is_fatal_for_the_batch(body: Any) -> None:
    result = outcome(400, body)
    assert isinstance(result, Fatal)
    assert result.reason == "http_400"


def test_413_splits() -> None:
    assert outcome(413, {"code": 413, "error": "Payload too large"}) == TooLarge()


def test_429_names_devices_users_events_and_daily_quota() -> None:
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"device-1": 31},
        "throttled_users": {"datamonster@amplitude.com": 32},
        "throttled_events": [1, 4, 7],
        "exceeded_daily_quota_users": {"user@example.com": 500001},
        "exceeded_daily_quota_devices": {"device-2": 500001},
    }
    assert outcome(429, body) == Throttled(
        devices=frozenset({"device-1"}),
        users=frozenset({"datamonster@amplitude.com"}),
        events=frozenset({1, 4, 7}),
        quota_devices=frozenset({"device-2"}),
        quota_users=frozenset({"user@example.com"}),
        eps_threshold=30.0,
    )


def test_429_for_devices_carries_retry_after() -> None:
    body = {"code": 429, "throttled_devices": {"device-1": 31}}
    assert outcome(429, body, {"Retry-After": "2"}) == Throttled(devices=frozenset({"device-1"}), after=2.0)


@pytest.mark.parametrize(
    ("headers", "after"),
    [({}, 60.0), ({"Retry-After": "5"}, 5.0), ({"Retry-After": "0"}, 0.0), ({"Retry-After": "soon"}, 60.0)],
)
def test_project_wide_429_without_ids_waits(headers: dict[str, str], after: float) -> None:
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 0,
        "throttled_devices": {},
        "throttled_users": {},
        "throttled_events": [],
    }
    assert outcome(429, body, headers) == RetryLater("project_throttled", after)


def test_403_is_retried_later_and_flagged() -> None:
    result = outcome(403, {"code": 403, "error": "Forbidden"})
    assert isinstance(result, RetryLater)
    assert result.credentials


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_failures_are_retried(status: int) -> None:
    assert outcome(status, {"code": status}) == RetryLater(f"http_{status}")
    assert outcome(status, None, {"retry-after": "1.5"}) == RetryLater(f"http_{status}", 1.5)


@pytest.mark.parametrize("status", [401, 409, 422])
def test_other_4xx_are_fatal_with_the_status(status: int) -> None:
    result = outcome(status, {"code": status, "error": "nope"})
    assert result == Fatal(f"http_{status}", "nope")


URL = "http://amplitude.test/"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, {"code": 404, "error": "Not found"}, "http_404"),  # a path other than /2/httpapi or /batch
        (405, NOT_JSON, "http_405"),
        (301, NOT_JSON, "http_301"),  # httpx follows no redirect: http:// for https://, a moved host
        (200, NOT_JSON, "not_json"),  # a web page
        (200, {}, "not_amplitude"),  # some other API's JSON
        (200, {"status": "ok", "code": "200"}, "not_amplitude"),
        (204, NOT_JSON, "not_json"),
        (400, NOT_JSON, "not_json"),  # Amplitude's 400s are JSON naming the problem
        (401, NOT_JSON, "not_json"),
    ],
)
def test_an_answer_amplitude_never_gives_says_the_endpoint_is_wrong(
    status: int, body: Any, reason: str
) -> None:
    """Held like refused credentials (retried within the window, never dead-lettered), naming the URL."""
    result = classify(status, body, NO_HEADERS, BATCH, url=URL)
    assert result == RetryLater(reason, endpoint=URL)


@pytest.mark.parametrize("status", [413, 429, 500, 502, 503, 504])
def test_a_proxy_page_for_a_limit_or_an_outage_is_not_a_wrong_endpoint(status: int) -> None:
    """A load balancer in front of Amplitude answers these with HTML: still a split, a wait, a retry."""
    result = classify(status, NOT_JSON, NO_HEADERS, BATCH, url=URL)
    assert not (isinstance(result, RetryLater) and result.endpoint)


def test_amplitude_accepts_with_code_or_events_ingested() -> None:
    assert classify(200, {"code": 200}, NO_HEADERS, BATCH, url=URL) == Delivered()
    assert classify(200, {"events_ingested": 10}, NO_HEADERS, BATCH, url=URL) == Delivered()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa55@proxy.example/2/httpapi?key=abc#x", "https://***@proxy.example/2/httpapi?***"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://api2.amplitude.com/2/httpapi", "https://api2.amplitude.com/2/httpapi"),
    ],
)
def test_masked_url_hides_user_information_and_query(url: str, shown: str) -> None:
    assert masked_url(url) == shown


async def test_a_wrong_endpoint_is_named_masked_and_without_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html><body>Welcome to nginx!</body></html>")

    url = "https://ops:s3cr3t-pass@gateway.example/ingest?token=t0k3n"
    sink = mock_sink(handler, AMPLITUDE_URL=url)
    try:
        result = await sink.send(BATCH)
    finally:
        await sink.close()
    assert result.outcome == RetryLater("not_json", endpoint="https://***@gateway.example/ingest?***")
    assert result.status == 200
    for secret in (KEY, "s3cr3t-pass", "t0k3n"):
        assert secret not in repr(result)


KEYS = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(key=KEYS, n=st.integers(min_value=0, max_value=5), min_id=st.integers(min_value=0, max_value=9))
def test_build_body_is_valid_json_with_the_events_verbatim(key: str, n: int, min_id: int) -> None:
    events = [event(i, user='quo"te\\ \u00e9\u2028') for i in range(n)]
    body = build_body(key, [orjson.dumps(e) for e in events], min_id)
    assert orjson.loads(body) == {"api_key": key, "events": events, "options": {"min_id_length": min_id}}


def mock_sink(handler: Any, **env: str) -> AmplitudeSink:
    settings = load(
        None, {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_URL": "http://amplitude.test/2/httpapi", **env}
    )
    return AmplitudeSink(settings.amplitude, httpx.AsyncClient(transport=httpx.MockTransport(handler)))


async def test_send_posts_one_gzip_body_and_classifies_the_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 200, "events_ingested": 10})

    sink = mock_sink(handler)
    result = await sink.send(BATCH)
    assert result.outcome == Delivered()
    assert result.status == 200
    (request,) = seen
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    body = gzip.decompress(request.content)
    assert body == build_body(KEY, [p.encoded for p in BATCH], 1)
    assert result.body_bytes == len(body)
    await sink.close()


async def test_send_without_gzip() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"code": 200})

    sink = mock_sink(handler, CURRENTS_GZIP="false")
    await sink.send(BATCH[:1])
    assert orjson.loads(seen[0])["api_key"] == KEY
    await sink.close()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("refused"), "connection:ConnectError"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.RemoteProtocolError("closed"), "connection:RemoteProtocolError"),
    ],
)
async def test_transport_failures_are_retried_with_status_0(error: Exception, reason: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    sink = mock_sink(handler)
    result = await sink.send(BATCH)
    assert result.outcome == RetryLater(reason)
    assert result.status == 0
    await sink.close()


async def test_a_non_json_answer_is_classified_by_status() -> None:
    sink = mock_sink(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    assert (await sink.send(BATCH)).outcome == RetryLater("http_502")
    await sink.close()


async def test_an_answer_echoing_the_key_never_carries_it_into_the_outcome() -> None:
    """A proxy that quotes the key back must not put it into dead-letter details."""
    sink = mock_sink(lambda request: httpx.Response(401, json={"error": f"key {KEY} is not allowed here"}))
    result = await sink.send(BATCH)
    assert result.outcome == Fatal("http_401", "key *** is not allowed here")
    assert KEY not in repr(result)
    await sink.close()


async def test_a_sent_body_is_freed_with_its_exchange_not_by_the_garbage_collector(sim: Any) -> None:
    """httpx keeps each request in a reference cycle; the body inside it is emptied when the exchange
    ends, so a body is never kept until a collection (real HTTP server, collector off)."""
    settings = load(None, {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_URL": sim.http_v2_url})
    sink = AmplitudeSink(settings.amplitude)
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in gc.get_objects() if isinstance(o, RequestBody)}  # other tests' leftovers
        for _ in range(3):
            assert (await sink.send(BATCH)).outcome == Delivered()
        bodies = [o for o in gc.get_objects() if isinstance(o, RequestBody) and id(o) not in before]
        assert len(bodies) == 3  # each still in its request's cycle: the collector has not run
        assert all(body.data == b"" for body in bodies)
    finally:
        gc.enable()
        await sink.close()
    assert sim.stats.events_ingested + sim.stats.events_duplicate == 3 * len(BATCH)  # every body arrived
