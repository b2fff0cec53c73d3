"""The sink stage's contract: one attempt at a destination -> one typed outcome.

A :class:`Sink` makes exactly one exchange per :meth:`Sink.send` call and never retries, sleeps or
raises for trouble at the destination: every answer (and every transport failure) is classified into
one :data:`Outcome`. What to do about it (split, hold back, back off, dead-letter) is the delivery
engine's policy (:mod:`consumer.delivery.policy`). :class:`RequestCaps` is what a request of a
destination may carry. Secrets (API keys, passwords) never appear in an outcome: a URL an outcome
names is masked first (:func:`masked_url`).

Two answers say the *configuration* is wrong rather than the events, and hold the events (retried within
their window, never dead-lettered for it) while an alert fires: refused credentials
(``RetryLater.credentials``) and an answer that is not the destination API's (``RetryLater.endpoint``:
a 404 or 405, a redirect, a body the API never sends), which means the URL is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consumer.events import Queued


@dataclass(frozen=True, slots=True)
class Delivered:
    """Amplitude accepted the whole batch."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """400 naming some events: ``reasons[i]`` says why event ``i`` of the batch was refused."""

    reasons: dict[int, str]


@dataclass(frozen=True, slots=True)
class TooLarge:
    """413: the body was over Amplitude's size or count cap; split and resend."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """429 for some devices/users; nothing of the batch was ingested."""

    devices: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    events: frozenset[int] = frozenset()
    quota_devices: frozenset[str] = frozenset()
    quota_users: frozenset[str] = frozenset()
    after: float | None = None
    """The server's ``Retry-After`` (seconds), if it sent one: how long to hold the throttled back."""
    eps_threshold: float | None = None
    """The per-device/user rate Amplitude enforces (``eps_threshold`` in the body), when given."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Nothing (known to be) ingested; send the same batch again later.

    ``after`` is a server-requested delay (``Retry-After``) if any; ``credentials`` marks an invalid API
    key or a missing one (alert, keep the events within the retry window); ``endpoint`` is set (to the
    masked URL) when the answer is not the destination API's, so the URL is wrong (alert, keep the events
    within the retry window).
    """

    reason: str
    after: float | None = None
    credentials: bool = False
    endpoint: str = ""


@dataclass(frozen=True, slots=True)
class Fatal:
    """An answer that resending cannot fix; the whole batch goes to dead-letter with ``reason``."""

    reason: str
    detail: str = ""


Outcome = Delivered | Rejected | TooLarge | Throttled | RetryLater | Fatal


@dataclass
class SendResult:
    """An outcome with the HTTP status (``0`` for a transport failure) and the exchange's duration."""

    outcome: Outcome
    status: int
    seconds: float
    body_bytes: int = field(default=0)


def masked_url(url: str) -> str:
    """``url`` fit for a log line or a metric: user information and query replaced by ``***``.

    A URL may carry a password (``https://user:pass@host``) or a key (``?key=...``); what is left (scheme,
    host, port, path) is what an operator needs to see that the URL is wrong. Plain string work, so a URL
    no parser accepts (the very case to report) is masked too."""
    base, query, _ = url.partition("#")[0].partition("?")
    scheme, sep, rest = base.partition("://")
    if not sep:
        scheme, rest = "", base
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}{'?***' if query else ''}"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds (``None`` when absent or not a number of seconds).

    ``headers`` looks names up case-insensitively (``httpx.Headers``) or holds them in lower case."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Sink(Protocol):
    """What the engine needs from a destination: one attempt per call, never raising for HTTP trouble.

    ``overhead`` is what a request adds around its events (bytes), so that the byte cap bounds a whole
    request; ``close`` releases connections.
    """

    @property
    def overhead(self) -> int:
        """Bytes a request adds around its events."""
        ...

    async def close(self) -> None:
        """Release connections; no send follows."""
        ...

    async def send(self, batch: Sequence[Queued]) -> SendResult:
        """Send ``batch`` once and classify the answer."""
        ...


class RequestCaps(Protocol):
    """What one request may carry and how many go at once (``AmplitudeSettings`` is one)."""

    @property
    def events_cap(self) -> int:
        """Events per request."""
        ...

    @property
    def bytes_cap(self) -> int:
        """Bytes per request body, overhead included."""
        ...

    @property
    def batch_age(self) -> float:
        """Seconds a partial batch waits for more events."""
        ...

    @property
    def concurrency(self) -> int:
        """Requests in flight at once."""
        ...
