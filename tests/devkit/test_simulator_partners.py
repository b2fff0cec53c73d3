"""Tests for the simulator's Movable Ink and Remerge modes over real HTTP, and per-destination faults."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from amplitude_harness import (
    MOVABLEINK_KEY,
    MOVABLEINK_PASSWORD,
    MOVABLEINK_USER,
    REMERGE_KEY,
    movableink_bodies,
    partner_simulator,
    remerge_params,
)
from currents_devkit.simulator.faults import FaultController
from currents_devkit.simulator.partners import (
    MOVABLEINK_MAX_BYTES,
    basic_credentials,
    check_movableink_event,
    check_remerge_query,
    key_id,
    parse_credentials,
)
from currents_devkit.simulator.server import AmplitudeSimulator
from sim_harness import T0, FakeClock, FakeSleep, Make, simulators

TS_MS = 1_700_000_000_123
AUTH = (MOVABLEINK_USER, MOVABLEINK_PASSWORD)


@pytest.fixture
async def make(clock: FakeClock, sleep: FakeSleep) -> AsyncIterator[Make]:
    async for factory in simulators(
        clock,
        sleep,
        movableink_credentials=frozenset({AUTH}),
        movableink_keys=frozenset({MOVABLEINK_KEY}),
        remerge_keys=frozenset({REMERGE_KEY}),
    ):
        yield factory


@pytest.fixture
async def sim(make: Make) -> AmplitudeSimulator:
    return await make()


def overridden(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``fields`` applied (a None value removes the field)."""
    merged = {**base, **fields}
    return {k: v for k, v in merged.items() if v is not None}


def track(**fields: Any) -> dict[str, Any]:
    """A valid Movable Ink track body; ``fields`` override (None removes a field)."""
    base = {"type": "track", "timestamp": TS_MS, "user_id": "user-1", "event": "Purchase"}
    return overridden({**base, "properties": {"sku": "A-1", "price": 9.5}}, fields)


def identify(**fields: Any) -> dict[str, Any]:
    """A valid Movable Ink identify body; ``fields`` override (None removes a field)."""
    base = {"type": "identify", "timestamp": TS_MS, "user_id": "user-1", "anonymous_id": "anon-1"}
    return overridden({**base, "timezone": "Europe/Berlin"}, fields)


def remerge_query(**params: str | None) -> dict[str, str]:
    """Valid Remerge query parameters; ``params`` override (None removes a parameter)."""
    base = {"partner": "braze", "app_id": "com.example.app", "key": REMERGE_KEY, "ts": "1700000000"}
    idfa = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    rest = {"idfa": idfa, "event": "purchase", "non_app_event": "false"}
    return overridden({**base, **rest, "data": '{"revenue": 9.5, "currency": "EUR"}'}, params)


async def mi_post(
    client: httpx.AsyncClient,
    sim: AmplitudeSimulator,
    body: Any,
    *,
    key: str = MOVABLEINK_KEY,
    auth: tuple[str, str] | None = AUTH,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` (bytes as is, else JSON) to ``/behavioral/<key>`` with Basic ``auth``."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"content-type": "application/json", **(headers or {})}
    url = f"{sim.url}/behavioral/{key}"
    if auth is None:
        return await client.post(url, content=content, headers=all_headers)
    return await client.post(url, content=content, headers=all_headers, auth=auth)


async def remerge_get(
    client: httpx.AsyncClient, sim: AmplitudeSimulator, **params: str | None
) -> httpx.Response:
    """GET ``/event`` with :func:`remerge_query` ``params``."""
    return await client.get(sim.url + "/event", params=remerge_query(**params))


async def amplitude_post(client: httpx.AsyncClient, sim: AmplitudeSimulator, i: int = 0) -> httpx.Response:
    """One valid HTTP V2 request (insert_id ``ins-<i>``)."""
    event = {"event_type": "Purchase", "device_id": "device-0001", "time": TS_MS, "insert_id": f"ins-{i}"}
    return await client.post(sim.http_v2_url, content=orjson.dumps({"api_key": "any-key", "events": [event]}))


# --- Movable Ink -----------------------------------------------------------------------------------


async def test_movableink_track_and_identify_accepted_and_stored(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await mi_post(client, sim, track())
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await mi_post(client, sim, identify())
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert sim.movableink_events() == [
        {"received_at": T0, "key": MOVABLEINK_KEY, "event": track()},
        {"received_at": T0, "key": MOVABLEINK_KEY, "event": identify()},
    ]
    assert sim.describe()["movableink"] == {
        "requests_total": 2,
        "accepted": 2,
        "rejected": 0,
        "rejected_by_status": {},
        "events_kept": 2,
        "keys_configured": 1,
        "credentials_configured": 1,
    }
    assert sim.events == []  # nothing leaked into the Amplitude store
    assert sim.stats.requests_total == 0


async def test_movableink_minimal_valid_bodies(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    anonymous_track = {"type": "track", "timestamp": TS_MS, "anonymous_id": "anon-7", "event": "Open"}
    assert (await mi_post(client, sim, anonymous_track)).status_code == 200
    extra = track(context={"ip": "10.0.0.1"}, timezone="UTC")  # unknown fields are allowed
    assert (await mi_post(client, sim, extra)).status_code == 200
    assert movableink_bodies(sim) == [anonymous_track, extra]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        ([track()], "body must be a JSON object"),
        (track(type=None), 'type must be "track" or "identify"'),
        (track(type="page"), 'type must be "track" or "identify"'),
        (track(timestamp=None), "timestamp must be an integer (milliseconds since the epoch)"),
        (track(timestamp="1700000000123"), "timestamp must be an integer (milliseconds since the epoch)"),
        (track(timestamp=1_700_000_000.5), "timestamp must be an integer (milliseconds since the epoch)"),
        (track(timestamp=True), "timestamp must be an integer (milliseconds since the epoch)"),
        (track(timestamp=1_700_000_000), "timestamp must be in milliseconds since the epoch"),
        (track(user_id=None), "user_id or anonymous_id is required"),
        (track(user_id=""), "user_id must be a non-empty string"),
        (track(user_id=42), "user_id must be a non-empty string"),
        (track(anonymous_id=""), "anonymous_id must be a non-empty string"),
        (identify(anonymous_id=None), "identify requires both user_id and anonymous_id"),
        (identify(user_id=None), "identify requires both user_id and anonymous_id"),
        (track(event=None), "track requires a non-empty event"),
        (track(event=""), "track requires a non-empty event"),
        (track(properties=["sku"]), "properties must be an object"),
        (track(timezone=1), "timezone must be a string"),
    ],
)
async def test_movableink_invalid_bodies_are_400(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, body: Any, error: str
) -> None:
    r = await mi_post(client, sim, body)
    assert (r.status_code, r.json()) == (400, {"error": error})
    assert sim.movableink_events() == []
    assert sim.describe()["movableink"]["rejected_by_status"] == {"400": 1}


async def test_movableink_properties_null_is_refused(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    body = track()
    body["properties"] = None
    r = await mi_post(client, sim, body)
    assert (r.status_code, r.json()) == (400, {"error": "properties must be an object"})


async def test_movableink_body_over_size_limit_is_413(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make()
    big = track(properties={"blob": "x" * MOVABLEINK_MAX_BYTES})
    r = await mi_post(client, sim, big)
    assert (r.status_code, r.json()) == (
        413,
        {"error": f"Payload too large (limit {MOVABLEINK_MAX_BYTES} bytes)"},
    )
    small = await make(movableink_max_bytes=200)
    body = track(properties={"blob": "y" * 100})
    assert len(orjson.dumps(body)) > 200
    assert (await mi_post(client, small, body)).status_code == 413
    assert (await mi_post(client, small, track(properties={}))).status_code == 200
    assert sim.movableink_events() == []
    assert small.describe()["movableink"]["rejected_by_status"] == {"413": 1}


async def test_movableink_basic_auth_refused(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    no_colon = base64.b64encode(b"no-colon").decode()
    cases: list[tuple[tuple[str, str] | None, dict[str, str]]] = [
        (None, {}),
        ((MOVABLEINK_USER, "wrong-password"), {}),
        (("someone-else", MOVABLEINK_PASSWORD), {}),
        (None, {"authorization": "Basic !!!not-base64"}),
        (None, {"authorization": f"Basic {no_colon}"}),
        (None, {"authorization": f"Bearer {MOVABLEINK_PASSWORD}"}),
    ]
    for auth, headers in cases:
        r = await mi_post(client, sim, track(), auth=auth, headers=headers)
        assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"}), (auth, headers)
        assert MOVABLEINK_PASSWORD not in r.text
    assert sim.movableink_events() == []
    assert sim.describe()["movableink"]["rejected_by_status"] == {"401": 6}


async def test_movableink_auth_is_checked_before_the_key(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await mi_post(client, sim, track(), key="unknown-key", auth=None)
    assert r.status_code == 401


async def test_movableink_unknown_key_is_404(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await mi_post(client, sim, track(), key="unknown-key")
    assert (r.status_code, r.json()) == (404, {"error": "Not found"})
    r = await mi_post(client, sim, track(), key=f"{MOVABLEINK_KEY}/extra")
    assert r.status_code == 404
    r = await client.post(sim.url + "/behavioral/", content=orjson.dumps(track()), auth=AUTH)
    assert r.status_code == 404
    assert sim.movableink_events() == []
    assert sim.describe()["movableink"]["rejected_by_status"] == {"404": 3}


async def test_movableink_any_credentials_and_key_when_none_configured(
    make: Make, client: httpx.AsyncClient
) -> None:
    sim = await make(movableink_credentials=frozenset(), movableink_keys=frozenset())
    assert (await mi_post(client, sim, track(), key="k-1", auth=("a", "b"))).status_code == 200
    assert (await mi_post(client, sim, track(), key="k-2", auth=("c", ""))).status_code == 200
    assert (await mi_post(client, sim, track(), key="k-3", auth=None)).status_code == 401
    assert [row["key"] for row in sim.movableink_events()] == ["k-1", "k-2"]
    assert movableink_bodies(sim, key="k-2") == [track()]


async def test_movableink_runtime_key_and_credentials(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    assert (await mi_post(client, sim, track(), key="late-key")).status_code == 404
    sim.movableink.keys.add("late-key")
    assert (await mi_post(client, sim, track(), key="late-key")).status_code == 200
    sim.movableink.credentials.add(("late-user", "late-pass"))
    assert (
        await mi_post(client, sim, track(), key="late-key", auth=("late-user", "late-pass"))
    ).status_code == 200
    assert len(sim.movableink_events()) == 2


async def test_movableink_wrong_method_is_405(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await client.get(f"{sim.url}/behavioral/{MOVABLEINK_KEY}", auth=AUTH)
    assert (r.status_code, r.json()) == (405, {"error": "Method not allowed"})


# --- Remerge ---------------------------------------------------------------------------------------


async def test_remerge_valid_request_is_204_and_stored(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await remerge_get(client, sim)
    assert (r.status_code, r.content) == (204, b"")
    r = await remerge_get(
        client, sim, idfa=None, aaid="38400000-8cf0-11bd-b23e-10b96e40000d", non_app_event="true", data=None
    )
    assert r.status_code == 204
    expected_first = {
        "partner": "braze",
        "app_id": "com.example.app",
        "event": "purchase",
        "ts": 1_700_000_000,
        "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        "non_app_event": False,
        "data": {"revenue": 9.5, "currency": "EUR"},
    }
    expected_second = {
        "partner": "braze",
        "app_id": "com.example.app",
        "event": "purchase",
        "ts": 1_700_000_000,
        "aaid": "38400000-8cf0-11bd-b23e-10b96e40000d",
        "non_app_event": True,
    }
    assert sim.remerge_events() == [
        {"received_at": T0, "key_id": key_id(REMERGE_KEY), "event": expected_first},
        {"received_at": T0, "key_id": key_id(REMERGE_KEY), "event": expected_second},
    ]
    assert remerge_params(sim) == [expected_first, expected_second]
    assert sim.describe()["remerge"] == {
        "requests_total": 2,
        "accepted": 2,
        "rejected": 0,
        "rejected_by_status": {},
        "events_kept": 2,
        "keys_configured": 1,
    }


async def test_remerge_key_never_stored_nor_echoed(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    assert (await remerge_get(client, sim)).status_code == 204
    assert (await remerge_get(client, sim, ts="soon")).status_code == 400
    wrong = await remerge_get(client, sim, key="not-" + REMERGE_KEY)
    assert REMERGE_KEY not in wrong.text
    stats = await client.get(sim.url + "/_sim/stats")
    events = await client.get(sim.url + "/_sim/remerge/events")
    assert REMERGE_KEY not in stats.text
    assert REMERGE_KEY not in events.text
    assert REMERGE_KEY not in orjson.dumps(sim.remerge_events()).decode()
    assert events.json()["events"][0]["key_id"] == key_id(REMERGE_KEY)
    assert len(key_id(REMERGE_KEY)) == 12


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"idfa": None}, "exactly one of idfa and aaid is required"),
        ({"aaid": "38400000-8cf0-11bd-b23e-10b96e40000d"}, "exactly one of idfa and aaid is required"),
        ({"idfa": ""}, "idfa must not be empty"),
        ({"idfa": None, "aaid": ""}, "aaid must not be empty"),
        ({"ts": None}, "missing parameter: ts"),
        ({"ts": "soon"}, "ts must be an integer (seconds since the epoch)"),
        ({"ts": "-5"}, "ts must be an integer (seconds since the epoch)"),
        ({"ts": "1700000000.5"}, "ts must be an integer (seconds since the epoch)"),
        ({"ts": "1700000000123"}, "ts must be in seconds since the epoch"),
        ({"data": "{not json"}, "data must be a JSON object"),
        ({"data": "[1, 2]"}, "data must be a JSON object"),
        ({"data": ""}, "data must be a JSON object"),
        ({"partner": None}, "missing parameter: partner"),
        ({"app_id": ""}, "missing parameter: app_id"),
        ({"event": None}, "missing parameter: event"),
        ({"non_app_event": None}, 'non_app_event must be "true" or "false"'),
        ({"non_app_event": "yes"}, 'non_app_event must be "true" or "false"'),
        ({"key": None}, "missing parameter: key"),
    ],
)
async def test_remerge_invalid_parameters_are_400(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, params: dict[str, str | None], reason: str
) -> None:
    r = await remerge_get(client, sim, **params)
    assert (r.status_code, r.text) == (400, reason)
    assert r.headers["content-type"].startswith("text/plain")
    assert sim.remerge_events() == []
    assert sim.describe()["remerge"]["rejected_by_status"] == {"400": 1}


async def test_remerge_wrong_key_is_403(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await remerge_get(client, sim, key="wrong-key")
    assert (r.status_code, r.text) == (403, "invalid key")
    r = await remerge_get(client, sim, key="wrong-key", ts="soon")  # the key is checked first
    assert r.status_code == 403
    assert sim.remerge_events() == []
    assert sim.describe()["remerge"]["rejected_by_status"] == {"403": 2}


async def test_remerge_any_key_when_none_configured(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(remerge_keys=frozenset())
    assert (await remerge_get(client, sim, key="whatever")).status_code == 204
    assert [row["key_id"] for row in sim.remerge_events()] == [key_id("whatever")]


async def test_remerge_wrong_method_is_405(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await client.post(sim.url + "/event", params=remerge_query())
    assert (r.status_code, r.text) == (405, "Method not allowed")
    assert sim.remerge_events() == []


# --- per-destination faults ------------------------------------------------------------------------


async def test_movableink_down_while_others_answer(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    sim.faults.down(mode="503", destination="movableink")
    for _ in range(2):
        r = await mi_post(client, sim, track())
        assert (r.status_code, r.json()) == (503, {"error": "Service Unavailable"})
    assert (await amplitude_post(client, sim, 0)).status_code == 200
    assert (await remerge_get(client, sim)).status_code == 204
    sim.faults.up(destination="movableink")
    assert (await mi_post(client, sim, track())).status_code == 200
    assert len(sim.movableink_events()) == 1
    assert len(sim.events) == 1
    assert len(sim.remerge_events()) == 1
    assert sim.describe()["movableink"]["rejected_by_status"] == {"503": 2}
    assert sim.stats.requests_by_status == {200: 1}


async def test_remerge_down_over_http(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    spec = {"destination": "remerge", "down": "503"}
    r = await client.post(sim.url + "/_sim/faults", content=orjson.dumps(spec))
    assert r.status_code == 200
    faults = r.json()["faults"]
    assert faults["down"] is None
    assert faults["destinations"]["remerge"]["down"] == "503"
    assert faults["destinations"]["movableink"]["down"] is None
    r = await remerge_get(client, sim)
    assert (r.status_code, r.text) == (503, "Service Unavailable")
    assert (await mi_post(client, sim, track())).status_code == 200
    assert (await amplitude_post(client, sim)).status_code == 200
    await client.post(
        sim.url + "/_sim/faults", content=orjson.dumps({"destination": "remerge", "down": None})
    )
    assert (await remerge_get(client, sim)).status_code == 204
    r = await client.post(
        sim.url + "/_sim/faults", content=orjson.dumps({"destination": "braze", "down": "503"})
    )
    assert (r.status_code, r.json()["code"]) == (400, 400)


async def test_fault_without_destination_hits_every_destination(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    sim.faults.down()
    assert (await amplitude_post(client, sim)).status_code == 503
    assert (await mi_post(client, sim, track())).status_code == 503
    assert (await remerge_get(client, sim)).status_code == 503
    sim.faults.down(destination="remerge")
    sim.faults.up()  # no destination: every down mode ends
    assert (await amplitude_post(client, sim)).status_code == 200
    assert (await mi_post(client, sim, track())).status_code == 200
    assert (await remerge_get(client, sim)).status_code == 204


async def test_targeted_queue_and_ingest_fault(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    sim.faults.fail_next(1, 502, ingest=True, destination="movableink")
    sim.faults.fail_next(1, 500, retry_after=2, destination="remerge")
    sim.faults.fail_next(1, 504)  # all destinations: the first request with no earlier own fault takes it
    assert sim.faults.describe()["destinations"]["remerge"]["next"] == [500]
    assert sim.faults.describe()["next"] == [504]
    assert (await amplitude_post(client, sim, 0)).status_code == 504
    assert (await amplitude_post(client, sim, 1)).status_code == 200
    r = await mi_post(client, sim, track())
    assert (r.status_code, r.json()) == (502, {"error": "Bad Gateway"})
    assert len(sim.movableink_events()) == 1  # stored despite the 502
    r = await remerge_get(client, sim)
    assert (r.status_code, r.text, r.headers["retry-after"]) == (500, "Internal Server Error", "2")
    assert (await remerge_get(client, sim)).status_code == 204
    assert sim.describe()["movableink"] == {
        "requests_total": 1,
        "accepted": 1,
        "rejected": 1,
        "rejected_by_status": {"502": 1},
        "events_kept": 1,
        "keys_configured": 1,
        "credentials_configured": 1,
    }
    assert sim.describe()["remerge"]["rejected_by_status"] == {"500": 1}


async def test_invalid_credentials_fault_per_destination(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    sim.faults.invalid_api_key_next(1, destination="movableink")
    sim.faults.invalid_api_key_next(1, destination="remerge")
    sim.faults.invalid_api_key_next(1, destination="amplitude")
    r = await mi_post(client, sim, track())
    assert (r.status_code, r.json()) == (401, {"error": "Unauthorized (simulated)"})
    r = await remerge_get(client, sim)
    assert (r.status_code, r.text) == (403, "invalid key (simulated)")
    r = await amplitude_post(client, sim)
    assert (r.status_code, r.json()) == (400, {"code": 400, "error": "Invalid API key: (simulated)"})


async def test_close_delay_and_storm_per_destination(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, sleep: FakeSleep
) -> None:
    sim.faults.close_next(1, destination="remerge")
    with pytest.raises(httpx.RemoteProtocolError):
        await remerge_get(client, sim)
    assert sim.describe()["remerge"]["rejected_by_status"] == {"0": 1}
    sim.faults.set_delay(0.75, destination="movableink")
    assert (await mi_post(client, sim, track())).status_code == 200
    assert (await amplitude_post(client, sim)).status_code == 200
    assert sleep.calls == [0.75]
    sim.faults.storm(1.0, seed=3, statuses=(500,), destination="amplitude")
    assert [(await amplitude_post(client, sim, i)).status_code for i in range(3)] == [500, 500, 500]
    assert (await remerge_get(client, sim)).status_code == 204
    sim.faults.clear(destination="amplitude")
    assert (await amplitude_post(client, sim, 9)).status_code == 200
    assert sim.faults.delay_for("movableink") == 0.75  # clearing one destination leaves the others
    sim.faults.clear()
    assert sim.faults.delay_for("movableink") == 0.0


async def test_fault_controller_rejects_unknown_destination() -> None:
    faults = FaultController()
    with pytest.raises(ValueError, match="destination must be one of"):
        faults.down(destination="braze")
    with pytest.raises(ValueError, match="destination must be one of"):
        faults.fail_next(1, 500, destination="Amplitude")
    faults.fail_next(1, 500, destination="remerge")
    assert faults.next_fault() is None  # no destination: only all-destination faults
    assert faults.next_fault("amplitude") is None
    taken = faults.next_fault("remerge")
    assert taken is not None and taken.status == 500


# --- stats, events and reset over HTTP -------------------------------------------------------------


async def test_stats_events_and_reset_over_http(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    for i in range(3):
        assert (await mi_post(client, sim, track(event=f"E{i}"))).status_code == 200
    assert (await mi_post(client, sim, track(), auth=None)).status_code == 401
    assert (await mi_post(client, sim, track(event=""))).status_code == 400
    assert (await remerge_get(client, sim)).status_code == 204
    assert (await remerge_get(client, sim, key="bad")).status_code == 403
    assert (await remerge_get(client, sim, ts="x")).status_code == 400

    stats = (await client.get(sim.url + "/_sim/stats")).json()
    assert stats["movableink"] == {
        "requests_total": 5,
        "accepted": 3,
        "rejected": 2,
        "rejected_by_status": {"400": 1, "401": 1},
        "events_kept": 3,
        "keys_configured": 1,
        "credentials_configured": 1,
    }
    assert stats["remerge"] == {
        "requests_total": 3,
        "accepted": 1,
        "rejected": 2,
        "rejected_by_status": {"400": 1, "403": 1},
        "events_kept": 1,
        "keys_configured": 1,
    }
    assert stats["stats"]["requests_total"] == 0

    page = await client.get(sim.url + "/_sim/movableink/events", params={"offset": 1, "limit": 1})
    assert page.json() == {
        "code": 200,
        "events": [{"received_at": T0, "key": MOVABLEINK_KEY, "event": track(event="E1")}],
    }
    rows = (await client.get(sim.url + "/_sim/remerge/events")).json()["events"]
    assert [row["event"]["event"] for row in rows] == ["purchase"]
    bad = await client.get(sim.url + "/_sim/remerge/events", params={"limit": "many"})
    assert (bad.status_code, bad.json()["code"]) == (400, 400)
    bad = await client.get(sim.url + "/_sim/movableink/events", params={"offset": "-1"})
    assert bad.status_code == 400

    sim.faults.down(destination="movableink")
    assert (await client.post(sim.url + "/_sim/reset")).json() == {"code": 200}
    assert sim.movableink_events() == []
    assert sim.remerge_events() == []
    after = sim.describe()
    assert after["movableink"]["requests_total"] == 0
    assert after["remerge"]["rejected_by_status"] == {}
    assert after["faults"]["destinations"]["movableink"]["down"] is None
    assert (await mi_post(client, sim, track())).status_code == 200  # faults forgotten, config kept
    assert (await mi_post(client, sim, track(), key="unknown-key")).status_code == 404


async def test_counters_without_keeping_events(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(keep_events=False)
    assert (await mi_post(client, sim, track())).status_code == 200
    assert (await remerge_get(client, sim)).status_code == 204
    assert sim.movableink_events() == []
    assert sim.remerge_events() == []
    assert (sim.describe()["movableink"]["accepted"], sim.describe()["movableink"]["events_kept"]) == (1, 0)
    assert (sim.describe()["remerge"]["accepted"], sim.describe()["remerge"]["events_kept"]) == (1, 0)


async def test_all_three_apis_on_one_port_with_harness(client: httpx.AsyncClient) -> None:
    async with partner_simulator() as sim:
        assert (await amplitude_post(client, sim)).status_code == 200
        assert (await mi_post(client, sim, identify())).status_code == 200
        assert (await remerge_get(client, sim)).status_code == 204
        assert [e.event["insert_id"] for e in sim.events] == ["ins-0"]
        assert movableink_bodies(sim) == [identify()]
        assert [p["app_id"] for p in remerge_params(sim)] == ["com.example.app"]
        assert sim.connections_total == 1  # one keep-alive connection served all three


# --- pure helpers ----------------------------------------------------------------------------------


def test_parse_credentials_and_basic_header() -> None:
    assert parse_credentials(["u1:p1", "u2:pa:ss"]) == frozenset({("u1", "p1"), ("u2", "pa:ss")})
    with pytest.raises(ValueError, match="user:password"):
        parse_credentials(["no-colon"])
    header = "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert basic_credentials(header) == ("user", "pa:ss")
    assert basic_credentials("basic " + base64.b64encode(b"u:").decode()) == ("u", "")
    assert basic_credentials(None) is None
    assert basic_credentials("Basic") is None
    assert basic_credentials("Digest abc") is None


def test_checkers_accept_the_valid_shapes() -> None:
    assert check_movableink_event(track()) is None
    assert check_movableink_event(identify()) is None
    parsed = check_remerge_query(remerge_query(data=None))
    assert parsed == {
        "partner": "braze",
        "app_id": "com.example.app",
        "event": "purchase",
        "ts": 1_700_000_000,
        "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        "non_app_event": False,
    }
