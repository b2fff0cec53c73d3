"""Currents record -> Amplitude event, exactly as Braze's connector builds it.

Pure and synchronous: :meth:`Transformer.transform` takes a decoded record and returns either an
Amplitude event (a JSON-ready dict) or a :class:`Skip` with its reason. Per-type work (name, property
list) is compiled once per event type and cached, so the per-event cost is a loop over a tuple; the
verdicts of :func:`is_valid_id` on recent ids are remembered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from consumer.events import AmplitudeEvent, json_payload, limiter_keys
from consumer.settings import MappingConfig
from consumer.transform.amplitude_tables import (
    BRAZE_TYPES,
    FIELD_RENAMES,
    IDENTITY_FIELDS,
    amplitude_name,
    is_exported,
)
from consumer.transform.base import INVALID_IDENTITY, MISSING_ID, NO_IDENTITY, UNMAPPED_TYPE, Payload, Skip
from consumer.transform.fields import FLOAT32_FIELDS, f32, is_valid_id, merge_json_properties

_AD_ID_FIELD = {"ios_idfa": "idfa", "google_adid": "adid"}


# Ids repeat a lot (one user sends many events): :meth:`Transformer.transform` remembers the verdict
# of :func:`is_valid_id` for up to this many ids, then forgets them all and starts over.
_ID_MEMO_SIZE = 65536

# Record fields never sent as properties when every field is (``properties="all"``).
_NOT_PROPERTIES = IDENTITY_FIELDS | {"properties"}

_CUSTOM = "users.behaviors.CustomEvent"
_PURCHASE = "users.behaviors.Purchase"
_LOCATION = "users.behaviors.Location"


@dataclass(frozen=True, slots=True)
class _Plan:
    name: str  # the Amplitude event_type; for custom events the prefix before the record's name
    custom: bool
    purchase: bool
    location: bool
    properties: tuple[tuple[str, str], ...] | None  # (currents field, property name); None = all fields
    float32: bool  # whether some of ``properties`` are 32-bit floats


class Transformer:
    """Turns Currents records into Amplitude events according to a :class:`MappingConfig`."""

    def __init__(self, config: MappingConfig | None = None) -> None:
        self.config = cfg = config or MappingConfig()
        self._plans: dict[str, _Plan | None] = {}
        self._valid_ids: dict[str, bool] = {}
        # The config is frozen: the settings read for every event are read once.
        self._braze_id_property = cfg.braze_id_property
        self._custom_property_prefix = cfg.custom_property_prefix
        self._purchase_property_prefix = cfg.purchase_property_prefix
        self._device_fields_top_level = cfg.device_fields_top_level
        self._ad_ids_top_level = cfg.ad_ids_top_level

    def _plan(self, event_type: str) -> _Plan | None:
        """Compile (and cache) the plan for ``event_type``; None when the type is not exported."""
        cfg = self.config
        plan: _Plan | None = None
        if is_exported(cfg, event_type):
            spec = BRAZE_TYPES.get(event_type)
            props: tuple[tuple[str, str], ...] | None = None
            if spec is not None and cfg.properties == "braze":
                # The seed names some fields differently from today's schema: read either name.
                reverse = {v: k for k, v in FIELD_RENAMES.items()}
                props = tuple((reverse.get(p, p), p) for p in spec.properties)
                props += tuple((p, p) for p in spec.properties if p in reverse)
            custom = event_type == _CUSTOM
            name = cfg.event_prefix + cfg.custom_event_prefix if custom else amplitude_name(cfg, event_type)
            float32 = any(source in FLOAT32_FIELDS for source, _ in props or ())
            plan = _Plan(name, custom, event_type == _PURCHASE, event_type == _LOCATION, props, float32)
        self._plans[event_type] = plan
        return plan

    def _valid_id(self, value: str) -> bool:
        """:func:`is_valid_id`, remembered in ``_valid_ids``."""
        memo = self._valid_ids
        valid = memo.get(value)
        if valid is None:
            valid = is_valid_id(value)
            if len(memo) >= _ID_MEMO_SIZE:
                memo.clear()
            memo[value] = valid
        return valid

    def transform(self, event_type: str, record: dict[str, Any]) -> AmplitudeEvent | Skip:
        """The Amplitude event for one Currents record, or why it is skipped."""
        try:
            plan = self._plans[event_type]
        except KeyError:
            plan = self._plan(event_type)
        if plan is None:
            return UNMAPPED_TYPE
        event_id = record.get("id")
        if not event_id:
            return MISSING_ID
        props: dict[str, Any] = {}

        external = record.get("external_user_id")
        device = record.get("device_id")
        event: AmplitudeEvent = {}
        identified = False
        if external:
            if self._valid_id(external):
                event["user_id"] = external
                identified = True
            else:
                props["external_user_id"] = external
        if device:
            if self._valid_id(device):
                event["device_id"] = device
                identified = True
            else:
                props["device_id"] = device
        if not identified:
            return INVALID_IDENTITY if (external or device) else NO_IDENTITY

        event["event_type"] = plan.name + str(record.get("name") or "") if plan.custom else plan.name
        time_ms = record.get("time_ms")
        if isinstance(time_ms, int):
            event["time"] = time_ms
        else:
            time_s = record.get("time")
            # int() only when needed: it is the same value for an int, and a costly call.
            event["time"] = (time_s if type(time_s) is int else int(time_s or 0)) * 1000
        event["insert_id"] = event_id

        if plan.properties is None:
            for key, value in record.items():
                if value is not None and key not in _NOT_PROPERTIES:
                    props[FIELD_RENAMES.get(key, key)] = f32(value) if key in FLOAT32_FIELDS else value
        elif plan.float32:  # the rare types with 32-bit float properties (purchases, locations)
            for source, target in plan.properties:
                value = record.get(source)
                if value is not None:
                    props[target] = f32(value) if source in FLOAT32_FIELDS else value
        else:
            for source, target in plan.properties:
                value = record.get(source)
                if value is not None:
                    props[target] = value
        if self._braze_id_property:
            braze_id = record.get("user_id")
            if braze_id:
                props[self._braze_id_property] = braze_id

        if plan.custom:
            merge_json_properties(props, record.get("properties"), self._custom_property_prefix)
        elif plan.purchase:
            custom = merge_json_properties(props, record.get("properties"), self._purchase_property_prefix)
            product_id = record.get("product_id")
            if product_id is not None:
                event["productId"] = product_id
            price = record.get("price")
            if price is not None:
                event["price"] = f32(price)
                event["quantity"] = _quantity(custom.get("quantity"))
        elif plan.location:
            latitude = record.get("latitude")
            if latitude is not None:
                event["location_lat"] = f32(latitude)
            longitude = record.get("longitude")
            if longitude is not None:
                event["location_lng"] = f32(longitude)

        if self._device_fields_top_level:  # unrolled: this runs for almost every event
            value = record.get("platform")
            if value is not None:
                event["platform"] = value
            value = record.get("os_version")
            if value is not None:
                event["os_version"] = value
            value = record.get("device_model")
            if value is not None:
                event["device_model"] = value
        if self._ad_ids_top_level:
            ad_id = record.get("ad_id")
            if ad_id:
                ad_field = _AD_ID_FIELD.get(record.get("ad_id_type") or "")
                if ad_field and self._valid_id(ad_id):
                    event[ad_field] = ad_id
        if props:
            event["event_properties"] = props
        return event


def _quantity(value: Any) -> int:
    """Purchase quantity: Currents has no quantity field, so 1 unless the purchase properties give a
    positive integer ``quantity``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 1


class AmplitudeMapper:
    """Braze's Amplitude export (:class:`~consumer.transform.amplitude.Transformer`) as a :class:`Mapper`."""

    def __init__(self, transformer: Transformer) -> None:
        self.transformer = transformer

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        result = self.transformer.transform(event_type, record)
        return result if isinstance(result, Skip) else [result]

    def keys(self, payload: AmplitudeEvent) -> tuple[str, ...]:
        return limiter_keys(payload)

    def encode(self, payload: Payload) -> bytes:
        # Copied to its exact size: orjson's own buffer keeps ~4 KiB per event alive, which would make
        # every waiting event cost 8x what --max-pending-bytes counts.
        return bytes(memoryview(orjson.dumps(payload)))

    def decode(self, encoded: bytes) -> Payload:
        return json_payload(encoded)
