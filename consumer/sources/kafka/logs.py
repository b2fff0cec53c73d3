"""Keeps aiokafka's own logging to one line per distinct problem per interval while Kafka is away.

aiokafka retries a lost broker every ``retry_backoff_ms`` (100 ms) and logs every failure at ERROR,
from several loggers: a 5-second broker restart wrote about 200 lines, an hour's outage would write
over a hundred thousand. :class:`RepeatSuppressor` lets the first occurrence of each message through,
drops its repeats for ``interval`` seconds, then lets one through that says how many were dropped: an
outage shows as one line per problem when it starts and one per interval while it lasts. A different
message (another node, another error) is a different problem and passes at once; nothing aiokafka
logs once (a rebalance, a first failure) is delayed or changed.

While the daemon is connecting (:meth:`RepeatSuppressor.connecting`), aiokafka's lines about a failed
bootstrap (``Unable connect to "host:port"``, ``Unable to request metadata from "host:port"``) are not
logged at all: the daemon's own line for that attempt says the same, with the cause in words, so each
attempt is one line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

AIOKAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
)
"""The loggers of aiokafka that report connection and coordinator failures (a filter on a logger
does not apply to its children, so each is named)."""


BOOTSTRAP_FAILURES = ('Unable connect to "', 'Unable to request metadata from "')
"""How aiokafka's lines about a failed bootstrap begin (their templates, before the arguments)."""

MAX_TRACKED = 1000
"""Distinct messages remembered; past that the memory is cleared (messages with changing numbers in
them must not grow it without bound), which at worst lets a repeat through early."""


class RepeatSuppressor(logging.Filter):
    """Passes each (logger, message) once per ``interval`` seconds, with the count dropped since."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        """(logger, message) -> (when it last passed, repeats dropped since)."""
        self._connecting = 0

    @contextlib.contextmanager
    def connecting(self) -> Iterator[None]:
        """While inside, aiokafka's bootstrap failures are dropped (the caller logs each attempt)."""
        self._connecting += 1
        try:
            yield
        finally:
            self._connecting -= 1

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged; a record passed after drops gets their count appended."""
        if self._connecting and isinstance(record.msg, str) and record.msg.startswith(BOOTSTRAP_FAILURES):
            return False
        key = (record.name, record.getMessage())
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= MAX_TRACKED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            # Appended to the template, so a message whose arguments contain "%" stays intact.
            record.msg = f"{record.msg} [{last[1]} more like this in the last {now - last[0]:.0f}s]"
        return True


_installed: RepeatSuppressor | None = None


def quiet_repeats(interval: float = 30.0) -> RepeatSuppressor:
    """Install one :class:`RepeatSuppressor` on every logger of :data:`AIOKAFKA_LOGGERS` (once per
    process; later calls return the installed one)."""
    global _installed
    if _installed is None:
        _installed = RepeatSuppressor(interval)
        for name in AIOKAFKA_LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed
