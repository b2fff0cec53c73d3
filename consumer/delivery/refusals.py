"""What a destination's answers say about our configuration: refused credentials, or a wrong URL.

Neither is about the events, so neither dead-letters them: the engine keeps retrying them within their
window (:mod:`.policy`), and :class:`Refusals` makes the problem impossible to miss instead:

* one error line when a destination starts refusing our credentials, or when its URL starts answering
  as no destination API does (naming the URL, masked by the sink, and what it answered), and one info
  line when that ends — once per change of state, never per request;
* the gauges ``currents_credentials_failing{destination}`` and
  ``currents_destination_misconfigured{destination,reason}`` (1 while it lasts, for the alerts);
* :attr:`Refusals.cause`, which the outage log's summaries repeat while the events are held.
"""

from __future__ import annotations

import logging

from consumer.ops.metrics import Metrics

log = logging.getLogger("currents.delivery")


class Refusals:
    """The credentials and endpoint state of one destination, its gauges and its log lines."""

    def __init__(self, name: str, metrics: Metrics) -> None:
        self.name = name
        self.metrics = metrics
        self.credentials = False
        """Whether the destination refuses our credentials."""
        self.endpoint: tuple[str, str] | None = None
        """``(masked URL, what it answered)`` while the URL does not answer as the destination API."""
        metrics.credentials_failing.labels(name).set(0)  # the series exists before anything fails

    @property
    def cause(self) -> str:
        """Why the events are held, as the outage log's lines say it (``""`` when neither applies)."""
        if self.endpoint is not None:
            url, answer = self.endpoint
            return f"wrong endpoint: {url} answered {answer}"
        return "credentials refused" if self.credentials else ""

    def update(self, credentials: bool | None, endpoint: str | None, answer: str) -> None:
        """Take what one answer proved (``None``: nothing); ``answer`` is its reason (``http_404``, ...)."""
        if credentials is not None and credentials != self.credentials:
            self.credentials = credentials
            self.metrics.credentials_failing.labels(self.name).set(1 if credentials else 0)
            if credentials:
                log.error(
                    "%s refuses our credentials; events are kept and retried within the window", self.name
                )
            else:
                log.info("%s accepts our credentials again", self.name)
        if endpoint is not None:
            self._endpoint((endpoint, answer) if endpoint else None)

    def _endpoint(self, state: tuple[str, str] | None) -> None:
        if state == self.endpoint:
            return
        gauge, previous = self.metrics.endpoint_misconfigured, self.endpoint
        if previous is not None:
            gauge.labels(self.name, previous[1]).set(0)
        if state is None:
            assert previous is not None
            log.info("%s endpoint %s answers as the destination's API again", self.name, previous[0])
        else:
            url, answer = state
            gauge.labels(self.name, answer).set(1)
            log.error(
                "%s endpoint %s answered %s, which the destination's API never does: the URL is wrong "
                "(check it); events are kept and retried within the window",
                self.name, url, answer,
            )  # fmt: skip
        self.endpoint = state
