"""How a failing destination is logged: one line per change of state, and a summary while it lasts.

A long outage retries every batch many times; a warning per retry buries everything else in the log.
:class:`OutageLog` turns the retries into:

* one warning when the destination starts failing (the reason, how many events retry);
* while it keeps failing, at most one warning per ``summary_every`` seconds: since when it has been
  failing, how many retries, how many events are held, the last reason, and the cause when the
  destination refuses our configuration (``credentials refused``, ``wrong endpoint: URL answered ...``:
  see :mod:`.refusals`);
* one info line when a request is delivered again (how long the failure lasted);
* each retry itself at debug level (``retry in N s``, never negative).

Pure bookkeeping with an injected clock; the engine calls :meth:`retrying` and :meth:`delivered`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("currents.delivery")


class OutageLog:
    """The failing/recovered state of one destination and its log lines (see the module docstring)."""

    def __init__(
        self, name: str, *, summary_every: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = name
        self.summary_every = summary_every
        self.clock = clock
        self.since: float | None = None
        """When the current failure began (``None`` while the destination works)."""
        self.retries = 0
        self.last_answer: tuple[str, int] | None = None
        """The last failure (reason, HTTP status, 0 for none) while failing: why events kept waiting."""
        self._last_line = 0.0

    def retrying(
        self, reason: str, events: int, after: float, held: int, cause: str = "", status: int = 0
    ) -> None:
        """A request failed (``reason``, HTTP ``status``) and its ``events`` retry in ``after`` seconds;
        ``held`` events are pending; ``cause`` is why, when it is known to be our configuration."""
        now = self.clock()
        self.last_answer = (reason, status)
        log.debug("%s request failed (%s); %d events retry in %.1fs", self.name, reason, events, after)
        if self.since is None:
            self.since, self.retries, self._last_line = now, 1, now
            log.warning(
                "%s failing (%s): %d events retry in %.1fs; further retries are summarised every %.0fs",
                self.name, reason, events, after, self.summary_every,
            )  # fmt: skip
            return
        self.retries += 1
        if now - self._last_line >= self.summary_every:
            self._last_line = now
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
            last = f"{reason}; {cause}" if cause else reason
            log.warning(
                "%s still failing since %s (%.0fs, %d retries, last %s): %d events held",
                self.name, started, now - self.since, self.retries, last, held,
            )  # fmt: skip

    def delivered(self) -> None:
        """A request was delivered: a failure, if there was one, is over."""
        self.last_answer = None
        if self.since is None:
            return
        now = self.clock()
        log.info("%s recovered after %.0fs failing (%d retries)", self.name, now - self.since, self.retries)
        self.since, self.retries = None, 0
