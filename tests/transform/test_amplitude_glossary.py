"""The ``glossary`` mapping profile against Braze's event glossary, key by key, for every type.

The packaged copy of the glossary is the reference file (drift test); a record of each of its 80
types with an Amplitude payload, every schema field filled, converts to exactly the top-level and
``event_properties`` keys the glossary lists (less the keys its own notes say the record lacks), with
the glossary's name, the constant ``library``, and the documented renames and moves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from glossary_harness import AD_ID, expected_keys, expected_name, exported_types, full_record, glossary

from consumer.decode.schemas import raw_schemas
from consumer.settings import MappingConfig
from consumer.transform.amplitude import Transformer
from consumer.transform.amplitude_glossary import GLOSSARY, GLOSSARY_FILE, load_glossary
from consumer.transform.base import UNMAPPED_TYPE

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "braze-glossary-amplitude.json"
GLOSSARY_CONFIG = MappingConfig(profile="glossary")


def convert(event_type: str, rec: dict[str, Any], config: MappingConfig = GLOSSARY_CONFIG) -> dict[str, Any]:
    event = Transformer(config).transform(event_type, rec)
    assert isinstance(event, dict), event
    return event


def test_the_packaged_glossary_is_the_reference() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"reference not found at {REFERENCE}")
    assert GLOSSARY_FILE.read_bytes() == REFERENCE.read_bytes(), (
        f"{GLOSSARY_FILE} differs from {REFERENCE}: copy the reference (and update its README's date)"
    )


def test_the_profile_has_every_type_with_an_amplitude_payload_and_each_has_a_schema() -> None:
    types = glossary()["event_types"]
    assert len(types) == 81
    assert sorted(GLOSSARY.types) == exported_types()
    assert len(GLOSSARY.types) == 80
    assert [t for t in types if t not in raw_schemas()] == []  # every glossary type is shipped
    # the one without a payload is exported only when enabled
    assert types["users.RandomBucketNumberUpdate"]["amplitude_name"] is None
    rec = full_record("users.RandomBucketNumberUpdate")
    assert Transformer(GLOSSARY_CONFIG).transform("users.RandomBucketNumberUpdate", rec) == UNMAPPED_TYPE
    enabled = GLOSSARY_CONFIG.model_copy(update={"enabled": ("users.RandomBucketNumberUpdate",)})
    event = convert("users.RandomBucketNumberUpdate", rec, enabled)
    assert event["event_type"] == "[Appboy] Random Bucket Number Update"
    assert event["library"] == "Braze"


@pytest.mark.parametrize("event_type", exported_types())
def test_a_full_record_gives_exactly_the_glossary_keys(event_type: str) -> None:
    rec = full_record(event_type)
    event = convert(event_type, rec)
    want = expected_keys(event_type)
    props = event.get("event_properties", {})
    assert sorted(event) == sorted(want.top_level)
    assert sorted(props) == sorted(want.properties)
    # what the record cannot give, the glossary says its storage record lacks (the shipped schema
    # may have more: push_token of users.messages.pushnotification.Bounce)
    entry = glossary()["event_types"][event_type]
    lacking = set(entry.get("event_properties_not_in_storage", ())) - {"card_id"}
    assert want.not_in_schema <= lacking
    assert lacking - want.not_in_schema <= set(rec)
    assert event["library"] == "Braze"
    assert event["user_id"] == "user-42" and event["insert_id"] == rec["id"]
    if event_type == "users.behaviors.CustomEvent":
        assert event["event_type"] == f"[Appboy] [Custom Event] {rec['name']}"
    else:
        assert event["event_type"] == expected_name(event_type)
    renamed = {"card_id": "content_card_id"} if "content_card_id" in rec else {}
    for key, value in props.items():
        if not key.startswith("["):
            assert value == rec[renamed.get(key, key)], key


def test_the_documented_moves() -> None:
    purchase = convert("users.behaviors.Purchase", full_record("users.behaviors.Purchase"))
    assert purchase["productId"] == "product_id-Purchase" and purchase["price"] == 1.5
    assert "quantity" not in purchase  # not in the glossary: Amplitude counts 1
    assert purchase["adid"] == purchase["idfa"] == AD_ID
    props = purchase["event_properties"]
    assert props["ad_id"] == AD_ID and props["ad_id_type"] == "ios_idfa" and props["ad_tracking_enabled"]
    assert "product_id" not in props and "price" not in props
    inbound = convert(
        "users.messages.whatsapp.InboundReceive", full_record("users.messages.whatsapp.InboundReceive")
    )
    assert inbound["productId"] == "product_id-InboundReceive"
    card = convert("users.messages.contentcard.Click", full_record("users.messages.contentcard.Click"))
    assert card["event_properties"]["card_id"] == "content_card_id-Click"


def test_null_fields_and_refused_ad_ids_are_not_sent() -> None:
    full = full_record("users.behaviors.Location")
    optional = [
        f["name"] for f in raw_schemas()["users.behaviors.Location"]["fields"] if f["type"][0] == "null"
    ]
    rec = {**full, **dict.fromkeys(optional), "ad_id": "00000000-0000-0000-0000-000000000000"}
    rec.update(ad_id_type="ios_idfa", latitude=1.5, longitude=2.25, external_user_id="user-42")
    event = convert("users.behaviors.Location", rec)
    assert "adid" not in event and "idfa" not in event  # an all-zero id is never an identifier
    assert event["event_properties"] == {
        "ad_id": "00000000-0000-0000-0000-000000000000",
        "ad_id_type": "ios_idfa",
        "latitude": 1.5,
        "longitude": 2.25,
        "app_id": "app_id-Location",
    }
    assert "location_lat" not in event  # the seed's rule, not the glossary's
    no_ids = GLOSSARY_CONFIG.model_copy(update={"ad_ids_top_level": False})
    assert "idfa" not in convert("users.behaviors.Location", {**rec, "ad_id": AD_ID}, no_ids)


def test_options_still_apply_and_explicit_values_beat_the_profile_defaults() -> None:
    config = MappingConfig(
        profile="glossary", braze_id_property="braze_id", device_fields_top_level=True, event_prefix=""
    )
    rec = full_record("users.behaviors.app.SessionStart")
    event = convert("users.behaviors.app.SessionStart", rec, config)
    assert event["event_type"] == "Session Start"
    assert event["event_properties"]["braze_id"] == rec["user_id"]
    assert event["platform"] == "platform-SessionStart"
    everything = convert(
        "users.messages.email.Open",
        full_record("users.messages.email.Open"),
        GLOSSARY_CONFIG.model_copy(update={"properties": "all"}),
    )
    fields = {f["name"] for f in raw_schemas()["users.messages.email.Open"]["fields"]}
    assert set(everything["event_properties"]) == fields - {"id", "time", "external_user_id", "user_id"}


def test_a_rule_the_loader_cannot_follow_is_refused(tmp_path: Path) -> None:
    data = json.loads(GLOSSARY_FILE.read_text())
    data["event_types"]["users.behaviors.Purchase"]["storage_to_amplitude"]["price"] = "revenue, sometimes"
    path = tmp_path / "glossary.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"users.behaviors.Purchase: cannot follow .*'price'"):
        load_glossary(path)
