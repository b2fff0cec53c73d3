"""Sampling profiles of ``convert`` and ``replay`` with py-spy, reduced to "what costs per event".

:func:`profile` runs one command under ``py-spy record --format raw`` (collapsed stacks: one line per
distinct stack, ``frame;frame;... count``; loadable in speedscope) and :func:`summarise` turns the
stacks into rankings: source files by self time (which reads as "which stage": decode, transform,
pipeline, delivery, sink, asyncio, ...), functions by self and by inclusive time, and lines by self
time. Without ``--native``, time spent in C (fastavro's Cython reader, orjson, zlib) is counted on
the Python line that calls it, which is what makes the line ranking useful.
Idle samples (a thread blocked in a system call, e.g. the event loop waiting in ``select``) are not
recorded, so percentages are of busy time. py-spy is a bench-only dependency
(``bench/requirements.txt``); without it the profile step is skipped with a note.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from dataset import Dataset
from measure import run_child, tail
from scenarios import API_KEY, Context, kafka_daemon, kafka_daemon_files
from simserver import SimulatorProcess

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_STRIP = (
    re.compile(r"^.*/site-packages/"),
    re.compile(r"^.*/lib/python3\.\d+/"),
    re.compile(r"^.*/work/[^/]+/"),
)


def _short(path: str) -> str:
    for pattern in _STRIP:
        shortened = pattern.sub("", path)
        if shortened != path:
            return shortened
    return path


def _frame(raw: str) -> tuple[str, str, str]:
    """``"func (path/to/file.py:12)"`` -> ``("func", "short/path.py", "12")``."""
    m = _FRAME.match(raw.strip())
    if not m:
        return raw.strip(), "?", ""
    return m.group("func"), _short(m.group("file")), m.group("line") or ""


def summarise(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Rankings from one collapsed-stack file (see the module docstring)."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_file: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        by_role[_role(stack)] += count
        # py-spy --subprocesses starts each stack with "process <pid>:<command line>"
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        func, file, line_no = frames[-1]
        self_fn[f"{func} ({file})"] += count
        self_file[file] += count
        self_line[f"{func} ({file}:{line_no})"] += count
        for name in {f"{fn} ({fl})" for fn, fl, _ in frames}:
            incl_fn[name] += count

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": n, "percent": round(100.0 * n / total, 1) if total else 0.0}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "by_role": ranked(by_role),
        "self_by_function": ranked(self_fn),
        "inclusive_by_function": ranked(incl_fn),
        "self_by_file": ranked(self_file),
        "self_by_line": ranked(self_line),
    }


def _role(stack: str) -> str:
    """Which part of the product a stack belongs to."""
    if "_serve (" in stack:
        return "worker processes (read, decode, map)"
    if "run_forever (" in stack:
        return "main process, event loop"
    return "main process, other threads (read-ahead, gzip, listing)"


def render(name: str, summary: dict[str, Any], top: int = 12) -> str:
    """A plain-text report of one profile's rankings."""
    lines = [f"== profile: {name} ({summary['samples']} busy samples)"]
    for key, title in (
        ("by_role", "busy samples by process and thread"),
        ("self_by_file", "self time by file"),
        ("self_by_function", "self time by function"),
        ("self_by_line", "self time by line (native calls count on the line that makes them)"),
        ("inclusive_by_function", "inclusive time by function"),
    ):
        lines.append(f"-- {title}")
        for entry in summary[key][:top]:
            lines.append(f"  {entry['percent']:5.1f}%  {entry['name']}")
    return "\n".join(lines)


def profile(
    ctx: Context, ds: Dataset, which: str, *, rate: int = 200, native: bool = False
) -> dict[str, Any]:
    """Profile ``convert``, ``replay`` or the Kafka daemon (``kafka`` or ``kafka-files``: the benchmark's
    own row, under py-spy) over ``ds``; returns the summary (or an ``error``)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy is not installed: pip install -r bench/requirements.txt"}
    out_dir = ctx.out / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    collapsed = out_dir / f"{which}-n{ds.events}.collapsed.txt"
    # --subprocesses: the worker processes of replay are profiled too (their stacks start in _serve)
    record = [spy, "record", "--format", "raw", "--subprocesses", "--rate", str(rate)]
    record += ["--output", str(collapsed)]
    if native:
        record.append("--native")
    err = ctx.log(f"profile-{which}", "stderr")
    if which == "convert":
        argv = [*record, "--", *ctx.cli, "convert", str(ds.root)]
        run = run_child(argv, stderr_path=err, timeout=ctx.timeout)
    elif which == "replay":
        scratch = ctx.scratch(f"profile-{which}")
        with SimulatorProcess(ctx.log(f"profile-{which}", "simulator")) as sim:
            argv = [
                *record, "--", *ctx.cli, "replay", str(ds.root),
                "--api-key", API_KEY, "--amplitude-url", sim.http_v2_url,
                "--dead-letter", str(scratch / "dead-letter"), "--state-dir", str(scratch / "state"),
                "--device-rate", "1000000", "--log-format", "json",
            ]  # fmt: skip
            run = run_child(argv, stderr_path=err, timeout=ctx.timeout)
        shutil.rmtree(scratch, ignore_errors=True)
    elif which in ("kafka", "kafka-files"):
        row_of = kafka_daemon if which == "kafka" else kafka_daemon_files
        row = row_of(dataclasses.replace(ctx, wrap=(*record, "--")), ds, f"profile-{which}")
        if row is None or row.run is None:
            return {"error": "the Kafka row could not run (no broker)"}
        run = row.run
    else:
        raise ValueError(f"no profile for {which!r}")
    if run.returncode != 0 or not collapsed.is_file():
        return {"error": f"py-spy exit {run.returncode}: {tail(err, 5)}"}
    summary = summarise(collapsed)
    summary |= {"collapsed": str(collapsed), "wall_s_under_profiler": run.wall_s, "native": native}
    (out_dir / f"{which}-n{ds.events}.top.txt").write_text(render(which, summary) + "\n")
    return summary
