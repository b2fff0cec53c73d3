"""One function per benchmark row; each runs its work as a measured child process.

Every scenario takes a :class:`Context` and a :class:`~dataset.Dataset` and returns a :class:`Row`:
the child's cost (:class:`~measure.ChildRun`), how many events it read and produced, whether its own
checks passed, and scenario-specific details (the simulator's counters and cost for the HTTP rows).
A row never raises for a failing child: it comes back with ``ok=False`` and the reason in ``notes``,
so one broken row does not hide the others.

Rows (``SCENARIOS`` order is the table order):

``fastavro``  the floor: ``for r in fastavro.reader(f): pass`` over every file (bench/floor.py).
``convert``   ``currents-consumer convert DIR`` with stdout to /dev/null: decode + transform + JSON.
``replay``    ``currents-consumer replay DIR`` into a fresh simulator: the whole product, over HTTP.
``sdk``       fastavro + Amplitude's Python SDK into a fresh simulator (bench/sdk_naive.py).
``sdk-tuned`` the SDK as a careful user tunes it, with a minimal mapping of its own (bench/sdk_tuned.py).
``kafka``     the Kafka daemon (benchmark issue, point 5), topic keyed by device: :func:`kafka_daemon`.
``kafka-files`` the same daemon from a topic loaded file by file (long runs of one event type per
              partition): see :func:`kafka_daemon_files`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset import Dataset
from measure import ChildRun, run_child, tail
from simserver import SimulatorProcess

BENCH = Path(__file__).resolve().parent
API_KEY = "bench-key"


@dataclass
class Context:
    """Where a run writes its logs and scratch state, and how children are started."""

    out: Path
    timeout: float = 1800.0
    python: str = sys.executable
    replay_flags: tuple[str, ...] = ()
    """Extra ``replay`` flags (``run.py --replay-flag``), to measure a variant such as ``--gzip=false``."""
    wrap: tuple[str, ...] = ()
    """A command the measured child runs under (py-spy's ``record ... --`` for a profile), or nothing."""
    kafka_partitions: int = 0
    """Partitions of the Kafka rows' topic (``run.py --kafka-partitions``); 0: :data:`KAFKA_PARTITIONS`."""

    @property
    def cli(self) -> list[str]:
        """The installed ``currents-consumer`` script run by this interpreter (no shell shim in the
        measured process: pyenv's shim, for one, is a bash script); ``python -m consumer`` otherwise."""
        script = Path(self.python).parent / "currents-consumer"
        if script.is_file():
            return [self.python, str(script)]
        return [self.python, "-m", "consumer"]

    def scratch(self, tag: str) -> Path:
        """A fresh, empty directory for one run's state (resume state must never carry over)."""
        path = self.out / "scratch" / tag
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def log(self, tag: str, stream: str) -> Path:
        """The file that keeps one child's stdout or stderr (its directory made if needed: a run of the
        kafka row alone opens the broker's log before any child has made it)."""
        path = self.out / "logs" / f"{tag}.{stream}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Row:
    """One measured run of one scenario."""

    scenario: str
    events: int
    run: ChildRun | None
    events_out: int | None = None
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        """Mark the row failed, keeping why."""
        self.ok = False
        self.notes.append(why)

    def as_dict(self) -> dict[str, Any]:
        """JSON form, rates included."""
        run = self.run
        rate = round(self.events / run.wall_s) if run and run.wall_s > 0 else None
        cpu_rate = round(self.events / run.cpu_s) if run and run.cpu_s > 0 else None
        return {
            "scenario": self.scenario,
            "events": self.events,
            "events_out": self.events_out,
            "ok": self.ok,
            "events_per_s": rate,
            "events_per_cpu_s": cpu_rate,
            "run": run.as_dict() if run else None,
            "notes": self.notes,
            "extra": self.extra,
        }


def _last_json(path: Path) -> dict[str, Any] | None:
    """The last line of a child's output that parses as a JSON object (its summary)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _child(ctx: Context, tag: str, argv: list[str], *, keep_stdout: bool) -> ChildRun:
    """Run one measured child; stdout to ``ctx.log(tag, "stdout")`` or /dev/null, stderr to its log."""
    err_path = ctx.log(tag, "stderr")
    out_path = ctx.log(tag, "stdout") if keep_stdout else Path(os.devnull)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("wb") as out:
        return run_child([*ctx.wrap, *argv], stdout=out, stderr_path=err_path, timeout=ctx.timeout)


def _check_exit(row: Row, run: ChildRun, stderr: Path) -> None:
    if run.timed_out:
        row.fail(f"killed after {run.wall_s:.0f} s (timeout)")
    elif run.returncode != 0:
        row.fail(f"exit code {run.returncode}: {tail(stderr, 5)}")


def fastavro_floor(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(a) plain fastavro decoding of every file: the floor every other row stands on."""
    run = _child(ctx, tag, [ctx.python, str(BENCH / "floor.py"), str(ds.root)], keep_stdout=True)
    row = Row("fastavro", ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    result = _last_json(ctx.log(tag, "stdout")) or {}
    row.events_out = result.get("records")
    if row.ok and row.events_out != ds.events:
        row.fail(f"decoded {row.events_out} records, expected {ds.events}")
    return row


def convert(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(b) ``currents-consumer convert`` to /dev/null: decode, transform, encode, write."""
    argv = [*ctx.cli, "convert", str(ds.root), "--summary-json"]
    run = _child(ctx, tag, argv, keep_stdout=False)
    row = Row("convert", ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    summary = _last_json(ctx.log(tag, "stderr")) or {}
    row.events_out = summary.get("converted")
    row.extra["skipped"] = summary.get("skipped")
    if row.ok and summary.get("read") != ds.events:
        row.fail(f"read {summary.get('read')} records, expected {ds.events}")
    return row


def replay(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(c) ``currents-consumer replay`` into a fresh simulator, per-device limits off on both sides."""
    return _replay(ctx, ds, tag, "replay", lambda sim: [])


def fanout(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(c') the same replay fanned out to Amplitude, Movable Ink and Remerge (one simulator serves all)."""
    return _replay(
        ctx,
        ds,
        tag,
        "fanout",
        _fanout_flags,
    )


def _fanout_flags(sim: SimulatorProcess) -> list[str]:
    return [
        "--destination", "amplitude", "--destination", "movableink", "--destination", "remerge",
        "--movableink-endpoint", sim.url, "--movableink-key", "bench-key",
        "--movableink-username", "bench", "--movableink-password", "bench-password",
        "--remerge-endpoint", sim.url + "/event", "--remerge-key", "bench-key",
        "--remerge-ios-app-id", "012345678", "--remerge-android-app-id", "com.example",
    ]  # fmt: skip


def _replay(
    ctx: Context, ds: Dataset, tag: str, name: str, extra: Callable[[SimulatorProcess], list[str]]
) -> Row:
    scratch = ctx.scratch(tag)
    with SimulatorProcess(ctx.log(tag, "simulator")) as sim:
        argv = [
            *ctx.cli, "replay", str(ds.root),
            "--api-key", API_KEY,
            "--amplitude-url", sim.http_v2_url,
            "--dead-letter", str(scratch / "dead-letter"),
            "--state-dir", str(scratch / "state"),
            "--device-rate", "1000000",
            "--log-format", "json",
            "--summary-json",
            *extra(sim),
            *ctx.replay_flags,
        ]  # fmt: skip
        run = _child(ctx, tag, argv, keep_stdout=False)
        stats = _stats(sim)
    row = Row(name, ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    summary = _last_json(ctx.log(tag, "stderr")) or {}
    row.events_out = summary.get("delivered")
    row.extra |= {"simulator": stats, "simulator_cost": sim.cost.as_dict() if sim.cost else None}
    row.extra |= {"dead_lettered": summary.get("dead_lettered"), "skipped": summary.get("skipped")}
    row.extra["delivered_by_destination"] = summary.get("delivered_by_destination")
    _delivery_times(row, run, stats)
    if row.ok:
        if summary.get("dead_lettered"):
            row.fail(f"dead-lettered {summary['dead_lettered']}")
        if stats.get("events_ingested") != row.events_out:
            row.fail(f"simulator ingested {stats.get('events_ingested')}, replay says {row.events_out}")
    shutil.rmtree(scratch, ignore_errors=True)
    return row


def sdk(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(d) fastavro + Amplitude's Python SDK at its defaults, events built by the product's
    transformer (bench/sdk_naive.py), into a fresh simulator; delivery counted by the simulator."""
    return _sdk_row("sdk", "sdk_naive.py", ctx, ds, tag)


def sdk_tuned(ctx: Context, ds: Dataset, tag: str) -> Row:
    """(d') the SDK as a careful user tunes it, with a minimal mapping of its own (bench/sdk_tuned.py)."""
    return _sdk_row("sdk-tuned", "sdk_tuned.py", ctx, ds, tag)


def _sdk_row(name: str, script: str, ctx: Context, ds: Dataset, tag: str) -> Row:
    try:
        import amplitude  # noqa: F401
    except ImportError:
        row = Row(name, ds.events, None)
        row.fail("amplitude-analytics is not installed: pip install -r bench/requirements.txt")
        return row
    with SimulatorProcess(ctx.log(tag, "simulator")) as sim:
        argv = [ctx.python, str(BENCH / script), str(ds.root), sim.http_v2_url]
        run = _child(ctx, tag, argv, keep_stdout=True)
        stats = _stats(sim)
    row = Row(name, ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    result = _last_json(ctx.log(tag, "stdout")) or {}
    row.events_out = stats.get("events_ingested")
    row.extra |= {"sdk": result, "simulator": stats}
    row.extra["simulator_cost"] = sim.cost.as_dict() if sim.cost else None
    tracked = result.get("tracked")
    if row.ok and tracked != row.events_out:
        row.fail(f"SDK tracked {tracked} events, the simulator ingested {row.events_out}")
    return row


KAFKA_TOPIC = "braze-currents"
KAFKA_PARTITIONS = 4
"""Partitions of the Kafka rows' topic unless ``run.py --kafka-partitions`` says otherwise."""


def _kafka_env(
    ctx: Context, ds: Dataset, tag: str, layout: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start bench/kafka_env.py (broker + registry, topic loaded with ``ds`` as ``layout`` says: ``keyed``
    or ``files``, see that file); returns it and its info."""
    partitions = ctx.kafka_partitions or KAFKA_PARTITIONS
    env_proc = subprocess.Popen(
        [ctx.python, str(BENCH / "kafka_env.py"), str(ds.root), KAFKA_TOPIC, str(partitions), layout],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ctx.log(tag, "kafka-env").open("wb"),
    )  # fmt: skip
    assert env_proc.stdout is not None
    line = env_proc.stdout.readline()
    if not line:
        env_proc.kill()
        raise RuntimeError(f"kafka_env.py failed: {tail(ctx.log(tag, 'kafka-env'), 5)}")
    return env_proc, json.loads(line)


def _daemon_argv(ctx: Context, info: dict[str, Any], sim: SimulatorProcess, scratch: Path) -> list[str]:
    return [
        *ctx.cli, "run",
        "--api-key", API_KEY,
        "--amplitude-url", sim.http_v2_url,
        "--bootstrap-servers", info["bootstrap"],
        "--topic", KAFKA_TOPIC,
        "--group-id", "bench",
        "--schema-registry-url", info["registry"],
        "--session-timeout", "2s",
        "--dead-letter", str(scratch / "dead-letter"),
        "--device-rate", "1000000",
        "--log-format", "json",
        *ctx.replay_flags,
    ]  # fmt: skip


def _measure_until(
    ctx: Context, tag: str, argv: list[str], done: Callable[[], bool], deadline_s: float
) -> ChildRun:
    """Run the daemon as a measured child; SIGTERM it (the process itself, not GNU time) once
    ``done()`` holds or ``deadline_s`` passes, and return what it cost."""
    result: list[ChildRun] = []
    worker = threading.Thread(target=lambda: result.append(_child(ctx, tag, argv, keep_stdout=False)))
    worker.start()
    started = time.monotonic()
    while worker.is_alive() and not done() and time.monotonic() - started < deadline_s:
        time.sleep(0.2)  # polling the simulator's counters from outside the measured process
    for pid in _daemon_pids(argv):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    worker.join(ctx.timeout)
    return result[0]


def _daemon_pids(argv: list[str]) -> list[int]:
    """Pids of running processes whose command line is ``argv`` (the daemon under GNU time)."""
    want = "\0".join(argv).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().rstrip(b"\0") == want:
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def _loaded_topic(ctx: Context, ds: Dataset, tag: str, layout: str = "keyed") -> Iterator[dict[str, Any]]:
    """The Kafka environment of bench/kafka_env.py with ``ds`` loaded on a topic; stopped on exit."""
    env_proc, info = _kafka_env(ctx, ds, tag, layout)
    try:
        yield info
    finally:
        env_proc.stdin.close()  # type: ignore[union-attr]
        env_proc.wait(30)


def kafka_daemon(ctx: Context, ds: Dataset, tag: str) -> Row | None:
    """(e) ``currents-consumer run``: from a loaded topic to the simulator, until all is ingested.

    The topic (:data:`KAFKA_PARTITIONS` partitions) is keyed by device, so each partition holds a mix
    of every event type. It is loaded before measuring (broker and registry live in
    bench/kafka_env.py); the measured time includes the daemon's start and its consumer-group join
    (about a second on Tansu).
    """
    return _kafka_row(ctx, ds, tag, "kafka", "keyed")


def kafka_daemon_files(ctx: Context, ds: Dataset, tag: str) -> Row | None:
    """(e') the same daemon from a topic loaded file by file: each Currents file's records in order on
    one partition, the files dealt round-robin over the partitions, so each partition holds long runs
    of one event type (as a topic filled by a file-by-file producer does)."""
    return _kafka_row(ctx, ds, tag, "kafka-files", "files")


def _kafka_row(ctx: Context, ds: Dataset, tag: str, name: str, layout: str) -> Row:
    scratch = ctx.scratch(tag)
    with _loaded_topic(ctx, ds, tag, layout) as info, SimulatorProcess(ctx.log(tag, "simulator")) as sim:
        expected = int(info["expected"])

        def ingested() -> bool:
            return int(_stats(sim).get("events_ingested", 0)) >= expected

        run = _measure_until(ctx, tag, _daemon_argv(ctx, info, sim, scratch), ingested, ctx.timeout)
        stats = _stats(sim)
    row = Row(name, ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    row.events_out = stats.get("events_ingested")
    row.extra |= {"simulator": stats, "simulator_cost": sim.cost.as_dict() if sim.cost else None,
                  "messages": info["messages"], "expected": expected,
                  "topic": {"partitions": info["partitions"], "layout": info["layout"],
                            "per_partition": info["per_partition"]}}  # fmt: skip
    _delivery_times(row, run, stats)
    if row.ok and row.events_out != expected:
        row.fail(f"simulator ingested {row.events_out}, expected {expected}")
    shutil.rmtree(scratch, ignore_errors=True)
    return row


def kafka_outage(ctx: Context, ds: Dataset, tag: str, seconds: float = 60.0) -> Row | None:
    """(f) The daemon's memory during a total Amplitude outage (every request 503) for ``seconds``
    with ``ds`` waiting on the topic: peak RSS must stay bounded by --max-pending, not by the lag."""
    scratch = ctx.scratch(tag)
    with _loaded_topic(ctx, ds, tag) as info, SimulatorProcess(ctx.log(tag, "simulator")) as sim:
        sim.faults({"down": "503"})
        run = _measure_until(ctx, tag, _daemon_argv(ctx, info, sim, scratch), lambda: False, seconds)
        stats = _stats(sim)
    row = Row("kafka-outage", ds.events, run)
    _check_exit(row, run, ctx.log(tag, "stderr"))
    row.events_out = stats.get("events_ingested")
    row.extra |= {"simulator": stats, "outage_s": seconds}
    if row.ok and row.events_out:
        row.fail(f"the simulator was down but ingested {row.events_out}")
    shutil.rmtree(scratch, ignore_errors=True)
    return row


def _delivery_times(row: Row, run: ChildRun, stats: dict[str, Any]) -> None:
    """From the simulator's clock: seconds from spawn to the first ingested request
    (``first_delivery_s``: start-up, group join, the first batch) and from it to the last
    (``delivery_span_s``: the steady rate, what "first to last delivery" compares)."""
    first, last = stats.get("first_ingest_at"), stats.get("last_ingest_at")
    if first is not None and last is not None and run.spawned_at:
        row.extra["first_delivery_s"] = round(first - run.spawned_at, 3)
        row.extra["delivery_span_s"] = round(last - first, 3)


def _stats(sim: SimulatorProcess) -> dict[str, Any]:
    try:
        return sim.stats()
    except (OSError, ValueError, KeyError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


Scenario = Callable[[Context, Dataset, str], "Row | None"]

SCENARIOS: dict[str, Scenario] = {
    "fastavro": fastavro_floor,
    "convert": convert,
    "replay": replay,
    "fanout": fanout,
    "sdk": sdk,
    "sdk-tuned": sdk_tuned,
    "kafka": kafka_daemon,
    "kafka-files": kafka_daemon_files,
    "kafka-outage": kafka_outage,
}
"""Every row, in table order. ``run.py --only`` picks among these names."""
