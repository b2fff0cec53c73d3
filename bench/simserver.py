"""The Amplitude simulator as a separate process, configured for throughput measurements.

As a script (``python bench/simserver.py``) it serves
``currents_devkit.simulator.server.AmplitudeSimulator`` on
127.0.0.1 on a free port, prints that port on its first stdout line, and stops on SIGTERM.
Configuration for benchmarks: ``keep_events`` off (memory stays flat whatever the volume), per-device
and per-user rate limits off (``*_eps=0`` disables them, the "very high eps" of the brief), daily
quota off, no periodic log line. Deduplication stays on, so a client that resends shows up as
``events_duplicate`` rather than inflating ``events_ingested``.

In the harness, :class:`SimulatorProcess` starts one per measured run (fresh counters, no dedup
memory carried from the previous row) and reports the simulator's own CPU time and peak RSS when
it is stopped, so the cost of the receiving side is visible next to the client's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from measure import ChildRun, reap

BENCH_CONFIG: dict[str, Any] = {
    "keep_events": False,
    "http_v2_eps": 0,
    "batch_eps": 0,
    "daily_quota": 0,
    "log_interval_s": 0.0,
}


async def _serve() -> None:
    import asyncio

    from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig

    sim = AmplitudeSimulator(SimulatorConfig(**BENCH_CONFIG))
    port = await sim.start("127.0.0.1", 0)
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()


class SimulatorProcess:
    """A simulator child process: ``with SimulatorProcess(log) as sim: ... sim.stats()``."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.cost: ChildRun | None = None
        """The simulator's own wall/CPU/RSS, set by :meth:`stop`."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    @property
    def url(self) -> str:
        """Base URL of the running simulator."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def http_v2_url(self) -> str:
        """The HTTP V2 endpoint (what both replay and the SDK post to)."""
        return self.url + "/2/httpapi"

    def start(self) -> None:
        """Spawn the child and wait for its port line (a child that dies prints none)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._started = time.perf_counter()
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the child prints the port first, or dies
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"simulator did not start; see {self.log_path}")
        self.port = int(line)

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats`` -> the ``stats`` object (events_ingested, events_duplicate, ...)."""
        import urllib.request  # imported late: it pulls in ssl, which would swell the harness's RSS

        with urllib.request.urlopen(self.url + "/_sim/stats", timeout=30) as resp:
            body: dict[str, Any] = json.load(resp)
        stats: dict[str, Any] = body["stats"]
        return stats

    def faults(self, spec: dict[str, Any]) -> None:
        """``POST /_sim/faults`` with ``spec`` (e.g. ``{"down": "503"}``)."""
        import urllib.request

        request = urllib.request.Request(
            self.url + "/_sim/faults", data=json.dumps(spec).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()

    def stop(self) -> ChildRun | None:
        """SIGTERM the child, reap it with wait4, keep its cost in :attr:`cost`."""
        proc = self._proc
        if proc is None:
            return self.cost
        self._proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        if proc.returncode is None:
            self.cost = reap(proc, self._started, timeout=30.0)
        if proc.stdout is not None:
            proc.stdout.close()
        return self.cost

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    import asyncio

    asyncio.run(_serve())
