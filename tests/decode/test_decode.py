"""Decoding containers (every codec, evolved schemas), Confluent and plain Kafka values, and bad bytes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import fastavro
import pytest
from currents_devkit.synth import Synth, avro_body, confluent_frame, write_container
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.decode.avro import (
    DecodeError,
    decode_confluent,
    decode_plain,
    iter_container,
    schema_id_of,
    split_confluent,
)
from consumer.decode.schemas import parsed_schema, raw_schemas
from consumer.events import Position

POS = Position("topic-a", 3, 42)


class Registry:
    """A local resolver: schema id -> parsed schema."""

    def __init__(self, schemas: dict[int, Any]) -> None:
        self.schemas = schemas

    def schema_for_id(self, schema_id: int) -> Any | None:
        return self.schemas.get(schema_id)


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_container_every_codec(tmp_path: Path, codec: str) -> None:
    records = list(Synth(seed=1).records("users.messages.email.Open", 50))
    path = tmp_path / f"f-{codec}.avro"
    write_container(path, "users.messages.email.Open", records, codec=codec)
    with open(path, "rb") as fh:
        out = list(iter_container(fh, str(path)))
    assert [r.record for r in out] == records
    assert {r.event_type for r in out} == {"users.messages.email.Open"}
    assert [r.position.offset for r in out] == list(range(50))


def test_container_with_a_newer_writer_schema_reads_unknown_fields(tmp_path: Path) -> None:
    schema = dict(raw_schemas()["users.behaviors.CustomEvent"])
    schema["fields"] = [
        *schema["fields"],
        {"name": "brand_new_field", "type": ["null", "string"], "default": None},
    ]
    records = [
        {**r, "brand_new_field": "hello"} for r in Synth(seed=2).records("users.behaviors.CustomEvent", 5)
    ]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records)
    buf.seek(0)
    out = list(iter_container(buf, "x.avro"))
    assert [r.record["brand_new_field"] for r in out] == ["hello"] * 5


def test_event_type_falls_back_to_the_path() -> None:
    schema = {"type": "record", "name": "Anonymous", "fields": [{"name": "id", "type": "string"}]}
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"id": "a"}])
    buf.seek(0)
    out = list(iter_container(buf, "root/event_type=users.behaviors.Uninstall/date=2024-01-01-00/x.avro"))
    assert out[0].event_type == "Anonymous"  # a named schema wins; only nameless input uses the path


def test_truncated_container_yields_the_good_records_then_names_the_damage(tmp_path: Path) -> None:
    records = list(Synth(seed=3).records("users.messages.pushnotification.Send", 2000))
    path = tmp_path / "t.avro"
    write_container(path, "users.messages.pushnotification.Send", records, codec="null")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    got = []
    with open(path, "rb") as fh, pytest.raises(DecodeError) as info:
        for rec in iter_container(fh, str(path)):
            got.append(rec)
    assert info.value.position.source == str(path)
    assert info.value.position.offset == len(got)
    assert str(path) in str(info.value)


def test_not_avro_at_all() -> None:
    with pytest.raises(DecodeError, match=r"junk\.avro"):
        list(iter_container(io.BytesIO(b"PK\x03\x04 this is a zip"), "junk.avro"))


@pytest.mark.parametrize(
    ("data", "starts"),
    [
        (b'[input]\nevent_types = ["users.*"]\n', "it starts with b'[inp'"),
        (b"\x1f\x8b\x08\x00gzip", "it starts with b'\\x1f\\x8b\\x08\\x00'"),
        (b"Obj", "it starts with b'Obj'"),
        (b"", "it is empty"),
    ],
)
def test_a_file_that_is_not_an_avro_container_is_named_as_such(data: bytes, starts: str) -> None:
    # Handed to fastavro, a .toml failed with "ValueError: read length must be non-negative or -1".
    with pytest.raises(DecodeError) as info:
        list(iter_container(io.BytesIO(data), "docs/config.example.toml"))
    assert info.value.reason == f"not an Avro container file ({starts})"
    assert info.value.position == Position("docs/config.example.toml", -1, 0)


class _Trickle(io.RawIOBase):
    """A stream whose first reads hand out at most 3 bytes (a raw socket's first pieces)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._short = 2

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._short:
            self._short -= 1
            return self._data.read(3 if n < 0 else min(n, 3))
        return self._data.read(n)


def test_the_magic_check_loses_no_byte_of_a_stream_read_in_pieces(tmp_path: Path) -> None:
    records = list(Synth(seed=5).records("users.messages.email.Open", 20))
    path = tmp_path / "pieces.avro"
    write_container(path, "users.messages.email.Open", records, codec="deflate")
    out = list(iter_container(_Trickle(path.read_bytes()), str(path)))  # type: ignore[arg-type]
    assert [r.record for r in out] == records


def test_confluent_round_trip_and_errors() -> None:
    event_type = "users.behaviors.Purchase"
    record = next(Synth(seed=4).records(event_type, 1))
    value = confluent_frame(7, avro_body(event_type, record))
    registry = Registry({7: parsed_schema(event_type)})
    out = decode_confluent(value, registry, POS)
    assert out.event_type == event_type and out.record == record and out.position == POS

    cases = {
        b"": "empty",
        b"\x01" + value[1:]: "magic",
        b"\x00\x00\x01": "truncated header",
        value[:5] + b"\x00\x00": "",  # truncated body: the reader's own reason
        value + b"\x00": "trailing",
        b"\x00\x00\x00\x00\x63" + value[5:]: "unknown schema id 99",
    }
    for bad, reason in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_confluent(bad, registry, POS)
        assert reason in info.value.reason
        assert info.value.position == POS
        assert info.value.raw == bad
    with pytest.raises(DecodeError, match="empty"):
        decode_confluent(None, registry, POS)


def test_plain_avro_with_topic_mapping() -> None:
    record = next(Synth(seed=5).records("users.canvas.Entry", 1))
    out = decode_plain(avro_body("users.canvas.Entry", record), "users.canvas.Entry", POS)
    assert out.record == record
    with pytest.raises(DecodeError, match="no shipped schema"):
        decode_plain(b"\x02a", "users.not.AType", POS)


def test_split_confluent_schema_id() -> None:
    assert split_confluent(b"\x00\x00\x00\x01\x02body", POS) == (258, b"body")


@given(st.one_of(st.none(), st.binary(max_size=12), st.binary(max_size=8).map(lambda b: b"\x00" + b)))
def test_schema_id_of_reads_the_id_split_confluent_would(value: bytes | None) -> None:
    """The daemon's registry look-up reads only the id; it must agree with full framing checks."""
    try:
        expected: int | None = split_confluent(value, POS)[0]
    except DecodeError:
        expected = None
    assert schema_id_of(value) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_values_only_raise_decode_error(data: bytes) -> None:
    registry = Registry({1: parsed_schema("users.behaviors.CustomEvent")})
    for value in (data, b"\x00\x00\x00\x00\x01" + data):
        with contextlib.suppress(DecodeError):
            decode_confluent(value, registry, POS)
    with contextlib.suppress(DecodeError):
        decode_plain(data, "users.messages.email.Click", POS)


def _container(codec: str) -> bytes:
    buf = io.BytesIO()
    records = list(Synth(seed=6).records("users.messages.email.Click", 30))
    fastavro.writer(buf, parsed_schema("users.messages.email.Click"), records, codec=codec, sync_interval=800)
    return buf.getvalue()


CONTAINERS = {codec: _container(codec) for codec in ("null", "deflate", "snappy")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(sorted(CONTAINERS)),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_fuzz_mutated_containers_only_raise_decode_error(
    codec: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(CONTAINERS[codec])
    for where, byte in edits:
        data[where % len(data)] = byte
    if cut is not None:
        data = data[: cut % len(data)]
    try:
        for _ in iter_container(io.BytesIO(bytes(data)), "mutated.avro"):
            pass
    except DecodeError as exc:
        assert exc.position.source == "mutated.avro"
