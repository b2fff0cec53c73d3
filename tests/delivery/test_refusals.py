"""Tests for consumer.delivery.refusals and what feeds it: the policy's verdict on our configuration, one
log line per change of state, the gauges, and the cause the outage log's summaries repeat."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from consumer.delivery.outage import OutageLog
from consumer.delivery.policy import RetryPolicy
from consumer.delivery.refusals import Refusals
from consumer.events import Pending, Position
from consumer.ops.metrics import Metrics
from consumer.sinks.base import Delivered, Outcome, Rejected, RetryLater, Throttled, TooLarge

URL = "http://127.0.0.1:8080"
NOW = 1_700_000_000.0
BATCH = [Pending.alone("e", Position("t.avro", 0, 0), b"{}", NOW, ("d:dev",))]


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"destination": "amplitude", **labels})


@pytest.mark.parametrize(
    ("outcome", "credentials", "endpoint"),
    [
        (RetryLater("http_404", endpoint=URL), None, URL),
        (RetryLater("invalid_api_key", credentials=True), True, ""),  # the API itself answered
        (Delivered(), False, ""),
        (Rejected({0: "invalid_field:time"}), False, ""),
        (Throttled(devices=frozenset({"dev"})), False, ""),
        (RetryLater("http_503"), None, None),  # any server (a proxy) answers this: nothing proved
        (RetryLater("timeout"), None, None),
        (TooLarge(), None, None),
    ],
)
def test_what_each_answer_proves_about_our_configuration(
    outcome: Outcome, credentials: bool | None, endpoint: str | None
) -> None:
    d = RetryPolicy(retry_window=60.0, max_backoff=1.0, penalty=1.0).decide(BATCH, 0, outcome, NOW)
    assert (d.credentials, d.endpoint) == (credentials, endpoint)
    if isinstance(outcome, RetryLater):
        assert d.retry is not None and d.dead == [], "a wrong URL or key must hold the events, not drop them"


def test_a_wrong_endpoint_is_logged_once_per_change_of_state_with_a_gauge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(CollectorRegistry())
    refusals = Refusals("amplitude", metrics)
    caplog.set_level(logging.INFO, "currents.delivery")
    for _ in range(50):  # fifty requests answered 404
        refusals.update(None, URL, "http_404")
        refusals.update(None, None, "http_503")  # an answer that proves nothing changes nothing
    assert gauge(metrics, "currents_destination_misconfigured", reason="http_404") == 1
    assert refusals.cause == f"wrong endpoint: {URL} answered http_404"
    refusals.update(None, URL, "not_json")  # the URL now answers a web page: a new state, a new line
    assert gauge(metrics, "currents_destination_misconfigured", reason="http_404") == 0
    assert gauge(metrics, "currents_destination_misconfigured", reason="not_json") == 1
    refusals.update(False, "", "")  # delivered: the URL is fixed
    assert gauge(metrics, "currents_destination_misconfigured", reason="not_json") == 0
    assert refusals.cause == ""
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", "ERROR", "INFO"]
    assert lines[0][1].startswith(f"amplitude endpoint {URL} answered http_404")
    assert lines[1][1].startswith(f"amplitude endpoint {URL} answered not_json")
    assert lines[2][1] == f"amplitude endpoint {URL} answers as the destination's API again"


def test_refused_credentials_keep_their_line_and_gauge(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(CollectorRegistry())
    refusals = Refusals("amplitude", metrics)
    assert gauge(metrics, "currents_credentials_failing") == 0  # the series exists before anything fails
    caplog.set_level(logging.INFO, "currents.delivery")
    for _ in range(20):
        refusals.update(True, "", "invalid_api_key")
    assert gauge(metrics, "currents_credentials_failing") == 1
    assert refusals.cause == "credentials refused"
    refusals.update(False, "", "")
    assert gauge(metrics, "currents_credentials_failing") == 0
    assert [r.getMessage() for r in caplog.records] == [
        "amplitude refuses our credentials; events are kept and retried within the window",
        "amplitude accepts our credentials again",
    ]


def test_the_outage_summary_says_why_events_are_held_and_keeps_the_last_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [NOW]
    outage = OutageLog("amplitude", summary_every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "currents.delivery")
    cause = f"wrong endpoint: {URL} answered http_404"
    for _ in range(180):  # three minutes of a retry a second
        outage.retrying("http_404", 20, 1.0, 600, cause, 404)
        now[0] += 1.0
    assert outage.last_answer == ("http_404", 404)
    summaries = [r.getMessage() for r in caplog.records][1:]
    assert len(summaries) == 2
    assert all(f"last http_404; {cause}): 600 events held" in s for s in summaries)
    assert all("still failing since 2023-11-14T22:13:20Z" in s for s in summaries)
    outage.delivered()
    assert outage.last_answer is None
