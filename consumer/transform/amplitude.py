"""Currents record -> Amplitude event, exactly as Braze's connector builds it.

Pure and synchronous: :meth:`Transformer.transform` takes a decoded record and returns either an
Amplitude event (a JSON-ready dict) or a :class:`Skip` with its reason. Per-type work (name,
properties, the kind-specific and top-level fields) is compiled once per event type into a plan
(:mod:`consumer.transform.amplitude_plans`), so the per-event cost is a few steps chosen in advance;
the verdicts of :func:`is_valid_id` on recent ids are remembered too.
"""

from __future__ import annotations

from typing import Any

import orjson

from consumer.events import AmplitudeEvent, json_payload, limiter_keys
from consumer.settings import MappingConfig
from consumer.transform.amplitude_plans import Plans
from consumer.transform.base import INVALID_IDENTITY, MISSING_ID, NO_IDENTITY, UNMAPPED_TYPE, Payload, Skip
from consumer.transform.fields import FLOAT32_FIELDS, is_valid_id

__all__ = ["FLOAT32_FIELDS", "AmplitudeMapper", "Transformer"]

# Ids repeat a lot (one user sends many events): :class:`_IdVerdicts` remembers the verdict of
# :func:`is_valid_id` for up to this many ids, then forgets them all and starts over.
_ID_MEMO_SIZE = 65536


class _IdVerdicts(dict[str, bool]):
    """:func:`is_valid_id` by subscript, remembered: a known id costs one dict lookup, no call."""

    def __missing__(self, value: str) -> bool:
        valid = is_valid_id(value)
        if len(self) >= _ID_MEMO_SIZE:
            self.clear()
        self[value] = valid
        return valid


class Transformer:
    """Turns Currents records into Amplitude events according to a :class:`MappingConfig`.

    Identity, ``time`` and ``insert_id`` follow the same rules for every type; the rest is the type's
    :class:`~consumer.transform.amplitude_plans.Plan`, compiled on first sight and cached.
    """

    def __init__(self, config: MappingConfig | None = None) -> None:
        self.config = cfg = config or MappingConfig()
        self._valid_id = _IdVerdicts()
        self._plans = Plans(cfg, self._valid_id)

    def __reduce__(self) -> tuple[type[Transformer], tuple[MappingConfig]]:
        """Pickled as its config (mappers go to worker processes): the plans hold closures, and
        they and the id verdicts are caches that the copy rebuilds."""
        return (Transformer, (self.config,))

    def transform(self, event_type: str, record: dict[str, Any]) -> AmplitudeEvent | Skip:
        """The Amplitude event for one Currents record, or why it is skipped.

        A valid ``external_user_id`` becomes ``user_id`` and a valid ``device_id`` stays
        ``device_id``; an invalid one is kept as a property, and a record with neither valid is
        skipped. ``time`` is ``time_ms``, else ``time`` in milliseconds; ``insert_id`` is the
        Currents ``id`` (so a replay is deduplicated by Amplitude). The rest is the type's plan.
        """
        plan = self._plans[event_type]
        event_id = record.get("id")
        if plan is None or not event_id:
            return UNMAPPED_TYPE if plan is None else MISSING_ID
        event: AmplitudeEvent = {}
        props: dict[str, Any] = {}
        # The identity rules stay inline: as a helper, their call would cost ~2-3 % of the conversion.
        external, device = record.get("external_user_id"), record.get("device_id")
        identified = False
        if external:
            if self._valid_id[external]:
                event["user_id"] = external
                identified = True
            else:
                props["external_user_id"] = external
        if device:
            if self._valid_id[device]:
                event["device_id"] = device
                identified = True
            else:
                props["device_id"] = device
        if not identified:
            return INVALID_IDENTITY if (external or device) else NO_IDENTITY
        event["event_type"] = plan.name + str(record.get("name") or "") if plan.named else plan.name
        time_ms = record.get("time_ms")
        if not isinstance(time_ms, int):
            time_s = record.get("time")
            # int() only when needed: it is the same value for an int, and a costly call.
            time_ms = (time_s if type(time_s) is int else int(time_s or 0)) * 1000
        event["time"] = time_ms
        event["insert_id"] = event_id
        for step in plan.steps:
            step(record, event, props)
        if props:
            event["event_properties"] = props
        return event


class AmplitudeMapper:
    """Braze's Amplitude export (:class:`~consumer.transform.amplitude.Transformer`) as a :class:`Mapper`."""

    def __init__(self, transformer: Transformer) -> None:
        self.transformer = transformer

    @classmethod
    def of(cls, section: object, mapping: MappingConfig) -> AmplitudeMapper:
        """The registry's factory: Braze's mapping as ``mapping`` configures it."""
        return cls(Transformer(mapping))

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        result = self.transformer.transform(event_type, record)
        return result if isinstance(result, Skip) else [result]

    def keys(self, payload: AmplitudeEvent) -> tuple[str, ...]:
        return limiter_keys(payload)

    def encode(self, payload: Payload) -> bytes:
        # Copied to its exact size: orjson's own buffer keeps ~4 KiB per event alive, which would make
        # every waiting event cost 8x what --max-pending-bytes counts.
        return bytes(memoryview(orjson.dumps(payload)))

    def decode(self, encoded: bytes) -> Payload:
        return json_payload(encoded)
