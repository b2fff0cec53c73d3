"""A destination added from outside the product, as ``docs/architecture.md`` says to add one: this one
module, and one line in its distribution's entry points (``currents_jsonhook-0.1.dist-info``)::

    [currents_consumer.destinations]
    jsonhook = currents_jsonhook:SPEC

It posts every Currents event, as JSON, to a webhook: ``--destination jsonhook --jsonhook-endpoint URL``
(and ``--jsonhook-key-file``, sent as a bearer token). Its options, their environment variables, its
``--help`` group, ``config``, secret masking, limits, retries and dead letters all come from the
product; ``tests/app/test_adding_a_destination.py`` runs it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import httpx
import orjson

from consumer.events import Pending
from consumer.settings.destinations import DestinationSpec
from consumer.settings.fields import Words, derived
from consumer.settings.mapping import MappingConfig
from consumer.settings.partners import OnePerRequest
from consumer.sinks.webhook import OneEventSink
from consumer.transform.base import Payload, Skip

NOT_FORWARDED = Skip("not_forwarded")


class JsonHookSettings(OnePerRequest):
    """A webhook that takes each Currents event as JSON (one POST per event)."""

    event_types: Words = derived(("*",), "Currents event types posted (glob, repeatable)", word="event-type")

    def missing(self) -> str:
        return "" if self.endpoint else "jsonhook needs --jsonhook-endpoint"


class JsonHookMapper:
    """A Currents record -> the record itself with its ``event_type``."""

    def __init__(self, section: JsonHookSettings) -> None:
        self.types = section.event_types

    @classmethod
    def of(cls, section: JsonHookSettings, mapping: MappingConfig) -> JsonHookMapper:
        return cls(section)

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        if not any(fnmatchcase(event_type, glob) for glob in self.types):
            return NOT_FORWARDED
        return [{"event_type": event_type, **record}]

    def keys(self, payload: Payload) -> tuple[str, ...]:
        """One device's events stay in order (the Mapper contract asks for at least one key)."""
        return (f"d:{payload.get('device_id') or payload['id']}",)

    def encode(self, payload: Payload) -> bytes:
        return orjson.dumps(payload)

    def decode(self, encoded: bytes) -> Payload:
        payload: Payload = orjson.loads(encoded)
        return payload


class JsonHookSink(OneEventSink):
    """POSTs each event's JSON to the endpoint, with the key as a bearer token if there is one."""

    def __init__(self, section: JsonHookSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(section.timeout, section.concurrency, client, shown_url=section.endpoint)
        self._url = section.endpoint
        key = section.key.reveal()
        self._headers = {"Content-Type": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    async def _request(self, item: Pending) -> httpx.Response:
        return await self._client.post(self._url, content=item.encoded, headers=self._headers)


SPEC = DestinationSpec(
    "jsonhook",
    "JSON webhook",
    JsonHookSettings,
    "currents_jsonhook:JsonHookMapper.of",
    "currents_jsonhook:JsonHookSink",
)
