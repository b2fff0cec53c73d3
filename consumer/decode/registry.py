"""Confluent Schema Registry: a cached client.

:class:`RegistryClient` resolves a schema id with ``GET /schemas/ids/{id}`` (basic auth optional) and
caches the parsed schema forever (ids are immutable in a registry). It distinguishes an id the registry
does not know (:class:`UnknownSchema`: the message is dead-lettered) from a registry that cannot be
reached (:class:`RegistryUnavailable`: the caller waits and retries, nothing is dead-lettered for it).
An answer that is not a registry's at all — a 200 whose body is not a JSON object with a ``schema``
string, a 404 without the registry's ``error_code`` body (a URL pointing at some other server) — is
:class:`RegistryAnswerInvalid`, a :class:`~consumer.ops.faults.Fault`: dead-lettering every message
for it would empty the topic into the dead-letters, and waiting would never end, so the run stops and
names the endpoint.

The dev kit's ``currents_devkit.registry.LocalRegistry`` serves the shipped schemas over the same API.
"""

from __future__ import annotations

from typing import Any

import fastavro
import httpx
import orjson

from consumer.ops.faults import Fault


class UnknownSchema(Exception):
    """The registry answered that this schema id does not exist (or is not an Avro record)."""


class RegistryUnavailable(Exception):
    """The registry could not be asked (network, 5xx, auth): retry later."""


class RegistryAnswerInvalid(Fault):
    """The registry's URL answers something that is not a schema registry's answer (see the module)."""


def _answer(content: bytes) -> dict[str, Any] | None:
    """The JSON object of a body, or ``None`` when it is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


class RegistryClient:
    """Resolves Confluent schema ids to parsed Avro schemas, with a permanent cache.

    Implements :class:`consumer.decode.avro.SchemaResolver` (``schema_for_id`` answers from the cache).
    """

    def __init__(
        self, url: str, username: str = "", password: str = "", client: httpx.AsyncClient | None = None
    ) -> None:
        self.url = url.rstrip("/")
        auth = httpx.BasicAuth(username, password) if username else None
        self._client = client or httpx.AsyncClient(timeout=10.0, auth=auth)
        self._cache: dict[int, Any] = {}

    def schema_for_id(self, schema_id: int) -> Any | None:
        """The cached parsed schema, or ``None`` until :meth:`fetch` has loaded it."""
        return self._cache.get(schema_id)

    def schemas(self) -> dict[int, Any]:
        """Every schema loaded so far, by id (the cache itself: do not change it)."""
        return self._cache

    async def fetch(self, schema_id: int) -> Any:
        """Load (once) and return the parsed schema of ``schema_id``."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        try:
            response = await self._client.get(f"{self.url}/schemas/ids/{schema_id}")
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {type(exc).__name__}") from None
        where = f"{self.url}/schemas/ids/{schema_id}"
        status, body = response.status_code, _answer(response.content)
        if status == 404:
            if body is None or "error_code" not in body:
                raise RegistryAnswerInvalid(f"schema registry {where}: HTTP 404 that is not a registry's")
            raise UnknownSchema(f"schema id {schema_id} not found in the registry")
        if status != 200:
            raise RegistryUnavailable(f"schema registry answered HTTP {status}")
        if body is None or not isinstance(body.get("schema"), str):
            kind = response.headers.get("content-type", "no content type")
            raise RegistryAnswerInvalid(
                f"schema registry {where}: HTTP 200 without a schema ({kind}): is the URL a schema registry?"
            )
        try:
            schema = fastavro.parse_schema(orjson.loads(body["schema"]))
        except Exception as exc:  # the registry's answer is input like any other
            raise UnknownSchema(f"schema id {schema_id}: unusable schema ({type(exc).__name__})") from None
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise UnknownSchema(f"schema id {schema_id} is not an Avro record")
        self._cache[schema_id] = schema
        return schema

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
