"""Tests for the simulator's slow and missing answers (currents_devkit.simulator.faults): a request held
open without an answer (``hang``) and a body trickled a few bytes at a time (``trickle_bps``)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from amplitude_harness import eventually, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from sim_harness import FakeClock, FakeSleep, Make, simulators

EVENT = {
    "event_type": "Purchase",
    "time": 1_700_000_000_000,
    "insert_id": "ins-0",
    "device_id": "device-0001",
}
BODY = orjson.dumps({"api_key": "any-key", "events": [EVENT]})


@pytest.fixture
async def make(clock: FakeClock, sleep: FakeSleep) -> AsyncIterator[Make]:
    async for factory in simulators(clock, sleep):
        yield factory


@pytest.fixture
async def sim(make: Make) -> AmplitudeSimulator:
    return await make()


async def test_a_hung_request_gets_no_answer_and_ends_when_its_client_gives_up(
    sim: AmplitudeSimulator,
) -> None:
    sim.faults.hang_next(1)
    async with httpx.AsyncClient(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(sim.http_v2_url, content=BODY)
        assert sim.stats.requests_hung == 1
        assert sim.stats.requests_by_status == {}  # never answered, so never counted as an answer
        assert sim.stats.events_ingested == 0
        # The simulator notices the client leaving: nothing stays open on its side.
        await eventually(lambda: sim.stats.open_requests == 0, within=5, message="the hung request to end")
        assert sim.stats.max_open_requests == 1
        assert (await client.post(sim.http_v2_url, content=BODY)).status_code == 200  # one request only


async def test_down_hang_holds_every_request_until_up(sim: AmplitudeSimulator) -> None:
    sim.faults.down("hang")
    assert sim.faults.describe()["down"] == "hang"
    async with httpx.AsyncClient(timeout=0.2) as client:
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                await client.post(sim.http_v2_url, content=BODY)
        sim.faults.up()
        assert (await client.post(sim.http_v2_url, content=BODY)).status_code == 200
    assert sim.stats.requests_hung == 3
    assert sim.stats.events_ingested == 1


async def test_a_trickled_body_arrives_whole_in_small_timed_writes(
    sim: AmplitudeSimulator, client: httpx.AsyncClient, sleep: FakeSleep
) -> None:
    """The answer is the normal one (the events are ingested), written ``bytes_per_s / 10`` bytes at a
    time with a pause of a tenth of a second after each write (at least one byte per write)."""
    sim.faults.set_trickle(40)
    response = await client.post(sim.http_v2_url, content=BODY)
    assert response.status_code == 200
    answer = response.json()
    assert answer["events_ingested"] == 1
    assert len(sleep.calls) == math.ceil(len(response.content) / 4)
    assert set(sleep.calls) == {0.1}
    sleep.calls.clear()
    sim.faults.set_trickle(2)
    assert (await client.post(sim.http_v2_url, content=BODY)).status_code == 200  # a duplicate, answered 200
    assert len(sleep.calls) > 0 and set(sleep.calls) == {0.5}  # one byte every half second
    assert sim.stats.open_requests == 0
    sim.faults.clear()
    sleep.calls.clear()
    assert (await client.post(sim.http_v2_url, content=BODY)).status_code == 200
    assert sleep.calls == []


async def test_a_trickled_body_is_really_slow_and_a_client_leaving_ends_it() -> None:
    """With the real sleep: the headers come at once, the body does not; a client that gives up ends the
    trickle on the simulator's side too."""
    async with simulator() as sim:
        sim.faults.set_trickle(2)  # the ~90-byte answer would take 45 s
        async with httpx.AsyncClient(timeout=5) as client:
            async with client.stream("POST", sim.http_v2_url, content=BODY) as response:
                assert response.status_code == 200
                first = await anext(response.aiter_raw())
                assert 0 < len(first) < int(response.headers["content-length"])
            await eventually(lambda: sim.stats.open_requests == 0, within=5, message="the trickle to end")


async def test_slow_answers_are_scriptable_over_http_and_per_destination(
    sim: AmplitudeSimulator, client: httpx.AsyncClient
) -> None:
    spec: dict[str, Any] = {"destination": "amplitude", "hang_next": 2, "trickle_bps": 8}
    answer = (await client.post(sim.url + "/_sim/faults", content=orjson.dumps(spec))).json()
    own = answer["faults"]["destinations"]["amplitude"]
    assert own["queued"] == 2 and own["trickle_bps"] == 8
    assert (
        answer["faults"]["trickle_bps"] == 0.0
        and answer["faults"]["destinations"]["remerge"]["trickle_bps"] is None
    )
    assert sim.faults.trickle_for("amplitude") == 8 and sim.faults.trickle_for("movableink") == 0
    spec = {"destination": "amplitude", "trickle_bps": None, "down": "hang"}
    answer = (await client.post(sim.url + "/_sim/faults", content=orjson.dumps(spec))).json()
    assert answer["faults"]["destinations"]["amplitude"]["down"] == "hang"
    assert sim.faults.trickle_for("amplitude") == 0
    bad = await client.post(sim.url + "/_sim/faults", content=orjson.dumps({"down": "sleep"}))
    assert bad.status_code == 400 and "'hang'" in bad.json()["error"]
    assert (await client.get(sim.url + "/_sim/stats")).json()["stats"]["requests_hung"] == 0
