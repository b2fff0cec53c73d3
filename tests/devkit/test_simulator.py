"""Tests for currents_devkit.simulator.server over real HTTP: Amplitude's response shapes, limits, dedup and faults."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from currents_devkit.simulator.server import (
    PLACEHOLDER_IDS,
    AmplitudeSimulator,
    FaultController,
    SimulatorConfig,
)
from sim_harness import T0, FakeClock, FakeSleep, Make, simulators

KEY = "test-api-key-1"


def ev(i: int, device: str | None = "device-0001", user: str | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "Purchase", "time": 1_700_000_000_000 + i, "insert_id": f"ins-{i}"}
    if device is not None:
        event["device_id"] = device
    if user is not None:
        event["user_id"] = user
    event.update(extra)
    return event


@pytest.fixture
async def make(clock: FakeClock, sleep: FakeSleep) -> AsyncIterator[Make]:
    async for factory in simulators(clock, sleep, api_keys=frozenset({KEY})):
        yield factory


@pytest.fixture
async def sim(make: Make) -> AmplitudeSimulator:
    return await make()


async def post(
    client: httpx.AsyncClient, url: str, events: Any, api_key: str | None = KEY, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"events": events, **extra}
    if api_key is not None:
        body["api_key"] = api_key
    return await client.post(url, content=orjson.dumps(body), headers={"content-type": "application/json"})


# --- accepted requests -----------------------------------------------------------------------------


async def test_accepted_request_shape_and_ingested_events(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    body = orjson.dumps({"api_key": KEY, "events": [ev(0), ev(1, device="device-0002")]})
    r = await client.post(sim.http_v2_url, content=body)
    assert r.status_code == 200
    assert r.json() == {
        "code": 200,
        "events_ingested": 2,
        "payload_size_bytes": len(body),
        "server_upload_time": int(T0 * 1000),
    }
    clock.advance(2.5)
    assert (await post(client, sim.batch_url, [ev(2)])).status_code == 200
    got = sim.events
    assert [e.event["insert_id"] for e in got] == ["ins-0", "ins-1", "ins-2"]
    assert [e.received_at for e in got] == [T0, T0, T0 + 2.5]
    assert [e.path for e in got] == ["/2/httpapi", "/2/httpapi", "/batch"]
    assert sim.stats.events_ingested == 3
    assert sim.stats.requests_by_status == {200: 2}
    assert sim.counts_per_second() == {
        "device-0001": {int(T0): 1, int(T0 + 2.5): 1},
        "device-0002": {int(T0): 1},
    }


async def test_gzip_body_accepted_and_sized_after_decoding(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    raw = orjson.dumps({"api_key": KEY, "events": [ev(i) for i in range(20)]})
    r = await client.post(sim.http_v2_url, content=gzip.compress(raw), headers={"content-encoding": "gzip"})
    assert r.status_code == 200
    assert r.json()["payload_size_bytes"] == len(raw)
    assert len(sim.events) == 20
    assert sim.stats.bytes_received < len(raw)


async def test_deflate_body_accepted_and_bad_encodings_refused_in_amplitude_shape(
    make: Make, client: httpx.AsyncClient
) -> None:
    sim = await make(http_v2_max_bytes=2000, batch_max_bytes=2000, movableink_max_bytes=2000)
    raw = orjson.dumps({"api_key": KEY, "events": [ev(0)]})
    r = await client.post(
        sim.http_v2_url, content=zlib.compress(raw), headers={"content-encoding": "deflate"}
    )
    assert r.status_code == 200 and r.json()["payload_size_bytes"] == len(raw)
    r = await client.post(sim.http_v2_url, content=raw, headers={"content-encoding": "br"})
    assert r.json() == {"code": 415, "error": "Unsupported content-encoding: br"}
    r = await client.post(sim.http_v2_url, content=b"not gzip", headers={"content-encoding": "gzip"})
    assert r.json() == {"code": 400, "error": "Invalid compressed body"}
    r = await client.post(
        sim.http_v2_url, content=gzip.compress(raw)[:-12], headers={"content-encoding": "gzip"}
    )
    assert r.json() == {"code": 400, "error": "Truncated compressed body"}
    bomb = gzip.compress(b"0" * 1_000_000)  # small on the wire, over every cap once decoded
    r = await client.post(sim.batch_url, content=bomb, headers={"content-encoding": "gzip"})
    assert r.json() == {"code": 413, "error": "Payload too large"}
    assert len(sim.events) == 1
    assert sim.connections_total == 1  # every refusal kept the connection open


async def test_keep_alive_connection_is_reused(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    for i in range(5):
        assert (await post(client, sim.http_v2_url, [ev(i)])).status_code == 200
    assert sim.connections_total == 1


async def test_any_key_accepted_when_none_configured(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(api_keys=frozenset())
    assert (await post(client, sim.http_v2_url, [ev(0)], api_key="whatever")).status_code == 200


# --- 400 -------------------------------------------------------------------------------------------


async def test_missing_api_key(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await post(client, sim.http_v2_url, [ev(0)], api_key=None)
    assert r.status_code == 400
    assert r.json() == {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
    assert sim.events == []
    assert sim.stats.events_rejected == 1


async def test_invalid_api_key_then_accepted_at_runtime(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await post(client, sim.http_v2_url, [ev(0)], api_key="rotated-key-2")
    assert r.status_code == 400
    assert r.json()["code"] == 400
    assert r.json()["error"].startswith("Invalid API key: ")
    assert "rotated-key-2" not in r.text  # never echo a whole key
    sim.accept_api_key("rotated-key-2")
    assert (await post(client, sim.http_v2_url, [ev(0)], api_key="rotated-key-2")).status_code == 200
    sim.revoke_api_key("rotated-key-2")
    assert (await post(client, sim.http_v2_url, [ev(1)], api_key="rotated-key-2")).status_code == 400
    assert len(sim.events) == 1


async def test_malformed_bodies(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await client.post(sim.http_v2_url, content=b"{not json")
    assert (r.status_code, r.json()["code"]) == (400, 400)
    r = await post(client, sim.http_v2_url, [])
    assert r.json() == {"code": 400, "error": "Request missing required field", "missing_field": "events"}
    r = await post(client, sim.http_v2_url, {"a": 1})
    assert (r.status_code, r.json()["code"]) == (400, 400)
    assert sim.events == []


async def test_per_event_problems_listed_and_nothing_ingested(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    events = [
        ev(0),
        {"time": 1, "device_id": "device-0001"},  # no event_type
        ev(2, time=1.5),  # time not an int
        ev(3, device=None),  # neither id
        ev(4),
        ev(5, device="abc"),  # too short
        ev(6, device=None, user="ab"),  # too short
        ev(7, time="12"),
    ]
    r = await post(client, sim.http_v2_url, events)
    assert r.status_code == 400
    assert r.json() == {
        "code": 400,
        "error": "Request missing required field",
        "events_with_invalid_fields": {"time": [2, 7]},
        "events_with_missing_fields": {"event_type": [1], "user_id_or_device_id": [3]},
        "events_with_invalid_id_lengths": {"device_id": [5], "user_id": [6]},
    }
    assert sim.events == []
    assert sim.stats.events_rejected == len(events)


async def test_only_id_length_problems_have_their_own_message(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await post(client, sim.http_v2_url, [ev(0, device=None, user="u1")])
    assert r.json() == {
        "code": 400,
        "error": "Invalid id length for user_id or device_id",
        "events_with_invalid_id_lengths": {"user_id": [0]},
    }


async def test_min_id_length_option_lowers_the_bound(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await post(client, sim.http_v2_url, [ev(0, device=None, user="u1")], options={"min_id_length": 1})
    assert r.status_code == 200
    assert sim.events[0].event["user_id"] == "u1"


@pytest.mark.parametrize("placeholder", sorted(PLACEHOLDER_IDS))
async def test_placeholder_user_ids_refused(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, placeholder: str
) -> None:
    events = [ev(0), ev(1, device=None, user=placeholder.upper())]
    r = await post(client, sim.http_v2_url, events, options={"min_id_length": 1})
    assert r.status_code == 400
    assert r.json()["events_with_invalid_fields"] == {"user_id": [1]}
    assert sim.events == []


async def test_all_zero_device_id_refused(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await post(client, sim.http_v2_url, [ev(0, device="0000-0000-0000"), ev(1, device="device-0000")])
    assert r.json()["events_with_invalid_fields"] == {"device_id": [0]}


async def test_first_invalid_index_only(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(first_invalid_index_only=True)
    r = await post(client, sim.http_v2_url, [ev(0, time=1.0), ev(1), ev(2, time=2.0), ev(3, time=3.0)])
    assert r.json()["events_with_invalid_fields"] == {"time": [0]}


async def test_batch_api_strips_short_ids(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await post(client, sim.batch_url, [ev(0, device="abc", user="user-0001")])
    assert r.status_code == 200
    stored = sim.events[0].event
    assert "device_id" not in stored
    assert stored["user_id"] == "user-0001"
    r = await post(client, sim.batch_url, [ev(1), ev(2, device="abc")])
    assert r.status_code == 400
    assert r.json()["events_with_invalid_id_lengths"] == {"device_id": [1]}
    assert len(sim.events) == 1


# --- 413 -------------------------------------------------------------------------------------------


async def test_too_many_events_is_413(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(http_v2_max_events=10)
    r = await post(client, sim.http_v2_url, [ev(i, device=f"device-{i:04}") for i in range(11)])
    assert r.status_code == 413
    assert r.json() == {"code": 413, "error": "Payload too large"}
    assert (
        await post(client, sim.http_v2_url, [ev(i, device=f"device-{i:04}") for i in range(10)])
    ).status_code == 200
    assert sim.stats.requests_by_status == {413: 1, 200: 1}


async def test_byte_cap_per_endpoint_and_after_decompression(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(http_v2_max_bytes=2000, batch_max_bytes=20_000, http_v2_eps=0)
    events = [ev(i) for i in range(30)]
    raw = orjson.dumps({"api_key": KEY, "events": events})
    assert 2000 < len(raw) < 20_000
    r = await client.post(sim.http_v2_url, content=gzip.compress(raw), headers={"content-encoding": "gzip"})
    assert r.status_code == 413
    assert r.json()["code"] == 413
    assert (await client.post(sim.batch_url, content=raw)).status_code == 200
    # over every cap: refused by the server itself, same body shape
    r = await client.post(sim.batch_url, content=b"x" * 20_001)
    assert r.json() == {"code": 413, "error": "Payload too large"}
    assert len(sim.events) == 30


# --- 429 -------------------------------------------------------------------------------------------


async def test_device_rate_limit_throttles_only_that_device(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (
        await post(client, sim.http_v2_url, [ev(i, device="hot-device") for i in range(30)])
    ).status_code == 200
    clock.advance(0.5)
    mixed = [ev(100, device="cold-device"), ev(101, device="hot-device"), ev(102, device="cold-device")]
    r = await post(client, sim.http_v2_url, mixed)
    assert r.status_code == 429
    assert r.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"hot-device": 31},
        "throttled_users": {},
        "throttled_events": [1],
        "exceeded_daily_quota_devices": {},
        "exceeded_daily_quota_users": {},
    }
    assert len(sim.events) == 30  # the throttled request ingested nothing
    assert (await post(client, sim.http_v2_url, [mixed[0], mixed[2]])).status_code == 200
    clock.advance(0.5)  # the first 30 events leave the 1 s window
    assert (await post(client, sim.http_v2_url, [mixed[1]])).status_code == 200
    assert len(sim.events) == 33


async def test_refused_requests_do_not_count_towards_the_rate(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    assert (await post(client, sim.http_v2_url, [ev(i) for i in range(31)])).status_code == 429
    assert (await post(client, sim.http_v2_url, [ev(i) for i in range(30)])).status_code == 200


async def test_user_rate_limit(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    events = [ev(i, device=f"device-{i:04}", user="busy-user") for i in range(31)]
    events.append(ev(99, device=None, user="quiet-user"))
    r = await post(client, sim.http_v2_url, events)
    assert r.status_code == 429
    body = r.json()
    assert body["throttled_devices"] == {}
    assert body["throttled_users"] == {"busy-user": 31}
    assert body["throttled_events"] == list(range(31))


async def test_batch_endpoint_has_its_own_higher_limit(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    r = await post(client, sim.batch_url, [ev(i) for i in range(1000)])
    assert r.status_code == 200
    r = await post(client, sim.batch_url, [ev(1000)])
    assert r.status_code == 429
    assert r.json()["eps_threshold"] == 1000
    assert r.json()["throttled_devices"] == {"device-0001": 1001}


async def test_rate_window_is_configurable(make: Make, client: httpx.AsyncClient, clock: FakeClock) -> None:
    sim = await make(http_v2_eps=2, rate_window_s=30.0)
    assert (await post(client, sim.http_v2_url, [ev(i) for i in range(60)])).status_code == 200
    clock.advance(29.0)
    r = await post(client, sim.http_v2_url, [ev(60)])
    assert r.status_code == 429
    assert r.json()["throttled_devices"] == {"device-0001": 3}  # ceil(61 / 30)
    clock.advance(1.0)
    assert (await post(client, sim.http_v2_url, [ev(60)])).status_code == 200


async def test_daily_quota(make: Make, client: httpx.AsyncClient, clock: FakeClock) -> None:
    clock.now = 86400 * 20000 + 100.0
    sim = await make(daily_quota=50, http_v2_eps=0)
    assert (
        await post(client, sim.http_v2_url, [ev(i, user="user-0001") for i in range(50)])
    ).status_code == 200
    clock.advance(3600)
    r = await post(client, sim.http_v2_url, [ev(50, device="other-device"), ev(51, user="user-0001")])
    assert r.status_code == 429
    body = r.json()
    assert body["exceeded_daily_quota_devices"] == {"device-0001": 51}
    assert body["exceeded_daily_quota_users"] == {"user-0001": 51}
    assert body["throttled_devices"] == {}
    assert body["throttled_events"] == [1]
    clock.now = 86400 * 20001 + 1.0  # next UTC day
    assert (await post(client, sim.http_v2_url, [ev(51, user="user-0001")])).status_code == 200


# --- dedup -----------------------------------------------------------------------------------------


async def test_duplicates_answered_200_but_not_ingested(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    assert (await post(client, sim.http_v2_url, [ev(0), ev(1)])).status_code == 200
    r = await post(client, sim.http_v2_url, [ev(1), ev(2), ev(1, device="device-0002")])
    assert r.status_code == 200
    assert r.json()["events_ingested"] == 3
    assert [(e.event["insert_id"], e.event["device_id"]) for e in sim.events] == [
        ("ins-0", "device-0001"),
        ("ins-1", "device-0001"),
        ("ins-2", "device-0001"),
        ("ins-1", "device-0002"),
    ]
    assert [e.event["insert_id"] for e in sim.duplicates] == ["ins-1"]
    assert (sim.stats.events_ingested, sim.stats.events_duplicate) == (4, 1)


async def test_dedup_falls_back_to_user_id_and_ignores_events_without_insert_id(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    a = ev(0, device=None, user="user-0001")
    b = ev(0, device=None, user="user-0002")  # same insert_id, another user: not a duplicate
    plain = {"event_type": "x", "device_id": "device-0001"}
    assert (await post(client, sim.http_v2_url, [a, b, plain])).status_code == 200
    assert (await post(client, sim.http_v2_url, [a, plain])).status_code == 200
    assert sim.stats.events_duplicate == 1
    assert sim.stats.events_ingested == 4


async def test_counters_without_keeping_events(make: Make, client: httpx.AsyncClient) -> None:
    sim = await make(keep_events=False)
    for _ in range(2):
        assert (await post(client, sim.http_v2_url, [ev(0), ev(1)])).status_code == 200
    assert sim.events == []
    assert sim.duplicates == []
    assert (sim.stats.events_ingested, sim.stats.events_duplicate) == (2, 2)


async def test_dedup_memory_is_bounded() -> None:
    sim = AmplitudeSimulator(SimulatorConfig(dedup_capacity=4, log_interval_s=0))
    dedup = sim._dedup
    assert dedup is not None

    def dups(*ids: int) -> list[int]:
        _, found = dedup.split([ev(i) for i in ids])
        return [int(e["insert_id"][4:]) for e in found]

    assert dups(1, 2, 1) == [1]
    assert dups(3, 4, 3) == [3]
    assert dups(5, 6) == []  # two generations rotated: 1 and 2 are forgotten, 5 and 6 remembered
    assert dups(1, 6) == [6]


# --- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 403])
async def test_fail_next_n(sim: AmplitudeSimulator, client: httpx.AsyncClient, status: int) -> None:
    sim.faults.fail_next(2, status, retry_after=3)
    for _ in range(2):
        r = await post(client, sim.http_v2_url, [ev(0)])
        assert r.status_code == status
        assert r.json()["code"] == status
        assert r.headers["retry-after"] == "3"
    r = await post(client, sim.http_v2_url, [ev(0)])
    assert r.status_code == 200
    assert "retry-after" not in r.headers
    assert len(sim.events) == 1
    assert sim.stats.requests_by_status == {status: 2, 200: 1}


async def test_forbidden_body_and_custom_429_body(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    custom = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"device-0001": 99},
        "throttled_users": {},
        "throttled_events": [0],
    }
    sim.faults.fail_next(1, 403)
    sim.faults.fail_next(1, 429, body=custom, retry_after=0.5)
    r = await post(client, sim.http_v2_url, [ev(0)])
    assert r.json() == {"code": 403, "error": "Forbidden"}
    r = await post(client, sim.http_v2_url, [ev(0)])
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (429, custom, "0.5")
    assert sim.events == []


async def test_invalid_api_key_fault(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    sim.faults.invalid_api_key_next(1)
    r = await post(client, sim.http_v2_url, [ev(0)])
    assert r.status_code == 400
    assert r.json()["error"].startswith("Invalid API key")
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 200


async def test_fault_with_ingest_stores_then_fails(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    sim.faults.fail_next(1, 502, ingest=True)
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 502
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 200  # the client's retry
    assert len(sim.events) == 1
    assert sim.stats.events_duplicate == 1


async def test_delay_uses_injected_sleep(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, sleep: FakeSleep
) -> None:
    sim.faults.delay_s = 1.5
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 200
    assert sleep.calls == [1.5]
    sim.faults.clear()
    assert (await post(client, sim.http_v2_url, [ev(1)])).status_code == 200
    assert sleep.calls == [1.5]


async def test_down_mode_503_and_close(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    sim.faults.down("503")
    for _ in range(3):
        assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 503
    assert (await client.get(sim.url + "/_sim/stats")).status_code == 200  # control is never faulted
    sim.faults.down("close")
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, sim.http_v2_url, [ev(0)])
    sim.faults.up()
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 200
    assert sim.stats.requests_by_status == {503: 3, 0: 1, 200: 1}


async def test_close_next(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    sim.faults.close_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, sim.http_v2_url, [ev(0)])
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 200


def _storm_statuses(seed: int, n: int) -> list[int]:
    faults = FaultController()
    faults.storm(0.5, seed=seed, statuses=(500, 503))
    return [0 if (f := faults.next_fault()) is None else f.status for _ in range(n)]


async def test_storm_is_reproducible_with_a_seed(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    expected = _storm_statuses(7, 40)
    assert {0, 500, 503} == set(expected)
    assert _storm_statuses(8, 40) != expected
    sim.faults.storm(0.5, seed=7, statuses=(500, 503))
    got = [(await post(client, sim.http_v2_url, [ev(i)])).status_code for i in range(40)]
    assert got == [200 if s == 0 else s for s in expected]
    assert sim.stats.events_ingested == expected.count(0)


async def test_storm_probability_bounds() -> None:
    faults = FaultController()
    faults.storm(1.0, seed=1)
    assert all(
        f is not None and f.status in (500, 502, 503, 504) for f in (faults.next_fault() for _ in range(50))
    )
    faults.storm(0.0, seed=1)
    assert all(faults.next_fault() is None for _ in range(50))
    with pytest.raises(ValueError):
        faults.storm(1.5)


# --- HTTP control ----------------------------------------------------------------------------------


async def test_faults_over_http(sim: AmplitudeSimulator, client: httpx.AsyncClient, sleep: FakeSleep) -> None:
    spec = {"fail_next": [{"count": 1, "status": 504, "retry_after": 2}], "delay_s": 0.25}
    r = await client.post(sim.url + "/_sim/faults", content=orjson.dumps(spec))
    assert r.status_code == 200
    assert r.json()["faults"]["next"] == [504]
    r = await post(client, sim.http_v2_url, [ev(0)])
    assert (r.status_code, r.headers["retry-after"]) == (504, "2")
    assert sleep.calls == [0.25]

    await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"clear": True, "down": "503"}))
    assert (await post(client, sim.http_v2_url, [ev(0)])).status_code == 503
    await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"down": None}))
    assert (await post(client, sim.http_v2_url, [ev(0)], api_key="late-key-9")).status_code == 400
    await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"add_api_keys": ["late-key-9"]}))
    assert (await post(client, sim.http_v2_url, [ev(0)], api_key="late-key-9")).status_code == 200

    r = await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"fail_next": {"count": 1}}))
    assert (r.status_code, r.json()["code"]) == (400, 400)
    r = await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"down": "sideways"}))
    assert r.status_code == 400


async def test_stats_give_the_span_of_ingestion(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (sim.stats.first_ingest_at, sim.stats.last_ingest_at) == (None, None)
    await post(client, sim.http_v2_url, [ev(0)])
    clock.advance(1.5)
    await post(client, sim.http_v2_url, [ev(1), ev(2)])
    clock.advance(3.0)
    await post(client, sim.http_v2_url, [ev(2)])  # only a duplicate: nothing ingested, the span stays
    stats = (await client.get(sim.url + "/_sim/stats")).json()["stats"]
    assert (stats["first_ingest_at"], stats["last_ingest_at"]) == (T0, T0 + 1.5)
    assert stats["events_ingested"] == 3


async def test_stats_events_and_reset_over_http(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await post(client, sim.http_v2_url, [ev(0), ev(1)])
    await post(client, sim.http_v2_url, [ev(1)])
    await post(client, sim.http_v2_url, [ev(2)], api_key=None)
    stats = (await client.get(sim.url + "/_sim/stats")).json()
    assert stats["code"] == 200
    assert stats["stats"]["requests_by_status"] == {"200": 2, "400": 1}
    assert stats["stats"]["events_ingested"] == 2
    assert stats["stats"]["events_duplicate"] == 1
    assert stats["stats"]["events_rejected"] == 1
    assert stats["events_kept"] == 2
    rows = (await client.get(sim.url + "/_sim/events", params={"offset": 1, "limit": 5})).json()["events"]
    assert rows == [{"received_at": T0, "path": "/2/httpapi", "event": ev(1)}]

    sim.faults.down("503")
    assert (await client.post(sim.url + "/_sim/reset")).json() == {"code": 200}
    assert sim.events == []
    assert sim.stats.requests_total == 0
    assert (await post(client, sim.http_v2_url, [ev(1)])).status_code == 200  # faults and dedup forgotten


async def test_unknown_paths_and_methods(sim: AmplitudeSimulator, client: httpx.AsyncClient) -> None:
    r = await client.get(sim.url + "/nope")
    assert (r.status_code, r.json()["code"]) == (404, 404)
    r = await client.get(sim.http_v2_url)
    assert (r.status_code, r.json()["code"]) == (405, 405)
    r = await client.get(sim.url + "/_sim/nope")
    assert r.status_code == 404
    r = await client.get(sim.url + "/_sim/events", params={"limit": "many"})
    assert (r.status_code, r.json()["code"]) == (400, 400)
