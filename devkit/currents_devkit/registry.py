"""A small local Confluent Schema Registry serving the shipped schemas with stable ids.

For the demo and tests, and for users who frame Currents with those ids without running a registry:
:class:`LocalRegistry` answers ``GET /schemas/ids/{id}`` and ``GET /subjects`` as a Confluent registry does.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from consumer.decode.schemas import event_types, raw_schemas
from consumer.ops.web import WebServer, json_response


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


class LocalRegistry:
    """A read-only Schema Registry serving the shipped schemas (``GET /schemas/ids/{id}``)."""

    def __init__(self) -> None:
        routes = [
            web.get(r"/schemas/ids/{id:\d+}", self._schema, allow_head=False),
            # what the daemon asks at start-up to tell a registry from another server
            web.get("/subjects", self._subjects, allow_head=False),
            # every other path or method: the registry's own 404 shape, not aiohttp's text
            web.route("*", "/{tail:.*}", self._not_found),
        ]
        self._server = WebServer(routes, client_max_size=1024)

    async def _schema(self, request: web.Request) -> web.Response:
        try:
            schema = raw_schemas()[local_event_type(int(request.match_info["id"]))]
        except KeyError:
            return json_response(404, {"error_code": 40403, "message": "Schema not found"})
        return json_response(200, {"schema": orjson.dumps(schema).decode()})

    async def _subjects(self, _: web.Request) -> web.Response:
        """A subject per shipped schema, named after its event type."""
        return json_response(200, list(event_types()))

    async def _not_found(self, _: web.Request) -> web.Response:
        return json_response(404, {"error_code": 404, "message": "not found"})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve and return the base URL."""
        bound = await self._server.start(host, port)
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        await self._server.stop()
