"""What a record becomes for delivery (``Preparer``), and how the pipeline takes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from currents_devkit.registry import local_schema_id
from currents_devkit.synth import Synth, avro_body, confluent_frame
from prometheus_client import CollectorRegistry

from consumer.app.pipeline import Pipeline
from consumer.decode.avro import DecodeError, decode_message
from consumer.decode.schemas import parsed_schema
from consumer.delivery.destination import Destination
from consumer.events import Pending, Position
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter, read_dead_letters
from consumer.settings import load
from consumer.sinks.base import SendResult
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.base import UNMAPPED_TYPE, Payload, Skip
from consumer.transform.prepare import Output, Preparer, ReadyRecord, Unencodable, prepare_messages

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
    batch = [("t", 0, 0, good), ("t", 0, 1, b"\x01junk"), ("t", 0, 2, good[:-3]), ("t", 0, 3, None)]

    class Schemas:
        def schema_for_id(self, schema_id: int) -> Any:
            return parsed_schema(CUSTOM) if schema_id == local_schema_id(CUSTOM) else None

    preparer = Preparer([amplitude()])
    results = prepare_messages(batch, {}, Schemas(), {}, preparer)
    assert results[0] == (CUSTOM, preparer.outputs(CUSTOM, record))
    for message, result in zip(batch[1:], results[1:], strict=True):
        try:
            decode_message(message, {}, Schemas(), {})
        except DecodeError as exc:
            assert result == exc.reason
        else:
            raise AssertionError(f"{message} decoded")
    # an id the registry refused is dead-lettered with the registry's reason, without asking again
    unusable = {local_schema_id(CUSTOM): "schema id 9 not found"}
    assert prepare_messages(batch[:1], {}, Schemas(), unusable, preparer) == ["schema id 9 not found"]


class NeverCalled:
    overhead = 0

    async def close(self) -> None:
        pass

    async def send(self, batch: Sequence[Pending]) -> SendResult:
        raise AssertionError("nothing should be sent")


async def test_an_unencodable_payload_is_dead_lettered_and_its_record_acknowledged(tmp_path: Path) -> None:
    settings = load(None, {"AMPLITUDE_API_KEY": "k", "CURRENTS_DEAD_LETTER": str(tmp_path / "dl")})
    dead = DeadLetterWriter(settings.dead_letter)
    acked: list[Position] = []
    destination = Destination("amplitude", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    position = Position("f.avro", -1, 7)
    run: list[ReadyRecord] = [
        (position, CUSTOM, (Unencodable("Type is not JSON serializable: set"),)),
        (Position("f.avro", -1, 8), CUSTOM, (Skip("no_identity"),)),
    ]
    assert pipeline.queue_run(run) == 2
    dead.close()
    assert acked == [position, Position("f.avro", -1, 8)]
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
    acked: list[Position] = []
    destination = Destination("amplitude", amplitude(), NeverCalled(), settings.amplitude, settings.limits)
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    small: tuple[Output, ...] = ([(b"x" * 99, ("d:1",))],)  # 100 bytes as a Pending
    skipped: tuple[Output, ...] = (Skip("no_identity"),)
    outputs = [small, skipped, small, small, small, small, small, small]
    run = [(Position("t", 0, i), CUSTOM, out) for i, out in enumerate(outputs)]
    assert pipeline.queue_run(run) == 6  # five payloads fill the engine; the skipped record needs no room
    assert pipeline.engine.pending == 5 and not pipeline.has_room and acked == [Position("t", 0, 1)]
    assert pipeline.queue_run(run, 6) == 7  # a full engine: one record at most
    assert pipeline.engine.pending == 6
    await pipeline.close()

    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    assert pipeline.queue_run(run, 3) == 8  # from the fourth record on: the fifth payload fills the engine
    assert pipeline.engine.pending == 5
    await pipeline.close()

    big: tuple[Output, ...] = ([(b"y" * 5999, ("d:2",))],)  # 6,000 bytes: the second passes the byte bound
    pipeline = Pipeline([destination], dead, Metrics(CollectorRegistry()), acked.extend)
    assert pipeline.queue_run([(Position("t", 1, i), CUSTOM, big) for i in range(3)]) == 2
    assert pipeline.engine.pending == 2
    dead.close()
    await pipeline.close()
