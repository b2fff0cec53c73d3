"""``currents-consumer replay --follow`` of a bucket on a real server of each cloud (moto for S3,
gcp-storage-emulator for GCS, Azurite for Azure Blob), as a process: files present at start and landing,
its state and lock kept in the bucket itself (conditional writes), a second follower refused by the
lease, kill -9 and a restart, shards, a store that cannot be reached for a while, and what an idle poll
lists and the state holds after 10,000 objects of history. Every test counts delivered, dead-lettered
and lost events by ``insert_id``; lost is always 0."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
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
from objectstore_harness import (
    CLOUDS,
    ObjectBucket,
    aws_env,
    azurite_connection_string,
    azurite_server,
    free_port,
    gcs_server,
    new_azure_container,
    new_bucket,
    new_gcs_bucket,
    s3_server,
)
from replay_harness import start


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest) -> ObjectBucket:
    """A fresh bucket (container) of each cloud's server, the environment pointing at it."""
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket


async def test_a_follower_keeps_its_state_and_lock_in_the_bucket_and_a_kill_loses_nothing(
    cloud: ObjectBucket, tmp_path: Path
) -> None:
    landing = Landing(bucket=cloud)
    landing.land(hours_ago=30)
    landing.land()
    env = {**ENV, **cloud.env}
    async with simulator() as sim:
        args = follow_args(landing.url, tmp_path, sim.http_v2_url, state=cloud.url("state"))
        first = await start(args, env, tmp_path)
        await all_delivered(sim, landing)
        # The same job, its lease in the bucket: refused, naming the holder.
        code, _, err = await (await start(args, env, tmp_path)).finish(within=60)
        assert code == 2 and ".lock is held by" in err and f"pid {first.proc.pid}" in err, err
        landing.land(event_type=TYPES[1])
        landing.land(hours_ago=1, event_type=TYPES[2])  # late, into the previous hour
        await eventually(lambda: len(delivered(sim)) > 0, message="deliveries")
        os.killpg(first.proc.pid, signal.SIGKILL)  # its lease is left behind, not released
        await first.finish()
        landing.land()
        # This host's lease of a process that is gone is taken over at once.
        second = await start(args, env, tmp_path)
        await all_delivered(sim, landing)
        code, err = await stop(second)
        assert code == 0, err
        got = delivered(sim)
    assert set(landing.expected) <= set(got)  # lost: none
    assert len({landing.expected[i] for i, n in got.items() if n > 1}) <= 6
    assert dead_letters(tmp_path / "dead-letter") == []


async def test_shards_following_a_bucket_deliver_every_file_once(cloud: ObjectBucket, tmp_path: Path) -> None:
    landing = Landing(bucket=cloud)
    for i in range(9):
        landing.land(events=10, hours_ago=i % 2, partition=i)
    env = {**ENV, **cloud.env}
    async with simulator() as sim:
        shards = await start_shards(landing.url, tmp_path, sim.http_v2_url, env, 3)
        await all_delivered(sim, landing)
        landing.land(events=10, partition=30)
        await all_delivered(sim, landing)
        for shard in shards:
            assert (await stop(shard))[0] == 0
        got = delivered(sim)
    assert set(landing.expected) <= set(got) and max(got.values()) == 1


@contextlib.contextmanager
def _server(kind: str, port: int, name: str) -> Iterator[Callable[[], ObjectBucket]]:
    """The cloud's server on ``port``; yields how to make the bucket ``name`` on it."""
    if kind == "s3":
        with s3_server(port) as endpoint:
            yield lambda: new_bucket(endpoint, name)
    elif kind == "gcs":
        with gcs_server(port) as endpoint:
            yield lambda: new_gcs_bucket(endpoint, name)
    else:
        with tempfile.TemporaryDirectory() as work, azurite_server(Path(work), port) as connection:
            yield lambda: new_azure_container(connection, name)


def _env_before(kind: str, port: int) -> dict[str, str]:
    """The environment pointing at a server on ``port`` that is not listening yet."""
    if kind == "s3":
        return aws_env(f"http://127.0.0.1:{port}")
    if kind == "gcs":
        return {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
    return {"AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(port)}


@pytest.mark.parametrize("kind", CLOUDS)
async def test_a_store_that_cannot_be_reached_for_a_while_is_waited_for_and_said_once(
    kind: str, tmp_path: Path
) -> None:
    port, name, probes = free_port(), f"later-{uuid.uuid4().hex[:8]}", free_port()
    scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}[kind]
    async with simulator() as sim:
        args = follow_args(
            f"{scheme}://{name}/currents", tmp_path, sim.http_v2_url, "--metrics-port", str(probes)
        )
        follower = await start(args, {**ENV, **_env_before(kind, port)}, tmp_path)
        # Several polls fail while nothing listens (said once), and the follower stays up and ready.
        await eventually(lambda: _failed_polls(probes, 2), within=60, message="two failed polls")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{probes}/readyz")).status_code == 200
        with _server(kind, port, name) as make:
            landing = Landing(bucket=make())
            landing.land()
            landing.land(hours_ago=1)
            await all_delivered(sim, landing, within=120)
            code, err = await stop(follower)
        got = delivered(sim)
    assert code == 0, err
    assert set(landing.expected) <= set(got)
    failed = [line for line in err.splitlines() if "listing failed" in line]
    assert 1 <= len(failed) <= 2, failed  # once per change of state, not per attempt
    assert any("works again" in line for line in err.splitlines()), err


POLLS_OK = 'currents_follow_listings_total{listing="poll",outcome="ok"}'
POLLS_FAILED = 'currents_follow_listings_total{listing="poll",outcome="failed"}'

HISTORY = {"s3": 10_000, "gs": 2_000, "az": 2_000}
"""Objects of history per cloud: 10,000 on S3 (as on local files, tests/commands/test_follow.py); the GCS
and Azure emulators take 15 to 35 ms per upload, so CI gives them 2,000 (what an idle poll lists does not
depend on the number; docs/follow.md says so, and what these tests check)."""


async def test_an_idle_poll_and_the_state_stay_small_over_10000_objects_of_history(
    cloud: ObjectBucket, tmp_path: Path
) -> None:
    landing = Landing(bucket=cloud)
    history = Landing(root=tmp_path / "history")
    for i in range(HISTORY[cloud.scheme]):
        history.land(events=1, hours_ago=2 + i // 500, event_type=TYPES[i % 3], partition=i % 7)
    files = [(key, (tmp_path / "history" / history.prefix / key).read_bytes()) for key in history.files]
    with ThreadPoolExecutor(16 if cloud.scheme == "s3" else 1) as pool:  # the GCS emulator: one at a time
        list(pool.map(lambda kv: cloud.put(f"{landing.prefix}/{kv[0]}", kv[1]), files))
    port = free_port()
    async with simulator() as sim:
        args = follow_args(
            landing.url, tmp_path, sim.http_v2_url, "--metrics-port", str(port), "--landing-margin", "0s",
            state=cloud.url("state"),
        )  # fmt: skip
        follower = await start(args, {**ENV, **cloud.env}, tmp_path)
        await all_delivered(sim, history, within=600)
        await eventually(lambda: _state(cloud).get("mark") is not None, within=120, message="the sweep's end")
        polls, keys = await metric(port, POLLS_OK), await metric(port, "currents_follow_listed_keys_total")
        await eventually(lambda: _more_polls(port, polls + 4), within=60, message="four idle polls")
        idle_keys = await metric(port, "currents_follow_listed_keys_total") - keys
        code, err = await stop(follower)
        assert code == 0, err
    assert idle_keys <= 4 * 5, idle_keys  # the connector level and the event types: no history
    state = cloud.get(next(k for k in cloud.keys("state/") if k.endswith(".json")))
    assert len(state) < 1024, state


def _state(cloud: ObjectBucket) -> dict[str, object]:
    keys = [k for k in cloud.keys("state/") if k.endswith(".json")]
    return orjson.loads(cloud.get(keys[0])) if keys else {}


async def _failed_polls(port: int, at_least: float) -> bool:
    with contextlib.suppress(httpx.TransportError):  # not serving yet
        return await metric(port, POLLS_FAILED) >= at_least
    return False


async def _more_polls(port: int, target: float) -> bool:
    return await metric(port, POLLS_OK) >= target
