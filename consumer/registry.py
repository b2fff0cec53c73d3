"""Confluent Schema Registry: a cached client, and a small local registry serving the shipped schemas.

:class:`RegistryClient` resolves a schema id with ``GET /schemas/ids/{id}`` (basic auth optional) and
caches the parsed schema forever (ids are immutable in a registry). It distinguishes an id the registry
does not know (:class:`UnknownSchema`: the message is dead-lettered) from a registry that cannot be
reached (:class:`RegistryUnavailable`: the caller waits and retries, nothing is dead-lettered for it).

:class:`LocalRegistry` serves ``schemas/`` over the same HTTP API with stable ids (for the demo and
tests, and for users who frame Currents with those ids without running a registry).
"""

from __future__ import annotations

import re
from typing import Any

import fastavro
import httpx
import orjson

from consumer.httpserver import HttpServer, Request, Response
from consumer.schemas import event_types, raw_schemas


class UnknownSchema(Exception):
    """The registry answered that this schema id does not exist (or is not an Avro record)."""


class RegistryUnavailable(Exception):
    """The registry could not be asked (network, 5xx, auth): retry later."""


class RegistryClient:
    """Resolves Confluent schema ids to parsed Avro schemas, with a permanent cache.

    Implements :class:`consumer.decode.SchemaResolver` (``schema_for_id`` answers from the cache).
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
        if response.status_code == 404:
            raise UnknownSchema(f"schema id {schema_id} not found in the registry")
        if response.status_code != 200:
            raise RegistryUnavailable(f"schema registry answered HTTP {response.status_code}")
        try:
            body = orjson.loads(response.content)
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


def local_schema_id(event_type: str) -> int:
    """The id :class:`LocalRegistry` gives ``event_type``: its 1-based index in the sorted shipped types."""
    try:
        return event_types().index(event_type) + 1
    except ValueError:
        raise KeyError(f"no shipped schema for {event_type!r}") from None


def local_event_type(schema_id: int) -> str:
    """The inverse of :func:`local_schema_id`."""
    types = event_types()
    if not 1 <= schema_id <= len(types):
        raise KeyError(f"no shipped schema has id {schema_id}")
    return types[schema_id - 1]


_IDS_PATH = re.compile(r"^/schemas/ids/(\d+)$")


class LocalRegistry:
    """A read-only Schema Registry serving the shipped schemas (``GET /schemas/ids/{id}``)."""

    def __init__(self) -> None:
        self._server = HttpServer(self._handle, max_body_bytes=1024)

    async def _handle(self, request: Request) -> Response:
        m = _IDS_PATH.match(request.path.split("?", 1)[0])
        if request.method != "GET" or m is None:
            return Response.json(404, {"error_code": 404, "message": "not found"})
        try:
            schema = raw_schemas()[local_event_type(int(m.group(1)))]
        except KeyError:
            return Response.json(404, {"error_code": 40403, "message": "Schema not found"})
        return Response.json(200, {"schema": orjson.dumps(schema).decode()})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve and return the base URL."""
        bound = await self._server.start(host, port)
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        """Stop serving."""
        await self._server.stop()
