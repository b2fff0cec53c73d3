"""The Source contract (consumer.sources.base), run against every source with the same rules.

Each source is real: the Kafka source against the embedded broker (its commits read back from the
group), the file source over real Avro files (its commits are what it hands its ledger). Each is read
through :meth:`~consumer.sources.base.Source.read` by a :class:`consumer.app.loop.RunLoop` that tracks what
was read (the records are not delivered: their acknowledgements are made by the test, out of order):

* a read returns within its timeout, an empty batch when nothing comes, and a paused source hands out
  nothing;
* acks out of order -> only the contiguous done prefix is committed;
* a dead-lettered position acknowledges (and is on disk before its commit);
* nothing past an unfinished position is committed, even at shutdown;
* back-pressure and resume never move a commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.synth import Synth, avro_body, write_container
from kafka_harness import committed_offsets, produce
from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.loop import RunLoop
from consumer.events import Group, Position
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import read_dead_letters
from consumer.settings import Settings, load
from consumer.sources.base import Batch, Source
from consumer.sources.kafka.source import KafkaSource
from consumer.sources.storage.files import list_objects
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.source import FileSource
from consumer.sources.storage.store import StoredObject
from consumer.transform.prepare import Preparer

CUSTOM = "users.behaviors.CustomEvent"
N = 5


@dataclass
class Opened:
    """A started source and how to read back what it committed for its one stream."""

    source: Source
    committed: Callable[[], Awaitable[int | None]]


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load(
        None,
        env={
            "AMPLITUDE_API_KEY": "contract-key",
            "AMPLITUDE_URL": "http://127.0.0.1:9/2/httpapi",  # nothing is sent in these tests
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dead-letter"),
            "CURRENTS_STATE_DIR": str(tmp_path / "state"),
            "CURRENTS_WORKERS": "0",
            **env,
        },
    )


def _records() -> list[dict[str, object]]:
    return [record for _, record in Synth(5, devices=10).mixed(N, event_types=[CUSTOM])]


Make = Callable[[Path, EmbeddedBroker, RunLoop], AsyncGenerator[Opened, None]]


async def _kafka(tmp_path: Path, broker: EmbeddedBroker, loop: RunLoop) -> AsyncGenerator[Opened, None]:
    await broker.create_topic("contract", 1)
    values = [avro_body(CUSTOM, record) for record in _records()]
    await produce(broker.bootstrap_servers, "contract", values, partition=0)
    settings = _settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        KAFKA_TOPICS="contract",
        KAFKA_TOPIC_EVENT_TYPES=f"contract={CUSTOM}",
        KAFKA_GROUP_ID="contract-group",
        KAFKA_SESSION_TIMEOUT="2s",
        KAFKA_AUTO_OFFSET_RESET="earliest",
    )
    mappers = loop.pipeline.preparer.mappers
    source = KafkaSource(settings.kafka, mappers, Metrics(CollectorRegistry()), workers=0)

    async def committed() -> int | None:
        offsets = await committed_offsets(broker.bootstrap_servers, "contract-group", [("contract", 0)])
        return next(iter(offsets.values()), None)

    try:
        yield Opened(source, committed)
    finally:
        await source.close()


@dataclass
class Ledger:
    """A file source's ledger that remembers what it was told."""

    progress_of: dict[str, int] = field(default_factory=dict)
    finished_with: dict[str, int] = field(default_factory=dict)
    saves: int = 0

    def admit(self, obj: StoredObject) -> int | None:
        return 0

    def progress(self, obj: StoredObject, next_record: int) -> None:
        self.progress_of[obj.url] = next_record

    def finished(self, obj: StoredObject, records: int) -> None:
        self.finished_with[obj.url] = records

    def abandoned(self, obj: StoredObject) -> None:
        raise AssertionError(f"{obj.url} abandoned")

    def save(self) -> None:
        self.saves += 1


async def _files(tmp_path: Path, broker: EmbeddedBroker, loop: RunLoop) -> AsyncGenerator[Opened, None]:
    path = write_container(tmp_path / "in" / f"event_type={CUSTOM}" / "part-0.avro", CUSTOM, _records())
    selection = Selection()
    ledger = Ledger()
    source = FileSource(
        list_objects([str(tmp_path / "in")], selection),
        selection,
        ledger,
        Preparer(loop.pipeline.preparer.mappers).chunk,
        in_flight=1,
    )

    async def committed() -> int | None:
        url = str(path)
        return ledger.finished_with.get(url, ledger.progress_of.get(url))

    try:
        yield Opened(source, committed)
    finally:
        await source.close()


SOURCES: dict[str, Make] = {"kafka": _kafka, "files": _files}


async def _read(loop: RunLoop, source: Source, n: int) -> dict[Position, Group]:
    """Read until ``n`` positions came: each row tracked by the loop's tracker as a group of its own (and
    streams ended noted by the loop), records not taken."""
    groups: dict[Position, Group] = {}
    deadline = time.monotonic() + 30
    while len(groups) < n:
        assert time.monotonic() < deadline, f"only {len(groups)} of {n} positions read"
        batch = await source.read(0.5)
        assert batch is not None
        for chunk in batch.records:
            for offset in chunk.offsets:
                group = groups[Position(*chunk.stream, offset)] = Group(chunk.stream, offset, offset, 1)
                loop.tracker.track(group)
        loop.accept(Batch(bad=batch.bad, ended=batch.ended, problems=batch.problems))
    return groups


@pytest.mark.parametrize("kind", sorted(SOURCES))
async def test_only_the_contiguous_done_prefix_is_ever_committed(
    kind: str, tmp_path: Path, broker: EmbeddedBroker
) -> None:
    settings = _settings(tmp_path)
    destinations = build_destinations(settings)
    loop = RunLoop(destinations, settings.dead_letter, Metrics(CollectorRegistry()))
    opened = SOURCES[kind](tmp_path, broker, loop)
    src = await anext(opened)
    source = loop.source = src.source
    try:
        assert await source.start(loop, asyncio.Event(), lambda: None)
        groups = await _read(loop, source, N)
        p = list(groups)
        assert len(p) == N and len({q.stream for q in p}) == 1
        stream = p[0].stream

        def done(position: Position) -> None:
            """``position``'s event ended (delivered, skipped or dead-lettered)."""
            groups[position].owed = 0
            loop.acknowledge([groups[position]])

        async def commit() -> int | None:
            await loop.checkpoint()
            return await src.committed()

        # A read with nothing more to read returns within its timeout: an empty batch (or, for a file,
        # the end of its stream, then the source's end); a paused source hands out nothing.
        started = time.monotonic()
        idle = await source.read(0.2)
        assert time.monotonic() - started < 5
        if idle is not None:
            assert not idle.records
            loop.accept(idle)
        source.pause()
        assert (await source.read(0)) == Batch()
        # Out of order: positions 1 and 3 are done, 0 is not -> nothing past 0 is committed.
        done(p[3])
        done(p[1])
        assert await commit() in (None, p[0].offset)
        # A dead-lettered position acknowledges: 0..1 done -> 2 is the next to read.
        loop.pipeline.dead_letter_input(p[0], "undecodable", "contract test", raw=b"\x00")
        done(p[0])
        assert await commit() == p[2].offset
        (record,) = [r for _, _, r in read_dead_letters([settings.dead_letter])]  # synced before
        assert record["reason"] == "undecodable"
        # Shutdown with 2 unfinished and 4 done: still only the done prefix.
        done(p[4])
        assert await commit() == p[2].offset
        # Back-pressure and resume never move a commit.
        source.resume()
        done(p[2])
        assert await commit() == p[4].offset + 1
        assert stream not in loop.tracker.streams() or kind == "kafka"  # a file, once done, is finished
    finally:
        await loop.dead.aclose()
        await loop.pipeline.close()
        await close_all(destinations)
        await opened.aclose()
