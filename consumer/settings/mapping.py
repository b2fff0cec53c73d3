"""The mapping section: how Currents events become Amplitude events (every default is Braze's).

Two profiles: ``seed`` (Braze's partner page, the default) and ``glossary`` (Braze's current Currents
event glossary). The glossary profile also changes the defaults of the options whose seed default
the glossary contradicts (:data:`GLOSSARY_DEFAULTS`); a value given for one of them still wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from consumer.settings.fields import AS_TEXT, Bool, Section, SettingsError, Text, Words
from consumer.settings.fields import option as _option

_mapping = partial(_option, group="mapping")

PropertyMode = Literal["braze", "all"]
Profile = Literal["seed", "glossary"]

# The glossary documents no Braze id property ("the Braze user_id is never sent") and no top-level
# platform/os_version/device_model: with that profile these defaults follow it.
GLOSSARY_DEFAULTS: dict[str, Any] = {"braze_id_property": "", "device_fields_top_level": False}


class MappingConfig(Section):
    """User-overridable mapping settings; every default reproduces Braze's connector.

    ``enabled``/``disabled`` are globs on event types: a type is exported when it is in Braze's table
    or matches ``enabled``, and does not match ``disabled``. ``names`` overrides the Amplitude name
    (after ``event_prefix``) of any type. ``properties="all"`` sends every non-null Currents field
    instead of the profile's per-type list. ``profile`` chooses the tables (names, property lists,
    top-level fields): ``seed`` or ``glossary``.
    """

    profile: Annotated[Profile, AS_TEXT] = _mapping(
        "seed",
        "--mapping-profile",
        "CURRENTS_MAPPING_PROFILE",
        "the mapping's tables: seed (Braze's partner page) or glossary (Braze's current event glossary)",
        common=True,
    )
    properties: Annotated[PropertyMode, AS_TEXT] = _mapping(
        "braze",
        "--properties",
        "CURRENTS_PROPERTIES",
        "event_properties: the profile's per-type list (braze), or every non-null field (all)",
    )
    enabled: Words = _mapping(
        (),
        "--enable-type",
        "CURRENTS_ENABLE_TYPES",
        "also export these event types (glob, repeatable)",
        metavar="GLOB",
    )
    disabled: Words = _mapping(
        (),
        "--disable-type",
        "CURRENTS_DISABLE_TYPES",
        "never export these event types (glob, repeatable)",
        metavar="GLOB",
    )
    event_prefix: Text = _mapping(
        "[Appboy] ",
        "--event-prefix",
        "CURRENTS_EVENT_PREFIX",
        "prefix of every Amplitude event name",
        metavar="PREFIX",
    )
    custom_event_prefix: Text = _mapping(
        "[Custom Event] ",
        "--custom-event-prefix",
        "CURRENTS_CUSTOM_EVENT_PREFIX",
        "prefix of custom event names, after --event-prefix",
        metavar="PREFIX",
    )
    custom_property_prefix: Text = _mapping(
        "[Custom event property] ",
        "--custom-property-prefix",
        "CURRENTS_CUSTOM_PROPERTY_PREFIX",
        "prefix of each custom event property",
        metavar="PREFIX",
    )
    purchase_property_prefix: Text = _mapping(
        "[Purchase property] ",
        "--purchase-property-prefix",
        "CURRENTS_PURCHASE_PROPERTY_PREFIX",
        "prefix of each purchase property",
        metavar="PREFIX",
    )
    braze_id_property: Text = _mapping(
        "braze_id",
        "--braze-id-property",
        "CURRENTS_BRAZE_ID_PROPERTY",
        "event property holding Braze's internal user id (empty: not sent; glossary profile: empty)",
        metavar="NAME",
    )
    device_fields_top_level: Bool = _mapping(
        True,
        "--device-fields-top-level",
        "CURRENTS_DEVICE_FIELDS_TOP_LEVEL",
        "also send platform/os_version/device_model as Amplitude's top-level fields (glossary: false)",
    )
    ad_ids_top_level: Bool = _mapping(
        True,
        "--ad-ids-top-level",
        "CURRENTS_AD_IDS_TOP_LEVEL",
        "send ad_id as Amplitude's idfa/adid (seed: the one ad_id_type names; glossary: both)",
    )
    # Not an option: only the file's [mapping.names] table sets it (event type -> Amplitude name).
    names: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """With ``profile="glossary"``, the glossary's defaults for the options not given."""
        if isinstance(data, Mapping) and data.get("profile") == "glossary":
            return {**GLOSSARY_DEFAULTS, **data}
        return data


def names_table(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``[mapping.names]``: event type -> Amplitude name. An unquoted dotted TOML key
    (``users.messages.email.Open = "..."``) arrives as nested tables; it means the same as quoted."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(names_table(value, f"{prefix}{key}."))
        elif isinstance(value, str):
            out[f"{prefix}{key}"] = value
        else:
            raise SettingsError(f"[mapping.names] {prefix}{key}: expected a string, got {value!r}")
    return out
