"""Currents records -> Movable Ink Customer Data API payloads, on records that validate against schemas/."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from currents_devkit.synth import Synth
from record_harness import record

from consumer.decode.schemas import event_types
from consumer.settings import load
from consumer.settings.partners import MovableInkSettings
from consumer.transform.base import Skip
from consumer.transform.fields import PLACEHOLDER_IDS
from consumer.transform.movableink import MovableInkMapper
from consumer.transform.partner_events import snake_case, type_event_name

CUSTOM = "users.behaviors.CustomEvent"
PURCHASE = "users.behaviors.Purchase"
EMAIL_OPEN = "users.messages.email.Open"


def settings(**env: str) -> MovableInkSettings:
    """Movable Ink settings as the commands build them, from environment variables."""
    return load(None, env={"MOVABLEINK_ENDPOINT": "http://mi.test", "MOVABLEINK_KEY": "k", **env}).section(
        "movableink", MovableInkSettings
    )


def custom(**fields: Any) -> dict[str, Any]:
    values = {
        "external_user_id": "mycustomerid123",
        "device_id": "123-abc-678",
        "timezone": "America/New_York",
        "name": "Product Viewed",
        "properties": '{"title":"All-Purpose Cleaning Wipes","price":1.99,"meta":{"color":"green"}}',
    }
    return record(CUSTOM, **{**values, **fields})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Product Viewed", "product_viewed"),
        ("ProductViewed", "product_viewed"),
        ("productViewed", "product_viewed"),
        ("product-viewed!!", "product_viewed"),
        ("  Add  to -- Cart  ", "add_to_cart"),
        ("HTTPRequest Sent", "http_request_sent"),
        ("Level2Complete", "level2_complete"),
        ("already_snake", "already_snake"),
        ("__x__", "x"),
        ("Café Visité", "café_visité"),
        ("ÉtéFini", "été_fini"),
        ("商品 閲覧", "商品_閲覧"),
        ("!!!", ""),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_type_names_take_the_last_two_segments_and_are_unique() -> None:
    assert type_event_name(EMAIL_OPEN) == "email_open"
    assert type_event_name("users.behaviors.app.SessionStart") == "app_session_start"
    assert type_event_name("users.campaigns.Conversion") == "campaigns_conversion"
    names = {type_event_name(t) for t in event_types()}
    assert len(names) == len(event_types())


def test_known_user_with_device_is_identified_once_then_tracked() -> None:
    mapper = MovableInkMapper(settings())
    first = mapper.map(CUSTOM, custom())
    ids = {"anonymous_id": "123-abc-678", "user_id": "mycustomerid123"}
    when = {"timestamp": 1257894000000, "timezone": "America/New_York"}
    track = {
        "type": "track",
        "event": "product_viewed",
        "properties": {"title": "All-Purpose Cleaning Wipes", "price": 1.99, "meta": {"color": "green"}},
        **when,
        **ids,
    }
    assert first == [{"type": "identify", **ids, **when}, track]
    assert mapper.map(CUSTOM, custom(id="evt-2")) == [track]


def test_identify_off_sends_tracks_only() -> None:
    mapper = MovableInkMapper(settings(MOVABLEINK_IDENTIFY="false"))
    result = mapper.map(CUSTOM, custom())
    assert isinstance(result, list)
    assert [p["type"] for p in result] == ["track"]


def test_identify_memory_is_a_bounded_lru() -> None:
    mapper = MovableInkMapper(settings(), memory=2)

    def identified(user: str) -> bool:
        result = mapper.map(CUSTOM, custom(external_user_id=user))
        assert isinstance(result, list)
        kind: str = result[0]["type"]
        return kind == "identify"

    assert [identified(u) for u in ("a1", "b1", "a1", "c1")] == [True, True, False, True]
    # "a1" was used after "b1", so "b1" was the one forgotten when "c1" came.
    assert identified("a1") is False
    assert identified("b1") is True
    assert len(mapper._identified) == 2


def test_verbatim_names() -> None:
    mapper = MovableInkMapper(settings(MOVABLEINK_EVENT_NAMES="verbatim"))
    result = mapper.map(CUSTOM, custom(name="Product Viewed"))
    assert isinstance(result, list)
    assert result[-1]["event"] == "Product Viewed"


def test_anonymous_user_has_no_user_id_and_no_identify() -> None:
    mapper = MovableInkMapper(settings())
    result = mapper.map(CUSTOM, custom(external_user_id="null", timezone=None, properties="{}"))
    assert result == [
        {
            "type": "track",
            "event": "product_viewed",
            "properties": {},
            "timestamp": 1257894000000,
            "anonymous_id": "123-abc-678",
        }
    ]


def test_known_user_without_anonymous_id_has_user_id_only() -> None:
    mapper = MovableInkMapper(settings())
    result = mapper.map(CUSTOM, custom(device_id="00000000-0000-0000-0000-000000000000"))
    assert isinstance(result, list)
    assert len(result) == 1
    assert result[0]["user_id"] == "mycustomerid123"
    assert "anonymous_id" not in result[0]


def test_no_usable_identity_is_skipped() -> None:
    mapper = MovableInkMapper(settings())
    assert mapper.map(CUSTOM, custom(external_user_id="undefined", device_id="0")) == Skip("no_identity")
    assert mapper.map(CUSTOM, custom(external_user_id=None, device_id=None)) == Skip("no_identity")


def test_braze_id_as_anonymous_id() -> None:
    mapper = MovableInkMapper(settings(MOVABLEINK_ANONYMOUS_ID="braze_id"))
    result = mapper.map(CUSTOM, custom(external_user_id=None))
    assert isinstance(result, list)
    assert result[0]["anonymous_id"] == "5c3aa83113dd490100d3d8d7"


def test_email_event_with_md5_anonymous_id() -> None:
    mapper = MovableInkMapper(
        settings(MOVABLEINK_EVENT_TYPES="users.messages.email.*", MOVABLEINK_ANONYMOUS_ID="email_md5")
    )
    digest = hashlib.md5(b"test@braze.com").hexdigest()
    anonymous = record(EMAIL_OPEN, email_address=" Test@Braze.COM ", timezone="Europe/Paris")
    assert mapper.map(EMAIL_OPEN, anonymous) == [
        {
            "type": "track",
            "event": "email_open",
            "timestamp": 1257894000000,
            "timezone": "Europe/Paris",
            "anonymous_id": digest,
        }
    ]
    known = record(EMAIL_OPEN, email_address="test@braze.com", external_user_id="u-9")
    result = mapper.map(EMAIL_OPEN, known)
    assert isinstance(result, list)
    assert [(p["type"], p["user_id"], p["anonymous_id"]) for p in result] == [
        ("identify", "u-9", digest),
        ("track", "u-9", digest),
    ]
    assert mapper.map(CUSTOM, custom()) == Skip("not_forwarded")


def test_purchase_properties_and_float32_price() -> None:
    mapper = MovableInkMapper(settings(MOVABLEINK_IDENTIFY="false", MOVABLEINK_PURCHASE_EVENT="order"))
    price = 29.950000762939453  # 29.95 as Avro's 32-bit float decodes
    purchase = record(
        PURCHASE,
        external_user_id="u-1",
        product_id="SKU-1",
        price=price,
        currency="EUR",
        properties='{"quantity":2,"gift":true}',
    )
    assert mapper.map(PURCHASE, purchase) == [
        {
            "type": "track",
            "event": "order",
            "properties": {
                "quantity": 2,
                "gift": True,
                "product_id": "SKU-1",
                "price": 29.95,
                "currency": "EUR",
            },
            "timestamp": 1257894000000,
            "user_id": "u-1",
        }
    ]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"'])
def test_properties_that_are_not_a_json_object_are_kept_whole(raw: str) -> None:
    mapper = MovableInkMapper(settings())
    result = mapper.map(CUSTOM, custom(properties=raw))
    assert isinstance(result, list)
    assert result[-1]["properties"] == {"properties": raw}


def test_types_not_enabled_are_not_forwarded_and_globs_work() -> None:
    assert MovableInkMapper(settings()).map(EMAIL_OPEN, record(EMAIL_OPEN, email_address="a@b.c")) == Skip(
        "not_forwarded"
    )
    mapper = MovableInkMapper(settings(MOVABLEINK_EVENT_TYPES="users.behaviors.*"))
    assert isinstance(mapper.map(PURCHASE, record(PURCHASE, device_id="d", product_id="p", price=1.0, currency="USD", properties="{}")), list)  # fmt: skip
    assert mapper.map(EMAIL_OPEN, record(EMAIL_OPEN, email_address="a@b.c")) == Skip("not_forwarded")


def test_a_custom_event_without_a_usable_name_is_skipped() -> None:
    assert MovableInkMapper(settings()).map(CUSTOM, custom(name="???")) == Skip("no_event_name")


def test_keys_and_encode() -> None:
    mapper = MovableInkMapper(settings())
    result = mapper.map(CUSTOM, custom())
    assert isinstance(result, list)
    assert [mapper.keys(p) for p in result] == [("u:mycustomerid123",), ("u:mycustomerid123",)]
    assert mapper.keys({"type": "track", "anonymous_id": "dev"}) == ("a:dev",)
    encoded = mapper.encode(result[1])
    assert type(encoded) is bytes
    assert encoded == orjson.dumps(result[1])
    assert orjson.loads(encoded) == result[1]


@pytest.mark.parametrize("event_type", [CUSTOM, PURCHASE])
def test_generated_records(event_type: str) -> None:
    mapper = MovableInkMapper(settings().model_copy(update={"identify": False}))
    sent = 0
    for rec in Synth(seed=7, anonymous_share=0.2).records(event_type, 400):
        result = mapper.map(event_type, rec)
        external, device = rec.get("external_user_id"), rec.get("device_id")
        if isinstance(result, Skip):
            assert result.reason == "no_identity"
            assert not external or external.strip().lower() in PLACEHOLDER_IDS
            continue
        sent += 1
        (track,) = result
        assert track["timestamp"] == rec["time"] * 1000
        assert "user_id" in track or "anonymous_id" in track
        assert track.get("anonymous_id") in (None, device)
        assert track.get("user_id") in (None, external)
        expected = "purchase" if event_type == PURCHASE else snake_case(rec["name"])
        assert track["event"] == expected
        assert isinstance(track["properties"], dict)
    assert sent > 300
