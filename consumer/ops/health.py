"""The operations endpoint: ``/metrics``, ``/livez`` and ``/readyz`` on one port (aiohttp.web).

* ``/livez`` answers 200 while the main loop keeps turning (it calls :meth:`Health.beat` every
  iteration, busy or idle) and 503 once it has not for ``stall_after`` seconds: a wedged loop gets
  restarted, an idle or waiting one does not. It never looks at Kafka or Amplitude, so an outage of
  either does not restart every pod.
* ``/readyz`` answers 200 when the process is able to work (the daemon: partitions assigned; a
  replay: started), from a callable the command provides.
* ``/metrics`` serves the Prometheus text format of the process's registry.

Any method is answered on these paths; every other path is a JSON 404. Bodies are never read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from consumer.ops.metrics import EXPOSITION_CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from aiohttp import web

    from consumer.ops.web import WebServer


class Health:
    """Liveness bookkeeping and the probe/metrics HTTP server."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        ready: Callable[[], bool] = lambda: True,
        stall_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        on_scrape: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.stall_after = stall_after
        self.clock = clock
        self.on_scrape = on_scrape
        self._last_beat = clock()
        self.server: WebServer | None = None

    def beat(self) -> None:
        """The main loop went round once."""
        self._last_beat = self.clock()

    def alive(self) -> bool:
        """Whether the main loop turned within ``stall_after`` seconds."""
        return self.clock() - self._last_beat < self.stall_after

    async def start(self, port: int, host: str = "0.0.0.0") -> int:  # probes come from the kubelet
        """Serve on ``host:port`` (0: a free port); returns the bound port."""
        # Imported here: a run without --metrics-port never loads aiohttp (about 0.15 s of CPU and
        # 9 MiB of memory, every replay Job).
        from aiohttp import web

        from consumer.ops.web import WebServer, json_response

        async def metrics(_: web.Request) -> web.Response:
            if self.on_scrape is not None:
                self.on_scrape()
            # content_type= would split off and re-add the charset parameter; the header is sent as given.
            return web.Response(
                body=self.metrics.exposition(), headers={"Content-Type": EXPOSITION_CONTENT_TYPE}
            )

        async def livez(_: web.Request) -> web.Response:
            ok = self.alive()
            return json_response(200 if ok else 503, {"alive": ok})

        async def readyz(_: web.Request) -> web.Response:
            ok = self.ready()
            return json_response(200 if ok else 503, {"ready": ok})

        async def not_found(_: web.Request) -> web.Response:
            return json_response(404, {"error": "not found"})

        routes = [
            web.route("*", "/metrics", metrics),
            web.route("*", "/livez", livez),
            web.route("*", "/readyz", readyz),
            web.route("*", "/{tail:.*}", not_found),
        ]
        self.server = WebServer(routes, client_max_size=1024)
        return await self.server.start(host, port)

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
