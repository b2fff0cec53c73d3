"""``currents-consumer replay --follow`` over a local directory, as a process: files present at start,
files landing into the current hour and late into the previous one, kill -9 and a restart, two
followers and two replays of one job, shards and a change of their number, damaged and rewritten files,
and what an idle poll lists and the state holds after 10,000 objects of history. Every test counts
delivered, dead-lettered and lost events by ``insert_id``; lost is always 0."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from pathlib import Path

import httpx
from amplitude_harness import dead_letters, eventually, simulator
from follow_harness import (
    ENV,
    TYPES,
    Landing,
    all_delivered,
    delivered,
    follow_args,
    metric,
    start_shards,
    stop,
)
from objectstore_harness import free_port
from replay_harness import last_json, start

POLLS_OK = 'currents_follow_listings_total{listing="poll",outcome="ok"}'


async def test_a_follower_delivers_what_is_there_then_what_lands_and_a_late_file_and_drains_on_sigterm(
    tmp_path: Path,
) -> None:
    landing = Landing(root=tmp_path)
    landing.land(hours_ago=30)  # history
    landing.land()
    port = free_port()
    async with simulator() as sim:
        # Its state and lock kept under the followed directory: never read as input.
        args = follow_args(
            landing.url, tmp_path, sim.http_v2_url, "--metrics-port", str(port), state=f"{landing.url}/state"
        )
        follower = await start(args, ENV, tmp_path)
        await all_delivered(sim, landing)
        landing.land(event_type=TYPES[1])
        await all_delivered(sim, landing)
        landing.land(hours_ago=1, event_type=TYPES[2])  # late, into the previous hour's folder
        await all_delivered(sim, landing)
        async with httpx.AsyncClient() as client:
            for probe in ("livez", "readyz"):
                assert (await client.get(f"http://127.0.0.1:{port}/{probe}")).status_code == 200
        assert await metric(port, "currents_follow_last_listing_timestamp_seconds") > 0
        assert await metric(port, "currents_follow_pending_objects") == 0
        code, err = await stop(follower)
        assert code == 0, err  # SIGTERM: drained, a normal stop
        assert last_json(err)["exit_code"] == 0
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1  # nothing lost, nothing twice
    assert dead_letters(tmp_path / "dead-letter") == []


async def test_a_follower_killed_while_files_land_restarts_where_it_stopped_and_loses_nothing(
    tmp_path: Path,
) -> None:
    landing = Landing(root=tmp_path)
    for _ in range(4):
        landing.land(events=40)
    async with simulator() as sim:
        args = follow_args(landing.url, tmp_path, sim.http_v2_url)
        first = await start(args, ENV, tmp_path)
        await eventually(lambda: len(delivered(sim)) > 0, within=60, message="the first events")
        for _ in range(4):
            landing.land(events=40)
        os.killpg(first.proc.pid, signal.SIGKILL)
        await first.finish()
        for _ in range(3):
            landing.land(events=40)
        second = await start(args, ENV, tmp_path)
        await all_delivered(sim, landing)
        code, err = await stop(second)
        assert code == 0, err
        got = delivered(sim)
    assert set(landing.expected) <= set(got)  # lost: none
    sent_twice = {landing.expected[i] for i, n in got.items() if n > 1}
    # Re-sent: only files the killed follower had not recorded as finished (at most --files-in-flight
    # open, and those finished since its last save).
    assert len(sent_twice) <= 6, sent_twice
    assert dead_letters(tmp_path / "dead-letter") == []


async def test_a_second_follower_of_the_same_job_is_refused_naming_the_lock_and_its_holder(
    tmp_path: Path,
) -> None:
    landing = Landing(root=tmp_path)
    landing.land()
    async with simulator() as sim:
        args = follow_args(landing.url, tmp_path, sim.http_v2_url)
        first = await start(args, ENV, tmp_path)
        await all_delivered(sim, landing)
        second = await start(args, ENV, tmp_path)
        code, _, err = await second.finish(within=30)
        assert code == 2, err
        assert ".lock is held by" in err and f"pid {first.proc.pid}" in err
        landing.land()  # the first goes on
        await all_delivered(sim, landing)
        # One that waits for the lock (--lock-wait) is up but not ready, and takes over once the first
        # has stopped.
        port = free_port()
        waiting = await start([*args, "--lock-wait", "60s", "--metrics-port", str(port)], ENV, tmp_path)
        await eventually(lambda: _probe(port, "livez", 200), within=30, message="the waiting one is up")
        assert await _probe(port, "readyz", 503)
        assert (await stop(first))[0] == 0
        await eventually(lambda: _probe(port, "readyz", 200), within=30, message="the waiting one ready")
        landing.land()
        await all_delivered(sim, landing)
        code, err = await stop(waiting)
        assert code == 0 and "waiting up to 60s for it" in err, err
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1


async def test_two_replays_of_one_job_started_together_send_everything_once(tmp_path: Path) -> None:
    landing = Landing(root=tmp_path)
    for i in range(30):
        landing.land(events=30, hours_ago=2 + i % 3)
    async with simulator() as sim:
        args = follow_args(landing.url, tmp_path, sim.http_v2_url)
        args.remove("--follow")
        one, two = await asyncio.gather(start(args, ENV, tmp_path), start(args, ENV, tmp_path))
        (code1, _, err1), (code2, _, err2) = await asyncio.gather(one.finish(), two.finish())
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1
    codes = sorted([code1, code2])
    refused = err1 if code1 == 2 else err2
    # One holds the lock; the other is refused, or (if it came after) finds every file finished.
    assert (codes == [0, 2] and ".lock is held by" in refused) or codes == [0, 0], (err1, err2)


async def test_shards_deliver_every_file_once_and_a_new_shard_count_sends_nothing_again(
    tmp_path: Path,
) -> None:
    landing = Landing(root=tmp_path)
    for i in range(12):
        landing.land(events=10, hours_ago=i % 2, partition=i)
    async with simulator() as sim:
        three = await start_shards(landing.url, tmp_path, sim.http_v2_url, ENV, 3)
        await all_delivered(sim, landing)
        for follower in three:
            assert (await stop(follower))[0] == 0
        before = delivered(sim)
        assert max(before.values()) == 1  # disjoint shards: each file once
        # Two shards now: each inherits what the three finished, and only new files are sent.
        ports = [free_port(), free_port()]
        two = [
            await start(
                follow_args(
                    landing.url, tmp_path, sim.http_v2_url, "--shards", "2", "--shard-index", str(i),
                    "--metrics-port", str(ports[i]),
                ),
                ENV,
                tmp_path,
            )
            for i in range(2)
        ]  # fmt: skip
        # Each up (its signal handlers are in place before it serves probes): one not started yet when the
        # other has delivered everything would otherwise die of the SIGTERM below (seen under load).
        for port in ports:
            await eventually(functools.partial(_probe, port, "livez", 200), within=30, message="up")
        for i in range(4):
            landing.land(events=10, partition=20 + i)
        await all_delivered(sim, landing)
        for follower in two:
            code, err = await stop(follower)
            assert code == 0, err
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1


async def test_a_damaged_file_and_a_rewritten_one_are_named_and_dead_lettered_once(tmp_path: Path) -> None:
    landing = Landing(root=tmp_path)
    good = landing.land()
    broken = good.replace("+1000.avro", "+999999.avro")
    landing.put(broken, b"not an avro container file")
    async with simulator() as sim:
        follower = await start(follow_args(landing.url, tmp_path, sim.http_v2_url), ENV, tmp_path)
        await all_delivered(sim, landing)
        await eventually(lambda: len(dead_letters(tmp_path / "dead-letter")) == 1, message="the damaged file")
        # Rewritten after it was read: dead-lettered (its new events are not sent), once.
        rewritten = Landing(root=tmp_path / "elsewhere", _seed=500)  # other events than the first file's
        rewritten.land(events=5)
        landing.put(good, (rewritten.root / rewritten.prefix / rewritten.files[0]).read_bytes())  # type: ignore[operator]
        await eventually(lambda: len(dead_letters(tmp_path / "dead-letter")) == 2, message="the rewrite")
        landing.land()  # a later file still flows, after several polls
        await all_delivered(sim, landing)
        code, err = await stop(follower)
        assert code == 0, err  # a follower stopped by SIGTERM: what it dead-lettered is in the summary
        assert last_json(err)["dead_lettered"] == {"rewritten_input": 1, "unreadable_input": 1}
        got = delivered(sim)
    records = dead_letters(tmp_path / "dead-letter")
    assert sorted(r["reason"] for r in records) == ["rewritten_input", "unreadable_input"]
    assert {r["position"]["file"] for r in records} == {f"{landing.url}/{broken}", f"{landing.url}/{good}"}
    assert not set(rewritten.expected) & set(got)  # the rewrite's events: not sent
    assert set(landing.expected) <= set(got) and max(got.values()) == 1


async def test_an_idle_poll_lists_only_the_live_hours_and_the_state_stays_small_after_10000_objects(
    tmp_path: Path,
) -> None:
    landing = Landing(root=tmp_path)
    for i in range(10_000):
        landing.land(events=1, hours_ago=2 + i // 500, event_type=TYPES[i % 3], partition=i % 7)
    port = free_port()
    async with simulator() as sim:
        args = follow_args(
            landing.url, tmp_path, sim.http_v2_url, "--metrics-port", str(port), "--landing-margin", "0s"
        )
        follower = await start(args, ENV, tmp_path)
        await all_delivered(sim, landing, within=300)
        await eventually(lambda: _state(tmp_path).get("mark") is not None, within=60, message="the sweep")
        polls = await metric(port, POLLS_OK)
        keys = await metric(port, "currents_follow_listed_keys_total")
        await eventually(lambda: _polls_after(port, polls + 4), within=30, message="four idle polls")
        idle_keys = await metric(port, "currents_follow_listed_keys_total") - keys
        code, err = await stop(follower)
        assert code == 0, err
    state_size = next((tmp_path / "state").glob("follow-*.json")).stat().st_size
    # The live hours hold nothing: an idle poll lists the root's connector and its event types only.
    assert idle_keys <= 4 * 5, idle_keys
    assert state_size < 1024, _state(tmp_path)


def _state(tmp_path: Path) -> dict[str, object]:
    import orjson

    files = list((tmp_path / "state").glob("follow-*.json"))
    return orjson.loads(files[0].read_bytes()) if files else {}


async def _polls_after(port: int, target: float) -> bool:
    return await metric(port, POLLS_OK) >= target


async def _probe(port: int, path: str, status: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/{path}")).status_code == status
    except httpx.TransportError:  # not serving yet
        return False
