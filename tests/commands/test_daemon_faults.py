"""Faults of its own I/O end the Kafka daemon cleanly: the daemon (a child process on the real broker,
delivering to the simulator) meets the fault for real, stops committing past what it could not
finish, turns ``/readyz`` off, exits 4 within a bound naming the path or endpoint and the cause; a
second daemon with the fault gone ends with every event delivered or dead-lettered (by insert_id at
the simulator), committed to the end. Each test prints what it measured (``-s`` shows it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from aiokafka import TopicPartition
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import local_schema_id
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, avro_body, confluent_frame
from daemon_harness import (
    PARTITIONS,
    TOPIC,
    all_committed,
    daemon_env,
    delivered_ids,
    kill_started_daemons,
    produce_bulk,
    start_daemon_process,
)
from fault_harness import tmpfs, worker_children
from kafka_harness import committed_offsets, eventually
from objectstore_harness import free_port

CUSTOM = "users.behaviors.CustomEvent"
GROUP = "it-group"
GRACE = 2.0
"""``--shutdown-grace`` of the faulty daemon."""
BOUND = 30.0
"""Seconds within which a faulty daemon must have exited once the fault is met."""


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


def custom_events(n: int) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """``n`` Confluent-framed custom events, every tenth with a device id the simulator refuses as too
    short (``AMPLITUDE_MIN_ID_LENGTH=8``: a 400 naming those events); their insert_ids, in order."""
    synth = Synth(seed=5, devices=50)
    messages, ids = [], []
    for i in range(n):
        record = synth.record(CUSTOM)
        record["device_id"] = "short" if i % 10 == 0 else f"device-{i % 400:05d}"
        record["external_user_id"] = None
        record["id"] = str(uuid.UUID(int=i + 1))
        messages.append(
            (
                record["device_id"].encode(),
                confluent_frame(local_schema_id(CUSTOM), avro_body(CUSTOM, record)),
            )
        )
        ids.append(record["id"])
    return messages, ids


def by_offset(ids: list[str]) -> dict[TopicPartition, list[str]]:
    """Where :func:`daemon_harness.produce_bulk` put each insert_id on a new topic (round-robin)."""
    return {TopicPartition(TOPIC, p): ids[p::PARTITIONS] for p in range(PARTITIONS)}


def dead_lettered(*directories: Path) -> set[str]:
    """The insert_ids in the dead-letter files under ``directories`` (a line cut short by a full disk
    is not a record)."""
    found = set()
    for directory in directories:
        for path in directory.glob("*.jsonl"):
            for line in path.read_bytes().splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    record = orjson.loads(line)
                    if "event" in record:
                        found.add(record["event"]["insert_id"])
    return found


@dataclass
class Readiness:
    """``/readyz`` of a daemon polled until it exits: when it first answered 200 and, after that, 503."""

    ready_at: float | None = None
    unready_at: float | None = None
    statuses: list[int] = field(default_factory=list)


@contextlib.asynccontextmanager
async def polling_readiness(port: int, proc: asyncio.subprocess.Process) -> AsyncIterator[Readiness]:
    """Poll ``/readyz`` on ``port`` every 20 ms while ``proc`` runs (and the body lasts)."""
    seen = Readiness()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while proc.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    status = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                    seen.statuses.append(status)
                    now = time.monotonic()
                    if status == 200 and seen.ready_at is None:
                        seen.ready_at = now
                    elif status != 200 and seen.ready_at is not None and seen.unready_at is None:
                        seen.unready_at = now
                await asyncio.sleep(0.02)  # poll interval; the loop ends with the process

    task = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def only_finished_work_committed(
    bootstrap: str, placed: dict[TopicPartition, list[str]], finished: set[str]
) -> dict[TopicPartition, int]:
    """The group's committed offsets, each checked: every event below it was delivered or dead-lettered."""
    committed = await committed_offsets(bootstrap, GROUP, placed)
    for tp, offset in committed.items():
        unfinished = [i for i in placed[tp][:offset] if i not in finished]
        assert not unfinished, f"{tp} committed to {offset} past {len(unfinished)} unfinished events"
    return committed


async def second_daemon_accounts_for_everything(
    broker: EmbeddedBroker,
    env: dict[str, str],
    sim: AmplitudeSimulator,
    tmp_path: Path,
    expected: set[str],
    ends: dict[TopicPartition, int],
    earlier_dead: set[str],
) -> tuple[int, int]:
    """A daemon with the fault gone: every event delivered or dead-lettered, committed to the end, exit
    0 on SIGTERM. Returns (delivered, dead-lettered) of both runs together."""
    dead_dir = tmp_path / "dead-letter-2"
    proc = await start_daemon_process({**env, "CURRENTS_DEAD_LETTER": str(dead_dir)}, tmp_path / "second.log")

    def accounted() -> bool:
        return delivered_ids(sim) | dead_lettered(dead_dir) | earlier_dead >= expected

    await eventually(accounted, within=90, message="every event delivered or dead-lettered")
    await eventually(
        lambda: all_committed(broker.bootstrap_servers, GROUP, ends),
        within=30,
        message="committed to the end",
    )
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    delivered, dead = delivered_ids(sim), dead_lettered(dead_dir) | earlier_dead
    assert delivered | dead == expected, f"lost: {len(expected - delivered - dead)}"
    assert delivered.isdisjoint(dead_lettered(dead_dir)), "an event both delivered and dead-lettered"
    return len(delivered & expected), len(dead - delivered)


async def exited(proc: asyncio.subprocess.Process, log: Path, began: float) -> tuple[int, str, float]:
    """The exit code, log and seconds since ``began`` of a daemon that must exit within :data:`BOUND`."""
    code = await asyncio.wait_for(proc.wait(), BOUND)
    return code, await asyncio.to_thread(log.read_text), time.monotonic() - began


def faulty_env(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path, **extra: str
) -> dict[str, str]:
    return {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "AMPLITUDE_MIN_ID_LENGTH": "8",
        "CURRENTS_SHUTDOWN_GRACE": f"{GRACE}s",
        "CURRENTS_RETRY_WINDOW": "1h",
        **extra,
    }


async def test_a_full_dead_letter_disk_stops_the_daemon_and_the_next_one_loses_nothing(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    """Dead-letter records of the 400s fill a 64 KiB tmpfs mid-stream."""
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, ids = custom_events(3000)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    expected, placed = set(ids), by_offset(ids)
    port = free_port()
    with tmpfs(tmp_path / "small") as small:
        dl = small / "dl"
        env = faulty_env(broker, sim, registry_url, tmp_path, CURRENTS_METRICS_PORT=str(port))
        # Slow answers: requests are still in flight when the fault is met.
        sim.faults.set_delay(0.3)
        began = time.monotonic()
        proc = await start_daemon_process({**env, "CURRENTS_DEAD_LETTER": str(dl)}, tmp_path / "first.log")
        async with polling_readiness(port, proc) as readiness:
            code, log, seconds = await exited(proc, tmp_path / "first.log", began)
        sim.faults.clear()
        assert code == 4, log[-3000:]
        assert f"stopped: cannot write the dead-letter output {dl}: [Errno 28] No space left on device" in log
        assert "Task exception was never retrieved" not in log and "Traceback" not in log
        assert readiness.ready_at is not None, readiness.statuses[-20:]
        assert readiness.unready_at is not None, f"/readyz never turned off: {readiness.statuses[-20:]}"
        first_dead = dead_lettered(dl)
        finished = delivered_ids(sim) | first_dead
        assert len(finished) < len(expected), "the fault must come mid-stream"
        committed = await only_finished_work_committed(broker.bootstrap_servers, placed, finished)
    assert not await all_committed(broker.bootstrap_servers, GROUP, ends)
    first_delivered = len(delivered_ids(sim))
    delivered, dead = await second_daemon_accounts_for_everything(
        broker, env, sim, tmp_path, expected, ends, first_dead
    )
    print(
        f"dead-letter ENOSPC (run): /readyz off {readiness.unready_at - began:.1f}s after start, exit 4 "
        f"{seconds:.1f}s after start "
        f"({began + seconds - readiness.unready_at:.1f}s after /readyz turned off); first run delivered "
        f"{first_delivered}, dead-lettered {len(first_dead)}, committed {sum(committed.values())}; "
        f"both: delivered {delivered}, dead-lettered {dead}, lost 0"
    )


@contextlib.asynccontextmanager
async def html_registry() -> AsyncIterator[str]:
    """A URL that answers every request with a login page (HTML, 200): not a schema registry."""

    async def login(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", login)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_registry_url_answering_html_stops_the_daemon_and_commits_nothing(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, ids = custom_events(900)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    env = faulty_env(broker, sim, registry_url, tmp_path)
    async with html_registry() as bad_url:
        began = time.monotonic()
        proc = await start_daemon_process({**env, "SCHEMA_REGISTRY_URL": bad_url}, tmp_path / "first.log")
        code, log, seconds = await exited(proc, tmp_path / "first.log", began)
    # refused at start-up, before the group is joined (issue 27): a configuration error, nothing read
    assert code == 2, log[-3000:]
    assert (
        f"configuration error: schema registry {bad_url}/subjects answered HTTP 200 (text/html): " in log
    ), log[-3000:]
    assert "Traceback" not in log and "never retrieved" not in log
    assert await committed_offsets(broker.bootstrap_servers, GROUP, ends) == {}
    assert not delivered_ids(sim) and not dead_lettered(tmp_path / "dead-letter")
    delivered, dead = await second_daemon_accounts_for_everything(
        broker, env, sim, tmp_path, set(ids), ends, set()
    )
    print(
        f"registry answering HTML (run): exit 4 {seconds:.1f}s after start, nothing committed; then "
        f"delivered {delivered}, dead-lettered {dead}, lost 0"
    )


async def test_a_worker_that_keeps_dying_stops_the_daemon_and_the_next_one_loses_nothing(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, ids = custom_events(6000)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    expected, placed = set(ids), by_offset(ids)
    # A project rate and a small pending bound keep batches going to the worker while it is killed (an
    # idle worker's death is noticed when the next batch is sent to it).
    env = faulty_env(
        broker,
        sim,
        registry_url,
        tmp_path,
        CURRENTS_WORKERS="1",
        CURRENTS_PROJECT_RATE="500",
        CURRENTS_MAX_PENDING="300",
    )
    proc = await start_daemon_process(env, tmp_path / "first.log")
    await eventually(lambda: len(sim.events) >= 100, within=60, message="the daemon delivering")
    began = time.monotonic()
    killed: set[int] = set()
    while proc.returncode is None and time.monotonic() - began < BOUND:
        for child in worker_children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
                killed.add(child)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.1)  # poll interval, bounded by BOUND
    code, log, seconds = await exited(proc, tmp_path / "first.log", began)
    assert code == 4, (killed, log[-3000:])
    assert "stopped: worker processes keep dying: 6 deaths within 60s (the last with exit code -9)" in log
    assert len(killed) >= 6
    assert "Traceback" not in log and "never retrieved" not in log
    first_dead = dead_lettered(tmp_path / "dead-letter")
    finished = delivered_ids(sim) | first_dead
    assert len(finished) < len(expected), "the fault must come mid-stream"
    await only_finished_work_committed(broker.bootstrap_servers, placed, finished)
    delivered, dead = await second_daemon_accounts_for_everything(
        broker, env, sim, tmp_path, expected, ends, first_dead
    )
    print(
        f"worker deaths (run): exit 4 {seconds:.1f}s after the first kill ({len(killed)} killed); "
        f"delivered {delivered}, dead-lettered {dead}, lost 0"
    )
