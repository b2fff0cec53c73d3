"""Fan-out over real components: one Kafka stream (Tansu) to Amplitude, Movable Ink and Remerge at once
(the simulator serves all three over HTTP), with one destination failing for a while.

What must hold: the destinations that work keep flowing while one is down; no offset is committed
past an event the failing destination has not finished; once it heals everything arrives, each
destination gets exactly what its mapper makes of the stream, and the offsets reach the end.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from amplitude_harness import (
    MOVABLEINK_KEY,
    MOVABLEINK_PASSWORD,
    MOVABLEINK_USER,
    REMERGE_KEY,
    movableink_bodies,
    partner_simulator,
    remerge_params,
)
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import local_schema_id
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, avro_body, confluent_frame
from currents_devkit.synth.io import write_container
from daemon_harness import PARTITIONS, TOPIC, all_committed, daemon_env, produce_bulk, running_daemon
from kafka_harness import committed_offsets, eventually
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.commands.replay import Replay
from consumer.events import apart
from consumer.ops.metrics import Metrics
from consumer.positions.resume import ResumeState
from consumer.settings import Settings, load
from consumer.settings.partners import MovableInkSettings, RemergeSettings
from consumer.transform.amplitude import Transformer
from consumer.transform.amplitude_tables import BRAZE_TYPES
from consumer.transform.base import Skip
from consumer.transform.movableink import MovableInkMapper
from consumer.transform.remerge import RemergeMapper

GROUP = "it-group"


def fanout_settings(env: dict[str, str], sim: AmplitudeSimulator, **extra: str) -> Settings:
    return load(
        None,
        env={
            **env,
            "CURRENTS_DESTINATIONS": "amplitude,movableink,remerge",
            "MOVABLEINK_ENDPOINT": sim.url,
            "MOVABLEINK_KEY": MOVABLEINK_KEY,
            "MOVABLEINK_USERNAME": MOVABLEINK_USER,
            "MOVABLEINK_PASSWORD": MOVABLEINK_PASSWORD,
            "REMERGE_ENDPOINT": f"{sim.url}/event",
            "REMERGE_KEY": REMERGE_KEY,
            "REMERGE_IOS_APP_ID": "012345678",
            "REMERGE_ANDROID_APP_ID": "com.example",
            "CURRENTS_MAX_BACKOFF": "0.3s",
            **extra,
        },
    )


def canonical(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


class Expected:
    """What each destination must end up with, from the same mappers run over the produced records."""

    def __init__(self, settings: Settings) -> None:
        self.amplitude: set[str] = set()
        self.tracks: Counter[bytes] = Counter()
        self.identified: set[tuple[str, str]] = set()
        self.remerge: Counter[bytes] = Counter()
        self._amp = Transformer(settings.mapping)
        self._mi = MovableInkMapper(settings.section("movableink", MovableInkSettings))
        self._rm = RemergeMapper(settings.section("remerge", RemergeSettings))

    def add(self, event_type: str, record: dict[str, Any]) -> None:
        if not isinstance(self._amp.transform(event_type, record), Skip):
            self.amplitude.add(record["id"])
        mi = self._mi.map(event_type, record)
        if not isinstance(mi, Skip):
            for p in mi:
                if p["type"] == "identify":
                    self.identified.add((p["anonymous_id"], p["user_id"]))
                else:
                    self.tracks[canonical(p)] += 1
        rm = self._rm.map(event_type, record)
        if not isinstance(rm, Skip):
            for p in rm:
                # As the simulator keeps a request: data decoded, non_app_event a boolean.
                parsed = {**p, "non_app_event": p["non_app_event"] == "true"}
                if "data" in p:
                    parsed["data"] = orjson.loads(p["data"])
                self.remerge[canonical(parsed)] += 1


def make_stream(n: int, seed: int, settings: Settings) -> tuple[list[tuple[bytes, bytes]], Expected]:
    synth = Synth(seed=seed, devices=200)
    expected = Expected(settings)
    messages = []
    behaviour = ["users.behaviors.CustomEvent", "users.behaviors.Purchase"]
    # Half behaviour events (what Movable Ink and Remerge take), half every exported type.
    stream = [
        *synth.mixed(n // 2, event_types=behaviour),
        *synth.mixed(n - n // 2, event_types=sorted(BRAZE_TYPES)),
    ]
    for event_type, record in stream:
        expected.add(event_type, record)
        frame = confluent_frame(local_schema_id(event_type), avro_body(event_type, record))
        messages.append(((record.get("device_id") or record["id"]).encode(), frame))
    return messages, expected


def seen_tracks(sim: AmplitudeSimulator) -> Counter[bytes]:
    return Counter(canonical(b) for b in movableink_bodies(sim) if b["type"] == "track")


def seen_identified(sim: AmplitudeSimulator) -> set[tuple[str, str]]:
    return {(b["anonymous_id"], b["user_id"]) for b in movableink_bodies(sim) if b["type"] == "identify"}


def seen_remerge(sim: AmplitudeSimulator) -> Counter[bytes]:
    return Counter(canonical(p) for p in remerge_params(sim))


@contextlib.asynccontextmanager
async def fanout_sim() -> AsyncIterator[AmplitudeSimulator]:
    async with partner_simulator(keep_events=True) as sim:
        yield sim


async def test_one_destination_down_the_others_flow_nothing_is_committed_past_it_then_all_arrive(
    broker: EmbeddedBroker, registry_url: str, tmp_path: Path
) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    async with fanout_sim() as sim:
        env = daemon_env(broker, sim, registry_url, tmp_path)
        settings = fanout_settings(env, sim, CURRENTS_MAX_PENDING="20000")
        messages, expected = make_stream(1200, seed=31, settings=settings)
        assert expected.amplitude and expected.tracks and expected.identified and expected.remerge
        ends = await produce_bulk(broker.bootstrap_servers, messages)
        sim.faults.down("503", destination="movableink")
        async with running_daemon(settings) as daemon:
            # The working destinations receive everything while Movable Ink refuses every request.
            await eventually(
                lambda: {e.event["insert_id"] for e in sim.events} >= expected.amplitude,
                within=60,
                message="Amplitude receives everything while Movable Ink is down",
            )
            await eventually(
                lambda: seen_remerge(sim) == expected.remerge,
                within=30,
                message="Remerge receives everything",
            )
            assert movableink_bodies(sim) == []
            movableink = daemon.pipeline.engines[
                [d.name for d in daemon.pipeline.destinations].index("movableink")
            ]
            assert movableink.pending > 0
            # Nothing is committed past the first event Movable Ink still owes, in any partition.
            owed: dict[TopicPartition, int] = {}
            for item in apart(movableink.live.items.values()):
                tp = TopicPartition(item.position.source, item.position.partition)
                owed[tp] = min(owed.get(tp, 1 << 62), item.position.offset)
            await daemon.commit()
            committed = await committed_offsets(broker.bootstrap_servers, GROUP, ends)
            assert all(committed.get(tp, 0) <= offset for tp, offset in owed.items()), (committed, owed)
            assert not await all_committed(broker.bootstrap_servers, GROUP, ends)

            sim.faults.up(destination="movableink")
            await eventually(
                lambda: seen_tracks(sim) == expected.tracks,
                within=90,
                message="every Movable Ink event after healing",
            )
            await eventually(
                lambda: all_committed(broker.bootstrap_servers, GROUP, ends),
                within=30,
                message="offsets committed to the end",
            )
        assert seen_identified(sim) == expected.identified
        assert seen_remerge(sim) == expected.remerge
        assert {e.event["insert_id"] for e in sim.events} == expected.amplitude
        summary = daemon.pipeline.summary
        # Each worker process remembers the pairs it identified: a pair is identified once per worker.
        identifies = summary.by_destination["movableink"] - sum(expected.tracks.values())
        workers = settings.input.workers
        assert workers >= 1
        assert len(expected.identified) <= identifies <= workers * len(expected.identified)
        assert summary.by_destination["remerge"] == sum(expected.remerge.values())
        assert summary.skipped["remerge:no_advertising_id"] + summary.skipped["remerge:not_forwarded"] > 0


async def test_replay_fans_files_out_to_every_destination_and_keys_its_resume_state_by_them(
    tmp_path: Path,
) -> None:
    synth = Synth(seed=32, devices=100)
    behaviour = ["users.behaviors.CustomEvent", "users.behaviors.Purchase"]
    records = list(synth.mixed(400, event_types=behaviour))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event_type, record in records:
        by_type.setdefault(event_type, []).append(record)
    for event_type, rows in by_type.items():
        write_container(tmp_path / "in" / f"{event_type}.avro", event_type, rows)
    async with fanout_sim() as sim:
        env = {
            "AMPLITUDE_API_KEY": "replay-key-1",
            "AMPLITUDE_URL": sim.http_v2_url,
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dead-letter"),
            "CURRENTS_STATE_DIR": str(tmp_path / "state"),
            "CURRENTS_BATCH_AGE": "20ms",
        }
        settings = fanout_settings(env, sim)
        expected = Expected(settings)
        for event_type, rows in by_type.items():  # the order replay reads them in does not matter here
            for record in rows:
                expected.add(event_type, record)
        destinations = build_destinations(settings)
        try:
            result = await Replay(
                [str(tmp_path / "in")], settings, destinations, Metrics(CollectorRegistry())
            ).run()
        finally:
            await close_all(destinations)
        assert {e.event["insert_id"] for e in sim.events} == expected.amplitude
        assert seen_tracks(sim) == expected.tracks
        assert seen_identified(sim) == expected.identified
        assert seen_remerge(sim) == expected.remerge
        assert result.files_done == len(by_type)
        # Amplitude alone is another job: the files finished for the fan-out are not finished for it.
        alone = ResumeState.load(settings.state_dir, [str(tmp_path / "in")], "", ("amplitude",))
        fanned = ResumeState.load(settings.state_dir, [str(tmp_path / "in")], "", settings.destinations)
        assert len(fanned.done) == len(by_type)
        assert alone.done == {}
