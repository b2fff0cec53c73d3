"""The simulator as a process: ``currents-consumer simulate`` serves one until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig

log = logging.getLogger(__name__)


class CannotListen(Exception):
    """The simulator's address cannot be listened on (a port in use, an address not of this host)."""


async def serve_forever(config: SimulatorConfig) -> None:
    """Run a simulator on ``config.host:config.port`` until cancelled or SIGINT/SIGTERM;
    :class:`CannotListen` naming the address and the OS's reason if it cannot listen there."""
    sim = AmplitudeSimulator(config)
    try:
        await sim.start(config.host, config.port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotListen(f"cannot listen on {config.host}:{config.port}: {reason}") from None
    log.info(
        "simulator on %s (HTTP V2, Batch, Movable Ink /behavioral/<key>, Remerge /event); what it "
        "received: %s/_sim/stats",
        sim.url,
        sim.url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await sim.stop()
        partners = (sim.movableink.summary(), sim.remerge.summary())
        log.info("simulator stopped: %s; %s; %s", sim.stats.as_dict(), *partners)


def run_simulator(
    host: str = "127.0.0.1", port: int = 9000, api_keys: tuple[str, ...] = (), **settings: Any
) -> None:
    """Blocking entry point for ``currents-consumer simulate``; ``settings`` are SimulatorConfig fields."""
    config = SimulatorConfig(host=host, port=port, api_keys=frozenset(api_keys), **settings)
    asyncio.run(serve_forever(config))
