"""Tests for consumer.delivery.engine: the real engine and sink against the simulator over HTTP, with faults.

Every scenario checks the engine's contract: each submitted event ends exactly once, valid events
arrive exactly as sent (same ``insert_id``), invalid ones are dead-lettered with the reason Amplitude
gave, and nothing is left pending.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from amplitude_harness import (
    KEY,
    RUN_SIZES,
    Engine,
    engine,
    event,
    eventually,
    insert_ids,
    pending,
    settings,
    simulator,
)
from currents_devkit.simulator.server import AmplitudeSimulator

from consumer.events import Queued, json_payload


async def deliver(e: Engine, events: list[dict[str, Any]], within: float = 30.0) -> None:
    await e.submit_all(events)
    assert await e.engine.drain(within), f"{e.engine.pending} events still pending"


def assert_all_ended_once(e: Engine, events: list[dict[str, Any]]) -> None:
    assert e.engine.pending == 0
    assert set(e.ends) == {ev["insert_id"] for ev in events}
    assert set(e.ends.values()) == {1}, "an event ended twice"


def assert_arrived_exactly(sim: AmplitudeSimulator, events: list[dict[str, Any]]) -> None:
    """Each event arrived once, byte-for-byte the event that was sent."""
    got = sim.events
    assert sorted(insert_ids(got)) == sorted(ev["insert_id"] for ev in events)
    by_id = {e.event["insert_id"]: e.event for e in got}
    for ev in events:
        assert by_id[ev["insert_id"]] == ev


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_every_event_arrives_exactly_as_sent(tmp_path: Path, runs: int) -> None:
    events = [event(i, user=f"user-{i % 50:03d}", event_properties={"n": i, "s": "é"}) for i in range(300)]
    async with simulator() as sim, engine(settings(sim, tmp_path), runs) as e:
        await deliver(e, events)
        assert_arrived_exactly(sim, events)
        assert_all_ended_once(e, events)
        assert e.delivered() == {ev["insert_id"] for ev in events}
        assert e.metrics.registry.get_sample_value(
            "currents_requests_total", {"destination": "amplitude", "status": "200"}
        )
        assert e.records() == []


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_a_5xx_storm_loses_nothing_and_duplicates_nothing(tmp_path: Path, runs: int) -> None:
    events = [event(i) for i in range(400)]
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_BATCH_EVENTS="25"), runs) as e:
        sim.faults.storm(0.6, seed=7, statuses=(500, 502, 503, 504), retry_after=0.02)
        await deliver(e, events)
        failures = sum(n for status, n in sim.stats.requests_by_status.items() if status >= 500)
        assert failures >= 10, sim.stats.requests_by_status
        assert_arrived_exactly(sim, events)
        assert sim.stats.events_duplicate == 0
        assert_all_ended_once(e, events)
        assert e.records() == []


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_a_destination_that_is_down_is_probed_once_per_backoff_not_hammered(
    tmp_path: Path, runs: int
) -> None:
    """50 one-event requests wait while every answer is 503: one probe per backoff (0.2 s here), then
    full concurrency again as soon as a probe gets through."""
    events = [event(i) for i in range(50)]
    env = {"CURRENTS_BATCH_EVENTS": "1", "CURRENTS_MAX_BACKOFF": "200ms"}
    async with simulator() as sim, engine(settings(sim, tmp_path, **env), runs) as e:
        sim.faults.down()
        await e.submit_all(events)
        # The first failures can come together (up to --concurrency requests were already in flight).
        await eventually(lambda: sim.stats.requests_by_status.get(503, 0) >= 9, within=10, message="probes")
        started = asyncio.get_running_loop().time()
        await eventually(lambda: sim.stats.requests_by_status.get(503, 0) >= 15, within=20, message="probes")
        # Six more failed probes, each at least one backoff after the one before (without the gate
        # the 50 waiting requests would have produced them within milliseconds).
        assert asyncio.get_running_loop().time() - started >= 6 * 0.2 * 0.9
        assert e.engine.pending == 50
        sim.faults.up()
        await deliver(e, [])
        assert_arrived_exactly(sim, events)
        assert_all_ended_once(e, events)


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_a_500_after_storing_is_deduplicated_by_insert_id(tmp_path: Path, runs: int) -> None:
    """After a 500/502/504 Amplitude may have kept the events; the resend carries the same ids."""
    events = [event(i) for i in range(50)]
    async with simulator() as sim, engine(settings(sim, tmp_path), runs) as e:
        sim.faults.fail_next(2, 502, ingest=True, retry_after=0.02)
        await deliver(e, events)
        assert sim.stats.events_duplicate > 0
        assert_arrived_exactly(sim, events)
        assert_all_ended_once(e, events)


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_dropped_connections_are_retried(tmp_path: Path, runs: int) -> None:
    events = [event(i) for i in range(60)]
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_BATCH_EVENTS="10"), runs) as e:
        sim.faults.close_next(4)
        await deliver(e, events)
        assert_arrived_exactly(sim, events)
        assert (
            e.metrics.registry.get_sample_value(
                "currents_requests_total", {"destination": "amplitude", "status": "0"}
            )
            == 4
        )


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_a_project_wide_429_waits_as_asked_then_delivers(tmp_path: Path, runs: int) -> None:
    events = [event(i) for i in range(20)]
    async with simulator() as sim, engine(settings(sim, tmp_path), runs) as e:
        sim.faults.fail_next(1, 429, retry_after=0.05)
        await deliver(e, events)
        assert sim.stats.requests_by_status[429] == 1
        assert_arrived_exactly(sim, events)


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_hot_devices_are_held_back_and_everyone_else_flows(tmp_path: Path, runs: int) -> None:
    """The engine paces nothing here (a huge device rate): the simulator answers 429 for the hot devices,
    and only their events wait; every other event is resent at once and arrives."""
    hot = [f"hot-device-{k}" for k in range(3)]
    events = [event(i, device=hot[i % 3]) for i in range(150)] + [event(i) for i in range(150, 450)]
    async with simulator() as sim:
        s = settings(sim, tmp_path, CURRENTS_DEVICE_RATE="100000", CURRENTS_THROTTLE_PENALTY="200ms")
        async with engine(s, runs) as e:
            await e.submit_all(events)
            await eventually(
                lambda: e.engine.throttled_keys() > 0, within=10, message="hot devices held back"
            )
            cold = {ev["insert_id"] for ev in events[150:]}
            await eventually(lambda: cold <= e.delivered(), within=10, message="cold events delivered")
            assert await e.engine.drain(30)
            assert sim.stats.requests_by_status[429] >= 1
            assert_arrived_exactly(sim, events)
            assert_all_ended_once(e, events)
            for device, per_second in sim.counts_per_second().items():
                assert max(per_second.values()) <= 30, device


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_the_engine_paces_each_device_on_the_wire(tmp_path: Path, runs: int) -> None:
    """With the simulator counting but never refusing, what arrives per device and per whole second is
    what the engine sent: never above the device rate, however batching groups the events.

    Four hot devices have a backlog while a live source keeps other events coming, so that requests
    leave at moments the other traffic decides (a long batch age makes the grouping coarse)."""
    hot = [f"hot-device-{k}" for k in range(4)]
    backlog = [event(i, device=hot[i % 4], user=f"user-{i % 4}") for i in range(360)]
    backlog += [event(i, user="user-0") for i in range(360, 380)]  # the same user on other devices
    live = [event(i) for i in range(1000, 1800)]
    async with (
        simulator(http_v2_eps=0) as sim,
        engine(settings(sim, tmp_path, CURRENTS_BATCH_AGE="300ms"), runs) as e,
    ):
        await e.submit_all(backlog)
        for i, ev in enumerate(live):
            await e.engine.submit(pending(ev, i))
            await asyncio.sleep(0.004)  # a source delivering about 250 events/s
        assert await e.engine.drain(30)
        assert_arrived_exactly(sim, backlog + live)
        for field in ("device_id", "user_id"):
            for key, per_second in sim.counts_per_second(field).items():
                assert max(per_second.values()) <= 30, (field, key, per_second)
        # 110 events of user-0 at 30/s cannot all be in fewer than four whole seconds
        assert len(sim.counts_per_second("user_id")["user-0"]) >= 4


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_413_splits_until_requests_fit(tmp_path: Path, runs: int) -> None:
    events = [event(i) for i in range(120)]
    big = event(120, event_properties={"blob": "x" * 5000})
    async with simulator(http_v2_max_bytes=3000) as sim, engine(settings(sim, tmp_path), runs) as e:
        await deliver(e, [*events, big])
        assert sim.stats.requests_by_status[413] >= 3
        assert_arrived_exactly(sim, events)
        assert e.dead_lettered() == {big["insert_id"]: "payload_too_large"}
        (record,) = e.records()
        assert record["event"] == big
        assert record["detail"] == "413 for a single event"


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_batch_bytes_bounds_the_whole_request_body(tmp_path: Path, runs: int) -> None:
    """``--batch-bytes`` set to Amplitude's cap never draws a 413: the body around the events counts."""
    events = [event(i, event_properties={"pad": "p" * (i % 40)}) for i in range(400)]
    async with simulator(http_v2_max_bytes=4000) as sim:
        s = settings(sim, tmp_path, CURRENTS_BATCH_BYTES="4000", CURRENTS_BATCH_AGE="1s")
        async with engine(s, runs) as e:
            await deliver(e, events)
            assert 413 not in sim.stats.requests_by_status
            assert_arrived_exactly(sim, events)
            # the single event that cannot fit in any request is refused before any request
            huge = event(999, event_properties={"blob": "y" * 4000})
            await deliver(e, [huge])
            assert e.dead_lettered() == {huge["insert_id"]: "payload_too_large"}
            assert 413 not in sim.stats.requests_by_status


INVALID: dict[int, tuple[dict[str, Any], str]] = {
    3: ({"time": "yesterday"}, "invalid_field:time"),
    5: ({"event_type": None}, "missing_field:event_type"),
    7: ({"device_id": "undefined"}, "invalid_field:device_id"),  # a placeholder Amplitude refuses
    9: ({"device_id": None, "user_id": "abc"}, "invalid_id_length:user_id"),
    11: ({"insert_id": 42}, "invalid_field:insert_id"),
}


@pytest.mark.parametrize("first_only", [False, True], ids=["all-indices", "first-index-only"])
@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_partial_400_dead_letters_exactly_the_invalid_events(
    tmp_path: Path, first_only: bool, runs: int
) -> None:
    events = [event(i, **INVALID[i][0]) if i in INVALID else event(i) for i in range(40)]
    async with (
        simulator(first_invalid_index_only=first_only) as sim,
        engine(settings(sim, tmp_path, AMPLITUDE_MIN_ID_LENGTH="5"), runs) as e,
    ):
        await e.submit_all(events, source="input/part-0.avro")
        assert await e.engine.drain(20)
        valid = [ev for i, ev in enumerate(events) if i not in INVALID]
        assert_arrived_exactly(sim, valid)
        assert e.engine.pending == 0
        records = e.records()
        assert len(records) == len(INVALID)
        for record in records:
            index = record["position"]["record"]
            assert record["position"] == {"file": "input/part-0.avro", "record": index}
            assert record["reason"] == INVALID[index][1]
            assert record["event"] == events[index]
            assert record["event"].get("insert_id") == events[index]["insert_id"]
            assert record["time"].endswith("Z")
            assert record["event_type"] == "users.behaviors.CustomEvent"


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_an_invalid_key_keeps_every_event_until_the_key_is_accepted(tmp_path: Path, runs: int) -> None:
    events = [event(i) for i in range(50)]
    async with (
        simulator(api_keys=frozenset({"some-other-key"})) as sim,
        engine(settings(sim, tmp_path), runs) as e,
    ):

        def failing_gauge() -> float | None:
            return e.metrics.registry.get_sample_value(
                "currents_credentials_failing", {"destination": "amplitude"}
            )

        assert failing_gauge() == 0
        await e.submit_all(events)
        await eventually(lambda: failing_gauge() == 1, within=10, message="credentials alert")
        # A 503 says nothing about the key: the alert stays up.
        sim.faults.fail_next(2, 503)
        await eventually(lambda: sim.stats.requests_by_status.get(503) == 2, within=10, message="503s")
        await eventually(lambda: sim.stats.requests_by_status.get(400, 0) >= 3, within=10, message="retries")
        assert failing_gauge() == 1
        assert e.engine.pending == 50
        assert not e.outcomes
        sim.accept_api_key(KEY)
        assert await e.engine.drain(20)
        assert failing_gauge() == 0
        assert_arrived_exactly(sim, events)
        assert e.records() == []


async def test_submit_blocks_while_full_and_everything_flows_once_amplitude_is_back(tmp_path: Path) -> None:
    bound = 40
    events = [event(i) for i in range(400)]
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_MAX_PENDING=str(bound))) as e:
        sim.faults.down()
        peak = 0

        def observe(items: list[Queued], outcome: str, reason: str) -> None:
            nonlocal peak
            peak = max(peak, e.engine.pending)
            Engine.on_done(e, items, outcome, reason)

        e.on_done = observe  # type: ignore[method-assign]
        submitted = 0

        async def source() -> None:
            nonlocal submitted, peak
            for i, ev in enumerate(events):
                await e.engine.submit(pending(ev, i))
                submitted += 1
                peak = max(peak, e.engine.pending)

        task = asyncio.create_task(source())
        await eventually(lambda: not e.engine.has_room, within=10, message="engine full")
        assert submitted == bound
        failed_so_far = sim.stats.requests_total
        await eventually(lambda: sim.stats.requests_total >= failed_so_far + 5, within=10, message="retries")
        assert submitted == bound, "the source kept going while the engine was full"
        assert not task.done()
        sim.faults.up()
        await asyncio.wait_for(task, 30)
        assert await e.engine.drain(30)
        assert peak <= bound
        assert_arrived_exactly(sim, events)
        assert_all_ended_once(e, events)


async def test_a_freed_request_slot_is_used_at_once(tmp_path: Path) -> None:
    """One request at a time and a long batch age: only finished requests can move the next batch."""
    events = [event(i) for i in range(60)]
    async with simulator() as sim:
        s = settings(
            sim, tmp_path, CURRENTS_CONCURRENCY="1", CURRENTS_BATCH_EVENTS="5", CURRENTS_BATCH_AGE="1h"
        )
        async with engine(s) as e:
            await deliver(e, events, within=10)
            assert sim.stats.requests_by_status[200] == 12
            assert_arrived_exactly(sim, events)


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_daily_quota_of_the_engine_dead_letters_the_excess(tmp_path: Path, runs: int) -> None:
    events = [event(i, device="busy-device") for i in range(8)] + [event(i) for i in range(8, 12)]
    async with (
        simulator() as sim,
        engine(settings(sim, tmp_path, CURRENTS_DEVICE_DAILY_LIMIT="5"), runs) as e,
    ):
        await deliver(e, events)
        assert sorted(e.dead_lettered().values()) == ["daily_quota"] * 3
        assert len(sim.events) == 9
        assert Counter(r["reason"] for r in e.records()) == {"daily_quota": 3}


@pytest.mark.parametrize("runs", RUN_SIZES)
async def test_daily_quota_reported_by_amplitude_dead_letters_those_events(tmp_path: Path, runs: int) -> None:
    """Amplitude's own count says the device is over: its events go to dead-letter, the rest arrive."""
    events = [event(i, device="busy-device") for i in range(4)] + [event(i) for i in range(4, 10)]
    async with simulator(daily_quota=3) as sim, engine(settings(sim, tmp_path), runs) as e:
        await deliver(e, events)
        dead = e.dead_lettered()
        assert set(dead.values()) == {"daily_quota"}
        assert {ev["insert_id"] for ev in events[4:]} <= e.delivered()
        assert len(dead) + len(e.delivered()) == len(events)
        assert sim.stats.requests_by_status[429] >= 1


async def test_a_429_with_retry_after_holds_the_device_that_long(tmp_path: Path) -> None:
    """Amplitude's ``Retry-After`` on a 429 replaces the configured penalty (an hour here)."""
    throttled = {"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30}
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_THROTTLE_PENALTY="1h")) as e:
        sim.faults.fail_next(
            1,
            429,
            body={**throttled, "throttled_devices": {"dev-000000": 31}, "throttled_events": [0]},
            retry_after=0.1,
        )
        await deliver(e, [event(0)], within=10)
        assert_arrived_exactly(sim, [event(0)])


async def test_a_429_naming_a_device_does_not_slow_its_user_on_other_devices(tmp_path: Path) -> None:
    throttled = {"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30}
    on_hot = event(0, device="hot-device", user="shared-user")
    elsewhere = event(1, device="other-device", user="shared-user")
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_THROTTLE_PENALTY="1s")) as e:
        sim.faults.fail_next(
            1, 429, body={**throttled, "throttled_devices": {"hot-device": 31}, "throttled_events": [0]}
        )
        await e.engine.submit(pending(on_hot, 0))
        await eventually(lambda: e.engine.throttled_keys() == 1, within=10, message="hot device held")
        await e.engine.submit(pending(elsewhere, 1))
        assert await e.engine.drain(10)
        arrived = {ev.event["insert_id"]: ev.received_at for ev in sim.events}
        assert arrived[elsewhere["insert_id"]] < arrived[on_hot["insert_id"]]


async def test_a_failing_callback_or_pump_turn_strands_no_event(tmp_path: Path) -> None:
    """A bug below the engine's contract (an acknowledgement callback that raises, a turn of the pump
    that raises) is logged; every other event still ends, and the engine goes on delivering."""
    events = [event(i) for i in range(20)]
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_RETRY_WINDOW="1s")) as e:
        sim.faults.down()
        original = e.engine.live.on_done
        raised: list[str] = []

        def flaky_callback(items: list[Any], outcome: str, reason: str) -> None:
            if not raised:
                raised.extend(json_payload(item.encoded)["insert_id"] for item in items)
                raise RuntimeError("a bug in an acknowledgement callback")
            original(items, outcome, reason)

        e.engine.live.on_done = flaky_callback
        await e.submit_all(events)
        assert await e.engine.drain(20), "events stranded after a callback raised"
        assert len(raised) == 1
        assert set(e.dead_lettered()) == {ev["insert_id"] for ev in events} - set(raised)

        sim.faults.up()
        admit = e.engine.project.admit
        failed: list[int] = []

        def flaky_admit(n: int, now: float) -> float:
            if not failed:
                failed.append(n)
                raise RuntimeError("a bug in one turn of the pump")
            return admit(n, now)

        e.engine.project.admit = flaky_admit  # type: ignore[method-assign]
        more = [event(i) for i in range(100, 110)]
        await deliver(e, more)
        assert failed
        assert_arrived_exactly(sim, more)


async def test_closing_right_after_an_offer_stops_the_pump(tmp_path: Path) -> None:
    """An offer wakes the pump; a close in the same turn of the event loop must still stop it. (On
    Python 3.11, ``asyncio.wait_for`` returns when the awaited wake-up completes in the turn its task
    is cancelled, and a pump waiting that way went on for ever: shutdown hung in ``close``.)"""
    async with simulator() as sim, engine(settings(sim, tmp_path, CURRENTS_BATCH_AGE="60s")) as e:
        assert e.engine.offer(pending(event(0), 0))
        await asyncio.sleep(0.05)  # the pump now waits for a wake-up (the batch is not due for 60 s)
        pump = e.engine._pump
        assert pump is not None and not pump.done()
        assert e.engine.offer(pending(event(1), 1))  # sets the wake-up...
        closing = asyncio.ensure_future(e.engine.close())  # ...and the pump is cancelled in the same turn
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done and pump.done(), "the pump survived its cancellation: close() hangs"


async def test_events_offered_together_go_under_their_device_limit_and_one_too_large_is_dead_lettered(
    tmp_path: Path,
) -> None:
    """The pipeline's way in (``offer_many`` with ``beyond_room``): a chunk's events taken at once join
    the open batch together while no device waits aside, and each goes by its own key once one does; an
    event too large for any request among them is dead-lettered, every other one arrives once, and the
    hot device stays within 30 events a second."""
    hot = [event(i, device="hot", user="hot-user") for i in range(40)]
    cold = [event(100 + i) for i in range(20)]
    more_hot = [event(200 + i, device="hot", user="hot-user") for i in range(10)]
    huge = event(300, event_properties={"blob": "y" * 4000})
    more_cold = [event(400 + i) for i in range(5)]
    async with simulator() as sim:
        s = settings(sim, tmp_path, CURRENTS_BATCH_BYTES="4000", CURRENTS_BATCH_AGE="20ms")
        async with engine(s) as e:
            first = [pending(ev, i) for i, ev in enumerate(hot + cold)]
            assert e.engine.offer_many(first, beyond_room=True) == len(first)
            await eventually(lambda: e.engine.throttled_keys() > 0, message="the hot device waiting aside")
            second = [pending(ev, 100 + i) for i, ev in enumerate([*more_hot, huge, *more_cold])]
            assert e.engine.offer_many(second, beyond_room=True) == len(second)
            assert await e.engine.drain(30), f"{e.engine.pending} events still pending"
            assert e.dead_lettered() == {huge["insert_id"]: "payload_too_large"}
            assert_all_ended_once(e, [*hot, *cold, *more_hot, huge, *more_cold])
    assert_arrived_exactly(sim, [*hot, *cold, *more_hot, *more_cold])
    assert max(sim.counts_per_second()["hot"].values()) <= 30
