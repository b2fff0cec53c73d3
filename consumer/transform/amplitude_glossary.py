"""The ``glossary`` profile's tables, built at import from Braze's current Currents event glossary.

The data is ``glossary/braze-glossary-amplitude.json`` (a copy of the project's reference file; its
``README.md`` names the source): for each event type, the Amplitude name, the top-level keys, the
``event_properties`` keys and what moves or is renamed on the way (``storage_to_amplitude``). Nothing
here is typed by hand; :func:`load_glossary` turns every entry into a
:class:`~consumer.transform.amplitude_tables.TypeSpec` and refuses (``ValueError``) an entry it
cannot read, so a newer copy with a new kind of rule fails at import instead of being half applied.

Two readings are ours, not the file's: a type without an Amplitude payload (``amplitude_name`` null)
is not in the table (it is exported only when enabled, like any type outside it), and a name the
file marks ``AMBIGUOUS`` (a bare ``Send``, ``Click``... shared by the LINE and RCS channels) is
replaced by the derived one (``LINE Send``), so two channels never share an Amplitude name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumer.transform.amplitude_tables import IDENTITY_FIELDS, TypeSpec, derived_name

GLOSSARY_FILE = Path(__file__).parent / "glossary" / "braze-glossary-amplitude.json"

# "productId (top-level)", "adid and idfa (top-level), also kept as event_properties.ad_id"
_TOP_LEVEL = re.compile(
    r"^(?P<targets>\w+(?: and \w+)*) \(top-level\)(?:, also kept as event_properties\.\w+)?$"
)
# "event_properties.card_id"
_RENAMED = re.compile(r"^event_properties\.(?P<target>\w+)$")
_AMBIGUOUS = "AMBIGUOUS: Amplitude header"


@dataclass(frozen=True, slots=True)
class Glossary:
    """The glossary profile: ``types`` (event type -> spec, only types with an Amplitude payload),
    ``renames`` (Currents field -> ``event_properties`` name) and ``constants`` (top-level fields of
    every event, also of the types outside ``types``)."""

    types: dict[str, TypeSpec]
    renames: dict[str, str]
    constants: tuple[tuple[str, Any], ...]


def load_glossary(path: Path = GLOSSARY_FILE) -> Glossary:
    """The glossary profile read from ``path``; ``ValueError`` names an entry it cannot follow."""
    data = json.loads(path.read_text(encoding="utf-8"))
    constants = tuple(data["common"]["constant"].items())
    types: dict[str, TypeSpec] = {}
    renames: dict[str, str] = {}
    for event_type, entry in data["event_types"].items():
        if entry["amplitude_name"] is None:
            continue
        top_level, type_renames = _moves(event_type, entry.get("storage_to_amplitude", {}))
        renames.update(type_renames)
        types[event_type] = TypeSpec(
            name=_name(event_type, entry),
            properties=tuple(entry["event_properties"]),
            top_level=top_level,
            constants=tuple(entry.get("constants", {}).items()),
        )
    return Glossary(types, renames, constants)


def _name(event_type: str, entry: dict[str, Any]) -> str:
    if any(note.startswith(_AMBIGUOUS) for note in entry.get("notes", ())):
        return derived_name(event_type)
    return str(entry["amplitude_name"])


def _moves(event_type: str, moves: dict[str, str]) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """(Currents field, top-level field) pairs and Currents field -> property renames of one entry."""
    top_level: list[tuple[str, str]] = []
    renames: dict[str, str] = {}
    for source, rule in moves.items():
        if (m := _TOP_LEVEL.match(rule)) is not None:
            if source in IDENTITY_FIELDS:
                continue  # device_id: the identity rules put it top level already
            top_level.extend((source, target) for target in m["targets"].split(" and "))
        elif (m := _RENAMED.match(rule)) is not None:
            renames[source] = m["target"]
        else:
            raise ValueError(f"{event_type}: cannot follow the glossary's rule {source!r}: {rule!r}")
    return tuple(top_level), renames


GLOSSARY = load_glossary()
"""The packaged glossary, read once at import."""
