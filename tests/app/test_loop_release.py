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
from consumer.events import Position, apart
from consumer.ops.metrics import Metrics
from consumer.settings import load
from consumer.sources.base import Batch, Stream
from consumer.transform.prepare import Chunk, ChunkBuilder

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


def chunk(partition: int, *offsets: int) -> Chunk:
    """Records of one partition with one payload each: each takes room in the engine until it is delivered
    (never, here)."""
    builder = ChunkBuilder(("t", partition), 1)
    for offset in offsets:
        builder.add(offset, CUSTOM, ([(b'{"insert_id":"x"}', ("d:x",))],))
    return builder.build()


def at(partition: int, *offsets: int) -> list[Position]:
    return [Position("t", partition, offset) for offset in offsets]


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


async def test_a_release_midway_leaves_out_only_the_released_streams_records_not_taken_yet(
    loop: RunLoop,
) -> None:
    source = Commits({("t", 0), ("t", 1)})
    loop.source = source  # type: ignore[assignment]  # only streams() and commit() are used here
    loop.accept(Batch([chunk(0, 10), chunk(1, 20), chunk(0, 11, 12), chunk(1, 21, 22)]))
    assert loop.waiting == at(0, 11, 12) + at(1, 21, 22)  # --max-pending 2: full after the first two
    await loop.release({("t", 0)}, timeout=0)
    assert loop.waiting == at(1, 21, 22)  # partition 1's records are all still due
    assert ("t", 0) not in loop.tracker.streams()
    assert loop.tracker.committable(("t", 1)) == 20
    await loop.release(set(), timeout=0)  # nothing more released: nothing changes
    assert loop.waiting == at(1, 21, 22)


async def test_a_release_drops_the_rest_of_a_chunk_partly_taken(loop: RunLoop) -> None:
    source = Commits({("t", 0), ("t", 1)})
    loop.source = source  # type: ignore[assignment]
    loop.accept(Batch([chunk(0, 10, 11, 12), chunk(1, 20)]))
    assert loop.waiting == at(0, 12) + at(1, 20)  # rows 10 and 11 fill the engine
    await loop.release({("t", 0)}, timeout=0)
    assert loop.waiting == at(1, 20)
    await loop.release({("t", 1)}, timeout=0)
    assert loop.waiting == []


async def test_a_release_waits_for_what_was_taken_of_the_stream_and_no_longer(loop: RunLoop) -> None:
    source = Commits({("t", 0), ("t", 1)})
    loop.source = source  # type: ignore[assignment]
    loop.accept(Batch([chunk(0, 10), chunk(1, 20), chunk(0, 11, 12)]))
    releasing = asyncio.create_task(loop.release({("t", 0)}, timeout=60))
    await asyncio.sleep(0.05)
    assert not releasing.done()  # record 10 was taken and is not finished
    live = apart(loop.pipeline.engine.live.items.values())
    (taken,) = [item for item in live if item.position == at(0, 10)[0]]
    taken.group.owed = 0  # as if its one payload had ended
    loop.acknowledge([taken.group])
    # 11 and 12 were never taken: they are dropped, not waited for.
    await asyncio.wait_for(releasing, 5)
    assert source.commits[-1] == {("t", 0): 11}
    assert loop.committed.get(("t", 0)) is None  # forgotten: nothing is committed for it afterwards
