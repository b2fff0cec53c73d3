"""What a bucket follower (``replay --follow``) costs and how fast it picks files up, on this machine.

    python bench/follow.py latency [--poll 30s] [--files 20] [--span 300]
    python bench/follow.py idle [--poll 30s] [--seconds 60] [--history 2000]
    python bench/follow.py throughput [--events 200000]
    python bench/follow.py cost [--store local|s3|gcs|azure] [--history 10000]

* ``latency``: a follower of a local directory; ``--files`` files land at random moments over ``--span``
  seconds (each written aside and renamed into the current hour's folder); for each event, the time from
  its file's landing to its arrival at the Amplitude simulator. Prints p50, p95 and the maximum.
* ``idle``: a follower that has caught up with ``--history`` files; the CPU seconds it spends over
  ``--seconds`` seconds of nothing landing (its polls only), as a share of one core.
* ``throughput``: the same files (the bench data set of ``bench/dataset.py``) read by ``replay`` and by
  ``replay --follow``, first to last delivery, in events per second.
* ``cost``: ``--history`` objects of past hours in a directory or a bucket (moto, gcp-storage-emulator,
  Azurite, as the tests start them); once the follower has caught up, the keys and requests of its idle
  polls and the size of its state.

Each follower runs as a child process, as in production; the simulator runs in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # the tests' harnesses: stores, landing files

import httpx  # noqa: E402
from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig  # noqa: E402
from follow_harness import TYPES, Landing  # noqa: E402
from objectstore_harness import (  # noqa: E402
    ObjectBucket,
    aws_env,
    azurite_server,
    free_port,
    gcs_server,
    new_azure_container,
    new_bucket,
    new_gcs_bucket,
    s3_server,
)
from simserver import BENCH_CONFIG  # noqa: E402

from consumer.settings import parse_duration  # noqa: E402

KEY = "bench-follow-key"


@contextlib.asynccontextmanager
async def simulator(unthrottled: bool = False) -> AsyncIterator[AmplitudeSimulator]:
    """The Amplitude simulator in this process; ``unthrottled``: without Amplitude's limits (no 429), as
    ``bench/simserver.py`` serves the throughput rows, and keeping no events."""
    config = SimulatorConfig(**BENCH_CONFIG) if unthrottled else SimulatorConfig(log_interval_s=3600)
    sim = AmplitudeSimulator(config)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def follower(
    url: str,
    work: Path,
    sim: AmplitudeSimulator,
    *extra: str,
    env: dict[str, str] | None = None,
    state: str | None = None,
) -> asyncio.subprocess.Process:
    """``replay URL --follow`` as a child process (its stderr in ``work/follower.log``)."""
    args = [
        sys.executable, "-m", "consumer", "replay", url, "--follow", "--amplitude-url", sim.http_v2_url,
        "--state-dir", state or str(work / "state"), "--dead-letter", str(work / "dead-letter"),
        "--log-format", "json", *extra,
    ]  # fmt: skip
    log = (work / "follower.log").open("ab")
    return await asyncio.create_subprocess_exec(
        *args, env={**os.environ, "AMPLITUDE_API_KEY": KEY, **(env or {})}, stdout=log, stderr=log
    )


async def until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 120)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children still alive (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid, *_children(pid)]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _children(pid: int) -> Iterator[int]:
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            yield int(child)
            yield from _children(int(child))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- latency ----------------------------------------------------------------------------------------
async def latency(args: argparse.Namespace) -> dict[str, Any]:
    poll = parse_duration(args.poll)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        landing = Landing(root=work)
        landed: dict[str, float] = {}
        async with simulator() as sim:
            proc = await follower(landing.url, work, sim, "--poll-interval", args.poll)
            await asyncio.sleep(2)  # started and caught up with an empty directory
            rng = random.Random(7)
            moments = sorted(rng.uniform(0, args.span) for _ in range(args.files))
            start = time.time()
            for i, at in enumerate(moments):
                await asyncio.sleep(max(0.0, start + at - time.time()))
                key = landing.land(events=50, event_type=TYPES[i % 3], partition=i)
                landed[key] = time.time()
            await until(
                lambda: sim.stats.events_ingested >= len(landing.expected), args.span + 10 * poll, "all"
            )
            arrivals = {e.event["insert_id"]: e.received_at for e in sim.events}
            await stop(proc)
    lags = [arrivals[i] - landed[landing.expected[i]] for i in landing.expected]
    return {
        "landed_over_s": round(max(landed.values()) - min(landed.values()), 1),
        "poll": args.poll, "files": args.files, "events": len(lags),
        "p50_s": round(pct(lags, 0.5), 2), "p95_s": round(pct(lags, 0.95), 2), "max_s": round(max(lags), 2),
    }  # fmt: skip


# --- idle -------------------------------------------------------------------------------------------
async def idle(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        landing = Landing(root=work)
        for i in range(args.history):
            landing.land(events=1, hours_ago=2 + i // 200, event_type=TYPES[i % 3], partition=i % 7)
        async with simulator() as sim:
            proc = await follower(landing.url, work, sim, "--poll-interval", args.poll)
            await until(lambda: sim.stats.events_ingested >= len(landing.expected), 600, "the history")
            await asyncio.sleep(5)  # the sweep's end, the last saves
            before, t0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(args.seconds)
            used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - t0
            await stop(proc)
    return {
        "poll": args.poll, "history_files": args.history, "seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 3), "cpu_share_of_one_core": round(used / elapsed, 4),
    }  # fmt: skip


# --- throughput -------------------------------------------------------------------------------------
async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    from dataset import ensure  # the bench's data set: Currents files of past hours

    data = ensure(BENCH / "out", 1, args.events).root
    files = [p for p in data.rglob("*.avro")]
    out: dict[str, Any] = {"events": args.events, "files": len(files)}
    expected = _expected_count(data)
    for mode in ("replay", "follow"):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            async with simulator(unthrottled=True) as sim:
                started = time.time()
                # Both without per-device limits, as bench/scenarios.py measures replay: the data set's
                # devices at 30 events/s each would measure the limiter, not the pipeline.
                unlimited = ("--device-rate", "1000000")
                if mode == "follow":
                    proc = await follower(str(data), work, sim, "--poll-interval", "1s", *unlimited)
                else:
                    cmd = [
                        sys.executable, "-m", "consumer", "replay", str(data), "--amplitude-url",
                        sim.http_v2_url, "--state-dir", "", "--dead-letter", str(work / "dl"),
                        "--log-format", "json", *unlimited,
                    ]  # fmt: skip
                    log = (work / "replay.log").open("ab")
                    proc = await asyncio.create_subprocess_exec(
                        *cmd, env={**os.environ, "AMPLITUDE_API_KEY": KEY}, stdout=log, stderr=log
                    )
                await until(lambda: sim.stats.events_ingested >= expected, 1800, f"{mode}: all events")
                stats = sim.stats.as_dict()
                if mode == "follow":
                    await stop(proc)
                else:
                    await proc.wait()
                first, last = stats["first_ingest_at"], stats["last_ingest_at"]
                out[mode] = {
                    "wall_s": round(time.time() - started, 2),
                    "events_per_s_first_to_last": round(stats["events_ingested"] / max(1e-9, last - first)),
                }
    out["follow_over_replay"] = round(
        out["follow"]["events_per_s_first_to_last"] / out["replay"]["events_per_s_first_to_last"], 3
    )
    return out


def _expected_count(data: Path) -> int:
    from consumer.settings import load
    from consumer.sources.storage.files import list_files, read_file
    from consumer.transform.amplitude import Transformer
    from consumer.transform.base import Skip

    transformer = Transformer(load(env={}).mapping)
    return sum(
        not isinstance(transformer.transform(r.event_type, r.record), Skip)
        for path in list_files([str(data)])
        for r in read_file(path)
    )


# --- cost -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def store(kind: str, work: Path) -> Iterator[tuple[Landing, dict[str, str], str]]:
    """The landing place of ``kind``, the follower's environment and its state directory."""
    if kind == "local":
        yield Landing(root=work), {}, str(work / "state")
        return
    with contextlib.ExitStack() as stack:
        bucket: ObjectBucket
        if kind == "s3":
            endpoint = stack.enter_context(s3_server())
            os.environ.update(aws_env(endpoint))
            bucket = new_bucket(endpoint)
        elif kind == "gcs":
            # The emulator writes its whole object table out after every upload (quadratic in the number
            # of objects): with nothing to persist in memory, it is skipped for the history's upload.
            from gcp_storage_emulator.storage import Storage

            stack.enter_context(_patched(Storage, "_write_config_to_file", lambda self: None))
            bucket = new_gcs_bucket(stack.enter_context(gcs_server()))
        else:
            bucket = new_azure_container(stack.enter_context(azurite_server(work)))
        yield Landing(bucket=bucket), bucket.env, bucket.url("state")


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


async def cost(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        history = Landing(root=work / "history")
        for i in range(args.history):
            history.land(events=1, hours_ago=2 + i // 500, event_type=TYPES[i % 3], partition=i % 7)
        with store(args.store, work) as (landing, env, state):
            files = [(k, (work / "history" / history.prefix / k).read_bytes()) for k in history.files]
            started = time.monotonic()
            threads = 16 if args.store in ("s3", "local", "azure") else 1
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda kv: landing.put(kv[0], kv[1]), files))
            upload_s = time.monotonic() - started
            port = free_port()
            async with simulator() as sim:
                proc = await follower(
                    landing.url, work, sim, "--poll-interval", "1s", "--landing-margin", "0s",
                    "--metrics-port", str(port), env=env, state=state,
                )  # fmt: skip
                t0 = time.monotonic()
                await until(lambda: sim.stats.events_ingested >= len(history.expected), 1800, "the history")
                caught_up_s = time.monotonic() - t0
                await asyncio.sleep(5)
                m0 = await _metrics(port)
                await asyncio.sleep(10)
                m1 = await _metrics(port)
                code = await stop(proc)
            try:
                size = _state_size(args.store, work, landing)
            except StopIteration:
                said = (work / "follower.log").read_text()[-4000:]
                raise SystemExit(f"no state was saved; the follower said:\n{said}") from None
    polls = m1["polls"] - m0["polls"]
    return {
        "store": args.store, "history_objects": args.history, "upload_s": round(upload_s, 1),
        "caught_up_s": round(caught_up_s, 1), "idle_polls": polls,
        "keys_per_idle_poll": round((m1["keys"] - m0["keys"]) / polls, 2),
        "requests_per_idle_poll": round((m1["requests"] - m0["requests"]) / polls, 2),
        "state_bytes": size, "exit_code": code,
    }  # fmt: skip


async def _metrics(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text

    def total(prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and "_created" not in line
        )

    return {
        "polls": total('currents_follow_listings_total{listing="poll",outcome="ok"}'),
        "keys": total("currents_follow_listed_keys_total"),
        "requests": total("currents_follow_list_requests_total"),
    }


def _state_size(kind: str, work: Path, landing: Landing) -> int:
    if kind == "local":
        return next((work / "state").glob("follow-*.json")).stat().st_size
    assert landing.bucket is not None
    key = next(k for k in landing.bucket.keys("state/") if k.endswith(".json"))
    return len(landing.bucket.get(key))


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/follow.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--poll", default="30s")
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--span", type=float, default=300.0)
    p = sub.add_parser("idle")
    p.add_argument("--poll", default="30s")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--history", type=int, default=2000)
    p = sub.add_parser("throughput")
    p.add_argument("--events", type=int, default=200_000)
    p = sub.add_parser("cost")
    p.add_argument("--store", choices=("local", "s3", "gcs", "azure"), default="local")
    p.add_argument("--history", type=int, default=10_000)
    args = parser.parse_args()
    run = {"latency": latency, "idle": idle, "throughput": throughput, "cost": cost}[args.what]
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
