"""The operations endpoint: ``/metrics``, ``/livez`` and ``/readyz`` on one port.

* ``/livez`` answers 200 while the main loop keeps turning (it calls :meth:`Health.beat` every
  iteration, busy or idle) and 503 once it has not for ``stall_after`` seconds: a wedged loop gets
  restarted, an idle or waiting one does not. It never looks at Kafka or Amplitude, so an outage of
  either does not restart every pod.
* ``/readyz`` answers 200 when the process is able to work (the daemon: partitions assigned; a
  replay: started), from a callable the command provides.
* ``/metrics`` serves the Prometheus text format of the process's registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from consumer.ops.httpserver import HttpServer, Request, Response
from consumer.ops.metrics import Metrics


class Health:
    """Liveness bookkeeping and the probe/metrics HTTP handler."""

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
        self.server: HttpServer | None = None

    def beat(self) -> None:
        """The main loop went round once."""
        self._last_beat = self.clock()

    def alive(self) -> bool:
        """Whether the main loop turned within ``stall_after`` seconds."""
        return self.clock() - self._last_beat < self.stall_after

    async def handle(self, request: Request) -> Response:
        """Route one request."""
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            if self.on_scrape is not None:
                self.on_scrape()
            return Response(200, self.metrics.exposition(), content_type="text/plain; version=0.0.4")
        if path == "/livez":
            ok = self.alive()
            return Response.json(200 if ok else 503, {"alive": ok})
        if path == "/readyz":
            ok = self.ready()
            return Response.json(200 if ok else 503, {"ready": ok})
        return Response.json(404, {"error": "not found"})

    async def start(self, port: int, host: str = "0.0.0.0") -> int:  # probes come from the kubelet
        """Serve on ``port``; returns the bound port."""
        self.server = HttpServer(self.handle, max_body_bytes=1024)
        return await self.server.start(host, port)

    async def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
