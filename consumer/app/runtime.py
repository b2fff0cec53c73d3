"""What every long-running command sets up the same way: logging, secrets masking, metrics and probes,
the destinations, and signal handling (first signal: drain and stop; second: exit at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from consumer.ops.faults import Fault
from consumer.ops.health import Health
from consumer.ops.logs import register_secret, setup
from consumer.ops.metrics import Metrics, default_metrics
from consumer.ops.process import limit_malloc_arenas, tune_gc
from consumer.settings import OPTIONS, Settings

log = logging.getLogger("currents")


def prepare(settings: Settings) -> Metrics:
    """Configure logging, garbage collection and malloc once, register every secret for masking; returns
    the process metrics."""
    tune_gc()
    limit_malloc_arenas()
    setup(settings.log_format, settings.log_level)
    for opt in OPTIONS:
        if opt.secret:
            register_secret(settings.value_of(opt.key).reveal())
    return default_metrics()


@contextlib.asynccontextmanager
async def ops_server(
    settings: Settings,
    metrics: Metrics,
    ready: Callable[[], bool],
    on_scrape: Callable[[], None] | None = None,
) -> AsyncIterator[Health]:
    """Serve ``/metrics``, ``/livez``, ``/readyz`` on ``--metrics-port`` (no server when it is 0); a port
    that cannot be bound (taken, privileged) is a :class:`~consumer.ops.faults.Fault` naming it."""
    health = Health(metrics, ready=ready, on_scrape=on_scrape)
    if settings.metrics_port:
        try:
            port = await health.start(settings.metrics_port)
        except OSError as exc:
            raise Fault(f"cannot serve metrics and probes on port {settings.metrics_port}: {exc}") from None
        log.info("metrics and probes on port %d", port)
    try:
        yield health
    finally:
        await health.stop()


@dataclass
class StopSignal:
    """The signal that began the stop, once one came (:func:`install_signals`)."""

    first: int | None = None


def install_signals(on_first: Callable[[], None]) -> StopSignal:
    """SIGTERM/SIGINT: call ``on_first`` (begin a graceful stop); a second signal exits immediately
    (130). Returns where the first signal is recorded: ``run`` exits 0 after a SIGTERM, its normal
    stop, and 130 after a SIGINT (see :mod:`consumer.ops.exits`)."""
    loop = asyncio.get_running_loop()
    seen = {"n": 0}
    stop = StopSignal()

    def handler(signum: int) -> None:
        seen["n"] += 1
        if seen["n"] == 1:
            stop.first = signum
            log.info("signal %s: draining, a second signal exits at once", signal.Signals(signum).name)
            on_first()
        else:
            log.warning("second signal: exiting now")
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler, sig)
    return stop
