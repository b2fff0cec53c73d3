"""What a record becomes for delivery (``Preparer``), and how the pipeline takes it."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from currents_devkit.registry import local_schema_id
from currents_devkit.synth import Synth, avro_body, confluent_frame
from prometheus_client import CollectorRegistry

from consumer.app.pipeline import Pipeline
from consumer.decode.avro import DecodeError, MessageRun, decode_message
from consumer.decode.schemas import parsed_schema
from consumer.delivery.destination import Destination
from consumer.events import Group, PendingRun, Position, Queued
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter, read_dead_letters
from consumer.settings import load
from consumer.sinks.base import SendResult
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.base import UNMAPPED_TYPE, Payload, Skip
from consumer.transform.prepare import Chunk, ChunkBuilder, Output, Preparer, Unencodable, prepare_messages

CUSTOM = "users.behaviors.CustomEvent"


def amplitude() -> AmplitudeMapper:
    return AmplitudeMapper(Transformer(load(None, {"AMPLITUDE_API_KEY": "k"}).mapping))


class BadEncoder(AmplitudeMapper):
    """Maps like Amplitude, but its payloads cannot be encoded."""

    def encode(self, payload: Payload) -> bytes:
        raise TypeError("Type is not JSON serializable: set")


def test_each_destination_gets_its_payloads_as_bytes_and_keys_or_its_reason() -> None:
    record = Synth(1).record(CUSTOM)
    mapper = amplitude()
    (payload,) = mapper.map(CUSTOM, record)  # type: ignore[misc]
    outputs = Preparer([mapper, BadEncoder(mapper.transformer)]).outputs(CUSTOM, record)
    assert outputs[0] == [(mapper.encode(payload), mapper.keys(payload))]
    assert orjson.loads(outputs[0][0][0]) == orjson.loads(orjson.dumps(payload))
    assert outputs[1] == Unencodable("Type is not JSON serializable: set")
    assert Preparer([mapper]).outputs("users.not.a.Type", record) == (UNMAPPED_TYPE,)


def test_prepared_messages_match_decoding_one_by_one() -> None:
    synth = Synth(2)
    record = synth.record(CUSTOM)
    good = confluent_frame(local_schema_id(CUSTOM), avro_body(CUSTOM, record))
    run = MessageRun("t", 0, array("q", [0, 1, 2, 3]), [good, b"\x01junk", good[:-3], None])
    batch = list(run.messages())

    class Schemas:
        def schema_for_id(self, schema_id: int) -> Any:
            return parsed_schema(CUSTOM) if schema_id == local_schema_id(CUSTOM) else None

    preparer = Preparer([amplitude()])
    (chunk,) = prepare_messages([run], {}, Schemas(), {}, preparer)  # one run: one chunk
    assert chunk.stream == ("t", 0) and list(chunk.offsets) == [0, 1, 2, 3]
    assert chunk.rows()[0] == (0, CUSTOM, preparer.outputs(CUSTOM, record))
    reasons: list[tuple[int, str, bytes | None]] = []
    for row, message in enumerate(batch[1:], 1):
        try:
            decode_message(message, {}, Schemas(), {})
        except DecodeError as exc:
            reasons.append((row, exc.reason, message[3]))
        else:
            raise AssertionError(f"{message} decoded")
    assert chunk.bad == reasons  # each with its raw bytes, for the dead-letter record
    assert chunk.rows()[1:] == [(row, "", ()) for row in (1, 2, 3)]
    # an id the registry refused is dead-lettered with the registry's reason, without asking again
    unusable = {local_schema_id(CUSTOM): "schema id 9 not found"}
    (chunk,) = prepare_messages([run.split(1)[0]], {}, Schemas(), unusable, preparer)
    assert chunk.bad == [(0, "schema id 9 not found", good)]


def test_a_kafka_batch_gives_one_chunk_per_run_in_order() -> None:
    record = Synth(3).record(CUSTOM)
    good = confluent_frame(local_schema_id(CUSTOM), avro_body(CUSTOM, record))
    t1 = MessageRun("t", 1, array("q", [5, 6, 8]), [good, good, good])
    first, rest = t1.split(2)
    assert (list(first.offsets), list(rest.offsets)) == ([5, 6], [8]) and len(rest.values) == 1
    runs = [
        first,
        MessageRun("t", 0, array("q", [9]), [good]),
        rest,
        MessageRun("u", 1, array("q", [2]), [good]),
    ]

    class Schemas:
        def schema_for_id(self, schema_id: int) -> Any:
            return parsed_schema(CUSTOM)

    chunks = prepare_messages(runs, {}, Schemas(), {}, Preparer([amplitude()]))
    assert [(c.stream, list(c.offsets), [t for _, t, _ in c.rows()]) for c in chunks] == [
        (("t", 1), [5, 6], [CUSTOM, CUSTOM]),
        (("t", 0), [9], [CUSTOM]),
        (("t", 1), [8], [CUSTOM]),
        (("u", 1), [2], [CUSTOM]),
    ]


def chunk_of(stream: tuple[str, int], rows: list[tuple[int, str, tuple[Output, ...]]]) -> Chunk:
    builder = ChunkBuilder(stream, len(rows[0][2]))
    for offset, event_type, outputs in rows:
        builder.add(offset, event_type, outputs)
    return builder.build()


class NeverCalled:
    overhead = 0

    async def close(self) -> None:
        pass

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        raise AssertionError("nothing should be sent")


async def test_an_unencodable_payload_is_dead_lettered_and_its_record_acknowledged(tmp_path: Path) -> None:
    settings = load(None, {"AMPLITUDE_API_KEY": "k", "CURRENTS_DEAD_LETTER": str(tmp_path / "dl")})
    dead = DeadLetterWriter(settings.dead_letter)
    acked: list[Group] = []
    destination = Destination("amplitude", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    run = chunk_of(
        ("f.avro", -1),
        [
            (7, CUSTOM, (Unencodable("Type is not JSON serializable: set"),)),
            (8, CUSTOM, (Skip("no_identity"),)),
        ],
    )
    assert pipeline.queue_run(run) == 2
    dead.close()
    assert [(g.stream, g.first, g.last, g.owed) for g in acked] == [(("f.avro", -1), 7, 8, 0)]
    assert pipeline.summary.dead_lettered["unencodable"] == 1 and pipeline.summary.skipped["no_identity"] == 1
    ((_, _, record),) = read_dead_letters([str(tmp_path / "dl")])
    assert record["reason"] == "unencodable" and record["position"] == {"file": "f.avro", "record": 7}
    assert record["destination"] == "amplitude" and "JSON serializable" in record["detail"]
    await pipeline.close()


async def test_a_run_ends_with_the_record_that_fills_an_engine(tmp_path: Path) -> None:
    """``queue_run`` ends each run with the record that fills an engine: queueing a run never passes
    ``--max-pending`` nor ``--max-pending-bytes`` by more than the record that reached it, and never
    waits."""
    settings = load(
        None,
        {
            "AMPLITUDE_API_KEY": "k",
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dl"),
            "CURRENTS_MAX_PENDING": "5",
            "CURRENTS_MAX_PENDING_BYTES": "10000",
        },
    )
    dead = DeadLetterWriter(settings.dead_letter)
    acked: list[Group] = []
    destination = Destination("amplitude", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    small: tuple[Output, ...] = ([(b"x" * 99, ("d:1",))],)  # 100 bytes as a Pending
    skipped: tuple[Output, ...] = (Skip("no_identity"),)
    outputs = [small, skipped, small, small, small, small, small, small]
    run = chunk_of(("t", 0), [(i, CUSTOM, out) for i, out in enumerate(outputs)])
    assert pipeline.queue_run(run) == 6  # five payloads fill the engine; the skipped record needs no room
    assert pipeline.engine.pending == 5 and not pipeline.has_room
    assert acked == []  # the skipped record is acknowledged with its group, when the five end
    assert pipeline.queue_run(run, 6) == 7  # a full engine: one record at most
    assert pipeline.engine.pending == 6
    await pipeline.close()

    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    assert pipeline.queue_run(run, 3) == 8  # from the fourth record on: the fifth payload fills the engine
    assert pipeline.engine.pending == 5
    await pipeline.close()

    big: tuple[Output, ...] = ([(b"y" * 5999, ("d:2",))],)  # 6,000 bytes: the second passes the byte bound
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    assert pipeline.queue_run(chunk_of(("t", 1), [(i, CUSTOM, big) for i in range(3)])) == 2
    assert pipeline.engine.pending == 2
    dead.close()
    await pipeline.close()


async def test_a_group_is_acknowledged_once_when_every_destination_ended_every_payload(
    tmp_path: Path,
) -> None:
    """Two destinations; a row with two payloads for one and a skip for the other, a row with one payload
    each: the group of both rows is acknowledged once, after the last of its four payloads ends, whatever
    the order; each payload keeps its own row's position and bytes."""
    settings = load(None, {"AMPLITUDE_API_KEY": "k", "CURRENTS_DEAD_LETTER": str(tmp_path / "dl")})
    dead = DeadLetterWriter(settings.dead_letter)
    acked: list[Group] = []
    tracked: list[Group] = []
    one = Destination("one", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    two = Destination("two", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([one, two], dead, Metrics(CollectorRegistry()), acked.extend, track=tracked.append)
    rows: list[tuple[int, str, tuple[Output, ...]]] = [
        (40, CUSTOM, ([(b"a1", ("d:a",)), (b"a2", ("d:a",))], Skip("no_identity"))),
        (42, CUSTOM, ([(b"b1", ("d:b",))], [(b"b2", ("d:b",))])),
    ]
    assert pipeline.queue_run(chunk_of(("t", 3), rows)) == 2
    (group,) = tracked
    assert (group.stream, group.first, group.last, group.owed) == (("t", 3), 40, 42, 4)
    # each engine holds one run of the rows' payloads, their part of a request body one slice
    (run,), second = (list(engine.live.items.values()) for engine in pipeline.engines)
    assert isinstance(run, PendingRun) and (run.count, run.part()) == (3, b"a1,a2,b1")
    assert run.size == sum(len(p) + 1 for p in (b"a1", b"a2", b"b1")) and pipeline.engine.pending == 3
    first = run.apart()  # one at a time from here (as when a device waits aside)
    pipeline.engines[0].live.replace(run, first)
    assert [(p.encoded, p.position) for p in first] == [
        (b"a1", Position("t", 3, 40)),
        (b"a2", Position("t", 3, 40)),
        (b"b1", Position("t", 3, 42)),
    ]
    assert [(p.part(), p.count) for p in second] == [(b"b2", 1)]
    pipeline.engines[1].live.finish(second, "delivered", "")
    pipeline.engines[0].live.finish(first[1:], "delivered", "")
    assert acked == [] and group.owed == 1
    pipeline.engines[0].live.finish(first[:1], "delivered", "")
    assert acked == [group] and group.owed == 0
    pipeline.engines[0].live.finish(first[:1], "delivered", "")  # an event ends once: no second ack
    assert acked == [group]
    assert pipeline.summary.destinations["two"].skipped["no_identity"] == 1
    dead.close()
    await pipeline.close()


async def test_an_undecodable_row_is_dead_lettered_with_its_bytes_and_acknowledged_with_its_group(
    tmp_path: Path,
) -> None:
    settings = load(None, {"AMPLITUDE_API_KEY": "k", "CURRENTS_DEAD_LETTER": str(tmp_path / "dl")})
    dead = DeadLetterWriter(settings.dead_letter)
    acked: list[Group] = []
    destination = Destination("amplitude", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    builder = ChunkBuilder(("t", 0), 1)
    builder.add(4, CUSTOM, (Skip("no_identity"),))
    builder.add_bad(5, "not Avro", b"\x01junk")
    assert pipeline.queue_run(builder.build()) == 2
    dead.close()
    assert [(g.first, g.last) for g in acked] == [(4, 5)]
    ((_, _, record),) = read_dead_letters([str(tmp_path / "dl")])
    assert record["reason"] == "undecodable" and record["detail"] == "not Avro"
    assert record["position"] == {"topic": "t", "partition": 0, "offset": 5}
    assert pipeline.summary.read == {CUSTOM: 1}  # the bad row was no record
    await pipeline.close()
