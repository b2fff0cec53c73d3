"""A small local Confluent Schema Registry serving the shipped schemas with stable ids.

For the demo and tests, and for users who frame Currents with those ids without running a registry:
:class:`LocalRegistry` answers ``GET /schemas/ids/{id}`` as a Confluent registry does.
"""

from __future__ import annotations

import re

import orjson

from consumer.decode.schemas import event_types, raw_schemas
from consumer.ops.httpserver import HttpServer, Request, Response


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
