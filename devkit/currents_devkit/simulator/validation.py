"""What the Amplitude simulator refuses with 400 or 413, as pure functions over one request.

Checks, in Amplitude's order: body size (413, on the decoded body), JSON, ``api_key`` (400 missing /
invalid), ``events`` present and a list, event count (413), ``options.min_id_length``, then per-event
fields (400 with index lists). Only a request that passes all of them reaches the rate limits.

- An event with neither id is reported as ``events_with_missing_fields: {"user_id_or_device_id": [i]}``.
- On ``/batch`` (``strip_short_ids``) a too-short id is removed from the event; if no id remains the
  event is listed under ``events_with_invalid_id_lengths``.
- Placeholder ids (:data:`PLACEHOLDER_IDS`, any letter case) and an all-zero ``device_id`` are invalid.

Nothing here keeps state or reads a clock; a refusal is ``(status, JSON body)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import orjson

PLACEHOLDER_IDS = frozenset(
    {"anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""', "{}", "lmy47d", "0", "-1"}
    | {"00000000-0000-0000-0000-000000000000"}
)
"""Ids Amplitude refuses (compared lower-cased); an all-zero ``device_id`` is refused as well."""
_PLACEHOLDER_VARIANTS = frozenset(
    "".join(spelling)
    for word in PLACEHOLDER_IDS
    for spelling in itertools.product(*({c.lower(), c.upper()} for c in word))
)
"""Every upper/lower-case spelling of the placeholders: one set lookup per id on the hot path."""

_ABSENT, _OK, _REFUSED, _STRIPPED = range(4)
_TOO_LARGE: dict[str, Any] = {"code": 413, "error": "Payload too large"}

Refusal = tuple[int, dict[str, Any]]
"""A refused request: HTTP status and JSON body; none of its events is ingested."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A request that passed every check: its events (too-short ids already removed where allowed),
    event counts per ``device_id`` and per ``user_id``, and whether some id was removed."""

    events: list[dict[str, Any]]
    devices: dict[str, int]
    users: dict[str, int]
    stripped: bool


def parse_body(body: bytes, max_bytes: int) -> dict[str, Any] | Refusal:
    """The JSON object in ``body``, or the 413 for a body over ``max_bytes`` / the 400 for bad JSON."""
    if len(body) > max_bytes:
        return 413, _TOO_LARGE
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if type(payload) is not dict:
        return 400, {"code": 400, "error": "Invalid JSON request body"}
    return payload


def check_payload(
    payload: dict[str, Any],
    *,
    api_keys: Container[str] | None,
    max_events: int,
    min_id_length: int,
    strip_short_ids: bool,
    first_invalid_index_only: bool,
) -> Checked | Refusal:
    """Key, shape and per-event checks on a parsed body (``api_keys=None`` accepts any non-empty key;
    ``min_id_length`` applies unless the request's ``options`` set one)."""
    api_key = payload.get("api_key")
    if not api_key or type(api_key) is not str:
        return 400, {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
    if api_keys is not None and api_key not in api_keys:
        return 400, {"code": 400, "error": f"Invalid API key: {_mask(api_key)}"}
    events = payload.get("events")
    if not events:
        return 400, {"code": 400, "error": "Request missing required field", "missing_field": "events"}
    if type(events) is not list:
        return 400, {"code": 400, "error": "Invalid field: events must be an array"}
    if len(events) > max_events:
        return 413, _TOO_LARGE
    options = payload.get("options")
    min_len = options.get("min_id_length") if type(options) is dict else None
    if min_len is None:
        min_len = min_id_length
    elif type(min_len) is not int or min_len < 0:
        return 400, {"code": 400, "error": "Invalid field: options.min_id_length"}
    problems, devices, users, stripped = _validate(events, min_len, strip_short_ids)
    if problems:
        return 400, _problem_body(problems, first_invalid_index_only)
    return Checked(events, devices, users, stripped)


def _mask(api_key: str) -> str:
    """Enough of a key to recognise it, never all of it."""
    return api_key[:4] + "..." if len(api_key) >= 8 else "..."


def _id_state(
    ev: dict[str, Any],
    name: str,
    i: int,
    min_len: int,
    strip: bool,
    invalid: dict[str, list[int]],
    short: dict[str, list[int]],
) -> int:
    """Classify one id field of event ``i``; records refusals in ``invalid``/``short``."""
    value = ev.get(name)
    if value is None or value == "":
        return _ABSENT
    if type(value) is not str:
        invalid.setdefault(name, []).append(i)
        return _REFUSED
    if len(value) < min_len:
        if strip:
            del ev[name]
            return _STRIPPED
        short.setdefault(name, []).append(i)
        return _REFUSED
    if value in _PLACEHOLDER_VARIANTS or (name == "device_id" and not value.strip("0-")):
        invalid.setdefault(name, []).append(i)
        return _REFUSED
    return _OK


def _check_fields(
    ev: dict[str, Any], i: int, invalid: dict[str, list[int]], missing: dict[str, list[int]]
) -> None:
    """Record event ``i``'s missing or mistyped ``event_type``, ``time`` and ``insert_id``."""
    event_type = ev.get("event_type")
    if type(event_type) is not str or not event_type:
        (missing if event_type is None or event_type == "" else invalid).setdefault("event_type", []).append(
            i
        )
    event_time = ev.get("time")
    if event_time is not None and type(event_time) is not int:
        invalid.setdefault("time", []).append(i)
    insert_id = ev.get("insert_id")
    if insert_id is not None and type(insert_id) is not str:
        invalid.setdefault("insert_id", []).append(i)


def _tally(
    i: int,
    uid: Any,
    user: int,
    did: Any,
    device: int,
    users: dict[str, int],
    devices: dict[str, int],
    missing: dict[str, list[int]],
    short: dict[str, list[int]],
) -> bool:
    """Count accepted event ``i`` under its valid ids, or record why it has none; whether an id of it
    was stripped for being too short."""
    if user == _OK:
        users[uid] = users.get(uid, 0) + 1
    if device == _OK:
        devices[did] = devices.get(did, 0) + 1
    stripped = user == _STRIPPED or device == _STRIPPED
    if user != _OK and device != _OK:
        if stripped:
            for name, state in (("user_id", user), ("device_id", device)):
                if state == _STRIPPED:
                    short.setdefault(name, []).append(i)
        else:
            missing.setdefault("user_id_or_device_id", []).append(i)
    return stripped


def _validate(
    events: list[Any], min_len: int, strip_short_ids: bool
) -> tuple[dict[str, dict[str, list[int]]], dict[str, int], dict[str, int], bool]:
    """Per-event checks in one pass: problems by response key, event counts per device and per user, and
    whether a too-short id was removed from some event (Batch API)."""
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    short: dict[str, list[int]] = {}
    devices: dict[str, int] = {}
    users: dict[str, int] = {}
    stripped = False
    placeholders = _PLACEHOLDER_VARIANTS
    zeros = ("", "0", "-")  # an empty id, or one that may be all zeros, takes the slow path
    for i, ev in enumerate(events):
        if type(ev) is not dict:
            invalid.setdefault("event", []).append(i)
            continue
        _check_fields(ev, i, invalid, missing)
        # fast path for the usual well-formed id; anything else gets the full classification
        uid: Any = ev.get("user_id")
        if uid is None:
            user = _ABSENT
        elif type(uid) is str and len(uid) >= min_len and uid not in placeholders and uid:
            user = _OK
        else:
            user = _id_state(ev, "user_id", i, min_len, strip_short_ids, invalid, short)
        did: Any = ev.get("device_id")
        if did is None:
            device = _ABSENT
        elif type(did) is str and len(did) >= min_len and did not in placeholders and did[:1] not in zeros:
            device = _OK
        else:
            device = _id_state(ev, "device_id", i, min_len, strip_short_ids, invalid, short)
        if user != _REFUSED and device != _REFUSED:
            stripped |= _tally(i, uid, user, did, device, users, devices, missing, short)
    problems = {
        key: found
        for key, found in (
            ("events_with_invalid_fields", invalid),
            ("events_with_missing_fields", missing),
            ("events_with_invalid_id_lengths", short),
        )
        if found
    }
    return problems, devices, users, stripped


def _problem_body(problems: dict[str, dict[str, list[int]]], first_only: bool) -> dict[str, Any]:
    """The 400 body for per-event problems."""
    only_lengths = problems.keys() == {"events_with_invalid_id_lengths"}
    error = "Invalid id length for user_id or device_id" if only_lengths else "Request missing required field"
    body: dict[str, Any] = {"code": 400, "error": error}
    for key, found in problems.items():
        body[key] = {name: idx[:1] if first_only else idx for name, idx in found.items()}
    return body
