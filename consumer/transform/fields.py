"""Record-field rules every mapper shares: valid ids, 32-bit floats, JSON ``properties`` strings."""

from __future__ import annotations

import struct
from typing import Any

import orjson

from consumer.decode.schemas import raw_schemas

# Ids Amplitude refuses with a 400 (compared case-insensitively); sending one would poison a batch.
PLACEHOLDER_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
        "",
    }
)


def _float_fields() -> frozenset[str]:
    names = set()
    for schema in raw_schemas().values():
        for f in schema["fields"]:
            t = f["type"]
            if (t[1] if isinstance(t, list) else t) == "float":
                names.add(f["name"])
    return frozenset(names)


# Avro `float` fields (price, latitude, ...) are 32-bit: decoded as doubles they print as
# 29.950000762939453. They are sent as the shortest decimal that is the same 32-bit value (29.95).
FLOAT32_FIELDS = _float_fields()
_F32 = struct.Struct("<f")


def f32(value: Any) -> Any:
    """The shortest decimal form of a 32-bit float (other values unchanged)."""
    if not isinstance(value, float) or value != value or value in (float("inf"), float("-inf")):
        return value
    try:
        exact = _F32.unpack(_F32.pack(value))[0]
    except OverflowError:
        return value
    if exact != value:
        return value  # not a 32-bit value: leave it alone
    for digits in (6, 7, 8, 9):
        short = float(f"{value:.{digits}g}")
        if _F32.unpack(_F32.pack(short))[0] == exact:
            return short
    return value


_LONGEST_PLACEHOLDER = max(len(p) for p in PLACEHOLDER_IDS)


def is_valid_id(value: str) -> bool:
    """Whether Amplitude accepts ``value`` as a user or device id (placeholders and all-zero ids not)."""
    stripped = value.strip()
    if len(stripped) <= _LONGEST_PLACEHOLDER and stripped.lower() in PLACEHOLDER_IDS:
        return False
    # An all-zero advertising id (Limit Ad Tracking) in any formatting; also refuses "" and "-".
    return bool(stripped.strip("0-"))


def merge_json_properties(props: dict[str, Any], raw: Any, prefix: str) -> dict[str, Any]:
    """Decode a Currents ``properties`` JSON string into prefixed event properties.

    Nested objects and arrays stay JSON values. A string that is not a JSON object is kept whole under
    ``properties`` so nothing is lost, and the event is still sent. Returns the decoded object (empty
    when there was none).
    """
    if raw is None or raw == "":
        return {}
    try:
        decoded = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        decoded = None
    if not isinstance(decoded, dict):
        props["properties"] = raw
        return {}
    for key, value in decoded.items():
        props[prefix + key] = value
    return decoded
