"""Serving one aiohttp.web application on one host and port: the probes here, the dev kit's servers too.

:class:`WebServer` owns the ``AppRunner`` / ``TCPSite`` pair. Guarantees:

- :meth:`WebServer.start` binds ``host:port`` (port 0: a free one) and returns the bound port, also
  readable as :attr:`WebServer.port`.
- :meth:`WebServer.stop` stops accepting, closes idle keep-alive connections at once, lets in-flight
  requests finish for ``grace_s`` seconds, then cancels them (aiohttp waits up to another ``grace_s``
  for their connection tasks first, so a stop takes at most about ``2 * grace_s``), and
  releases the runner, so no aiohttp resource is left for the garbage collector to warn about.
  Stopping twice, or before starting, is a no-op.
- No access log: a scrape every few seconds is not worth a log line.
- :attr:`WebServer.connections_total` counts the connections that carried a request, so a test can see
  keep-alive reuse.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson (``application/json``)."""
    body = orjson.dumps(payload)
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


class WebServer:
    """One aiohttp.web application served on one port; see the module docstring for its guarantees."""

    def __init__(
        self,
        routes: Iterable[web.AbstractRouteDef],
        *,
        client_max_size: int = 1024**2,
        grace_s: float = 1.0,
        **handler_options: Any,
    ) -> None:
        """``routes`` are resolved in order (a method mismatch falls through to later routes);
        ``client_max_size`` bounds what ``request.read()`` accepts; ``handler_options`` go to aiohttp's
        connection handler (e.g. ``auto_decompress=False``)."""
        self._routes = list(routes)
        self._client_max_size = client_max_size
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self.connections_total = 0
        """Connections that carried at least one request since this server was made."""
        self._grace_s = grace_s
        self._options = handler_options
        self._runner: web.AppRunner | None = None
        self.port = 0
        """The bound port once :meth:`start` returned."""

    @web.middleware
    async def _count_connection(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None and transport not in self._seen:
            self._seen.add(transport)
            self.connections_total += 1
        return await handler(request)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the bound port."""
        # A fresh application per start: aiohttp freezes an application once it has been served.
        app = web.Application(middlewares=[self._count_connection], client_max_size=self._client_max_size)
        app.add_routes(self._routes)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._grace_s, **self._options)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop serving: idle connections closed, in-flight requests given ``grace_s``, then cancelled."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
