"""``currents-consumer demo --follow``: following a bucket (``replay --follow``) end to end, in one command.

Writes a Currents tree into a temporary local directory — what a bucket already holds when the
follower starts: ``sample``'s two hours of November 2023 — and starts the simulator (Amplitude, Movable
Ink and Remerge) and the real follower in this process: the ``replay`` command's own
:class:`~consumer.commands.replay.Replay` with ``--follow``, its state and job lock in the directory,
polling every half second. Once its first sweep has finished everything that was there, it lands files
one at a time into the current UTC hour's ``date=`` folders, as Braze does (each written under a hidden
name and renamed into place, so it appears whole), and waits until each is finished. Then it stops
the follower (as SIGTERM does) and prints the summary and, per landed file, its events and how long
after landing its last event reached the Amplitude simulator.

Every wait is on a condition (files finished by the follower, events at the simulator) with a
deadline; nothing sleeps for a guessed time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.runtime import install_signals
from consumer.commands.replay import Replay
from consumer.ops.exits import ExitCode, exit_code
from consumer.ops.faults import Fault
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.settings import Settings
from currents_devkit.demo import demo_settings, in_work_dir
from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig
from currents_devkit.synth import Synth, generate_sample, object_key, write_container

LANDINGS = (
    ("users.behaviors.CustomEvent", 40),
    ("users.messages.email.Open", 30),
    ("users.behaviors.Purchase", 20),
)
"""The files landed while the follower runs: event type and events, one file each, in this order."""
POLL_INTERVAL = 0.5
"""The demo's ``--poll-interval`` (unless one is configured): the product's default is 30 s."""
WITHIN = 120.0
"""Seconds each wait may take before the demo gives up (exit 1)."""


@dataclass
class Landed:
    """A file the demo landed: its key under the followed directory, its events' ids, when it landed
    (UNIX seconds, once renamed into place) and, once finished, when its last event reached Amplitude."""

    key: str
    event_type: str
    ids: set[str]
    landed: float
    at_amplitude: int = 0
    last_received: float | None = None


class Gave(Exception):
    """A wait of the demo ended without its condition (the follower stopped, or the deadline passed)."""


async def run_follow_demo(
    base: Settings,
    n_events: int = 2000,
    seed: int = 7,
    *,
    keep: str | None = None,
    summary_json: bool = False,
) -> int:
    """Run the follow demo; returns the process exit code. Its files (the followed directory, the
    follower's state and lock, the dead-letter output) go to a temporary directory removed at the end
    (``keep`` as for :func:`~currents_devkit.demo.run_demo`)."""
    return await in_work_dir(
        keep, "bucket/, state/, dead-letter/", lambda work: _run(base, work, n_events, seed, summary_json)
    )


async def _run(base: Settings, work: Path, n_events: int, seed: int, summary_json: bool) -> int:
    bucket = work / "bucket"
    history = generate_sample(bucket, n_events, seed)
    connector = history[0].relative_to(bucket).parts[0]  # dataexport.<cluster>.S3.integration.<id>
    sim = AmplitudeSimulator(SimulatorConfig(keep_events=True, rate_window_s=30.0, log_interval_s=3600))
    await sim.start()
    try:
        follow: dict[str, object] = {"follow": True}
        if base.sources.get("follow.poll_interval", "default") == "default":
            follow["poll_interval"] = POLL_INTERVAL
        settings = demo_settings(
            base, sim, work, state_dir=str(work / "state"), follow=base.follow.model_copy(update=follow)
        )
        destinations = build_destinations(settings)
        metrics = Metrics(registry=CollectorRegistry())
        replay = Replay([str(bucket)], settings, destinations, metrics, progress_interval=5.0)
        signal = install_signals(replay.stop)
        started = time.monotonic()
        running: asyncio.Task[object] = asyncio.create_task(replay.run(grace=30.0))
        landed: list[Landed] = []
        swept: float | None = None
        gave: str | None = None
        try:
            swept = await _first_sweep(replay, running, len(history))
            synth = Synth(seed + 1000, devices=50)  # other events than the tree's
            for i, (event_type, events) in enumerate(LANDINGS):
                landed.append(_land(bucket, connector, synth, event_type, events, offset=100_000 + 1000 * i))
                await _until(_files_at_least(replay, len(history) + i + 1), running, landed[-1].key)
                _delivered(landed[-1], sim)
        except Gave as exc:
            gave = str(exc)
        finally:
            replay.stop()  # what SIGTERM does: drain what was read, save the state, let the lock go
            fault = await _ended(running)
            await close_all(destinations)
        elapsed = time.monotonic() - started
        report = _Report(settings, bucket, len(history), swept, landed, elapsed)
        report.print(replay.result.summary, sim, metrics, summary_json)
        if fault is not None:
            print(f"currents-consumer: demo: stopped: {fault}", file=sys.stderr)
            return int(ExitCode.FAULT)
        if gave is not None:
            print(f"currents-consumer: demo: {gave}", file=sys.stderr)
            return int(ExitCode.INTERRUPTED if signal.first is not None else ExitCode.UNREADABLE)
        return int(exit_code(replay.result.summary))
    finally:
        await sim.stop()


async def _first_sweep(replay: Replay, running: asyncio.Task[object], files: int) -> float:
    """Wait until the follower finished the ``files`` that were there at its start; how long it took."""
    started = time.monotonic()
    await _until(lambda: _files_done(replay) >= files, running, f"the {files} files there at start")
    return time.monotonic() - started


def _files_done(replay: Replay) -> int:
    return replay.source.stats.files_done if replay.source is not None else 0


def _files_at_least(replay: Replay, n: int) -> Callable[[], bool]:
    return lambda: _files_done(replay) >= n


async def _until(done: Callable[[], bool], running: asyncio.Task[object], what: str) -> None:
    """Wait until ``done()``; :class:`Gave` if the follower stops first or :data:`WITHIN` passes."""
    deadline = time.monotonic() + WITHIN
    while not done():
        if running.done():
            raise Gave(f"the follower stopped before it finished {what}")
        if time.monotonic() > deadline:
            raise Gave(f"{what} not finished within {WITHIN:.0f}s")
        await asyncio.sleep(0.02)


async def _ended(running: asyncio.Task[object]) -> Fault | None:
    """Wait for the follower's end (it drains what it read); the fault that stopped it, if one did."""
    try:
        await running
    except Fault as fault:
        return fault
    return None


def _land(root: Path, connector: str, synth: Synth, event_type: str, events: int, offset: int) -> Landed:
    """Write one file of ``events`` events queued now into the current hour's ``date=`` folder of
    ``connector``, whole (hidden name, then a rename)."""
    now = time.time()
    integration = connector.rsplit(".", 1)[1]
    date = time.strftime("%Y-%m-%d-%H", time.gmtime(now))
    key = object_key("current", integration, event_type, date, 0, offset)
    records = list(synth.records(event_type, events, at=int(now)))
    write_container(root / key, event_type, records, "deflate")
    return Landed(key, event_type, {str(r["id"]) for r in records}, time.time())


def _delivered(landed: Landed, sim: AmplitudeSimulator) -> None:
    """Fill in what the Amplitude simulator received of ``landed`` (once the follower finished it)."""
    times = [e.received_at for e in sim.events if e.event.get("insert_id") in landed.ids]
    landed.at_amplitude = len(times)
    landed.last_received = max(times) if times else None


@dataclass
class _Report:
    """What the demo prints after the summary."""

    settings: Settings
    bucket: Path
    files_at_start: int
    swept: float | None
    landed: list[Landed]
    elapsed: float

    def print(self, summary: Summary, sim: AmplitudeSimulator, metrics: Metrics, summary_json: bool) -> None:
        out = sys.stderr
        print(f"\n== currents-consumer demo --follow: done in {self.elapsed:.1f}s", file=out)
        print(json.dumps(summary.as_dict()) if summary_json else summary.render(), file=out)
        polls = metrics.registry.get_sample_value(
            "currents_follow_listings_total", {"listing": "poll", "outcome": "ok"}
        )
        follow = self.settings.follow
        print(
            f"\nfollowed {self.bucket} (a poll every {follow.poll_interval:g}s: {polls or 0:.0f} polls; "
            f"state and lock in {self.settings.state_dir})",
            file=out,
        )
        there = f"  there at start: {self.files_at_start} files"
        if self.swept is not None:
            there += f", finished by the first sweep {self.swept:.1f}s after the start"
        print(there, file=out)
        hours = sorted({part for x in self.landed for part in x.key.split("/") if part.startswith("date=")})
        into = f", into {' and '.join(hours)}" if hours else ""
        print(f"  landed while it ran: {len(self.landed)} files{into}", file=out)
        for x in self.landed:
            line = f"    {x.event_type:<28} {len(x.ids):>3} events"
            if x.last_received is not None:
                lag = x.last_received - x.landed
                line += f", {x.at_amplitude} to Amplitude, the last {lag:.1f}s after the file landed"
            print(line, file=out)
        lags = [x.last_received - x.landed for x in self.landed if x.last_received is not None]
        if lags:
            events = sum(len(x.ids) for x in self.landed if x.last_received is not None)
            print(
                f"  picked up live: {len(lags)} files, {events} events; landing to Amplitude "
                f"{min(lags):.1f}s to {max(lags):.1f}s",
                file=out,
            )
        print(
            f"\nAmplitude simulator received {len(sim.events)} events, {len(sim.duplicates)} duplicates,"
            f" requests by status {dict(sim.stats.requests_by_status)}",
            file=out,
        )
        if "movableink" in self.settings.destinations:
            print(f"Movable Ink simulator received {len(sim.movableink_events())} events", file=out)
        if "remerge" in self.settings.destinations:
            print(f"Remerge simulator received {len(sim.remerge_events())} events", file=out)
