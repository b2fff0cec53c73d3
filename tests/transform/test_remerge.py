"""Currents records -> Remerge event tracking parameters, on records that validate against schemas/."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from currents_devkit.synth import Synth
from record_harness import record

from consumer.settings import SettingsError, load
from consumer.settings.partners import RemergeSettings
from consumer.transform.base import Skip
from consumer.transform.remerge import RemergeMapper

CUSTOM = "users.behaviors.CustomEvent"
PURCHASE = "users.behaviors.Purchase"
LOCATION = "users.behaviors.Location"
IDFA = "E0659C7E-1008-4EDD-96E4-2B1A6E98F483"
AAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def settings(**env: str) -> RemergeSettings:
    """Remerge settings as the commands build them, from environment variables."""
    values = {
        "REMERGE_KEY": "secret-key",
        "REMERGE_IOS_APP_ID": "012345678",
        "REMERGE_ANDROID_APP_ID": "com.example",
    }
    return load(None, env={**values, **env}).section("remerge", RemergeSettings)


def custom(**fields: Any) -> dict[str, Any]:
    values = {
        "name": "Product Viewed",
        "properties": '{"id": "56544", "price": 1.99}',
        "platform": "ios",
        "ad_id": IDFA,
        "ad_id_type": "ios_idfa",
        "ad_tracking_enabled": True,
    }
    return record(CUSTOM, **{**values, **fields})


def test_ios_custom_event() -> None:
    mapper = RemergeMapper(settings())
    assert mapper.map(CUSTOM, custom()) == [
        {
            "partner": "braze",
            "app_id": "012345678",
            "ts": 1257894000,
            "idfa": IDFA,
            "event": "Product Viewed",
            "non_app_event": "true",
            "data": '{"id":"56544","price":1.99}',
        }
    ]


def test_android_purchase_with_a_mapped_braze_app() -> None:
    mapper = RemergeMapper(
        settings(
            REMERGE_APP_IDS="braze-android=com.mapped",
            REMERGE_PURCHASE_EVENT="order",
            REMERGE_NON_APP_EVENT="false",
        )
    )
    purchase = record(
        PURCHASE,
        app_id="braze-android",
        platform="android",
        product_id="SKU-1",
        price=29.950000762939453,
        currency="EUR",
        properties='{"quantity": 2}',
        ad_id=AAID,
        ad_id_type="google_adid",
    )
    result = mapper.map(PURCHASE, purchase)
    assert isinstance(result, list)
    (payload,) = result
    assert payload == {
        "partner": "braze",
        "app_id": "com.mapped",
        "ts": 1257894000,
        "aaid": AAID,
        "event": "order",
        "non_app_event": "false",
        "data": '{"quantity":2,"product_id":"SKU-1","price":29.95,"currency":"EUR"}',
    }
    assert mapper.keys(payload) == (f"d:{AAID}",)


@pytest.mark.parametrize(
    ("platform", "ad_id_type", "expected"),
    [
        ("ios", "google_adid", "012345678"),  # the platform decides when it is ios or android
        ("android", "ios_idfa", "com.example"),
        (None, "ios_idfa", "012345678"),  # otherwise the advertising id's type does
        ("web", "google_adid", "com.example"),
        ("tvos", "ios_idfa", "012345678"),
    ],
)
def test_store_app_id_by_platform_then_ad_id_type(
    platform: str | None, ad_id_type: str, expected: str
) -> None:
    result = RemergeMapper(settings()).map(CUSTOM, custom(platform=platform, ad_id_type=ad_id_type))
    assert isinstance(result, list)
    assert result[0]["app_id"] == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ad_id": None, "ad_id_type": None}, "no_advertising_id"),
        ({"ad_id": "00000000-0000-0000-0000-000000000000"}, "no_advertising_id"),
        ({"ad_tracking_enabled": False}, "ad_tracking_disabled"),
        ({"ad_tracking_enabled": False, "ad_id": None}, "ad_tracking_disabled"),
        ({"ad_id_type": "roku_ad_id"}, "unsupported_ad_id_type"),
        ({"ad_id_type": None}, "unsupported_ad_id_type"),
        ({"name": "--"}, "no_event_name"),
    ],
)
def test_skips(fields: dict[str, Any], reason: str) -> None:
    mapper = RemergeMapper(settings(REMERGE_EVENT_NAMES="snake_case"))
    assert mapper.map(CUSTOM, custom(**fields)) == Skip(reason)


def test_ad_tracking_unknown_is_sent() -> None:
    assert isinstance(RemergeMapper(settings()).map(CUSTOM, custom(ad_tracking_enabled=None)), list)


def test_unmapped_app_is_skipped() -> None:
    mapper = RemergeMapper(settings(REMERGE_ANDROID_APP_ID=""))
    assert mapper.map(CUSTOM, custom(platform="android")) == Skip("unmapped_app")
    assert isinstance(mapper.map(CUSTOM, custom(platform="ios")), list)


def test_type_filter_and_other_types() -> None:
    location = record(LOCATION, app_id="a", latitude=1.5, longitude=2.5, ad_id=AAID, ad_id_type="google_adid")
    assert RemergeMapper(settings()).map(LOCATION, location) == Skip("not_forwarded")
    mapper = RemergeMapper(settings(REMERGE_EVENT_TYPES="users.behaviors.*"))
    result = mapper.map(LOCATION, location)
    assert isinstance(result, list)
    assert result[0]["event"] == "behaviors_location"
    assert "data" not in result[0]


def test_snake_case_names_and_malformed_properties() -> None:
    mapper = RemergeMapper(settings(REMERGE_EVENT_NAMES="snake_case"))
    result = mapper.map(CUSTOM, custom(properties="not json"))
    assert isinstance(result, list)
    assert result[0]["event"] == "product_viewed"
    assert result[0]["data"] == '{"properties":"not json"}'
    empty = mapper.map(CUSTOM, custom(properties="{}"))
    assert isinstance(empty, list)
    assert "data" not in empty[0]


def test_encode_is_the_query_string_without_the_key() -> None:
    mapper = RemergeMapper(settings())
    result = mapper.map(CUSTOM, custom(name="Café & Co", properties='{"q": "a b&c=d", "n": "é"}'))
    assert isinstance(result, list)
    encoded = mapper.encode(result[0])
    text = encoded.decode("ascii")  # percent-encoded: ASCII only
    assert "key=" not in text
    assert "secret-key" not in text
    parsed = {k: v[0] for k, v in parse_qs(text, strict_parsing=True).items()}
    assert parsed == {
        "partner": "braze",
        "app_id": "012345678",
        "ts": "1257894000",
        "idfa": IDFA,
        "event": "Café & Co",
        "non_app_event": "true",
        "data": '{"q":"a b&c=d","n":"é"}',
    }
    assert orjson.loads(parsed["data"]) == {"q": "a b&c=d", "n": "é"}


def test_a_malformed_app_id_pair_is_refused() -> None:
    bad = settings().model_copy(update={"app_ids": ("no-equals-sign",)})
    with pytest.raises(SettingsError, match="--remerge-app-id"):
        RemergeMapper(bad)


def test_generated_records() -> None:
    mapper = RemergeMapper(settings())
    reasons: dict[str, int] = {}
    for rec in Synth(seed=11).records(CUSTOM, 400):
        result = mapper.map(CUSTOM, rec)
        if isinstance(result, Skip):
            reasons[result.reason] = reasons.get(result.reason, 0) + 1
            continue
        (payload,) = result
        param = {"ios_idfa": "idfa", "google_adid": "aaid"}[rec["ad_id_type"]]
        assert payload[param] == rec["ad_id"]
        assert payload["event"] == rec["name"]
        assert payload["ts"] == rec["time"]
        assert orjson.loads(payload.get("data", "{}")) == orjson.loads(rec["properties"] or "{}")
        reasons["sent"] = reasons.get("sent", 0) + 1
    assert reasons.get("sent", 0) > 50
    assert set(reasons) <= {"sent", "no_advertising_id", "ad_tracking_disabled", "unsupported_ad_id_type"}
