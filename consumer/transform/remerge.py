"""Currents record -> Remerge event tracking query parameters (one GET per event).

Pure and synchronous. Guarantees of :class:`RemergeMapper`:

- only event types matching ``--remerge-event-type`` globs are sent (others: ``not_forwarded``); names
  and properties follow :class:`~consumer.transform.partner_events.PartnerEvents` (custom event name
  verbatim or
  snake_case, purchases named ``--remerge-purchase-event``, other types ``email_open``-style);
- Remerge identifies users by advertising id only, checked in this order: ``ad_tracking_enabled``
  explicitly false -> ``ad_tracking_disabled`` (the user's choice wins); no ad id, or an all-zero /
  placeholder one -> ``no_advertising_id`` (the seed's template aborts these too); an ``ad_id_type``
  other than ``ios_idfa`` (sent as ``idfa``) or ``google_adid`` (sent as ``aaid``) ->
  ``unsupported_ad_id_type``;
- the store app id comes from ``--remerge-app-id`` for the record's Braze ``app_id``; otherwise from
  the platform (``ios`` / ``android``) or, without one of those, from the ad id type (idfa -> iOS, aaid
  -> Android); an empty result -> ``unmapped_app``;
- the payload is the query parameters *without* the key, which the sink adds, so the key never reaches
  a dead-letter file: ``partner, app_id, ts`` (unix seconds), ``idfa`` or ``aaid``, ``event``,
  ``non_app_event`` (``true``/``false``) and, when there are properties, ``data`` (compact JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from consumer.settings.partners import RemergeSettings
from consumer.transform.base import Skip
from consumer.transform.fields import is_valid_id
from consumer.transform.partner_events import NO_EVENT_NAME, NOT_FORWARDED, PartnerEvents

if TYPE_CHECKING:
    from consumer.transform.base import Payload

AD_TRACKING_DISABLED = Skip("ad_tracking_disabled")
NO_ADVERTISING_ID = Skip("no_advertising_id")
UNSUPPORTED_AD_ID_TYPE = Skip("unsupported_ad_id_type")
UNMAPPED_APP = Skip("unmapped_app")

_AD_PARAM = {"ios_idfa": "idfa", "google_adid": "aaid"}


class RemergeMapper:
    """Currents records -> Remerge query parameters; a :class:`~consumer.transform.base.Mapper`."""

    def __init__(self, settings: RemergeSettings) -> None:
        """Raises ``SettingsError`` on a malformed ``--remerge-app-id`` pair."""
        self.settings = settings
        self.events = PartnerEvents(settings.event_types, settings.event_names, settings.purchase_event)
        self._store_ids = settings.store_app_ids()
        self._non_app_event = "true" if settings.non_app_event else "false"

    @classmethod
    def of(cls, section: RemergeSettings, mapping: object) -> RemergeMapper:
        """The registry's factory: this mapper for its section (the Amplitude mapping is not used)."""
        return cls(section)

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        """One payload (the query parameters but the key), or why the record is not sent."""
        if not self.events.forwarded(event_type):
            return NOT_FORWARDED
        if record.get("ad_tracking_enabled") is False:
            return AD_TRACKING_DISABLED
        ad_id = record.get("ad_id")
        if not isinstance(ad_id, str) or not is_valid_id(ad_id):
            return NO_ADVERTISING_ID
        param = _AD_PARAM.get(record.get("ad_id_type") or "")
        if param is None:
            return UNSUPPORTED_AD_ID_TYPE
        app_id = self._app_id(record, param)
        if not app_id:
            return UNMAPPED_APP
        name = self.events.name(event_type, record)
        if not name:
            return NO_EVENT_NAME
        payload: Payload = {
            "partner": self.settings.partner,
            "app_id": app_id,
            "ts": int(record.get("time") or 0),
            param: ad_id,
            "event": name,
            "non_app_event": self._non_app_event,
        }
        props = self.events.properties(event_type, record)
        if props:
            payload["data"] = orjson.dumps(props).decode()
        return [payload]

    def keys(self, payload: Payload) -> tuple[str, ...]:
        """``d:<advertising id>``: one device's events stay in order."""
        return (f"d:{payload.get('idfa') or payload.get('aaid')}",)

    def encode(self, payload: Payload) -> bytes:
        """The query string (UTF-8, percent-encoded) the sink appends the key to."""
        return urlencode(payload).encode()

    def decode(self, encoded: bytes) -> Payload:
        """The query parameters back as a dict (values as strings)."""
        return dict(parse_qsl(encoded.decode(), keep_blank_values=True))

    def _app_id(self, record: dict[str, Any], param: str) -> str:
        mapped = self._store_ids.get(record.get("app_id") or "")
        if mapped:
            return mapped
        platform = str(record.get("platform") or "").lower()
        ios = platform == "ios" if platform in ("ios", "android") else param == "idfa"
        return self.settings.ios_app_id if ios else self.settings.android_app_id
