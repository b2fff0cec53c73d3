"""The careful alternative: fastavro + Amplitude's Python SDK, tuned, with a minimal mapping of its own.

``python bench/sdk_tuned.py DIR SERVER_URL`` is what a user who knows the SDK would write instead of
running this product: the SDK at ``flush_queue_size=1000`` (5x its default of 200 events per request),
``min_id_length=1`` (Braze's short external ids) and ``flush_interval_millis=1000`` (at its default of
10 s, the SDK's consumer thread, waiting out the interval, holds the process up to 10 s after
``shutdown()``; a full queue flushes at once either way), and a mapping of a few lines instead of
:class:`consumer.transform.amplitude.Transformer` and its per-type plans: Amplitude's name for the
type, the two ids, ``time`` in milliseconds, the Currents ``id`` as ``insert_id``, and every other
non-empty field of the record as an event property.

It sends the same events as replay: the names and the list of exported types are the product's
tables (the data a user copies from Braze's documentation), and an id Amplitude refuses (a
placeholder, an all-zero advertising id) does not identify a user, as in the product. The properties
are fewer and unshaped, so this row does less work per event than replay does: the ratio against it
is a lower bound. Output as ``sdk_naive.py``: ``{"read", "tracked", "skipped", "callback_codes"}``.
"""

from __future__ import annotations

import sys
from typing import Any

from amplitude import Amplitude, BaseEvent, Config
from sdk_naive import Tally, avro_files  # beside this script: its reading and counting

from consumer.settings import MappingConfig
from consumer.transform.amplitude_plans import CUSTOM
from consumer.transform.amplitude_tables import amplitude_name, is_exported
from consumer.transform.fields import is_valid_id

# Record fields that become the event's own keys rather than properties.
_OWN = frozenset({"id", "external_user_id", "device_id", "time", "time_ms", "name"})


def to_event(name: str, named: bool, record: Any) -> BaseEvent | None:
    """The user's minimal mapping: ``None`` for a record Amplitude cannot attribute to anyone."""
    external, device = record.get("external_user_id"), record.get("device_id")
    user_id = external if external and is_valid_id(external) else None
    device_id = device if device and is_valid_id(device) else None
    if not (user_id or device_id) or not record.get("id"):
        return None
    time_ms = record.get("time_ms") or int(record.get("time") or 0) * 1000
    props = {k: v for k, v in record.items() if v is not None and v != "" and k not in _OWN}
    return BaseEvent(
        event_type=name + str(record.get("name") or "") if named else name,
        user_id=user_id,
        device_id=device_id,
        time=time_ms,
        insert_id=record["id"],
        event_properties=props or None,
    )


def main(root: str, server_url: str) -> None:
    """Track every exportable event under ``root`` through the tuned SDK, then shut it down."""
    tally = Tally()
    config = Config(
        server_url=server_url,
        min_id_length=1,
        flush_queue_size=1000,
        flush_interval_millis=1000,
        callback=tally.on_result,
    )
    client = Amplitude("bench-key", config)
    mapping = MappingConfig()
    for event_type, records in avro_files(root):
        exported = is_exported(mapping, event_type)
        named = event_type == CUSTOM  # a custom event's name completes the prefix
        if named:
            name = mapping.event_prefix + mapping.custom_event_prefix
        else:
            name = amplitude_name(mapping, event_type) if exported else ""
        for record in records:
            tally.read += 1
            event = to_event(name, named, record) if exported else None
            if event is None:
                tally.skipped += 1
                continue
            client.track(event)
            tally.tracked += 1
    client.shutdown()
    tally.print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
