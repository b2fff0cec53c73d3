"""What the partner destinations (Movable Ink, Remerge) receive of a Currents record.

:class:`PartnerEvents` decides whether a type is forwarded, its event name (snake_case or verbatim for
custom events, a configured name for purchases, ``group_type`` for the rest) and its properties (the
decoded ``properties`` JSON of custom events and purchases, plus the purchase fields).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable
from typing import Any

from consumer.transform.base import Skip
from consumer.transform.fields import f32, merge_json_properties

CUSTOM_EVENT = "users.behaviors.CustomEvent"
PURCHASE = "users.behaviors.Purchase"
NOT_FORWARDED = Skip("not_forwarded")
NO_EVENT_NAME = Skip("no_event_name")

_PURCHASE_FIELDS = ("product_id", "price", "currency", "quantity")


def snake_case(name: str) -> str:
    """``Product Viewed`` / ``ProductViewed`` / ``product-viewed`` -> ``product_viewed``.

    Lower case; a word boundary inside CamelCase (``aB``, ``1B``, ``ABc``) and every run of characters
    that are not letters or digits become one ``_``; no leading or trailing ``_``. Letters of any script
    are kept (``Café Visité`` -> ``café_visité``).
    """
    out: list[str] = []
    size = len(name)
    for i, ch in enumerate(name):
        if not ch.isalnum():
            if out and out[-1] != "_":
                out.append("_")
            continue
        if ch.isupper() and out and out[-1] != "_":
            prev = name[i - 1]
            acronym_end = prev.isupper() and i + 1 < size and name[i + 1].islower()
            if prev.islower() or prev.isdigit() or acronym_end:
                out.append("_")
        out.append(ch.lower())
    return "".join(out).strip("_")


@functools.lru_cache(maxsize=512)
def type_event_name(event_type: str) -> str:
    """The event name of a non-custom, non-purchase type: its last two segments in snake_case
    (``users.messages.email.Open`` -> ``email_open``; unique across all shipped schemas)."""
    return snake_case("_".join(event_type.split(".")[-2:]))


class PartnerEvents:
    """What a partner receives of a Currents record: whether its type is forwarded, its name, its
    properties. Shared by the Movable Ink and Remerge mappers; see the module docstring for the rules."""

    def __init__(self, event_types: Iterable[str], event_names: str, purchase_event: str) -> None:
        self._patterns = tuple(event_types)
        self._verbatim = event_names == "verbatim"
        self._purchase_event = purchase_event
        self._forwarded: dict[str, bool] = {}  # bounded by the number of event types (about 100)

    def forwarded(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the globs (case-sensitive)."""
        try:
            return self._forwarded[event_type]
        except KeyError:
            matched = any(fnmatch.fnmatchcase(event_type, p) for p in self._patterns)
            self._forwarded[event_type] = matched
            return matched

    def name(self, event_type: str, record: dict[str, Any]) -> str:
        """The event name sent (may be empty: a custom event whose name has no letter or digit)."""
        if event_type == CUSTOM_EVENT:
            raw = str(record.get("name") or "")
            return raw if self._verbatim else snake_case(raw)
        if event_type == PURCHASE:
            return self._purchase_event
        return type_event_name(event_type)

    @staticmethod
    def properties(event_type: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The event's properties: the decoded ``properties`` JSON of a custom event or purchase (a string
        that is not a JSON object is kept whole under ``properties``, as the Amplitude export does), plus
        the purchase fields; ``None`` for other types."""
        if event_type not in (CUSTOM_EVENT, PURCHASE):
            return None
        props: dict[str, Any] = {}
        merge_json_properties(props, record.get("properties"), "")
        if event_type == PURCHASE:
            for key in _PURCHASE_FIELDS:
                value = record.get(key)
                if value is not None:
                    props[key] = f32(value)
        return props
