"""Currents record -> Movable Ink Customer Data API events (``track``, preceded once by ``identify``).

Pure and synchronous, like :mod:`consumer.transform.amplitude`. Guarantees of :class:`MovableInkMapper`:

- only event types matching ``--movableink-event-type`` globs are sent (others: ``not_forwarded``);
- a custom event becomes ``track`` named after the event (snake_case or verbatim), with its decoded
  ``properties``; a purchase becomes ``track`` named ``--movableink-purchase-event`` with the purchase
  properties plus ``product_id``, ``price`` (shortest 32-bit float form), ``currency`` and ``quantity``
  when the record has one; any other enabled type ``<...>.<group>.<Type>`` becomes ``track`` named
  ``snake_case(group + "_" + Type)`` without properties (``users.messages.email.Open`` -> ``email_open``,
  ``users.behaviors.app.SessionStart`` -> ``app_session_start``);
- ``user_id`` is the external user id when it is a valid id (the rules of
  :func:`~consumer.transform.fields.is_valid_id`); ``anonymous_id`` is the device id, the md5 of the email
  address or Braze's user id (``--movableink-anonymous-id``), sent alongside ``user_id`` when both exist;
  a record with neither is skipped (``no_identity``);
- with ``--movableink-identify``, the first time this process maps a (anonymous_id, user_id) pair an
  ``identify`` payload goes before the ``track`` one. Pairs are remembered in a bounded LRU: memory
  stays bounded, and a pair seen again after eviction (or after a restart) is identified again, which
  Movable Ink takes as a no-op.

:class:`PartnerEvents` (type filter, names, properties) is shared with :mod:`consumer.transform.remerge`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from consumer.events import json_payload
from consumer.settings.partners import MovableInkSettings
from consumer.transform.base import NO_IDENTITY, Payload, Skip
from consumer.transform.fields import is_valid_id
from consumer.transform.partner_events import (
    NO_EVENT_NAME,
    NOT_FORWARDED,
    PartnerEvents,
)

IDENTIFY_MEMORY = 100_000
"""How many (anonymous_id, user_id) pairs are remembered as already identified (about 20 MB)."""


class MovableInkMapper:
    """Currents records -> Movable Ink ``track`` (and ``identify``) payloads; a
    :class:`~consumer.transform.base.Mapper`."""

    def __init__(self, settings: MovableInkSettings, memory: int = IDENTIFY_MEMORY) -> None:
        self.settings = settings
        self.events = PartnerEvents(settings.event_types, settings.event_names, settings.purchase_event)
        self._memory = max(1, memory)
        self._identified: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    def of(cls, section: MovableInkSettings, mapping: object) -> MovableInkMapper:
        """The registry's factory: this mapper for its section (the Amplitude mapping is not used)."""
        return cls(section)

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        """``[identify, track]`` the first time a known user's anonymous id is seen, else ``[track]``;
        or why the record is not sent (``not_forwarded``, ``no_identity``, ``no_event_name``)."""
        if not self.events.forwarded(event_type):
            return NOT_FORWARDED
        external = record.get("external_user_id")
        user_id = external if isinstance(external, str) and is_valid_id(external) else None
        anonymous_id = self._anonymous_id(record)
        if user_id is None and anonymous_id is None:
            return NO_IDENTITY
        name = self.events.name(event_type, record)
        if not name:
            return NO_EVENT_NAME
        track: Payload = {"type": "track", "event": name}
        props = self.events.properties(event_type, record)
        if props is not None:
            track["properties"] = props
        when: Payload = {"timestamp": int(record.get("time") or 0) * 1000}
        if record.get("timezone"):
            when["timezone"] = record["timezone"]
        ids: Payload = {}
        if user_id is not None:
            ids["user_id"] = user_id
        if anonymous_id is not None:
            ids["anonymous_id"] = anonymous_id
        track.update(when)
        track.update(ids)
        if user_id is None or anonymous_id is None or not self.settings.identify:
            return [track]
        if not self._first_time((anonymous_id, user_id)):
            return [track]
        return [{"type": "identify", **ids, **when}, track]

    def keys(self, payload: Payload) -> tuple[str, ...]:
        """``u:<user_id>`` for a known user, else ``a:<anonymous_id>``: a user's events stay in order."""
        user_id = payload.get("user_id")
        return (f"u:{user_id}",) if user_id else (f"a:{payload['anonymous_id']}",)

    def encode(self, payload: Payload) -> bytes:
        """The JSON request body (an exact-size copy, as ``AmplitudeMapper.encode`` explains)."""
        return bytes(memoryview(orjson.dumps(payload)))

    def decode(self, encoded: bytes) -> Payload:
        """The JSON body back as a dict."""
        return json_payload(encoded)

    def _anonymous_id(self, record: dict[str, Any]) -> str | None:
        source = self.settings.anonymous_id
        if source == "email_md5":
            email = record.get("email_address")
            if not isinstance(email, str) or not is_valid_id(email):
                return None
            return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()
        value = record.get("device_id" if source == "device_id" else "user_id")
        return value if isinstance(value, str) and is_valid_id(value) else None

    def _first_time(self, pair: tuple[str, str]) -> bool:
        """Record ``pair`` as identified; whether it was not remembered already (LRU, bounded)."""
        if pair in self._identified:
            self._identified.move_to_end(pair)
            return False
        self._identified[pair] = None
        if len(self._identified) > self._memory:
            self._identified.popitem(last=False)
        return True
