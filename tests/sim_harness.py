"""Shared pieces of the simulator's own tests: a settable clock, a recording sleep, and a factory of
started simulators (stopped at the end of the test) with per-file default settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig

T0 = 1_700_000_000.0

Make = Callable[..., Awaitable[AmplitudeSimulator]]


class FakeClock:
    """A settable clock for the simulator."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records requested delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def simulators(clock: FakeClock, sleep: FakeSleep, **defaults: Any) -> AsyncIterator[Make]:
    """Yield a factory of started simulators on ``clock``/``sleep`` (``defaults`` for every one);
    every simulator it made is stopped when the generator resumes (use as a fixture body)."""
    started: list[AmplitudeSimulator] = []

    async def factory(**settings: Any) -> AmplitudeSimulator:
        settings = {"log_interval_s": 0, **defaults, **settings}
        sim = AmplitudeSimulator(SimulatorConfig(**settings), clock=clock, sleep=sleep)
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()
