"""An Amplitude that never answers, or answers a few bytes a second: the real engine and sink against the
simulator's ``hang`` and ``trickle`` modes.

Each scenario checks that the request timeout ends every exchange (the simulator sees its client leave,
so no request outlives the timeout), that the events are retried and, once the fault clears, arrive
exactly once by ``insert_id`` with none dead-lettered or lost, and that memory stays bounded: at most
``--concurrency`` requests open at the simulator and at most ``--max-pending`` events held while more
wait to be submitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from amplitude_harness import Engine, engine, event, eventually, insert_ids, settings, simulator
from currents_devkit.simulator.server import AmplitudeSimulator

TIMEOUT_S = 1.0
CONCURRENCY = 3
MAX_PENDING = 60
ENV = {
    "CURRENTS_REQUEST_TIMEOUT": f"{TIMEOUT_S}s",
    "CURRENTS_CONCURRENCY": str(CONCURRENCY),
    "CURRENTS_BATCH_EVENTS": "10",
    "CURRENTS_MAX_PENDING": str(MAX_PENDING),
}
EVENTS = 150  # more than MAX_PENDING: submitting must wait while nothing can be delivered


class Peak:
    """The largest value ``read`` gave while watching (sampled every 10 ms until stopped)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read
        self.value = read()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.value = max(self.value, self.read())
            await asyncio.sleep(0.01)  # sampling interval of an observer, not a wait for a condition

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return max(self.value, self.read())


def timed_out(e: Engine) -> float:
    """Requests that ended without an answer (status 0), as the engine's metrics count them."""
    value = e.metrics.registry.get_sample_value(
        "currents_requests_total", {"destination": "amplitude", "status": "0"}
    )
    return value or 0.0


def longest_request_bucket_exceeded(e: Engine, bound: float) -> float:
    """Requests that took longer than ``bound`` seconds (a histogram bucket boundary)."""
    total = (
        e.metrics.registry.get_sample_value("currents_request_seconds_count", {"destination": "amplitude"})
        or 0.0
    )
    within = (
        e.metrics.registry.get_sample_value(
            "currents_request_seconds_bucket", {"destination": "amplitude", "le": str(bound)}
        )
        or 0.0
    )
    return total - within


async def ride_out(
    sim: AmplitudeSimulator, e: Engine, faulted: Callable[[], bool], clear: Callable[[], None]
) -> dict[str, float]:
    """Submit :data:`EVENTS` events into a fault, wait for ``faulted`` (retries seen), clear the fault, drain;
    return what was measured."""
    ids = [event(i) for i in range(EVENTS)]
    pending = Peak(lambda: e.engine.pending)
    started = time.monotonic()
    producer = asyncio.create_task(e.submit_all(ids))

    def arrivals() -> int:
        return sim.stats.requests_total + sim.stats.requests_hung

    await eventually(
        lambda: sim.stats.requests_total + sim.stats.requests_hung > 0, within=10, message="a request"
    )
    first_request = time.monotonic()
    await eventually(lambda: timed_out(e) >= 1, within=10 * TIMEOUT_S, message="the first timeout")
    first_timeout = time.monotonic()
    await eventually(lambda: arrivals() > CONCURRENCY, within=30, message="the first retry")
    first_retry = time.monotonic()
    await eventually(faulted, within=30, message="retries into the fault")
    assert not producer.done(), "submitting never waited: memory is not bounded by --max-pending"
    assert e.engine.pending <= MAX_PENDING
    clear()
    cleared = time.monotonic()
    await asyncio.wait_for(producer, 30)
    assert await e.engine.drain(30), f"{e.engine.pending} events still pending"
    done = time.monotonic()
    peak_pending = await pending.stop()

    arrived = insert_ids(sim.events)
    assert sorted(arrived) == sorted(ev["insert_id"] for ev in ids)  # exactly once by insert_id
    assert e.delivered() == set(arrived)
    assert set(e.ends.values()) == {1}, "an event ended twice"
    assert e.records() == [], "nothing is dead-lettered for a slow Amplitude"
    assert peak_pending <= MAX_PENDING
    assert sim.stats.max_open_requests <= CONCURRENCY  # every timed-out request was abandoned
    assert longest_request_bucket_exceeded(e, 2.5) == 0  # none held beyond the timeout (1 s)
    assert sim.stats.open_requests == 0
    return {
        "fault_to_first_timeout_s": round(first_timeout - first_request, 2),
        "first_timeout_to_retry_s": round(first_retry - first_timeout, 2),
        "clear_to_all_delivered_s": round(done - cleared, 2),
        "total_s": round(done - started, 2),
        "timed_out_requests": timed_out(e),
        "delivered": len(e.delivered()),
        "dead_lettered": len(e.dead_lettered()),
        "lost": EVENTS - len(e.ends),
        "peak_pending": peak_pending,
        "peak_open_requests": sim.stats.max_open_requests,
    }


async def test_an_amplitude_that_never_answers_times_out_retries_and_delivers_once_it_answers(
    tmp_path: Path,
) -> None:
    async with simulator() as sim, engine(settings(sim, tmp_path, **ENV)) as e:
        sim.faults.down("hang")
        # Retries seen: more requests hung than could be open at once.
        measured = await ride_out(sim, e, lambda: sim.stats.requests_hung > 2 * CONCURRENCY, sim.faults.up)
        assert sim.stats.events_duplicate == 0  # a hung request stored nothing
        print(f"\nhang: {measured}, hung requests {sim.stats.requests_hung}")


async def test_an_answer_trickled_a_few_bytes_a_second_times_out_and_the_resend_is_deduplicated(
    tmp_path: Path,
) -> None:
    """Amplitude stored the events and its answer crawls in at 2 bytes a second (about 45 s for the
    whole body): the request timeout (1 s) ends each exchange, the batch is sent again with the same
    ``insert_id``s, and once answers come at full speed each event is in Amplitude exactly once."""
    async with simulator() as sim, engine(settings(sim, tmp_path, **ENV)) as e:
        sim.faults.set_trickle(2)
        measured = await ride_out(
            sim, e, lambda: sim.stats.events_duplicate > 0, lambda: sim.faults.set_trickle(0)
        )
        assert sim.stats.events_duplicate > 0  # resends of stored events, answered 200 and dropped
        print(f"\ntrickle: {measured}, duplicates dropped by insert_id {sim.stats.events_duplicate}")
