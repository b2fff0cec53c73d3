"""The loop losing streams midway (a Kafka revocation): what is held of them is dropped, what was taken of
them gets its time to finish, the done prefix is committed, and nothing of theirs is waited for in vain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.loop import RunLoop
from consumer.events import Position
from consumer.ops.metrics import Metrics
from consumer.settings import load
from consumer.sources.base import Batch, Stream
from consumer.transform.prepare import ReadyRecord

CUSTOM = "users.behaviors.CustomEvent"


class Commits:
    """The part of a source the loop commits to: it records every commit."""

    def __init__(self, streams: Iterable[Stream]) -> None:
        self.owned = set(streams)
        self.commits: list[dict[Stream, int]] = []

    def streams(self) -> Iterable[Stream]:
        return set(self.owned)

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        self.commits.append(dict(offsets))
        return True


def record(partition: int, offset: int) -> ReadyRecord:
    """A record with one payload: it takes room in the engine until it is delivered (never, here)."""
    return (Position("t", partition, offset), CUSTOM, ([(b'{"insert_id":"x"}', ("d:x",))],))


@pytest.fixture
async def loop(tmp_path: Path) -> AsyncIterator[RunLoop]:
    settings = load(
        env={
            "AMPLITUDE_API_KEY": "k",
            "AMPLITUDE_URL": "http://127.0.0.1:9/2/httpapi",  # refused: nothing taken is ever delivered
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dl"),
            "CURRENTS_MAX_PENDING": "2",
            "CURRENTS_BATCH_AGE": "1h",
        }
    )
    destinations = build_destinations(settings)
    run = RunLoop(destinations, settings.dead_letter, Metrics(CollectorRegistry()))
    try:
        yield run
    finally:
        await run.pipeline.close()
        await run.dead.aclose()
        await close_all(destinations)


def read(*records: ReadyRecord) -> Batch:
    per: dict[Stream, list[int]] = {}
    for position, _, _ in records:
        per.setdefault(position.stream, []).append(position.offset)
    return Batch(list(records), read=list(per.items()))


async def test_a_release_midway_leaves_out_only_the_released_streams_records_not_taken_yet(
    loop: RunLoop,
) -> None:
    source = Commits({("t", 0), ("t", 1)})
    loop.source = source  # type: ignore[assignment]  # only streams() and commit() are used here
    taken = [record(0, 10), record(1, 20)]
    rest = [record(0, 11), record(1, 21), record(0, 12), record(1, 22)]
    loop.accept(read(*taken, *rest))
    assert loop.waiting == rest  # --max-pending 2: the engine is full after the first two
    await loop.release({("t", 0)}, timeout=0)
    assert loop.waiting == [record(1, 21), record(1, 22)]  # partition 1's records are all still due
    assert ("t", 0) not in loop.tracker.streams()
    assert loop.tracker.committable(("t", 1)) == 20
    await loop.release(set(), timeout=0)  # nothing more released: nothing changes
    assert loop.waiting == [record(1, 21), record(1, 22)]


async def test_a_release_waits_for_what_was_taken_of_the_stream_and_no_longer(loop: RunLoop) -> None:
    source = Commits({("t", 0), ("t", 1)})
    loop.source = source  # type: ignore[assignment]
    loop.accept(read(record(0, 10), record(1, 20), record(0, 11), record(0, 12)))
    releasing = asyncio.create_task(loop.release({("t", 0)}, timeout=60))
    await asyncio.sleep(0.05)
    assert not releasing.done()  # record 10 was taken and is not finished
    loop.acknowledge([Position("t", 0, 10)])
    # 11 and 12 were never taken: they are dropped, not waited for.
    await asyncio.wait_for(releasing, 5)
    assert source.commits[-1] == {("t", 0): 11}
    assert loop.committed.get(("t", 0)) is None  # forgotten: nothing is committed for it afterwards
