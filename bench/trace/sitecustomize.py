"""Measurement-only hooks for the Kafka daemon (``bench/kafka_trace.py``); no product code changes.

Python imports ``sitecustomize`` at start when its directory is on ``PYTHONPATH``. When
``BENCH_KAFKA_TRACE`` names a directory and this process is the daemon itself (``currents-consumer run``,
not a worker), every fetch (when, how long, how many messages of which partition), every wait for a
worker's answer, and every pause and resume of the partitions are recorded, and written to
``$BENCH_KAFKA_TRACE/trace-<pid>.json`` at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any


def _is_daemon() -> bool:
    try:
        argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"currents-consumer") for a in argv) and b"run" in argv


def _install(out: Path) -> None:
    import asyncio

    from consumer.sources.kafka.group import GroupConsumer
    from consumer.sources.kafka.source import KafkaSource

    trace: dict[str, list[Any]] = {"fetch": [], "answer": [], "pause": [], "resume": [], "batch": []}
    clock = time.time

    fetch = GroupConsumer.fetch

    async def traced_fetch(self: Any, timeout_ms: int, max_records: int) -> Any:
        t0 = clock()
        got = await fetch(self, timeout_ms, max_records)
        counts = {str(tp[1]): len(msgs) for tp, msgs in got.items()}
        trace["fetch"].append([t0, clock() - t0, timeout_ms, counts])
        return got

    answer = KafkaSource._answer

    async def traced_answer(self: Any, prepping: Any) -> Any:
        t0 = clock()
        future = prepping.answer
        if future is not None and not future.done():
            await asyncio.wait([future])
        waited = clock() - t0
        done = await answer(self, prepping)
        runs = prepping.messages  # runs of one partition each
        parts = {run.partition for run in runs}
        trace["answer"].append([t0, waited, sum(len(run) for run in runs), len(parts)])
        return done

    pause, resume = KafkaSource.pause, KafkaSource.resume

    def traced_pause(self: Any) -> None:
        if not self.group.is_paused:
            trace["pause"].append(clock())
        pause(self)

    def traced_resume(self: Any) -> None:
        if self.group.is_paused:
            trace["resume"].append(clock())
        resume(self)

    GroupConsumer.fetch = traced_fetch  # type: ignore[method-assign]
    KafkaSource._answer = traced_answer  # type: ignore[method-assign]
    KafkaSource.pause = traced_pause  # type: ignore[method-assign]
    KafkaSource.resume = traced_resume  # type: ignore[method-assign]

    def dump() -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"trace-{os.getpid()}.json").write_text(json.dumps(trace))

    atexit.register(dump)


_where = os.environ.get("BENCH_KAFKA_TRACE")
if _where and _is_daemon():
    _install(Path(_where))
