"""The Currents Avro schemas shipped with the package (``schemas/*.avsc``).

Each file is named ``dataexport.S3.inner.<event-type>.avsc`` and holds the record Braze writes for that
event type (full name ``dataexport.S3.inner.<event-type>``). These are used to decode plain Avro (no
writer schema in the message), as a fallback for Confluent-framed messages without a registry, and
to generate test and demo data. Files always decode with their own embedded writer schema.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import fastavro

FULLNAME_PREFIX = "dataexport.S3.inner."


def schema_dir() -> Path:
    """Where the ``.avsc`` files are: inside the installed package, or ``schemas/`` of a checkout."""
    packaged = Path(__file__).parent / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


def event_type_of(fullname: str) -> str:
    """``dataexport.S3.inner.users.messages.email.Open`` -> ``users.messages.email.Open``.

    A name without Braze's prefix is returned unchanged (some bridges strip the namespace).
    """
    if fullname.startswith(FULLNAME_PREFIX):
        return fullname[len(FULLNAME_PREFIX) :]
    return fullname


@functools.cache
def raw_schemas() -> dict[str, dict[str, Any]]:
    """Event type -> schema JSON (unparsed), for every shipped ``.avsc``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(schema_dir().glob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[event_type_of(f"{schema['namespace']}.{schema['name']}")] = schema
    return out


@functools.cache
def parsed_schema(event_type: str) -> Any:
    """The fastavro-parsed schema for ``event_type``; ``KeyError`` if none is shipped."""
    return fastavro.parse_schema(raw_schemas()[event_type])


def event_types() -> list[str]:
    """Every event type with a shipped schema, sorted."""
    return sorted(raw_schemas())
