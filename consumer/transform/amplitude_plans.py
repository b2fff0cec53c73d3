"""Per-event-type plans of the Amplitude mapping: everything decided once per type and config.

A :class:`Plan` holds an event type's Amplitude name and the :data:`Step` functions that fill an
event from a record: first its ``event_properties`` from the record's fields (Braze's per-type list, or
every field) and the Braze id property, then, in order, the parts only some kinds have
(custom-event and purchase properties, purchase revenue fields, location) and the fields sent top
level (device fields, advertising ids).
Each step is chosen when the plan is compiled, so converting one event does not branch on its kind
(and on the config only for the top-level fields).

The profile (``MappingConfig.profile``) chooses the table the plans read: ``seed``
(:data:`~consumer.transform.amplitude_tables.BRAZE_TYPES`, with the purchase and location rules
here) or ``glossary`` (:data:`~consumer.transform.amplitude_glossary.GLOSSARY`, whose per-type
top-level fields and constants become one step per type).

Steps run in plan order and only ever add keys, so the key order of an event, which is what its bytes
on the wire are, is fixed by the plan. Few steps, on purpose: a call per event costs about 2 % of the
conversion, so what almost every event needs is grouped (listed properties with the Braze id; device
fields with advertising ids).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consumer.events import AmplitudeEvent
from consumer.settings import MappingConfig
from consumer.transform.amplitude_glossary import GLOSSARY
from consumer.transform.amplitude_tables import (
    BRAZE_TYPES,
    FIELD_RENAMES,
    IDENTITY_FIELDS,
    TypeSpec,
    amplitude_name,
    is_exported,
)
from consumer.transform.fields import FLOAT32_FIELDS, f32, merge_json_properties

Record = dict[str, Any]
Properties = dict[str, Any]
Step = Callable[[Record, AmplitudeEvent, Properties], None]
"""Adds what one part of the mapping contributes to an event and its properties; never removes."""

CUSTOM = "users.behaviors.CustomEvent"
_PURCHASE = "users.behaviors.Purchase"
_LOCATION = "users.behaviors.Location"

_AD_ID_FIELD = {"ios_idfa": "idfa", "google_adid": "adid"}

# Record fields never sent as properties when every field is (``properties="all"``).
_NOT_PROPERTIES = IDENTITY_FIELDS | {"properties"}


@dataclass(frozen=True, slots=True)
class Plan:
    """How events of one exported type are built (after identity, time and ``insert_id``): run
    ``steps`` in order."""

    name: str  # the Amplitude event_type; for custom events the prefix before the record's name
    named: bool  # whether the record's ``name`` completes ``name`` (custom events)
    steps: tuple[Step, ...]


class Plans(dict[str, Plan | None]):
    """The plan of every event type seen so far, compiled on first sight (None: the type is not
    exported); a known type costs one dict lookup.

    ``valid_id`` answers :func:`~consumer.transform.fields.is_valid_id` for advertising ids.
    """

    def __init__(self, config: MappingConfig, valid_id: Mapping[str, bool]) -> None:
        super().__init__()
        self._config = config
        self._valid_id = valid_id
        self._glossary = glossary = config.profile == "glossary"
        self._types = GLOSSARY.types if glossary else BRAZE_TYPES
        self._renames = GLOSSARY.renames if glossary else FIELD_RENAMES
        self._kinds = _GLOSSARY_KIND_STEPS if glossary else _KIND_STEPS
        # Depends on the config only: built once, shared by every plan. The glossary's advertising
        # ids are per-type top-level fields (:func:`_glossary_step`).
        ad_ids = config.ad_ids_top_level and not glossary
        self._top_level = _top_level_step(config.device_fields_top_level, ad_ids, valid_id)

    def __missing__(self, event_type: str) -> Plan | None:
        plan = self[event_type] = self._compile(event_type)
        return plan

    def _compile(self, event_type: str) -> Plan | None:
        config = self._config
        if not is_exported(config, event_type, self._types):
            return None
        custom = event_type == CUSTOM
        if custom:
            name = config.event_prefix + config.custom_event_prefix
        else:
            name = amplitude_name(config, event_type, self._types)
        # The Braze id property comes right after the record's fields, before custom-event and
        # purchase properties.
        spec = self._types.get(event_type)
        steps = _properties_steps(config, spec, self._renames)
        kind = self._kinds.get(event_type)
        if kind is not None:
            steps.append(kind(config))
        if self._glossary:
            steps.append(_glossary_step(spec, config.ad_ids_top_level, self._valid_id))
        if self._top_level is not None:
            steps.append(self._top_level)
        return Plan(name, custom, tuple(steps))


# --- event_properties from the record's fields ------------------------------------------------------
def _properties_steps(config: MappingConfig, spec: TypeSpec | None, renames: Mapping[str, str]) -> list[Step]:
    """The profile's property list for the type (``spec``), or every field (``properties="all"``,
    types outside the table), then the Braze id property. ``renames``: Currents field -> property."""
    braze_id = config.braze_id_property
    if spec is not None and config.properties == "braze":
        pairs = _listed_pairs(spec, renames)
        if not any(source in FLOAT32_FIELDS for source, _ in pairs):
            return [_listed_properties(pairs, braze_id)]  # the usual case: one step for both
        steps = [_listed_float32_properties(pairs)]
    else:
        steps = [_all_properties_step(renames)]
    if braze_id:
        steps.append(_braze_id_step(braze_id))
    return steps


def _listed_pairs(spec: TypeSpec, renames: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(currents field, property name) for each property Braze sends for the type."""
    # Braze names some fields differently from today's schema: read either name.
    reverse = {v: k for k, v in renames.items()}
    pairs = tuple((reverse.get(p, p), p) for p in spec.properties)
    return pairs + tuple((p, p) for p in spec.properties if p in reverse)


def _all_properties_step(renames: Mapping[str, str]) -> Step:
    """Every non-null field except the identity ones and ``properties``, renamed by ``renames``."""

    def all_properties(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        for key, value in record.items():
            if value is not None and key not in _NOT_PROPERTIES:
                props[renames.get(key, key)] = f32(value) if key in FLOAT32_FIELDS else value

    return all_properties


def _listed_properties(pairs: tuple[tuple[str, str], ...], braze_id_property: str) -> Step:
    """The listed properties, then the Braze id property: :func:`_braze_id_step` inlined, because a
    step of its own would cost ~2 % of almost every event."""

    def listed(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        get = record.get  # bound once: the loop runs for every listed field of almost every event
        for source, target in pairs:
            value = get(source)
            if value is not None:
                props[target] = value
        if braze_id_property:
            value = get("user_id")
            if value:
                props[braze_id_property] = value

    return listed


def _listed_float32_properties(pairs: tuple[tuple[str, str], ...]) -> Step:
    """For the rare types with 32-bit float properties (purchases, locations): those are shortened."""

    def listed_float32(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        for source, target in pairs:
            value = record.get(source)
            if value is not None:
                props[target] = f32(value) if source in FLOAT32_FIELDS else value

    return listed_float32


def _braze_id_step(property_name: str) -> Step:
    """The Braze id (the record's ``user_id``) as the ``property_name`` property, when it has one."""

    def braze_id(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        value = record.get("user_id")
        if value:
            props[property_name] = value

    return braze_id


# --- the parts only some kinds of event have --------------------------------------------------------
def _custom_event_step(config: MappingConfig) -> Step:
    prefix = config.custom_property_prefix

    def custom_event(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        merge_json_properties(props, record.get("properties"), prefix)

    return custom_event


def _purchase_properties_step(config: MappingConfig) -> Step:
    """Only the purchase properties (the glossary profile: its top-level fields are per type)."""
    prefix = config.purchase_property_prefix

    def purchase_properties(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        merge_json_properties(props, record.get("properties"), prefix)

    return purchase_properties


def _purchase_step(config: MappingConfig) -> Step:
    """Purchase properties, then ``productId``, and ``price`` with ``quantity`` (Amplitude's revenue)."""
    prefix = config.purchase_property_prefix

    def purchase(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        custom = merge_json_properties(props, record.get("properties"), prefix)
        product_id = record.get("product_id")
        if product_id is not None:
            event["productId"] = product_id
        price = record.get("price")
        if price is not None:
            event["price"] = f32(price)
            event["quantity"] = _quantity(custom.get("quantity"))

    return purchase


def _quantity(value: Any) -> int:
    """Purchase quantity: Currents has no quantity field, so 1 unless the purchase properties give a
    positive integer ``quantity``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 1


def _location_step(config: MappingConfig) -> Step:
    return _location


def _location(record: Record, event: AmplitudeEvent, props: Properties) -> None:
    latitude = record.get("latitude")
    if latitude is not None:
        event["location_lat"] = f32(latitude)
    longitude = record.get("longitude")
    if longitude is not None:
        event["location_lng"] = f32(longitude)


_KIND_STEPS: dict[str, Callable[[MappingConfig], Step]] = {
    CUSTOM: _custom_event_step,
    _PURCHASE: _purchase_step,
    _LOCATION: _location_step,
}
# The glossary has no location or quantity rule: its top-level fields are per type (_glossary_step).
_GLOSSARY_KIND_STEPS: dict[str, Callable[[MappingConfig], Step]] = {
    CUSTOM: _custom_event_step,
    _PURCHASE: _purchase_properties_step,
}


# --- fields sent top level --------------------------------------------------------------------------
def _top_level_step(device_fields: bool, ad_ids: bool, valid_id: Mapping[str, bool]) -> Step | None:
    """Device fields and advertising ids (by ``ad_id_type``) as Amplitude's own fields, as chosen;
    None for neither.

    One step for both, with the flags read from the closure: it runs for almost every event, and two
    flag checks cost less than a second call.
    """
    if not (device_fields or ad_ids):
        return None

    def top_level(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        if device_fields:  # unrolled, for the same reason
            value = record.get("platform")
            if value is not None:
                event["platform"] = value
            value = record.get("os_version")
            if value is not None:
                event["os_version"] = value
            value = record.get("device_model")
            if value is not None:
                event["device_model"] = value
        if ad_ids:
            value = record.get("ad_id")
            if value:
                field = _AD_ID_FIELD.get(record.get("ad_id_type") or "")
                if field and valid_id[value]:
                    event[field] = value

    return top_level


# Currents fields that are identifiers: copied top level only when Amplitude accepts them.
_ID_SOURCES = frozenset({"ad_id"})


def _glossary_step(spec: TypeSpec | None, ad_ids: bool, valid_id: Mapping[str, bool]) -> Step:
    """The glossary's top-level fields of one type: its constants (``library``; the common ones for
    a type outside the glossary) and its copied fields (``productId``, ``price``, ``adid`` and
    ``idfa``). An advertising id is copied only when ``ad_ids`` and a valid id; ``price`` as float32."""
    constants = spec.constants if spec is not None else GLOSSARY.constants
    copies = tuple(
        (source, target, source in FLOAT32_FIELDS, source in _ID_SOURCES)
        for source, target in (spec.top_level if spec is not None else ())
        if ad_ids or source not in _ID_SOURCES
    )

    def glossary(record: Record, event: AmplitudeEvent, props: Properties) -> None:
        for key, constant in constants:
            event[key] = constant
        for source, target, float32, identifier in copies:
            value = record.get(source)
            if value is None or (identifier and not (value and valid_id[value])):
                continue
            event[target] = f32(value) if float32 else value

    return glossary
