"""Instructions per record for queueing prepared records for delivery, as the Kafka daemon does.

``python bench/micro_take.py MODE N`` builds a pipeline with one Amplitude destination (its sink never
answers, so nothing leaves the engine but the first requests, which wait for ever) and N prepared
records of one payload each over 20,000 devices on 4 partitions, then queues them in batches of 256
(one chunk per partition, as a worker answers a batch):

* ``none``: builds everything and queues nothing (the baseline);
* ``run``: ``Pipeline.queue_run`` per chunk, what the daemon does;
* ``deliver``: the same, with a sink that builds each request's body as the Amplitude sink does and
  answers "delivered" at once, then drains: the main process's whole delivery work per record
  (queueing, batching, the limiter, bodies, ending, acknowledging) without HTTP and gzip.

(An ``each`` mode timed ``Pipeline.take``, one record at a time, which the daemon used before it took
runs; that method is gone. docs/performance.md keeps the comparison.)

Under callgrind the difference of two modes' instruction counts, divided by N, is what each way costs
per record, a figure that machine noise does not move::

    for mode in none run; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/take.$mode python bench/micro_take.py $mode 20000
    done
    # instructions: the "summary:" line of each output file

Without valgrind it prints the wall time of the queueing, for a rough look.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from consumer.app.pipeline import Pipeline
from consumer.delivery.destination import Destination
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter
from consumer.settings import load
from consumer.sinks.amplitude import build_body
from consumer.sinks.base import Delivered, SendResult
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.prepare import Chunk, ChunkBuilder

if TYPE_CHECKING:
    from consumer.events import Queued  # a name of revisions with runs of payloads only

BATCH = 256
EVENT_TYPE = "users.behaviors.CustomEvent"


class Unanswered:
    """A sink whose requests never end: what is taken stays in the engine."""

    overhead = 0

    async def close(self) -> None:
        pass

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Answering:
    """A sink that builds each request's body and answers "delivered" at once."""

    overhead = len(build_body("k", [], 5))

    async def close(self) -> None:
        pass

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        body = build_body("k", [part(item) for item in batch], 5)
        return SendResult(Delivered(), 200, 0.0, len(body))


def part(item: Any) -> bytes:
    """``item``'s part of a body; on revisions before runs of payloads a ``Pending`` had only ``encoded``
    (so one script measures both sides of that change)."""
    return bytes(item.part() if hasattr(item, "part") else item.encoded)


async def queue(mode: str, n: int, dead_letters: Path) -> float:
    """Queue ``n`` records the ``mode`` way; the seconds the queueing took."""
    settings = load(
        None,
        {
            "AMPLITUDE_API_KEY": "k",
            "CURRENTS_DEAD_LETTER": str(dead_letters),
            "CURRENTS_MAX_PENDING": str(2 * n),
            "CURRENTS_DEVICE_RATE": "1000000",
        },
    )
    mapper = AmplitudeMapper(Transformer(settings.mapping))
    sink = Answering() if mode == "deliver" else Unanswered()
    destination = Destination("amplitude", mapper, sink, settings.amplitude, settings.limits)
    dead = DeadLetterWriter(settings.dead_letter)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), lambda _: None)
    body = b'{"event_type":"x","device_id":"%08d","insert_id":"%012d","time":1700000000000}'
    batches: list[list[Chunk]] = []
    for start in range(0, n, BATCH):
        builders = [ChunkBuilder(("topic", partition), 1) for partition in range(4)]
        for i in range(start, min(n, start + BATCH)):
            payload = (body % (i % 20_000, i), (f"d:{i % 20_000}",))
            builders[i % 4].add(i, EVENT_TYPE, ([payload],))
        batches.append([b.build() for b in builders if len(b)])
    started = time.perf_counter()
    for chunks in batches:
        if mode in ("run", "deliver"):
            for chunk in chunks:
                pipeline.queue_run(chunk)
            await asyncio.sleep(0)
        elif mode != "none":
            raise SystemExit(f"unknown mode {mode!r}: none, run or deliver")
    if mode == "deliver" and not await pipeline.drain(600):
        raise SystemExit(f"deliver: {pipeline.pending} records still pending")
    elapsed = time.perf_counter() - started
    queued = pipeline.engine.pending
    expected = n if mode == "run" else 0
    delivered = sum(pipeline.summary.done.values())
    if queued != expected or delivered != (n if mode == "deliver" else 0):
        raise SystemExit(f"{mode}: {queued} records in the engine, {delivered} delivered")
    dead.close()  # the engine is left as it is: its requests never end, asyncio.run cancels them
    return elapsed


def main() -> None:
    """Run one mode (see the module docstring)."""
    mode, n = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        elapsed = asyncio.run(queue(mode, n, Path(tmp) / "dead-letter"))
    print(f"{mode}: {n} records queued in {elapsed:.3f} s ({1e6 * elapsed / n:.2f} us/record)")


if __name__ == "__main__":
    main()
