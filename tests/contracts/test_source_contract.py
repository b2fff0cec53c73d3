"""The Source contract (consumer.sources.base), run against every source with the same rules.

Each source is real: the Kafka source against the embedded broker (its commits read back from the
group), the file source over real Avro files (its commits are what it hands the resume state). The
positions read are tracked and acknowledged out of order through :class:`consumer.app.loop.RunLoop`,
as the commands do:

* acks out of order -> only the contiguous done prefix is committed;
* a dead-lettered position acknowledges (and is on disk before its commit);
* nothing past an unfinished position is committed, even at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.synth import Synth, write_container
from kafka_harness import committed_offsets, eventually, produce
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.loop import RunLoop
from consumer.events import Position
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import read_dead_letters
from consumer.settings import Settings, load
from consumer.sources.base import Source, Stream
from consumer.sources.kafka.group import KafkaSource
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.source import FileSource

CUSTOM = "users.behaviors.CustomEvent"
N = 5


@dataclass
class Opened:
    """A source with ``N`` positions of one stream read, and how to read back what it committed."""

    source: Source
    positions: list[Position]
    committed: Callable[[], Awaitable[int | None]]


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load(
        None,
        env={
            "AMPLITUDE_API_KEY": "contract-key",
            "AMPLITUDE_URL": "http://127.0.0.1:9/2/httpapi",  # nothing is sent in these tests
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dead-letter"),
            "CURRENTS_STATE_DIR": str(tmp_path / "state"),
            **env,
        },
    )


class _Owned:
    def __init__(self) -> None:
        self.owned: set[Stream] = set()

    async def assigned(self, partitions: set[Stream]) -> None:
        self.owned |= partitions

    async def revoked(self, partitions: set[Stream]) -> None:
        self.owned -= partitions


async def _kafka(tmp_path: Path, broker: EmbeddedBroker) -> AsyncGenerator[tuple[Settings, Opened], None]:
    await broker.create_topic("contract", 1)
    await produce(broker.bootstrap_servers, "contract", [b"m%d" % i for i in range(N)], partition=0)
    settings = _settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        KAFKA_TOPICS="contract",
        KAFKA_GROUP_ID="contract-group",
        KAFKA_SESSION_TIMEOUT="2s",
        KAFKA_AUTO_OFFSET_RESET="earliest",
    )
    owned = _Owned()
    source = KafkaSource(settings.kafka, owned)
    assert await source.start(asyncio.Event(), lambda: None)
    messages: list[Position] = []

    async def fetched() -> bool:
        for batch in (await source.fetch(200, 100)).values():
            messages.extend(Position(m.topic, m.partition, m.offset) for m in batch)
        return len(messages) >= N

    await eventually(fetched, within=30, message="the produced messages")

    async def committed() -> int | None:
        offsets = await committed_offsets(broker.bootstrap_servers, "contract-group", [("contract", 0)])
        return next(iter(offsets.values()), None)

    try:
        yield settings, Opened(source, messages, committed)
    finally:
        await source.close()


async def _files(tmp_path: Path, broker: EmbeddedBroker) -> AsyncGenerator[tuple[Settings, Opened], None]:
    records = [record for _, record in Synth(5, devices=10).mixed(N, event_types=[CUSTOM])]
    write_container(tmp_path / "in" / f"event_type={CUSTOM}" / "part-0.avro", CUSTOM, records)
    settings = _settings(tmp_path)
    saved: dict[Stream, int] = {}
    source = FileSource(
        [str(tmp_path / "in")],
        Selection.of_input(settings.input),
        in_flight=1,
        admit=lambda obj: 0,
        save=saved.update,
    )
    positions: list[Position] = []
    async with source.readers() as readers:
        async for reader in readers:
            async for chunk in source.chunks(reader):
                positions.extend(record.position for record in chunk)

    async def committed() -> int | None:
        return next(iter(saved.values()), None)

    try:
        yield settings, Opened(source, positions, committed)
    finally:
        await source.close()


SOURCES = {"kafka": _kafka, "files": _files}


@pytest.mark.parametrize("kind", sorted(SOURCES))
async def test_only_the_contiguous_done_prefix_is_ever_committed(
    kind: str, tmp_path: Path, broker: EmbeddedBroker
) -> None:
    opened = SOURCES[kind](tmp_path, broker)
    settings, src = await anext(opened)
    destinations = build_destinations(settings)
    loop = RunLoop(destinations, settings.dead_letter, Metrics(CollectorRegistry()))
    try:
        p = src.positions
        assert len(p) == N and len({q.stream for q in p}) == 1
        stream = p[0].stream
        loop.tracker.track_many(stream, [q.offset for q in p])

        async def commit() -> int | None:
            assert await loop.commit(src.source, loop.done_prefix([stream]))
            return await src.committed()

        # Out of order: positions 1 and 3 are done, 0 is not -> nothing past 0 is committed.
        loop.ack(p[3])
        loop.ack(p[1])
        assert await commit() in (None, p[0].offset)
        # A dead-lettered position acknowledges: 0..1 done -> 2 is the next to read.
        loop.pipeline.dead_letter_input(p[0], "undecodable", "contract test", raw=b"\x00")
        assert await commit() == p[2].offset
        (record,) = [r for _, _, r in read_dead_letters([settings.dead_letter])]  # synced before
        assert record["reason"] == "undecodable"
        # Shutdown with 2 unfinished and 4 done: still only the done prefix.
        loop.ack(p[4])
        assert await commit() == p[2].offset
        # Back-pressure and resume never move a commit.
        src.source.pause()
        src.source.resume()
        loop.ack(p[2])
        assert await commit() == p[4].offset + 1
    finally:
        await loop.dead.aclose()
        await loop.pipeline.close()
        await close_all(destinations)
        await opened.aclose()
