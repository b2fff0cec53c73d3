"""The retry policy: what the engine does with each outcome of one request, decided without I/O.

:meth:`RetryPolicy.decide` turns one :data:`~consumer.sinks.base.Outcome` for a batch into a
:class:`Decision` that the engine applies (it writes the dead letters, fills the queues, logs):

* delivered -> the batch is done;
* rejected events -> dead-letter exactly those, resend the rest at once;
* 413 -> split in halves, resent at once (a single event -> dead-letter ``payload_too_large``);
* 429 -> daily-quota identities dead-lettered, throttled identities penalized and held back
  ``throttle_penalty`` seconds (or the server's ``Retry-After``), the rest resent at once;
* retry-later -> the same batch again after capped exponential back-off with jitter (or the server's
  ``Retry-After``), never later than the end of its oldest event's retry window;
* fatal -> dead-letter the batch.

Refused credentials and an endpoint that does not answer as the destination's API (a wrong URL) are
retry-later answers too: the events are held within their window, never dead-lettered for it, and the
decision says so (:attr:`Decision.credentials`, :attr:`Decision.endpoint`) for the engine's alert.

What is resent at once keeps the rate tokens it holds ("admitted"): Amplitude counted none of a request
it refused as a whole.

**Probing.** A failing destination is probed, not hammered: after a retry-later answer no request
starts until that back-off has passed (:attr:`RetryPolicy.gate`), then one at a time
(:meth:`RetryPolicy.slots`), the back-off growing per failed probe; the first answer about events
(delivered, rejected, throttled, too large) reopens full concurrency. A destination that is down gets
about one request per back-off interval, however many events wait.

**Why tenacity this way.** The back-off is tenacity's ``wait_exponential`` plus ``wait_random`` jitter,
held by a :class:`tenacity.Retrying` and called, as tenacity itself calls it, with a
:class:`tenacity.RetryCallState` of that ``Retrying`` whose ``attempt_number`` says which attempt
comes next. ``Retrying``/``AsyncRetrying`` are not used to run the attempts: they sleep inside the
caller, so each failing batch would keep a coroutine and a request slot asleep, the shared probe gate
could not pace all batches together, and the retry window would need a stop condition per batch. The
engine instead keeps failed batches on a due-time heap served by its one pump; tenacity supplies the
delays. Everything here takes ``now`` from the caller (the engine's injected clock).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, stop_never, wait_exponential, wait_random
from tenacity.wait import wait_base

from consumer.events import Pending, Queued, key_ids
from consumer.sinks.base import Delivered, Fatal, Outcome, Rejected, RetryLater, Throttled, TooLarge


def default_wait(max_backoff: float) -> wait_base:
    """0.5 s doubling per attempt up to ``max_backoff``, plus up to 1 s of jitter (capped again in use)."""
    return wait_exponential(multiplier=0.5, max=max_backoff) + wait_random(0, 1.0)


class Backoff:
    """Seconds to wait before attempt ``n`` (1-based) after a failure, from a tenacity wait strategy."""

    def __init__(self, wait: wait_base, cap: float) -> None:
        self.cap = cap
        # A real Retrying so the call state is tenacity's own; it never runs (and so never sleeps).
        self._retrying = Retrying(wait=wait, stop=stop_never, sleep=_never_sleep)

    def delay(self, attempt: int) -> float:
        """The strategy's wait before ``attempt``, capped at ``cap`` (jitter included)."""
        state = RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return min(float(self._retrying.wait(state)), self.cap)


def _never_sleep(seconds: float) -> None:  # pragma: no cover - the Retrying above is never run
    raise AssertionError("the delivery engine schedules retries itself")


@dataclass(frozen=True, slots=True, order=True)
class Retry:
    """Send ``batch`` again at ``due`` as attempt ``attempt`` (``after`` seconds from the decision), after
    the answer ``reason`` with HTTP ``status`` (0: none).

    Retries order by ``due``, then by ``seq``, the order their policy decided them in (no two are
    equal): the engine keeps them on a heap."""

    due: float
    seq: int
    batch: list[Pending] = field(compare=False)
    attempt: int = field(compare=False)
    after: float = field(compare=False)
    reason: str = field(compare=False)
    status: int = field(compare=False, default=0)

    @property
    def last_answer(self) -> tuple[str, int]:
        """The answer that sent the batch here: (reason, HTTP status)."""
        return self.reason, self.status


@dataclass(slots=True)
class Decision:
    """What to do with the events of one answered request; every event of the batch is in exactly one
    of ``delivered``, ``dead``, ``resend``, ``held`` and ``retry``."""

    delivered: Sequence[Queued] = field(default_factory=list)
    dead: list[tuple[Pending, str, str]] = field(default_factory=list)
    """(event, reason, detail) to dead-letter, in order."""
    resend: list[tuple[list[Pending], int]] = field(default_factory=list)
    """(batch, attempt) to send at once with the tokens they hold, first one first."""
    held: dict[str, list[Pending]] = field(default_factory=dict)
    """Events held back under their first key until ``hold_until``."""
    hold_until: float = 0.0
    penalties: list[tuple[str, float, float | None]] = field(default_factory=list)
    """(key, seconds, Amplitude's rate threshold) to slow down after a 429."""
    retry: Retry | None = None
    credentials: bool | None = None
    """``True``: the destination refuses our credentials; ``False``: it accepts them; ``None``: unknown."""
    endpoint: str | None = None
    """The (masked) URL when its answer was not the destination API's (the URL is wrong); ``""`` when the
    answer was the API's; ``None``: unknown (no answer, or one any server could give)."""


class RetryPolicy:
    """Decisions per outcome, the retry window and the probe gate of one destination.

    ``penalty`` is how long a throttled identity waits when the server gives no ``Retry-After``;
    ``retry_window`` is how long after its first attempt an event may still be sent.
    """

    def __init__(
        self, *, retry_window: float, max_backoff: float, penalty: float, wait: wait_base | None = None
    ) -> None:
        self.retry_window = retry_window
        self.penalty = penalty
        self.backoff = Backoff(default_wait(max_backoff) if wait is None else wait, max_backoff)
        self.failures = 0
        """Failed probes in a row (0 while the destination answers about events)."""
        self.gate = 0.0
        """No request starts before this time (0: open)."""
        self._seq = itertools.count()

    def expired(self, item: Pending, now: float) -> bool:
        """Whether ``item``'s retry window has ended at ``now``."""
        return now - item.first_attempt >= self.retry_window

    def slots(self, now: float, concurrency: int) -> int:
        """Requests that may be in flight now: none before the gate, one (a probe) while failing."""
        return 0 if now < self.gate else 1 if self.failures else concurrency

    def delivered(self, batch: Sequence[Queued]) -> Decision:
        """The decision for ``batch`` (payloads, runs of them) delivered whole: the fast path of
        :meth:`decide`, which looks at no payload."""
        d = Decision(delivered=batch)
        _configuration(d, Delivered())
        self.failures = 0
        self.gate = 0.0
        return d

    def decide(
        self, batch: list[Pending], attempt: int, outcome: Outcome, now: float, status: int = 0
    ) -> Decision:
        """The decision for ``batch`` (sent as ``attempt``) answered with ``outcome`` (HTTP ``status``,
        0 for none) at ``now``."""
        if isinstance(outcome, Delivered):
            return self.delivered(batch)
        d = Decision()
        _configuration(d, outcome)
        if not isinstance(outcome, RetryLater):
            self.failures = 0
            self.gate = 0.0
        if isinstance(outcome, Rejected):
            _rejected(d, batch, attempt, outcome)
        elif isinstance(outcome, TooLarge):
            _too_large(d, batch, attempt)
        elif isinstance(outcome, Throttled):
            self._throttled(d, batch, outcome, now)
        elif isinstance(outcome, RetryLater):
            d.retry = self._retry_later(batch, attempt, outcome, now, status)
        elif isinstance(outcome, Fatal):
            d.dead = [(item, outcome.reason, outcome.detail) for item in batch]
        return d

    def _retry_later(
        self, batch: list[Pending], attempt: int, outcome: RetryLater, now: float, status: int
    ) -> Retry:
        if now >= self.gate:  # a probe (or the first failure); requests already in flight do not count
            self.failures += 1
        tries = max(attempt + 1, self.failures)
        delay = outcome.after if outcome.after is not None else self.backoff.delay(tries)
        due = min(now + delay, min(p.first_attempt for p in batch) + self.retry_window)
        self.gate = max(self.gate, due)
        # A window already over gives a due time in the past: the batch is looked at again at once.
        return Retry(due, next(self._seq), batch, attempt + 1, max(0.0, due - now), outcome.reason, status)

    def _throttled(self, d: Decision, batch: list[Pending], outcome: Throttled, now: float) -> None:
        penalty = outcome.after if outcome.after is not None else self.penalty
        resend: list[Pending] = []
        for i, item in enumerate(batch):
            device, user = key_ids(item.keys)
            if device in outcome.quota_devices or user in outcome.quota_users:
                d.dead.append((item, "daily_quota", ""))
                continue
            named = named_keys(item.keys, outcome)
            if named or i in outcome.events:
                for key in named or item.keys:  # only listed by index: every key may be the hot one
                    d.penalties.append((key, penalty, outcome.eps_threshold))
                d.held.setdefault(item.keys[0], []).append(item)
            else:
                resend.append(item)
        d.hold_until = now + penalty
        if resend:
            d.resend.append((resend, 0))


def _configuration(d: Decision, outcome: Outcome) -> None:
    """What ``outcome`` proves about our credentials and the endpoint URL."""
    if isinstance(outcome, Delivered | Rejected | Throttled):
        # Only an answer about the events proves the key was accepted; a 5xx or a 413 does not.
        d.credentials, d.endpoint = False, ""
    elif isinstance(outcome, RetryLater) and outcome.credentials:
        d.credentials, d.endpoint = True, ""  # the API itself refused the key: the URL is right
    elif isinstance(outcome, RetryLater) and outcome.endpoint:
        d.endpoint = outcome.endpoint


def _rejected(d: Decision, batch: list[Pending], attempt: int, outcome: Rejected) -> None:
    """Dead-letter exactly the events a 400 named; the rest go again at once."""
    d.dead = [(batch[i], reason, "") for i, reason in sorted(outcome.reasons.items())]
    rest = [p for i, p in enumerate(batch) if i not in outcome.reasons]
    if rest:
        d.resend.append((rest, attempt))


def _too_large(d: Decision, batch: list[Pending], attempt: int) -> None:
    """413: split in halves, resent at once; a single event is dead-lettered."""
    if len(batch) == 1:
        d.dead.append((batch[0], "payload_too_large", "413 for a single event"))
    else:
        half = len(batch) // 2
        d.resend += [(batch[:half], attempt), (batch[half:], attempt)]


def named_keys(keys: Sequence[str], outcome: Throttled) -> list[str]:
    """The ``keys`` of one event that a 429 names as throttled (its device, its user, or both)."""
    device, user = key_ids(tuple(keys))
    named = set()
    if device and device in outcome.devices:
        named.add(f"d:{device}")
    if user and user in outcome.users:
        named.add(f"u:{user}")
    return [key for key in keys if key in named]
