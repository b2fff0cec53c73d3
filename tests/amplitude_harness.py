"""Helpers for tests of the delivery engine, the sinks and replay against a real simulator over HTTP.

The simulator also serves Movable Ink and Remerge: :func:`partner_simulator` accepts only the test
credentials and keys below, :func:`movableink_bodies` / :func:`remerge_params` read what it kept.

Waiting is always by polling a condition against a deadline (:func:`eventually`), never by sleeping a
fixed time. Settings are built through :func:`consumer.settings.load`, like the commands build them,
with short batch ages, backoffs and penalties so that a whole scenario takes seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig
from kafka_harness import eventually
from prometheus_client import CollectorRegistry

from consumer.delivery.destination import Destination
from consumer.delivery.engine import DeliveryEngine
from consumer.events import Group, Pending, PendingRun, Position, Queued, apart, json_payload, limiter_keys
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter, read_dead_letters
from consumer.settings import Settings, load
from consumer.sinks.amplitude import AmplitudeSink
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.prepare import ChunkBuilder

__all__ = [
    "KEY",
    "MOVABLEINK_KEY",
    "MOVABLEINK_PASSWORD",
    "MOVABLEINK_USER",
    "REMERGE_KEY",
    "RUN_SIZES",
    "Engine",
    "dead_letters",
    "engine",
    "event",
    "eventually",
    "insert_ids",
    "movableink_bodies",
    "partner_simulator",
    "pending",
    "remerge_params",
    "runs_of",
    "settings",
    "simulator",
]

KEY = "ampl-test-key-5f2c9a"
"""The API key tests send (distinctive, so a leak is easy to find)."""
MOVABLEINK_USER = "mi-test-user"
MOVABLEINK_PASSWORD = "mi-test-secret-7d1e4a"
"""The Movable Ink Basic-auth credentials :func:`partner_simulator` accepts (a distinctive password)."""
MOVABLEINK_KEY = "mi-test-key-3b8f"
"""The one ``/behavioral/<key>`` :func:`partner_simulator` accepts."""
REMERGE_KEY = "remerge-test-key-9a4c61"
"""The one Remerge ``key`` :func:`partner_simulator` accepts (distinctive, so a leak is easy to find)."""

FAST: dict[str, str] = {
    "CURRENTS_BATCH_AGE": "20ms",
    "CURRENTS_MAX_BACKOFF": "200ms",
    "CURRENTS_THROTTLE_PENALTY": "300ms",
    "CURRENTS_REQUEST_TIMEOUT": "5s",
    "CURRENTS_LOG_FORMAT": "json",
}
"""Environment that keeps every wait short."""


def settings(sim: AmplitudeSimulator, tmp_path: Path, **env: str) -> Settings:
    """Settings pointing at ``sim``, writing under ``tmp_path``; ``env`` overrides (variable names)."""
    values = {
        "AMPLITUDE_API_KEY": KEY,
        "AMPLITUDE_URL": sim.http_v2_url,
        "CURRENTS_DEAD_LETTER": str(tmp_path / "dead-letter"),
        "CURRENTS_STATE_DIR": str(tmp_path / "state"),
        **FAST,
        **env,
    }
    return load(None, values)


@contextlib.asynccontextmanager
async def simulator(**config: Any) -> AsyncIterator[AmplitudeSimulator]:
    """A started simulator on a free loopback port (strict 1-second rate window by default)."""
    config.setdefault("log_interval_s", 0)
    sim = AmplitudeSimulator(SimulatorConfig(**config))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def partner_simulator(**config: Any) -> AsyncIterator[AmplitudeSimulator]:
    """:func:`simulator` accepting only :data:`MOVABLEINK_USER`/:data:`MOVABLEINK_PASSWORD`,
    :data:`MOVABLEINK_KEY` and :data:`REMERGE_KEY` (Amplitude keys as configured: any by default)."""
    config.setdefault("movableink_credentials", frozenset({(MOVABLEINK_USER, MOVABLEINK_PASSWORD)}))
    config.setdefault("movableink_keys", frozenset({MOVABLEINK_KEY}))
    config.setdefault("remerge_keys", frozenset({REMERGE_KEY}))
    async with simulator(**config) as sim:
        yield sim


def movableink_bodies(sim: AmplitudeSimulator, key: str | None = None) -> list[dict[str, Any]]:
    """The JSON bodies of the Movable Ink events ``sim`` accepted (only those for ``key`` if given)."""
    return [row["event"] for row in sim.movableink_events() if key is None or row["key"] == key]


def remerge_params(sim: AmplitudeSimulator) -> list[dict[str, Any]]:
    """The parsed query parameters of the Remerge events ``sim`` accepted (``key`` never included)."""
    return [row["event"] for row in sim.remerge_events()]


def event(i: int, device: str | None = None, user: str | None = None, **fields: Any) -> dict[str, Any]:
    """An Amplitude event with ``insert_id`` ``ev-<i>`` (device ``dev-<i>`` unless given)."""
    ev: dict[str, Any] = {
        "event_type": "[Appboy] Test",
        "time": 1_700_000_000_000 + i,
        "insert_id": f"ev-{i:06d}",
        "device_id": device if device is not None else f"dev-{i:06d}",
    }
    if user is not None:
        ev["user_id"] = user
    ev.update(fields)
    return {k: v for k, v in ev.items() if v is not None}


def pending(ev: dict[str, Any], index: int, source: str = "test.avro", first_attempt: float = 0.0) -> Pending:
    """``ev`` on its way, from record ``index`` of ``source``."""
    return Pending.alone(
        "users.behaviors.CustomEvent",
        Position(source, -1, index),
        orjson.dumps(ev),
        first_attempt or time.time(),
        limiter_keys(ev),
    )


def runs_of(
    events: list[dict[str, Any]], size: int, source: str = "test.avro", first_attempt: float = 0.0
) -> list[PendingRun]:
    """``events`` (record ``i`` of ``source`` each) on their way in runs of ``size``, as the pipeline
    takes them from a chunk's columns (built by the real :class:`ChunkBuilder`), each run owing its own
    group."""
    runs = []
    for start in range(0, len(events), size):
        builder = ChunkBuilder((source, -1), 1)
        for i, ev in enumerate(events[start : start + size], start):
            builder.add(i, "users.behaviors.CustomEvent", ([(orjson.dumps(ev), limiter_keys(ev))],))
        chunk = builder.build()
        group = Group(chunk.stream, chunk.offsets[0], chunk.offsets[-1], len(chunk))
        at = first_attempt or time.time()
        runs.append(chunk.outputs[0].run(0, len(chunk), (chunk.types, chunk.offsets, group), at))
    return runs


RUN_SIZES = [0, 7]
"""How :meth:`Engine.submit_all` hands events over in tests parametrized over it: one at a time (0), or
in runs of this many payloads (as the pipeline hands a chunk's rows)."""


@dataclass
class Engine:
    """A delivery engine with a real sink, its outcomes and its metrics."""

    engine: DeliveryEngine
    sink: AmplitudeSink
    metrics: Metrics
    dead: DeadLetterWriter
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    ends: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    """Hand events over in runs of this many payloads (0: one :class:`Pending` each)."""

    def on_done(self, items: list[Queued], outcome: str, reason: str) -> None:
        for item in apart(items):
            insert_id = json_payload(item.encoded)["insert_id"]
            self.ends[insert_id] += 1
            self.outcomes[insert_id] = (outcome, reason)

    def delivered(self) -> set[str]:
        return {i for i, (o, _) in self.outcomes.items() if o == "delivered"}

    def dead_lettered(self) -> dict[str, str]:
        return {i: r for i, (o, r) in self.outcomes.items() if o == "dead_lettered"}

    def records(self) -> list[dict[str, Any]]:
        """The dead-letter records written so far (synced first)."""
        self.dead.sync()
        return dead_letters(self.dead.directory)

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)

    async def submit_all(self, events: Iterable[dict[str, Any]], source: str = "test.avro") -> None:
        """Submit ``events`` (record ``i`` of ``source`` each), one at a time or in runs (:attr:`runs`)."""
        if self.runs:
            for run in runs_of(list(events), self.runs, source):
                await self.engine.submit(run)
            return
        for i, ev in enumerate(events):
            await self.engine.submit(pending(ev, i, source))


@contextlib.asynccontextmanager
async def engine(s: Settings, runs: int = 0) -> AsyncIterator[Engine]:
    """A :class:`DeliveryEngine` on ``s`` with its own metrics registry, handed events in runs of ``runs``
    payloads (0: one at a time); closed (and synced) on exit."""
    metrics = Metrics(CollectorRegistry())
    sink = AmplitudeSink(s.amplitude)
    dead = DeadLetterWriter(s.dead_letter)
    box: list[Engine] = []
    destination = Destination(
        "amplitude", AmplitudeMapper(Transformer(s.mapping)), sink, s.amplitude, s.limits
    )
    eng = DeliveryEngine(destination, dead, lambda *a: box[0].on_done(*a), metrics)
    box.append(Engine(eng, sink, metrics, dead, runs=runs))
    try:
        yield box[0]
    finally:
        await eng.close()
        await sink.close()
        dead.close()


def dead_letters(directory: Path | str) -> list[dict[str, Any]]:
    """Every dead-letter record under ``directory`` (none if it does not exist)."""
    if not Path(directory).exists():
        return []
    return [record for _, _, record in read_dead_letters([str(directory)])]


def insert_ids(events: Iterable[Any]) -> list[str]:
    """The ``insert_id`` of each simulator-ingested event (or plain event dict)."""
    return [(e.event if hasattr(e, "event") else e)["insert_id"] for e in events]
