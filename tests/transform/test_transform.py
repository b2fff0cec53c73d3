"""The Currents -> Amplitude mapping, checked on records generated from ``schemas/``.

Expected names come from the specification's table (``amplitude-export.md``), not from the code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from currents_devkit.synth import Synth

from consumer.decode.schemas import event_types, raw_schemas
from consumer.settings import MappingConfig
from consumer.transform.amplitude import Transformer
from consumer.transform.amplitude_tables import BRAZE_TYPES, amplitude_name, derived_name
from consumer.transform.base import Skip
from consumer.transform.fields import FLOAT32_FIELDS, PLACEHOLDER_IDS, f32

SPEC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "amplitude-export.md"


def spec_names() -> dict[str, str]:
    """Event type -> Amplitude name after the prefix, read from the specification's table."""
    if not SPEC.exists():
        pytest.skip(f"specification not found at {SPEC}")
    rows = re.findall(r"^\| (users\.[A-Za-z.]+) \| `?([^`|]+?)`? \|$", SPEC.read_text(), re.M)
    return {t: n for t, n in rows}


def test_table_matches_the_specification() -> None:
    names = spec_names()
    assert len(names) == 40
    assert set(names) == set(BRAZE_TYPES)
    for event_type, name in names.items():
        if event_type == "users.behaviors.CustomEvent":
            continue
        assert amplitude_name(MappingConfig(), event_type) == "[Appboy] " + name


def _fields(event_type: str) -> set[str]:
    return {f["name"] for f in raw_schemas()[event_type]["fields"]}


MAPPED = sorted(t for t in BRAZE_TYPES if t in raw_schemas())


def test_every_mapped_type_has_a_schema() -> None:
    assert sorted(BRAZE_TYPES) == MAPPED


@pytest.mark.parametrize("event_type", MAPPED)
def test_mapped_type_fields(event_type: str) -> None:
    synth = Synth(seed=hash(event_type) & 0xFFFF, anonymous_share=0.1)
    transformer = Transformer()
    spec = BRAZE_TYPES[event_type]
    sent = 0
    for record in synth.records(event_type, 300):
        result = transformer.transform(event_type, record)
        external: str | None = record.get("external_user_id")
        device: str | None = record.get("device_id")
        ok_external = bool(external and external.strip().lower() not in PLACEHOLDER_IDS)
        ok_device = bool(device and device.strip().lower() not in PLACEHOLDER_IDS)
        if not ok_external and not ok_device:
            assert isinstance(result, Skip)
            assert result.reason == ("invalid_identity" if (external or device) else "no_identity")
            continue
        assert isinstance(result, dict), result
        sent += 1
        assert result["insert_id"] == record["id"]
        assert result["time"] == record["time"] * 1000
        assert result.get("user_id") == (external if ok_external else None)
        assert result.get("device_id") == (device if ok_device else None)
        if event_type == "users.behaviors.CustomEvent":
            assert result["event_type"] == "[Appboy] [Custom Event] " + record["name"]
        else:
            assert result["event_type"] == "[Appboy] " + spec.name
        props: dict[str, Any] = result.get("event_properties", {})
        # Currents nulls are omitted; a JSON null inside the custom properties is the user's value.
        assert all(v is not None for k, v in props.items() if not k.startswith("["))
        assert not {"id", "time", "user_id"} & set(props)
        for field in spec.properties:
            source = "content_card_id" if field == "card_id" and "content_card_id" in record else field
            if record.get(source) is not None:
                # 32-bit Avro floats go out in their shortest decimal form, the same 32-bit value.
                want = f32(record[source]) if source in FLOAT32_FIELDS else record[source]
                assert props[field] == want, field
            else:
                assert field not in props
        allowed = set(spec.properties) | {"braze_id", "external_user_id", "device_id", "properties"}
        extra = {k for k in props if not k.startswith("[")} - allowed
        assert not extra, extra
        assert props["braze_id"] == record["user_id"]
        # The event must be JSON-encodable as it will be sent.
        orjson.dumps(result)
    assert sent > 0


def test_custom_event_properties_prefixed_with_nested_json() -> None:
    record = {
        "id": "e1",
        "user_id": "b" * 24,
        "external_user_id": "7",
        "time": 1_700_000_000,
        "name": "Added To Cart",
        "properties": orjson.dumps({"sku": "A-1", "tags": ["x", "ü"], "meta": {"n": 1, "ok": True}}).decode(),
        "app_id": "app",
        "platform": "ios",
    }
    out = Transformer().transform("users.behaviors.CustomEvent", record)
    assert isinstance(out, dict)
    assert out["user_id"] == "7"  # very short external ids are kept (min_id_length goes with the request)
    props = out["event_properties"]
    assert props["[Custom event property] sku"] == "A-1"
    assert props["[Custom event property] tags"] == ["x", "ü"]
    assert props["[Custom event property] meta"] == {"n": 1, "ok": True}
    assert props["app_id"] == "app"
    assert out["platform"] == "ios"


def test_purchase_top_level_revenue_fields() -> None:
    record = {
        "id": "p1",
        "user_id": "c" * 24,
        "external_user_id": "user-42",
        "time": 1_700_000_123,
        "product_id": "sku-9",
        "price": 12.5,
        "currency": "EUR",
        "properties": '{"color": "red", "quantity": 3, "gift": {"wrap": true}}',
    }
    out = Transformer().transform("users.behaviors.Purchase", record)
    assert isinstance(out, dict)
    assert out["productId"] == "sku-9"
    assert out["price"] == 12.5
    assert out["quantity"] == 3
    assert out["event_type"] == "[Appboy] Purchase"
    props = out["event_properties"]
    assert props["currency"] == "EUR"
    assert props["[Purchase property] color"] == "red"
    assert props["[Purchase property] gift"] == {"wrap": True}
    record["properties"] = "{}"
    again = Transformer().transform("users.behaviors.Purchase", record)
    assert isinstance(again, dict) and again["quantity"] == 1


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"', "null", '{"a": 1', "\udcff"])
def test_malformed_properties_keep_the_event_and_the_raw_text(raw: str) -> None:
    record = {
        "id": "e2",
        "user_id": "d" * 24,
        "device_id": "dev-12345",
        "time": 1,
        "name": "X",
        "properties": raw,
    }
    out = Transformer().transform("users.behaviors.CustomEvent", record)
    assert isinstance(out, dict)
    assert out["event_properties"]["properties"] == raw
    assert not any(k.startswith("[Custom event property]") for k in out["event_properties"])


def test_float32_values_are_sent_in_shortest_form(tmp_path: Path) -> None:
    import fastavro

    from consumer.decode.avro import iter_container
    from consumer.decode.schemas import parsed_schema

    record = {
        "id": "f1",
        "user_id": "a" * 24,
        "external_user_id": "u-1",
        "time": 9,
        "product_id": "p",
        "price": 29.95,
        "currency": "USD",
        "properties": "{}",
    }
    path = tmp_path / "p.avro"
    with open(path, "wb") as fh:
        fastavro.writer(fh, parsed_schema("users.behaviors.Purchase"), [record])
    with open(path, "rb") as fh:
        decoded = next(iter_container(fh, str(path)))
    assert decoded.record["price"] != 29.95  # what a 32-bit float becomes as a double
    out = Transformer().transform("users.behaviors.Purchase", decoded.record)
    assert isinstance(out, dict)
    assert out["price"] == 29.95 and out["event_properties"]["price"] == 29.95
    assert orjson.dumps(out["price"]) == b"29.95"
    assert f32(0.1 + 0.2) == 0.1 + 0.2  # a value that is not a 32-bit float is left alone


def test_location_fields() -> None:
    record = {
        "id": "l1",
        "user_id": "e" * 24,
        "device_id": "dev-abcde",
        "app_id": "a",
        "time": 5,
        "latitude": 48.85,
        "longitude": 2.35,
        "altitude": None,
    }
    out = Transformer().transform("users.behaviors.Location", record)
    assert isinstance(out, dict)
    assert (out["location_lat"], out["location_lng"]) == (48.85, 2.35)
    assert "altitude" not in out["event_properties"]


@pytest.mark.parametrize("placeholder", ["0", "-1", "null", "None", "undefined", "N/A", "lmy47d"])
def test_placeholder_external_id_falls_back_to_device(placeholder: str) -> None:
    base = {"id": "x", "user_id": "f" * 24, "time": 1, "app_id": "a", "session_id": "s"}
    out = Transformer().transform(
        "users.behaviors.app.SessionStart", {**base, "external_user_id": placeholder, "device_id": "device-1"}
    )
    assert isinstance(out, dict)
    assert "user_id" not in out and out["device_id"] == "device-1"
    assert out["event_properties"]["external_user_id"] == placeholder
    skipped = Transformer().transform(
        "users.behaviors.app.SessionStart", {**base, "external_user_id": placeholder}
    )
    assert skipped == Skip("invalid_identity")
    zeros = Transformer().transform(
        "users.behaviors.app.SessionStart", {**base, "device_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert zeros == Skip("invalid_identity")


def test_unicode_ids_and_values_survive_encoding() -> None:
    record = {
        "id": "ü-1",
        "user_id": "a" * 24,
        "external_user_id": "José-Ω-42",
        "time": 2,
        "name": "Vu 🎉",
        "properties": '{"città": "Zürich"}',
    }
    out = Transformer().transform("users.behaviors.CustomEvent", record)
    assert isinstance(out, dict)
    decoded = orjson.loads(orjson.dumps(out))
    assert decoded["user_id"] == "José-Ω-42"
    assert decoded["event_type"] == "[Appboy] [Custom Event] Vu 🎉"
    assert decoded["event_properties"]["[Custom event property] città"] == "Zürich"


def test_unmapped_types_are_skipped_unless_enabled() -> None:
    record = {
        "id": "w1",
        "user_id": "a" * 24,
        "external_user_id": "u-1",
        "time": 3,
        "time_ms": 3_456,
        "from_phone_number": "+331",
        "to_phone_number": None,
    }
    assert Transformer().transform("users.messages.whatsapp.Send", record) == Skip("unmapped_type")
    enabled = Transformer(MappingConfig(enabled=("users.messages.whatsapp.*",)))
    out = enabled.transform("users.messages.whatsapp.Send", record)
    assert isinstance(out, dict)
    assert out["event_type"] == "[Appboy] WhatsApp Send"
    assert out["time"] == 3_456
    assert out["event_properties"]["from_phone_number"] == "+331"
    assert "to_phone_number" not in out["event_properties"]
    disabled = Transformer(MappingConfig(disabled=("users.messages.email.*",)))
    assert disabled.transform("users.messages.email.Open", {**record, "email_address": "a@b"}) == Skip(
        "unmapped_type"
    )


def test_names_and_prefixes_are_configuration() -> None:
    cfg = MappingConfig(
        event_prefix="[Braze] ",
        custom_event_prefix="",
        custom_property_prefix="cp.",
        names={"users.messages.email.Open": "Opened Email"},
    )
    t = Transformer(cfg)
    out = t.transform(
        "users.messages.email.Open",
        {"id": "o", "user_id": "a" * 24, "external_user_id": "u-9", "time": 1, "email_address": "x@y"},
    )
    assert isinstance(out, dict) and out["event_type"] == "[Braze] Opened Email"
    custom = t.transform(
        "users.behaviors.CustomEvent",
        {
            "id": "c",
            "user_id": "a" * 24,
            "external_user_id": "u-9",
            "time": 1,
            "name": "N",
            "properties": '{"k": 1}',
        },
    )
    assert isinstance(custom, dict)
    assert custom["event_type"] == "[Braze] N"
    assert custom["event_properties"]["cp.k"] == 1


def test_all_properties_mode_sends_every_non_null_field() -> None:
    synth = Synth(seed=3)
    t = Transformer(MappingConfig(properties="all"))
    for record in synth.records("users.messages.email.Click", 50):
        out = t.transform("users.messages.email.Click", record)
        if isinstance(out, Skip):
            continue
        props = out["event_properties"]
        for key, value in record.items():
            if value is not None and key not in {"id", "time", "external_user_id", "device_id", "user_id"}:
                assert props[key] == value


def test_derived_names_for_every_unmapped_type_are_readable() -> None:
    for event_type in event_types():
        if event_type in BRAZE_TYPES:
            continue
        name = derived_name(event_type)
        assert name and name == name.strip() and "  " not in name and "." not in name
    assert derived_name("users.messages.rcs.InboundReceive") == "RCS Inbound Receive"
    assert derived_name("users.messages.line.Click") == "LINE Click"
