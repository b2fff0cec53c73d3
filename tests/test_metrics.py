"""``/metrics``, ``/livez`` and ``/readyz`` scraped over HTTP while the daemon and a replay work."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import httpx
from kafka_harness import eventually
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import TOPIC, daemon_env, delivered_ids, in_process_settings, make_events, produce_bulk

from consumer.broker import EmbeddedBroker
from consumer.daemon import Daemon
from consumer.destinations import amplitude_destination
from consumer.metrics import Metrics
from consumer.replay import Replay
from consumer.runtime import ops_server
from consumer.simulator import AmplitudeSimulator
from consumer.sink import AmplitudeSink
from consumer.synth import Synth, write_currents_tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition as {(name, sorted labels): value}."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items())
    )


async def probe(port: int, path: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}{path}")).status_code


async def test_daemon_metrics_and_probes_move_with_the_stream(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, 3)
    messages, expected = make_events(1200, seed=21)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    port = free_port()
    settings = dataclasses.replace(
        in_process_settings(daemon_env(broker, sim, registry_url, tmp_path)), metrics_port=port
    )
    metrics = Metrics(CollectorRegistry())
    sink = AmplitudeSink(settings.amplitude)
    daemon = Daemon(settings, [amplitude_destination(settings, sink)], metrics)
    async with ops_server(settings, metrics, ready=daemon.ready, on_scrape=daemon.update_gauges) as health:
        daemon.health = health
        assert await probe(port, "/readyz") == 503  # not assigned yet
        assert await probe(port, "/livez") == 200
        task = asyncio.create_task(daemon.run())
        try:
            await eventually(lambda: probe(port, "/readyz"), within=30, message="ready once assigned")
            await eventually(lambda: delivered_ids(sim) >= expected, within=60, message="all delivered")
            await eventually(
                lambda: all(daemon.committed.get(tp, 0) >= end for tp, end in ends.items()),
                within=30,
                message="all committed",
            )
            samples = await scrape(port)
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 60)
            await sink.close()
    assert total(samples, "currents_events_read_total") == len(messages)
    assert total(samples, "currents_events_delivered_total") == len(expected)
    assert total(samples, "currents_events_skipped_total") == len(messages) - len(expected)
    assert total(samples, "currents_requests_total", status="200") >= 1
    assert total(samples, "currents_request_seconds_count") >= 1
    for tp, end in ends.items():
        assert total(samples, "currents_committed_offset", topic=tp.topic, partition=str(tp.partition)) == end
        assert total(samples, "currents_kafka_consumer_lag", topic=tp.topic, partition=str(tp.partition)) == 0
    assert total(samples, "currents_pending_events") == 0
    assert total(samples, "currents_credentials_failing") == 0
    assert total(samples, "currents_last_progress_timestamp_seconds") > 0


async def test_replay_metrics_move_while_it_runs(sim: AmplitudeSimulator, tmp_path: Path) -> None:
    files = write_currents_tree(tmp_path / "in", Synth(seed=22, devices=400), 3000, codecs=("null",))
    assert files
    port = free_port()
    env = {
        "AMPLITUDE_API_KEY": "k-metrics",
        "AMPLITUDE_URL": sim.http_v2_url,
        "CURRENTS_DEAD_LETTER": str(tmp_path / "dl"),
        "CURRENTS_STATE_DIR": str(tmp_path / "st"),
        "CURRENTS_BATCH_EVENTS": "50",
        "CURRENTS_CONCURRENCY": "1",
        "CURRENTS_BATCH_AGE": "0.05s",
    }
    settings = dataclasses.replace(in_process_settings(env), metrics_port=port)
    metrics = Metrics(CollectorRegistry())
    sim.faults.delay_s = 0.05  # slow Amplitude a little so the run can be observed mid-way
    sink = AmplitudeSink(settings.amplitude)
    replay = Replay([str(tmp_path / "in")], settings, [amplitude_destination(settings, sink)], metrics)
    async with ops_server(settings, metrics, ready=lambda: True, on_scrape=replay.update_gauges):
        task = asyncio.create_task(replay.run())
        mid: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def some_delivered_not_all() -> bool:
            nonlocal mid
            mid = await scrape(port)
            return 0 < total(mid, "currents_events_delivered_total") < 2500

        await eventually(some_delivered_not_all, within=60, message="a scrape in the middle of the replay")
        assert total(mid, "currents_events_read_total") >= total(mid, "currents_events_delivered_total")
        assert total(mid, "currents_pending_events") > 0
        result = await asyncio.wait_for(task, 120)
        end = await scrape(port)
    await sink.close()
    assert total(end, "currents_events_read_total") == 3000
    assert total(end, "currents_events_delivered_total") == sum(result.summary.done.values())
    assert total(end, "currents_events_delivered_total") > total(mid, "currents_events_delivered_total")
    assert total(end, "currents_events_skipped_total") == sum(result.summary.skipped.values())
    assert total(end, "currents_request_seconds_count") == total(end, "currents_requests_total")
