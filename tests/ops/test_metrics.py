"""``/metrics``, ``/livez`` and ``/readyz`` scraped over HTTP while the daemon and a replay work."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_currents_tree
from daemon_harness import TOPIC, daemon_env, delivered_ids, in_process_settings, make_events, produce_bulk
from kafka_harness import eventually
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.app.destinations import amplitude_destination
from consumer.app.runtime import ops_server
from consumer.commands.replay import Replay
from consumer.commands.run import Daemon
from consumer.ops.metrics import Metrics
from consumer.sinks.amplitude import AmplitudeSink


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
    settings = in_process_settings(daemon_env(broker, sim, registry_url, tmp_path)).model_copy(
        update={"metrics_port": port}
    )
    metrics = Metrics(CollectorRegistry())
    sink = AmplitudeSink(settings.amplitude)
    daemon = Daemon(settings, [amplitude_destination(settings, sink)], metrics)
    async with ops_server(settings, metrics, ready=daemon.ready, on_scrape=daemon.update_gauges) as health:
        daemon.health = health
        assert await probe(port, "/readyz") == 503  # not assigned yet
        assert await probe(port, "/livez") == 200

        async def ready() -> bool:
            # The status itself, not its truth: 503 is a true int, so it would pass at once.
            return await probe(port, "/readyz") == 200

        task = asyncio.create_task(daemon.run())
        try:
            await eventually(ready, within=30, message="ready once assigned")
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
    settings = in_process_settings(env).model_copy(update={"metrics_port": port})
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


def test_counts_reach_every_reader_of_the_registry_at_once() -> None:
    """:meth:`Metrics.count` only notes the amounts; whoever reads the registry sees them all."""
    metrics = Metrics(CollectorRegistry())
    read = metrics.registry.get_sample_value
    metrics.count(metrics.read, "purchase")
    metrics.count(metrics.read, "purchase", 2)
    metrics.count(metrics.delivered, "purchase", destination="amplitude")
    assert read("currents_events_read_total", {"event_type": "purchase"}) == 3
    assert (
        read("currents_events_delivered_total", {"destination": "amplitude", "event_type": "purchase"}) == 1
    )
    metrics.count(metrics.read, "purchase")
    metrics.count(metrics.skipped, "no_user", 5, destination="remerge")
    text = metrics.exposition().decode()
    assert 'currents_events_read_total{event_type="purchase"} 4.0' in text
    assert 'currents_events_skipped_total{destination="remerge",reason="no_user"} 5.0' in text
    assert read("currents_events_read_total", {"event_type": "purchase"}) == 4  # applied once, not per read
    # what is incremented directly adds up with what is counted
    metrics.requests.labels("amplitude", "200").inc()
    metrics.count(metrics.requests, "200", destination="amplitude")
    assert read("currents_requests_total", {"destination": "amplitude", "status": "200"}) == 2


def test_flush_serves_the_readers_that_skip_the_flushing_collector() -> None:
    metrics = Metrics(CollectorRegistry(auto_describe=True))  # as the default registry is made
    metrics.count(metrics.read, "purchase", 3)
    restricted = metrics.registry.restricted_registry(["currents_events_read_total"])
    metrics.flush()
    assert b'currents_events_read_total{event_type="purchase"} 3.0' in generate_latest(restricted)
    assert metrics.registry.get_sample_value("currents_events_read_total", {"event_type": "purchase"}) == 3


def test_a_negative_count_fails_where_it_is_made() -> None:
    metrics = Metrics(CollectorRegistry())
    with pytest.raises(ValueError, match="non-negative"):
        metrics.count(metrics.read, "purchase", -1)
    assert metrics.exposition()  # nothing broken left for the next scrape


def test_collections_from_another_thread_lose_no_count() -> None:
    metrics = Metrics(CollectorRegistry())
    done = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not done.is_set():
            seen.append(
                metrics.registry.get_sample_value("currents_events_read_total", {"event_type": "t"}) or 0
            )

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(100_000):
            metrics.count(metrics.read, "t")
            metrics.count(metrics.delivered, "t", destination=f"d{i % 3}")
    finally:
        done.set()
        scraper.join()
    assert seen == sorted(seen)  # never more than was counted, never going back
    assert metrics.registry.get_sample_value("currents_events_read_total", {"event_type": "t"}) == 100_000
    delivered = [
        metrics.registry.get_sample_value(
            "currents_events_delivered_total", {"destination": f"d{d}", "event_type": "t"}
        )
        for d in range(3)
    ]
    assert delivered == [33_334, 33_333, 33_333]
