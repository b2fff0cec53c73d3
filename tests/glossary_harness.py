"""Braze's event glossary as the tests read it: full records of every type, and the keys they must give.

The expectations are computed from the glossary file itself (the packaged copy, which a drift test keeps
equal to ``shared/reference/``), never from the profile's tables: a test that compares the mapping
with :func:`expected_keys` checks the mapping against the reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from record_harness import BASE, record

from consumer.decode.schemas import raw_schemas
from consumer.transform.amplitude_glossary import GLOSSARY_FILE

CUSTOM_PROPERTIES = '{"colour": "teal"}'
# Where the record has an ``ad_id``, it is an IDFA (any type: the glossary copies it to both fields).
AD_ID = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


@cache
def glossary() -> dict[str, Any]:
    """The packaged glossary file as JSON."""
    data: dict[str, Any] = json.loads(GLOSSARY_FILE.read_text(encoding="utf-8"))
    return data


def exported_types() -> list[str]:
    """The glossary's types with an Amplitude payload (80 of its 81)."""
    return sorted(t for t, e in glossary()["event_types"].items() if e["amplitude_name"] is not None)


def _value(event_type: str, field: dict[str, Any]) -> Any:
    kind = field["type"][1] if isinstance(field["type"], list) else field["type"]
    name = field["name"]
    special = {
        "external_user_id": "user-42",
        "device_id": "device-42",
        "ad_id": AD_ID,
        "ad_id_type": "ios_idfa",
        "properties": CUSTOM_PROPERTIES,
        "time": BASE["time"],
    }
    if name in special:
        return special[name]
    if isinstance(kind, dict):  # the only complex type in the schemas: an array of strings
        return [f"{name}-item"]
    return {"string": f"{name}-{event_type.rsplit('.', 1)[-1]}", "int": 7, "long": 7, "float": 1.5}.get(
        kind, True
    )


def full_record(event_type: str) -> dict[str, Any]:
    """A record of ``event_type`` with every field of its shipped schema filled (valid ids)."""
    fields = {f["name"]: _value(event_type, f) for f in raw_schemas()[event_type]["fields"]}
    return record(event_type, **fields)


@dataclass(frozen=True)
class Expected:
    """The keys the glossary documents for one type, less what the shipped schema cannot give."""

    top_level: frozenset[str]
    properties: frozenset[str]
    not_in_schema: frozenset[str]  # documented keys the record cannot give (checked against the file)


def expected_keys(event_type: str) -> Expected:
    """The exact top-level and ``event_properties`` keys of a :func:`full_record` of ``event_type``.

    A key is expected when the glossary lists it and the record can give it: a property when its
    field (or the field renamed to it) is in the schema, a top-level ``device_id`` when the schema has
    one. Custom-event and purchase properties (which the glossary does not list) arrive with their
    prefixes.
    """
    entry = glossary()["event_types"][event_type]
    fields = {f["name"] for f in raw_schemas()[event_type]["fields"]}
    renamed = {
        rule.removeprefix("event_properties."): source
        for source, rule in entry.get("storage_to_amplitude", {}).items()
        if rule.startswith("event_properties.")
    }
    listed = set(entry["event_properties"])
    given = {p for p in listed if p in fields or renamed.get(p) in fields}
    top = set(entry["top_level"])
    if "device_id" not in fields:
        top.discard("device_id")
    if event_type == "users.behaviors.CustomEvent":
        given.add("[Custom event property] colour")
    if event_type == "users.behaviors.Purchase":
        given.add("[Purchase property] colour")
    return Expected(frozenset(top), frozenset(given), frozenset(listed - given))


def expected_name(event_type: str) -> str:
    """The glossary's name with the default prefix (an ``AMBIGUOUS`` bare name: channel first)."""
    entry = glossary()["event_types"][event_type]
    if any(note.startswith("AMBIGUOUS") for note in entry.get("notes", ())):
        channel = {"line": "LINE", "rcs": "RCS"}[event_type.split(".")[2]]
        return f"[Appboy] {channel} {entry['amplitude_name']}"
    return "[Appboy] " + str(entry["amplitude_name"])
