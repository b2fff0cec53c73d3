"""Currents records with every schema field, checked against the shipped schema."""

from __future__ import annotations

from typing import Any

from fastavro.validation import validate

from consumer.decode.schemas import parsed_schema, raw_schemas

BASE = {"id": "evt-1", "user_id": "5c3aa83113dd490100d3d8d7", "time": 1257894000}


def record(event_type: str, **fields: Any) -> dict[str, Any]:
    """A record of ``event_type`` with every schema field (unset optional ones null), checked against
    the shipped schema."""
    out: dict[str, Any] = {f["name"]: None for f in raw_schemas()[event_type]["fields"]}
    out.update({k: v for k, v in BASE.items() if k in out})
    out.update(fields)
    validate(out, parsed_schema(event_type), raise_errors=True)
    return out
