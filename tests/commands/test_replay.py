"""Tests for consumer.commands.replay: Currents Avro trees delivered to the simulator, in process and through the
command line — nothing lost, damaged files named, fairness between devices, resume, no secret leaks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from amplitude_harness import KEY, dead_letters, eventually, insert_ids, settings, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_container, write_currents_tree
from prometheus_client import CollectorRegistry
from replay_harness import last_json, replay_argv, running, start

from consumer.app.destinations import amplitude_destination
from consumer.commands.replay import Replay
from consumer.decode.avro import DecodeError
from consumer.ops.metrics import Metrics
from consumer.settings import Settings
from consumer.sinks.amplitude import AmplitudeSink
from consumer.sources.storage.files import list_files, read_file
from consumer.sources.storage.readahead import CHUNK
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

CUSTOM = "users.behaviors.CustomEvent"


def expected_events(root: Path, s: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    """``insert_id -> (file, event as JSON)`` of every event the readable records of ``root`` give."""
    transformer = Transformer(s.mapping)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in list_files([str(root)]):
        with contextlib.suppress(DecodeError):
            for rec in read_file(path):
                result = transformer.transform(rec.event_type, rec.record)
                if not isinstance(result, Skip):
                    out[result["insert_id"]] = (path, orjson.loads(orjson.dumps(result)))
    return out


def damage(root: Path, paths: list[Path]) -> tuple[Path, Path]:
    """Truncate the largest file of the tree and add a file that is not Avro at all; returns both."""
    truncated = max(paths, key=lambda p: p.stat().st_size)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    garbage = paths[0].parent / "not-avro.avro"
    garbage.write_bytes(b"this is a CSV export, not an Avro container\n" * 20)
    return truncated, garbage


@pytest.mark.parametrize("workers", ["0", "1", "2"])
async def test_a_replay_delivers_every_event_as_converted_and_accounts_for_every_record(
    tmp_path: Path, workers: str
) -> None:
    """In threads of this process (``--workers 0``) or in one or two worker processes: the same events."""
    synth = Synth(3, devices=400)
    write_currents_tree(tmp_path / "in", synth, 3000, max_per_file=500)
    async with simulator() as sim:
        s = settings(sim, tmp_path, CURRENTS_WORKERS=workers)
        expected = expected_events(tmp_path / "in", s)
        sink = AmplitudeSink(s.amplitude)
        result = await Replay(
            [str(tmp_path / "in")], s, [amplitude_destination(s, sink)], Metrics(CollectorRegistry())
        ).run()
        await sink.close()
        summary = result.summary
        read, delivered = sum(summary.read.values()), sum(summary.done.values())
        assert read == 3000
        assert read == delivered + sum(summary.skipped.values()) + sum(summary.dead_lettered.values())
        assert delivered == len(expected)
        assert {e.event["insert_id"]: e.event for e in sim.events} == {k: v for k, (_, v) in expected.items()}
        assert sim.stats.events_duplicate == 0
        assert result.unfinished == [] and result.files_done == len(list(list_files([str(tmp_path / "in")])))


def custom_record(synth: Synth, device: str, user: str) -> dict[str, Any]:
    record = synth.record(CUSTOM)
    record["device_id"] = device
    record["external_user_id"] = user
    return record


async def test_cold_devices_never_wait_behind_hot_ones(tmp_path: Path) -> None:
    """20 hot devices with 150 events each are read *first*, then 3000 events of 3000 other devices.

    A hot device cannot go faster than 30 events/s, so its backlog takes about five seconds. Every other
    device's event must arrive while the hot backlogs are still mostly waiting: when the last cold event
    arrives, no hot device has had even half of its events delivered.
    """
    synth = Synth(11, devices=50)
    per_hot = 150
    hot = [f"hot-device-{k:02d}" for k in range(20)]
    folder = tmp_path / "in" / f"event_type={CUSTOM}"
    write_container(
        folder / "part-0-hot.avro",
        CUSTOM,
        [custom_record(synth, hot[i % 20], f"hot-user-{i % 20:02d}") for i in range(20 * per_hot)],
    )
    write_container(
        folder / "part-1-cold.avro",
        CUSTOM,
        [custom_record(synth, f"cold-device-{i:05d}", f"cold-user-{i:05d}") for i in range(3000)],
    )
    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        result = await Replay(
            [str(tmp_path / "in")], s, [amplitude_destination(s, sink)], Metrics(CollectorRegistry())
        ).run()
        await sink.close()
    assert sum(result.summary.done.values()) == 6000
    events = sim.events
    assert len(set(insert_ids(events))) == 6000
    last_cold = max(e.received_at for e in events if e.event["device_id"].startswith("cold-"))
    for device in hot:
        arrivals = [e.received_at for e in events if e.event["device_id"] == device]
        assert len(arrivals) == per_hot
        done_by_then = sum(1 for t in arrivals if t <= last_cold)
        assert done_by_then <= per_hot // 2, (
            f"{device}: {done_by_then} of {per_hot} delivered before cold ones"
        )
    for device, per_second in sim.counts_per_second().items():
        assert max(per_second.values()) <= 30, device


async def test_progress_is_saved_while_a_backlog_drains(tmp_path: Path) -> None:
    """Once everything is read, a hot device may still need seconds to drain: files finished meanwhile
    are recorded on disk as they finish, not only at the end, so a crash does not replay them."""
    synth = Synth(12, devices=20)
    folder = tmp_path / "in" / f"event_type={CUSTOM}"
    cold = write_container(
        folder / "a-cold.avro", CUSTOM, [custom_record(synth, f"cold-{i}", f"u-{i}") for i in range(300)]
    )
    # The hot file's first chunk is cold: done at once, it moves the file's progress (which moves by
    # chunk) while the hot device's 60 events of the second chunk drain at 30/s.
    hot = write_container(
        folder / "b-hot.avro",
        CUSTOM,
        [custom_record(synth, f"early-{i}", f"e-{i}") for i in range(CHUNK)]
        + [custom_record(synth, "hot", "hot-user") for _ in range(60)],
    )
    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        replay = Replay(
            [str(tmp_path / "in")],
            s,
            [amplitude_destination(s, sink)],
            Metrics(CollectorRegistry()),
            checkpoint_interval=0.1,
        )
        task = asyncio.create_task(replay.run())

        def on_disk() -> dict[str, Any]:
            files = list((tmp_path / "state").glob("*.json"))
            return orjson.loads(files[0].read_bytes()) if files else {}

        def saved_midway() -> bool:
            state = on_disk()
            cold_done = any(ident.startswith(f"{cold}|") for ident in state.get("done", {}))
            hot_progress = [
                n for ident, n in state.get("next_record", {}).items() if ident.startswith(f"{hot}|")
            ]
            return cold_done and bool(hot_progress) and hot_progress[0] > 0

        await eventually(saved_midway, within=20, message="progress on disk")
        assert not task.done(), "progress was only saved at the end"
        assert replay.pipeline.engine.pending > 0
        result = await task
        await sink.close()
    assert result.files_done == 2
    assert len(on_disk()["done"]) == 2 and on_disk()["next_record"] == {}


async def test_a_stop_while_the_last_events_drain_is_bounded_by_the_grace_time(tmp_path: Path) -> None:
    """Everything is read, Amplitude is down, the drain would wait for the whole retry window: a stop
    (SIGTERM) then ends the run within the grace time, and nothing undelivered is recorded as done."""
    synth = Synth(13, devices=20)
    folder = tmp_path / "in" / f"event_type={CUSTOM}"
    path = write_container(
        folder / "a.avro", CUSTOM, [custom_record(synth, f"d-{i}", f"u-{i}") for i in range(50)]
    )
    async with simulator() as sim:
        sim.faults.down("503")
        s = settings(sim, tmp_path, CURRENTS_RETRY_WINDOW="1h")
        sink = AmplitudeSink(s.amplitude)
        replay = Replay(
            [str(tmp_path / "in")], s, [amplitude_destination(s, sink)], Metrics(CollectorRegistry())
        )
        task = asyncio.create_task(replay.run(grace=0.5))
        await eventually(
            lambda: sum(replay.result.summary.read.values()) == 50, within=20, message="all read"
        )
        await eventually(lambda: sim.stats.requests_by_status.get(503, 0) > 0, within=20, message="failing")
        replay.stop()
        result = await asyncio.wait_for(task, 10)
        await sink.close()
    assert sum(result.summary.done.values()) == 0
    assert result.files_done == 0
    state = orjson.loads(next((tmp_path / "state").glob("*.json")).read_bytes())
    assert not any(ident.startswith(f"{path}|") for ident in state["done"])


# -- the command line, in a subprocess ----------------------------------------------------------------


def replay_args(sim: AmplitudeSimulator, tmp_path: Path, *extra: str) -> list[str]:
    return replay_argv(
        sim.http_v2_url, tmp_path,
        "--batch-age", "20ms", "--max-backoff", "200ms", "--throttle-penalty", "300ms", "--log-format", "json",
        *extra,
    )  # fmt: skip


async def test_replay_command_names_damaged_files_and_delivers_everything_else(tmp_path: Path) -> None:
    paths = write_currents_tree(
        tmp_path / "in", Synth(5, devices=300), 2000, max_per_file=300, codecs=("null",)
    )
    truncated, garbage = damage(tmp_path / "in", paths)
    async with simulator() as sim:
        expected = expected_events(tmp_path / "in", settings(sim, tmp_path))
        command = await start(replay_args(sim, tmp_path), {"AMPLITUDE_API_KEY": KEY}, tmp_path)
        code, _, stderr = await command.finish()
        assert code == 1, stderr
        assert {e.event["insert_id"]: e.event for e in sim.events} == {k: v for k, (_, v) in expected.items()}
        assert any(p == str(truncated) for p, _ in expected.values()), (
            "the damaged file's first records count"
        )
    summary = last_json(stderr)
    for path in (truncated, garbage):
        assert f"unreadable input {path} (record " in stderr
        assert any(line.startswith(f"{path}: ") for line in summary["unreadable"])
    unreadable = [r for r in dead_letters(tmp_path / "dead-letter") if r["reason"] == "unreadable_input"]
    assert sorted(r["position"]["file"] for r in unreadable) == sorted([str(truncated), str(garbage)])
    assert all(r["detail"] and r["time"] for r in unreadable)
    events_dead = sum(n for reason, n in summary["dead_lettered"].items() if reason != "unreadable_input")
    assert summary["read"] == summary["delivered"] + sum(summary["skipped"].values()) + events_dead
    assert summary["delivered"] == len(expected)


async def test_an_interrupted_replay_resumes_without_resending_finished_files(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(9, devices=600), 6000, max_per_file=400, codecs=("deflate",))
    async with simulator() as sim:
        expected = expected_events(tmp_path / "in", settings(sim, tmp_path))
        env = {"AMPLITUDE_API_KEY": KEY}
        # slow enough to be interrupted halfway: 1500 events/s, and little read ahead
        first = replay_args(sim, tmp_path, "--project-rate", "1500", "--max-pending", "100")
        async with running(first, env, tmp_path) as command:
            await eventually(lambda: sim.stats.events_ingested >= 1500, within=30, message="first half")
            os.killpg(command.proc.pid, signal.SIGINT)  # Ctrl-C: the worker process gets it too
            code, _, stderr = await command.finish()
        assert code == 130, stderr
        assert "interrupted: run the same command again to resume" in stderr
        assert "worker" not in stderr and "Traceback" not in stderr, "the worker died of the Ctrl-C"
        after_first = sim.stats.events_ingested
        assert after_first < len(expected), "the replay was not interrupted"
        (state_file,) = (tmp_path / "state").glob("replay-*.json")  # beside it: the job's lock
        state = orjson.loads(state_file.read_bytes())
        finished = {ident.split("|")[0] for ident in state["done"]}
        assert finished, "no file finished before the interruption"

        async with running(replay_args(sim, tmp_path), env, tmp_path) as command:
            code, _, stderr = await command.finish()
        assert code == 0, stderr
        assert f"files already finished by an earlier run: {len(finished)}" in stderr
        assert set(insert_ids(sim.events)) == set(expected)
        resent = sim.duplicates
        assert len(resent) <= 100, "more than the events in flight at the interruption were sent twice"
        assert not {expected[e.event["insert_id"]][0] for e in resent} & finished
        # the second run read only what the first had not finished
        assert last_json(stderr)["read"] < 6000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_api_key_never_leaks(tmp_path: Path) -> None:
    """A refused key, then accepted: the key appears in no log line, dead-letter, state file or metric."""
    secret = "sk-LEAKCHECK-93f0a1d2c7e54b6a"
    paths = write_currents_tree(tmp_path / "in", Synth(2, devices=100), 400, codecs=("null",))
    damage(tmp_path / "in", paths)
    port = free_port()
    async with simulator(api_keys=frozenset({"the-right-key"})) as sim:
        args = replay_args(sim, tmp_path, "--metrics-port", str(port), "--log-level", "DEBUG")
        async with (
            running(args, {"AMPLITUDE_API_KEY": secret}, tmp_path) as command,
            httpx.AsyncClient() as client,
        ):
            await eventually(
                lambda: sim.stats.requests_by_status.get(400, 0) >= 3, within=30, message="refusals"
            )
            scraped = ""

            async def alert_raised() -> bool:
                nonlocal scraped
                with contextlib.suppress(httpx.HTTPError):
                    scraped = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                return 'currents_credentials_failing{destination="amplitude"} 1.0' in scraped

            await eventually(alert_raised, within=30, message="credentials alert on /metrics")
            assert sim.stats.events_ingested == 0
            sim.accept_api_key(secret)
            code, stdout, stderr = await command.finish()
    assert code == 1
    assert sim.stats.events_ingested > 0
    assert "amplitude refuses our credentials" in stderr
    outputs = {"stdout": stdout, "stderr": stderr, "/metrics": scraped}
    for root in (tmp_path / "dead-letter", tmp_path / "state"):
        for path in root.rglob("*"):
            if path.is_file():
                outputs[str(path)] = path.read_text(errors="replace")
    assert any(name.endswith(".jsonl") for name in outputs), "no dead-letter file to check"
    for name, text in outputs.items():
        assert secret not in text, f"the API key leaked into {name}"
        assert secret[3:15] not in text, f"part of the API key leaked into {name}"


async def test_replay_counts_in_metrics(tmp_path: Path) -> None:
    """The run's counters agree with its summary (the registry a scrape would read)."""
    write_currents_tree(tmp_path / "in", Synth(4, devices=200), 800, codecs=("snappy",))
    metrics = Metrics(CollectorRegistry())
    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        replay = Replay([str(tmp_path / "in")], s, [amplitude_destination(s, sink)], metrics)
        result = await replay.run()
        replay.update_gauges()
        await sink.close()
    registry = metrics.registry

    def total(name: str) -> float:
        return sum(
            sample.value for family in registry.collect() for sample in family.samples if sample.name == name
        )

    assert total("currents_events_read_total") == sum(result.summary.read.values()) == 800
    assert total("currents_events_delivered_total") == sum(result.summary.done.values()) == len(sim.events)
    assert total("currents_events_skipped_total") == sum(result.summary.skipped.values())
    assert total("currents_pending_events") == 0
    assert Counter(dict(result.summary.skipped)) == Counter(
        {
            sample.labels["reason"]: int(sample.value)
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "currents_events_skipped_total"
        }
    )
