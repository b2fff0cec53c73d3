"""Run one benchmark step as a child process and measure it: wall time, CPU time, peak RSS.

Guarantees:

- Peak RSS and CPU time are the child's own. Where GNU time is installed (``/usr/bin/time``, Debian
  package ``time``) the child runs under ``/usr/bin/time -f '%M %U %S'``, which reads them with
  ``wait4()`` on the child. It is needed because Linux folds the spawning process's memory into a
  child's ``ru_maxrss`` (what the child held before ``exec`` counts), so a child spawned straight
  from the harness reads at least the harness's own peak; GNU time's footprint is ~2 MiB instead.
  Without GNU time, ``os.wait4()`` on the child is used and ``rss_trustworthy`` says whether its peak
  is clearly above the harness's (``harness_hwm_kib``, from ``/proc/self/status``).
  ``getrusage(RUSAGE_CHILDREN)`` is not used: it reports the largest child reaped so far, not this one.
- Wall time runs from just before ``Popen`` to the child's exit, so it includes interpreter start
  and imports (a fixed ~0.2-0.5 s; the ``--scaling`` fit separates fixed from per-event cost).
- Peak RSS of the whole process tree (``tree_rss_kib``): the child may start processes of its own
  (``replay`` and the daemon start a worker process; multiprocessing adds its resource tracker), and
  ``ru_maxrss`` is the largest *single* process of a tree, not their sum. A sampler thread adds up
  ``VmRSS`` over the child and its descendants every 50 ms and keeps the largest sum; it can miss a
  peak shorter than that, never count one that did not happen.
- A child that outlives ``timeout`` seconds is killed with its process group (its row is marked
  failed, never waited on forever), so a hung SDK flush cannot hang the harness.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

GNU_TIME = "/usr/bin/time"


@dataclass
class ChildRun:
    """What one child process cost."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    returncode: int
    timed_out: bool
    rss_source: str = "wait4"
    harness_hwm_kib: int = 0
    tree_rss_kib: int = 0
    spawned_at: float = 0.0
    """Epoch seconds at spawn, to compare with the simulator's clock (its first and last ingestion)."""

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds of the child (its threads included)."""
        return self.user_s + self.sys_s

    @property
    def rss_trustworthy(self) -> bool:
        """Whether ``max_rss_kib`` is the child's own (measured by GNU time, or clearly above the
        harness's peak)."""
        return self.rss_source == "gnu-time" or self.max_rss_kib > 1.2 * self.harness_hwm_kib

    def as_dict(self) -> dict[str, Any]:
        """JSON form, with the derived CPU total."""
        return asdict(self) | {"cpu_s": round(self.cpu_s, 3), "rss_trustworthy": self.rss_trustworthy}


@functools.cache
def gnu_time() -> str | None:
    """The GNU time binary, if this machine has it."""
    try:
        done = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return GNU_TIME if "GNU" in done.stdout + done.stderr else None


def run_child(
    argv: Sequence[str],
    *,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    stderr_path: Path,
    timeout: float,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run ``argv`` to completion; its stderr goes to ``stderr_path``; return what it cost."""
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    usage_path = stderr_path.with_name(stderr_path.name + ".rusage")
    usage_path.unlink(missing_ok=True)
    timer_bin = gnu_time()
    full = list(argv)
    if timer_bin:
        full = [timer_bin, "-f", "%M %U %S", "-o", str(usage_path), "--", *full]
    with stderr_path.open("wb") as err:
        spawned_at = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        sampler = TreeRss(proc.pid)
        sampler.start()
        try:
            run = reap(proc, started, timeout)
        finally:
            sampler.stop()
    if timer_bin:
        _apply_gnu_time(run, usage_path)
    run.tree_rss_kib = sampler.peak_kib
    run.spawned_at = spawned_at
    return run


class TreeRss(threading.Thread):
    """The largest sum of ``VmRSS`` over ``root`` and its descendants, sampled every ``interval`` s."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(name="tree-rss", daemon=True)
        self.root = root
        self.interval = interval
        self.peak_kib = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak_kib = max(self.peak_kib, tree_rss_kib(self.root))

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss_kib(root: int) -> int:
    """``VmRSS`` (KiB) summed over ``root`` and its descendants (0 where /proc is not available)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile
        pid, ppid, kib = int(entry.name), -1, 0
        for line in status.splitlines():
            if line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                kib = int(line.split()[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = kib
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def _apply_gnu_time(run: ChildRun, usage_path: Path) -> None:
    """Replace wait4's numbers with GNU time's (the child's own); keep wait4's if time wrote nothing."""
    try:
        last = usage_path.read_text().strip().splitlines()[-1]
        rss, user, sys_ = last.split()
        run.max_rss_kib, run.user_s, run.sys_s = int(rss), float(user), float(sys_)
        run.rss_source = "gnu-time"
    except (OSError, ValueError, IndexError):
        pass


def reap(proc: subprocess.Popen[bytes], started: float, timeout: float) -> ChildRun:
    """Wait for ``proc`` with wait4 (its own rusage), killing its group after ``timeout`` seconds."""
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    return ChildRun(
        wall_s=round(wall, 3),
        user_s=round(usage.ru_utime, 3),
        sys_s=round(usage.ru_stime, 3),
        max_rss_kib=int(usage.ru_maxrss),
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        harness_hwm_kib=own_peak_rss_kib(),
    )


def own_peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM, KiB), 0 where /proc is not available."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file (for failure reports)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
