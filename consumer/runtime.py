"""What every long-running command sets up the same way: logging, secrets masking, metrics and probes,
the destinations, and signal handling (first signal: drain and stop; second: exit at once)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence

from consumer.destinations import Destination, Mapper, build_destinations, build_mappers
from consumer.health import Health
from consumer.logs import register_secret, setup
from consumer.metrics import Metrics, default_metrics
from consumer.settings import Settings, SettingsError

log = logging.getLogger("currents")

GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default is 700)."""


def tune_gc() -> None:
    """Collect garbage less often in a process that moves millions of short-lived objects.

    Every event allocates a few objects that live until its request is answered. With Python's default
    threshold, 200k events cost about 680 young and 60 older collections (0.42 s of the main process
    in ``replay``), and each full collection walks every waiting event; at 10,000 it is about 80 and
    6 (0.09 s). Collecting later keeps garbage in reference cycles a little longer: httpx leaves each
    request (with its body) in one, which costs about 8 MiB of peak RSS at this threshold (14 MiB at
    20,000). What is alive at start-up (modules, settings, schemas) is frozen out of every later
    collection.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


MALLOC_ARENAS = 2
"""glibc malloc arenas of the process, unless ``MALLOC_ARENA_MAX`` says otherwise."""
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_malloc_arenas() -> bool:
    """Hold glibc's malloc to :data:`MALLOC_ARENAS` arenas; whether it was done.

    glibc gives threads that allocate their own arenas, up to eight per core, and an arena keeps what it
    freed for reuse by its own threads. The threads that receive worker chunks, compress request bodies
    and read objects each allocate a few hundred kilobytes at a time, so every arena they touched kept
    megabytes: in the benchmark replay, 4 to 10 MiB of peak RSS. The allocations that matter are made
    while holding the GIL, so two arenas cost no contention. Left alone where ``MALLOC_ARENA_MAX`` is
    set (the operator's choice) or the C library is not glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        # The C library this process runs on (platform.libc_ver() guesses from the executable's file).
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, ValueError, AttributeError):  # no such confstr name, no mallopt
        return False


def prepare(settings: Settings) -> Metrics:
    """Configure logging, garbage collection and malloc once, register every secret for masking; returns
    the process metrics."""
    tune_gc()
    limit_malloc_arenas()
    setup(settings.log_format, settings.log_level)
    for secret in (
        settings.amplitude.api_key,
        settings.movableink.key,
        settings.movableink.username,
        settings.movableink.password,
        settings.remerge.key,
    ):
        register_secret(secret.reveal())
    return default_metrics()


def make_destinations(settings: Settings, mappers: Sequence[Mapper] | None = None) -> list[Destination]:
    """The enabled destinations with their sinks (and ``mappers`` if given, see
    :func:`~consumer.destinations.build_destinations`); refuses to start one that lacks its credentials."""
    return build_destinations(settings, make_mappers(settings) if mappers is None else mappers)


def make_mappers(settings: Settings) -> list[Mapper]:
    """The enabled destinations' mappers; refuses to start one that lacks its credentials."""
    try:
        return build_mappers(settings)
    except SettingsError as exc:
        raise SystemExit(f"currents-consumer: {exc}") from None


@contextlib.asynccontextmanager
async def ops_server(
    settings: Settings,
    metrics: Metrics,
    ready: Callable[[], bool],
    on_scrape: Callable[[], None] | None = None,
) -> AsyncIterator[Health]:
    """Serve ``/metrics``, ``/livez``, ``/readyz`` on ``--metrics-port`` (no server when it is 0)."""
    health = Health(metrics, ready=ready, on_scrape=on_scrape)
    if settings.metrics_port:
        port = await health.start(settings.metrics_port)
        log.info("metrics and probes on port %d", port)
    try:
        yield health
    finally:
        await health.stop()


def install_signals(on_first: Callable[[], None]) -> None:
    """SIGTERM/SIGINT: call ``on_first`` (begin a graceful stop); a second signal exits immediately."""
    loop = asyncio.get_running_loop()
    seen = {"n": 0}

    def handler(signum: int) -> None:
        seen["n"] += 1
        if seen["n"] == 1:
            log.info("signal %s: draining, a second signal exits at once", signal.Signals(signum).name)
            on_first()
        else:
            log.warning("second signal: exiting now")
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler, sig)
