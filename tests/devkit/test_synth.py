"""Tests for ``currents_devkit.synth``: schema validity, determinism, storage layout, codecs, shares."""

from __future__ import annotations

import calendar
import io
import json
import re
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import currents_devkit.synth.generator as synth_module
import fastavro
import pytest
from currents_devkit.synth import (
    PLACEHOLDER_IDS,
    Synth,
    avro_body,
    confluent_frame,
    event_type_for_schema_id,
    generate_sample,
    schema_id_for,
    write_container,
    write_currents_tree,
)
from fastavro.validation import validate

from consumer.decode.schemas import event_types, parsed_schema, raw_schemas

TREE_PATH = re.compile(
    r"^dataexport\.prod-01\.S3\.integration\.(?P<integration>[0-9a-f]{24})"
    r"/event_type=(?P<event_type>[A-Za-z0-9_.]+)"
    r"/date=(?P<date>\d{4}-\d{2}-\d{2}-\d{2})"
    r"/version=(?P<schema_id>\d+)"
    r"/us-01"
    r"/dataexport\.prod-01\.S3\.integration\.(?P=integration)\+(?P<partition>\d+)\+(?P<offset>[1-9]\d*|0)\.avro$"
)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PUSH_SEND = "users.messages.pushnotification.Send"


def read_file(path: Path) -> tuple[str, Any, list[Any]]:
    """Codec, writer schema and records of an Avro container file."""
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        records: list[Any] = list(reader)
        return reader.codec, reader.writer_schema, records


@pytest.fixture(scope="module")
def synths() -> tuple[Synth, ...]:
    """Default, all-optionals-filled and all-null/anonymous generators, shared by the per-type tests."""
    return (Synth(1), Synth(2, optional_fill=1.0), Synth(3, optional_fill=0.0, anonymous_share=1.0))


@pytest.mark.parametrize("event_type", event_types())
def test_every_event_type_validates(event_type: str, synths: tuple[Synth, ...]) -> None:
    schema = parsed_schema(event_type)
    for synth in synths:
        for record in synth.records(event_type, 20):
            assert validate(record, schema, raise_errors=True)
            assert UUID4.match(str(record["id"]))


def test_required_fields_and_optional_fill() -> None:
    synth = Synth(5)
    records = list(synth.records("users.messages.email.Open", 2000))
    nulls = Counter(k for r in records for k, v in r.items() if v is None)
    assert nulls["email_address"] == 0 and nulls["user_id"] == 0
    # plain optional fields are filled at about 70%
    assert 0.2 < nulls["ip_pool"] / len(records) < 0.4
    assert all(re.fullmatch(r"[0-9a-f]{24}", str(r["user_id"])) for r in records)


def test_deterministic_per_seed() -> None:
    assert list(Synth(7).mixed(500)) == list(Synth(7).mixed(500))
    assert list(Synth(7).mixed(50)) != list(Synth(8).mixed(50))
    ids = [r["id"] for _, r in Synth(9).mixed(20_000)]
    assert len(set(ids)) == len(ids)


def test_mixed_weights() -> None:
    counts = Counter(t for t, _ in Synth(4).mixed(20_000))
    top = {t for t, _ in counts.most_common(6)}
    assert {PUSH_SEND, "users.messages.email.Send", "users.behaviors.CustomEvent"} <= top
    only = ["users.behaviors.Purchase", "users.behaviors.Location"]
    picked = Counter(t for t, _ in Synth(4).mixed(1000, only, [1.0, 0.0]))
    assert picked == {"users.behaviors.Purchase": 1000}
    with pytest.raises(KeyError):
        list(Synth(4).mixed(1, ["users.nope.Unknown"]))


def test_identity_edge_cases_present() -> None:
    synth = Synth(12, devices=2000, placeholder_share=0.05)
    externals = [r["external_user_id"] for r in synth.records(PUSH_SEND, 20_000)]
    present = [e for e in externals if e is not None]
    assert any(isinstance(e, str) and len(e) < 5 and e not in PLACEHOLDER_IDS for e in present)
    assert any(not str(e).isascii() for e in present)
    assert any(e in PLACEHOLDER_IDS for e in present)


def test_anonymous_share() -> None:
    synth = Synth(13, anonymous_share=0.1)
    for event_type in (PUSH_SEND, "users.messages.email.Send"):
        records = list(synth.records(event_type, 10_000))
        no_identity = sum(1 for r in records if r["external_user_id"] is None and r.get("device_id") is None)
        assert 0.08 < no_identity / len(records) < 0.12, event_type


def test_hot_device_share() -> None:
    synth = Synth(11, devices=1000, hot_devices=5, hot_share=0.3)
    hot = set(synth.hot_device_ids)
    devices = [r["device_id"] for r in synth.records(PUSH_SEND, 20_000) if r["device_id"] is not None]
    share = sum(1 for d in devices if d in hot) / len(devices)
    assert 0.27 < share < 0.33
    busiest = Counter(devices).most_common(5)
    assert {d for d, _ in busiest} == hot

    cold = Synth(11, devices=1000)
    devices = [r["device_id"] for r in cold.records(PUSH_SEND, 20_000) if r["device_id"] is not None]
    assert Counter(devices).most_common(1)[0][1] < 0.01 * len(devices)


def test_ad_ids_and_platform_consistent() -> None:
    for r in Synth(14).records("users.behaviors.CustomEvent", 3000):
        if r["ad_id"] is not None:
            expected = {"ios": "ios_idfa", "android": "google_adid"}[str(r["platform"])]
            assert r["ad_id_type"] == expected
        assert r["platform"] in {"ios", "android", "kindle", "web", "tvos", "roku"}


def test_custom_event_and_purchase_properties() -> None:
    synth = Synth(15)
    names = set()
    for r in synth.records("users.behaviors.CustomEvent", 2000):
        names.add(r["name"])
        assert isinstance(json.loads(str(r["properties"])), dict)
    assert {"Product Viewed", "Added To Cart"} <= names
    for r in synth.records("users.behaviors.Purchase", 500):
        assert isinstance(json.loads(str(r["properties"])), dict)
        price = r["price"]
        assert isinstance(price, float) and price > 0
        assert struct.unpack("<f", struct.pack("<f", price))[0] == price  # survives Avro float exactly
        assert re.fullmatch(r"[A-Z]{3}", str(r["currency"]))
    for r in synth.records("users.behaviors.Location", 500):
        assert -90 <= float(r["latitude"]) <= 90 and -180 <= float(r["longitude"]) <= 180


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_container_round_trip(tmp_path: Path, codec: str) -> None:
    synth = Synth(21)
    for event_type in (PUSH_SEND, "users.behaviors.Purchase", "users.messages.sms.InboundReceive"):
        records = list(synth.records(event_type, 300))
        path = write_container(tmp_path / f"{event_type}.{codec}.avro", event_type, records, codec)
        _, schema, back = read_file(path)
        assert back == records
        assert schema["name"] == f"dataexport.S3.inner.{event_type}"
    with pytest.raises(ValueError):
        write_container(tmp_path / "x.avro", PUSH_SEND, [], "zstandard")


def test_tree_layout_and_contents(tmp_path: Path) -> None:
    paths = write_currents_tree(tmp_path, Synth(31), 3000, integrations=2, hours=3, max_per_file=200)
    assert paths and all(p.is_file() for p in paths)
    assert sorted(paths) == sorted(tmp_path.rglob("*.avro"))
    total = 0
    seen_codecs, seen_dates, seen_integrations = set(), set(), set()
    for path in paths:
        match = TREE_PATH.match(path.relative_to(tmp_path).as_posix())
        assert match, path
        codec, schema, records = read_file(path)
        seen_codecs.add(codec)
        assert schema["name"] == f"dataexport.S3.inner.{match['event_type']}"
        assert 0 < len(records) <= 200  # never empty, never above max_per_file
        assert int(match["schema_id"]) == schema_id_for(match["event_type"])
        assert all(r["time"] <= hour_end(match["date"]) for r in records)
        total += len(records)
        seen_dates.add(match["date"])
        seen_integrations.add(match["integration"])
    assert total == 3000
    assert seen_codecs == {"null", "deflate", "snappy"}
    assert seen_dates == {"2023-11-14-22", "2023-11-14-23", "2023-11-15-00"}
    assert len(seen_integrations) == 2


def hour_end(date: str) -> int:
    """UNIX seconds at the end of a ``YYYY-MM-DD-HH`` hour."""
    return calendar.timegm(time.strptime(date, "%Y-%m-%d-%H")) + 3600


def test_tree_deterministic(tmp_path: Path) -> None:
    one = write_currents_tree(tmp_path / "a", Synth(41), 800, event_types=[PUSH_SEND, "users.canvas.Entry"])
    two = write_currents_tree(tmp_path / "b", Synth(41), 800, event_types=[PUSH_SEND, "users.canvas.Entry"])
    assert [p.relative_to(tmp_path / "a") for p in one] == [p.relative_to(tmp_path / "b") for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))
    assert write_currents_tree(tmp_path / "c", Synth(41), 0) == []


def test_generate_sample(tmp_path: Path) -> None:
    paths = generate_sample(tmp_path, 500, seed=3)
    assert sum(len(read_file(p)[2]) for p in paths) == 500


def test_generate_sample_now_writes_the_hour_now_is_in_whole_files_only(tmp_path: Path) -> None:
    """``sample --now``: the files Braze writes at ``now`` (for a follower's polls), none half written."""
    now = 1_800_000_000 + 1234  # 2027-01-15T08:20:34Z
    paths = generate_sample(tmp_path, 300, seed=3, now=now)
    assert {part for p in paths for part in p.parts if part.startswith("date=")} == {"date=2027-01-15-08"}
    records = [r for p in paths for r in read_file(p)[2]]
    assert len(records) == 300 and max(r["time"] for r in records) <= now
    assert [p.name for p in tmp_path.rglob(".*")] == []  # written under a hidden name, then renamed


def test_kafka_helpers() -> None:
    record = Synth(51).record(PUSH_SEND)
    body = avro_body(PUSH_SEND, record)
    assert fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(PUSH_SEND)) == record
    sid = schema_id_for(PUSH_SEND)
    frame = confluent_frame(sid, body)
    assert frame[0] == 0 and int.from_bytes(frame[1:5], "big") == sid and frame[5:] == body
    assert event_type_for_schema_id(sid) == PUSH_SEND
    assert sorted(schema_id_for(t) for t in event_types()) == list(range(1, len(event_types()) + 1))
    with pytest.raises(KeyError):
        schema_id_for("users.nope.Unknown")
    with pytest.raises(ValueError):
        confluent_frame(2**32, body)


def test_new_schema_needs_no_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema the generator has never seen (new fields, other Avro types) still yields valid records."""
    new_type = "users.messages.pigeon.Send"
    schema: dict[str, Any] = {
        "type": "record",
        "name": "Send",
        "namespace": "dataexport.S3.inner.users.messages.pigeon",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "external_user_id", "type": ["null", "string"], "default": None},
            {"name": "time", "type": "long"},
            {"name": "pigeon_id", "type": "string"},
            {"name": "wingspan", "type": "double"},
            {"name": "feathers", "type": ["null", {"type": "array", "items": "int"}], "default": None},
            {"name": "mood", "type": {"type": "enum", "name": "Mood", "symbols": ["calm", "angry"]}},
            {"name": "extras", "type": {"type": "map", "values": "string"}},
            {"name": "blob", "type": ["null", "bytes"], "default": None},
            {
                "name": "nest",
                "type": {"type": "record", "name": "Nest", "fields": [{"name": "x", "type": "int"}]},
            },
        ],
    }
    monkeypatch.setattr(synth_module, "raw_schemas", lambda: {**raw_schemas(), new_type: schema})
    parsed = fastavro.parse_schema(schema)
    for record in Synth(61, optional_fill=1.0).records(new_type, 50):
        assert validate(record, parsed, raise_errors=True)
