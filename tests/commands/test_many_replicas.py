"""Three daemons in one consumer group on a topic *not* keyed by device, with one device far over
Amplitude's 30 events/s per device.

Messages are spread round-robin over the partitions, so the hot device's events reach every member and
each member's per-device limiter admits 30/s of it: together they send Amplitude (the simulator, which
enforces the per-device limit in a one-second window) more than it takes, and get 429s naming the device.
What must hold all the same: every insert_id ingested exactly once, nothing dead-lettered, every offset
committed. What it costs is measured and printed (run with ``-s``): the share of requests answered 429
and how much longer the hot device took than everything else. docs/operations.md quotes these figures.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from daemon_harness import (
    HOT_DEVICE,
    PARTITIONS,
    TOPIC,
    all_committed,
    daemon_env,
    delivered_ids,
    kill_started_daemons,
    last_assignment,
    make_events_with_hot_device,
    produce_bulk,
    produce_keyed,
    start_daemon_process,
)
from kafka_harness import eventually

REPLICAS = 3
HOT_EVENTS = 600
OTHER_EVENTS = 3000
DEVICE_RATE = 30  # Amplitude's per-device limit on HTTP V2, the simulator's http_v2_eps


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


def each_owns_one_partition(logs: list[Path]) -> bool:
    """The group has settled: every member's latest assignment is one partition, all different."""
    owned = [last_assignment(log) for log in logs]
    flat = [p for partitions in owned if partitions for p in partitions]
    return all(partitions and len(partitions) == 1 for partitions in owned) and len(set(flat)) == PARTITIONS


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed-by-device"])
async def test_three_replicas_one_hot_device(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path, keyed: bool
) -> None:
    """Unkeyed (round-robin), the hot device reaches all three limiters and Amplitude answers 429s;
    keyed by device (the comparison), it reaches one. Either way: exactly once, nothing dead-lettered."""
    assert sim.config.http_v2_eps == DEVICE_RATE
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, expected, hot_ids = make_events_with_hot_device(OTHER_EVENTS, HOT_EVENTS, seed=21)
    env = {**daemon_env(broker, sim, registry_url, tmp_path), "CURRENTS_DEVICE_RATE": str(DEVICE_RATE)}
    logs = [tmp_path / f"daemon-{i}.log" for i in range(REPLICAS)]
    daemons = [await start_daemon_process(env, log) for log in logs]
    # Produce only once the group has settled, so that what is measured is the hot device, not a
    # rebalance re-sending what a revoked member had in flight.
    await eventually(lambda: each_owns_one_partition(logs), within=30, message="one partition per member")

    produce_all = produce_keyed if keyed else produce_bulk  # produce_bulk: round-robin over partitions
    ends = await produce_all(broker.bootstrap_servers, messages)
    await eventually(lambda: delivered_ids(sim) >= expected, within=60, message="every event delivered")
    await eventually(
        lambda: all_committed(broker.bootstrap_servers, "it-group", ends),
        within=30,
        message="offsets committed to the end",
    )
    for proc in daemons:
        proc.send_signal(signal.SIGTERM)
    assert [await asyncio.wait_for(p.wait(), 60) for p in daemons] == [0] * REPLICAS

    # Exactly once: each insert_id ingested once, none unknown, none dead-lettered.
    ingested = [e.event["insert_id"] for e in sim.events]
    assert len(ingested) == len(set(ingested)) == len(expected)
    assert set(ingested) == expected
    # A copy sent again (a request whose answer was lost) is dropped by its insert_id, never counted.
    assert {e.event["insert_id"] for e in sim.duplicates} <= expected
    dead = tmp_path / "dead-letter"
    assert not dead.exists() or not any(p.stat().st_size for p in dead.rglob("*") if p.is_file())
    # Every member really did carry the hot device, and their sum was over the limit.
    assert {e.event["device_id"] for e in sim.events if e.event["insert_id"] in hot_ids} == {HOT_DEVICE}
    statuses = sim.stats.requests_by_status
    assert set(statuses) <= {200, 429}
    if not keyed:
        assert statuses.get(429, 0) > 0, "three limiters of 30/s each must together go over Amplitude's 30/s"

    hot_at = [e.received_at for e in sim.events if e.event["insert_id"] in hot_ids]
    other_at = [e.received_at for e in sim.events if e.event["insert_id"] not in hot_ids]
    start = min(hot_at + other_at)
    share = statuses.get(429, 0) / sim.stats.requests_total
    print(
        f"\nmany replicas, {'keyed by device' if keyed else 'unkeyed'}: {REPLICAS} daemons, {len(other_at)} events of others, "
        f"{len(hot_at)} of one device; requests {sim.stats.requests_total}, 429s {statuses.get(429, 0)} "
        f"({share:.1%}), events refused and re-sent {sim.stats.events_rejected}, "
        f"duplicates dropped {len(sim.duplicates)}; "
        f"others delivered in {max(other_at) - start:.1f} s, hot device in {max(hot_at) - min(hot_at):.1f} s "
        f"(ideal at {DEVICE_RATE}/s: {len(hot_at) / DEVICE_RATE:.1f} s), "
        f"last hot event {max(hot_at) - max(other_at):+.1f} s after the last other"
    )
