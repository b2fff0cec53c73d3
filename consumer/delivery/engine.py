"""The delivery engine: batch, throttle per device as requests leave, send concurrently, retry.

Contract
--------
* :meth:`DeliveryEngine.submit` takes one :class:`~consumer.events.Pending` event. It returns at once
  while the engine holds fewer than ``max_pending`` events / ``max_pending_bytes`` bytes, and otherwise
  waits until there is room: that wait *is* the back-pressure (a Kafka source stops fetching and pauses,
  a file replay stops reading). Memory is bounded whatever Amplitude does.
* Every submitted event ends exactly once, through ``on_done(events, outcome, reason)`` with outcome
  ``"delivered"`` or ``"dead_lettered"`` (after its dead-letter record is written): the events of a
  delivered request end in one call, a dead-lettered event in a call of its own. Nothing is dropped
  without a dead-letter record.
* Per-device and per-user rate tokens are taken when a request leaves, not when an event arrives, so
  batching, queueing and retries never bunch one device's events: consecutive requests carrying a
  device are at least ``1 / device_rate`` seconds apart (the parts of a request Amplitude refused as a
  whole — 400 for some events, 413, 429 for others — go again at once with the tokens they hold, since
  Amplitude counted none of it). Events of a device or user over its rate wait
  aside in a per-key queue and go out, one per token, as soon as it has one; every other event keeps
  flowing (one hot device never holds back the others). Events over the daily quota are dead-lettered
  (``daily_quota``). Events still failing when their retry window ends are dead-lettered
  (``retry_window_expired``).
* :meth:`drain` flushes and waits until nothing is pending (or a time bound passes); :meth:`close`
  stops the engine, abandoning whatever is still pending (its positions are never acknowledged, so a
  restart re-reads them).

Policy per outcome of one request (see :mod:`consumer.sinks.amplitude`): delivered -> done; rejected events ->
dead-letter exactly those, resend the rest at once; 413 -> split in halves (a single event ->
dead-letter ``payload_too_large``); 429 -> daily-quota identities dead-lettered, throttled identities
held back ``throttle_penalty`` seconds (or the server's ``Retry-After``), the rest resent at once;
retry-later -> the same batch again after capped exponential backoff with jitter (or the server's
``Retry-After``); fatal -> dead-letter.

A failing destination is probed, not hammered: after a retry-later answer no request starts until that
backoff has passed, then one at a time, with the backoff growing per failed probe; the first answer
about events (delivered, rejected, throttled, too large) reopens full concurrency. A destination that
is down therefore gets about one request per backoff interval, however many events wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import RetryCallState, wait_exponential, wait_random

from consumer.delivery.holdback import HoldBack
from consumer.delivery.throttle import ADMIT, DAILY_QUOTA, MIN_WAIT, ProjectLimiter, key_limiter
from consumer.events import Pending, json_payload, key_ids
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter
from consumer.settings import LimitSettings
from consumer.sinks.base import (
    Delivered,
    Fatal,
    Rejected,
    RequestCaps,
    RetryLater,
    SendResult,
    Sink,
    Throttled,
    TooLarge,
)

log = logging.getLogger("currents.delivery")

DoneCallback = Callable[[list[Pending], str, str], None]


def _attempt(n: int) -> RetryCallState:
    """A tenacity call state saying "attempt ``n``", to reuse tenacity's wait strategies."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # no Retrying needed
    state.attempt_number = n
    return state


class DeliveryEngine:
    """Batch, throttle, send and retry; see the module docstring for the contract.

    ``name`` is the destination's name: the ``destination`` label of the request metrics, and the
    ``destination`` field of dead-letter records. A ``limits.device_rate`` of
    :data:`~consumer.delivery.throttle.UNLIMITED` means the destination has no per-key limits (no per-key
    state).
    """

    def __init__(
        self,
        caps: RequestCaps,
        limits: LimitSettings,
        sink: Sink,
        dead_letter: DeadLetterWriter,
        on_done: DoneCallback,
        metrics: Metrics,
        *,
        name: str = "amplitude",
        decode: Callable[[bytes], dict[str, Any]] = json_payload,
        throttle_penalty: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.caps = caps
        self.name = name
        self.decode = decode
        self.limits = limits
        self.sink = sink
        self.dead = dead_letter
        self.on_done = on_done
        self.metrics = metrics
        self.penalty = limits.throttle_penalty if throttle_penalty is None else throttle_penalty
        self.clock = clock
        self.limiter = key_limiter(limits.device_rate, limits.device_daily_limit)
        # 0.5 s doubling per attempt up to --max-backoff, plus up to 1 s of jitter (capped again where used)
        self._backoff = wait_exponential(multiplier=0.5, max=limits.max_backoff) + wait_random(0, 1.0)
        # What a request body adds around its events, so that ``bytes_cap`` bounds the whole body.
        self._overhead = sink.overhead
        self._seq = itertools.count()
        self._held = HoldBack()
        self._retries: list[tuple[float, int, list[Pending], int]] = []
        # (batch, attempt, admitted): an admitted batch already holds its tokens (a part of a request
        # Amplitude refused as a whole, resent at once), so it is sent as it is.
        self._ready: deque[tuple[list[Pending], int, bool]] = deque()
        self._batch: list[Pending] = []
        self._batch_bytes = 0
        self._batch_started = 0.0
        # Events released from held queues: they go out at the next free request slot, before any
        # queued batch, so that a hot key's token time is the time Amplitude sees its event.
        self._hot: deque[Pending] = deque()
        self._live: dict[int, Pending] = {}
        self._bytes = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flush_now = False
        # While requests keep failing (5xx, timeouts, credentials, project-wide 429): no request starts
        # before ``_gate``, and one at a time (a probe), so a destination that is down gets one request
        # per backoff interval instead of one per waiting batch; any answer about events reopens it.
        self._failures = 0
        self._gate = 0.0
        self._pump: asyncio.Task[None] | None = None
        self.project = ProjectLimiter(limits.project_rate)
        self.last_progress = clock()
        self.credentials_failing = False
        metrics.credentials_failing.labels(name).set(0)  # the series exists before anything fails

    # -- input -----------------------------------------------------------------------------------
    async def submit(self, item: Pending) -> None:
        """Take one event; waits while the engine is full (back-pressure)."""
        while not self.offer(item):
            await self._room.wait()

    def offer(self, item: Pending) -> bool:
        """Take one event if there is room (``True``), else take nothing (``False``); never waits."""
        return self.offer_many((item,)) == 1

    def offer_many(self, items: Sequence[Pending], start: int = 0) -> int:
        """Take ``items[start:]`` in order while there is room; returns the index of the first one not
        taken (``len(items)`` when all were). Never waits: the synchronous form of :meth:`submit` for
        the hot path, with the per-call work (clock, wake-up) done once for all of them.
        """
        if not self._room.is_set():
            return start
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="delivery-pump")
        live, limits = self._live, self.limits
        now = self.clock()
        end = len(items)
        i = start
        while i < end:
            item = items[i]
            i += 1
            live[id(item)] = item
            self._bytes += item.size
            full = len(live) >= limits.max_pending or self._bytes >= limits.max_pending_bytes
            if full:
                self._room.clear()
            self._admit(item, now)  # may end the item at once (a payload too large for any request)
            if full:
                break
        # Only the state after the loop is seen (nothing else runs meanwhile): idle iff nothing is live.
        if live:
            self._idle.clear()
        self._wake.set()
        return i

    @property
    def has_room(self) -> bool:
        """Whether :meth:`submit` would return without waiting."""
        return self._room.is_set()

    @property
    def pending(self) -> int:
        """Events taken and not yet done."""
        return len(self._live)

    def oldest_pending_age(self) -> float:
        """Seconds since the oldest pending event was first taken (0 when none)."""
        for item in self._live.values():
            return max(0.0, self.clock() - item.first_attempt)
        return 0.0

    def throttled_keys(self) -> int:
        """Devices/users with events waiting aside."""
        return len(self._held)

    # -- held queues -----------------------------------------------------------------------------
    def _admit(self, item: Pending, now: float) -> None:
        # behind the device's waiting events if it has any, keeping its events in order
        if not self._held.append(item.keys[0], item):
            self._add(item, now)

    def _release(self, key: str, now: float) -> None:
        """``key``'s timer: send the head of its queue if it has a token now, else wait again.

        One event per token: the next is looked at one token later, without waiting for this one to
        leave, so a hot key keeps its full rate however long requests take. Its token is taken when
        its request leaves; one that leaves too early is turned back to the queue's front.
        """
        queue = self._held.queue(key)
        while queue:
            item = queue[0]
            if self._expired(item, now):
                queue.popleft()
                self._dead(item, "retry_window_expired")
                continue
            verdict = self.limiter.check(item.keys, now)
            if verdict == DAILY_QUOTA:
                queue.popleft()
                self._dead(item, "daily_quota")
                continue
            if verdict > 0:
                self._held.arm(key, now + verdict)
                return
            queue.popleft()
            if self._fits(item):
                self._hot.append(item)
                if queue:
                    self._held.arm(key, now + max(MIN_WAIT, self.limiter.check(item.keys, now)))
                break
        self._held.forget_if_empty(key)

    def _expired(self, item: Pending, now: float) -> bool:
        return now - item.first_attempt >= self.limits.retry_window

    # -- batching --------------------------------------------------------------------------------
    def _fits(self, item: Pending) -> bool:
        """Whether ``item`` fits a request at all; if not it is dead-lettered."""
        if item.size + self._overhead > self.caps.bytes_cap:
            self._dead(item, "payload_too_large", f"{item.size} bytes")
            return False
        return True

    def _add(self, item: Pending, now: float) -> None:
        """Put ``item`` in the open batch (sealing it first if ``item`` would not fit)."""
        if not self._fits(item):
            return
        if self._batch and (
            len(self._batch) >= self.caps.events_cap
            or self._overhead + self._batch_bytes + item.size > self.caps.bytes_cap
        ):
            self._seal()
        if not self._batch:
            self._batch_started = now
        self._batch.append(item)
        self._batch_bytes += item.size

    def _seal(self) -> None:
        if self._batch:
            self._ready.append((self._batch, 0, False))
            self._batch = []
            self._batch_bytes = 0

    def _next(self) -> tuple[list[Pending], int, bool] | None:
        """The next request to send: released events first (up to the request caps), else a queued one."""
        hot = self._hot
        if not hot:
            return self._ready[0] if self._ready else None
        batch: list[Pending] = []
        size = self._overhead
        for item in hot:
            if len(batch) >= self.caps.events_cap or size + item.size > self.caps.bytes_cap:
                break
            batch.append(item)
            size += item.size
        return batch, 0, False

    def _pop(self, batch: list[Pending]) -> None:
        """Remove the request :meth:`_next` gave from where it waited."""
        if self._hot:
            for _ in batch:
                self._hot.popleft()
        else:
            self._ready.popleft()

    def _take_tokens(self, batch: list[Pending], now: float) -> list[Pending]:
        """The events of ``batch`` whose keys have a token now (taken); the others wait aside."""
        send: list[Pending] = []
        denied: dict[str, tuple[list[Pending], float]] = {}
        verdicts = self.limiter.take_many([item.keys for item in batch], now)
        for item, verdict in zip(batch, verdicts, strict=True):
            if verdict == ADMIT:
                send.append(item)
            elif verdict == DAILY_QUOTA:
                self._dead(item, "daily_quota")
            else:
                items, wait = denied.get(item.keys[0], ([], 0.0))
                items.append(item)
                denied[item.keys[0]] = (items, max(wait, verdict))
        for key, (items, wait) in denied.items():
            self._held.hold(key, items, now + wait)
        # A key whose released event just left (or ended) gets its next timer now (no key waits aside
        # in the usual case: then there is nothing to look at).
        if self._held:
            for key in {item.keys[0] for item in batch}:
                queue = self._held.queue(key)
                if queue and not self._held.armed(key):
                    self._held.arm(key, now + max(0.0, self.limiter.check(queue[0].keys, now)))
        return send

    # -- the pump --------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._turn()
            except Exception:  # a bug in one turn (or in a callback) must not stop delivery for good
                log.exception("%s delivery pump: a turn failed; going on", self.name)
                await asyncio.sleep(0.1)  # back off: a turn that keeps failing must not spin

    async def _turn(self) -> None:
        """One turn of the pump: release due keys and retries, start requests, wait for a reason to look
        again (a wake-up or the earliest deadline)."""
        now = self.clock()
        for key in self._held.unarmed():
            self._held.arm(key, now)  # never leave a waiting device without a timer
        for key in self._held.due(now):
            self._release(key, now)
        while self._retries and self._retries[0][0] <= now:
            _, _, batch, attempt = heapq.heappop(self._retries)
            live = [p for p in batch if not self._expired_dead(p, now)]
            if live:
                self._ready.append((live, attempt, False))
        if self._batch and (self._flush_now or now - self._batch_started >= self.caps.batch_age):
            self._seal()
        project_wait = 0.0
        slots = 0 if now < self._gate else 1 if self._failures else self.caps.concurrency
        while len(self._inflight) < slots and (nxt := self._next()) is not None:
            batch, attempt, admitted = nxt
            project_wait = self.project.take(len(batch), now)
            if project_wait > 0:
                break
            self._pop(batch)
            task = asyncio.create_task(self._send(batch, attempt, admitted))
            self._inflight.add(task)
            task.add_done_callback(self._sent)
        deadline = min(
            self._held.next_due(),
            self._retries[0][0] if self._retries else float("inf"),
            self._batch_started + self.caps.batch_age if self._batch else float("inf"),
            now + project_wait if project_wait > 0 else float("inf"),
            now + 0.05 if self._hot and len(self._inflight) < slots else float("inf"),
            self._gate if self._gate > now and (self._ready or self._hot) else float("inf"),
        )
        self._wake.clear()
        timeout = None if deadline == float("inf") else max(0.0, deadline - self.clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _sent(self, task: asyncio.Task[None]) -> None:
        # The pump must look again once a send slot is really free: a wake-up sent from inside the
        # task arrives before the task counts as done, which once left batches waiting forever.
        self._inflight.discard(task)
        self._wake.set()

    def _expired_dead(self, item: Pending, now: float) -> bool:
        if self._expired(item, now):
            self._dead(item, "retry_window_expired")
            return True
        return False

    async def _send(self, queued: list[Pending], attempt: int, admitted: bool) -> None:
        # Tokens are taken as the request starts, not when it was queued: a busy event loop between
        # the two would otherwise bunch one device's requests together on the wire.
        batch = queued if admitted else self._take_tokens(queued, self.clock())
        self.project.refund(len(queued) - len(batch))
        if not batch:
            return
        try:
            result = await self.sink.send(batch)
        except Exception as exc:  # a bug below must not lose the batch: retry it like a 5xx
            log.exception("sink raised; the batch will be retried")
            result = SendResult(RetryLater(f"sink_error:{type(exc).__name__}"), 0, 0.0)
        self.metrics.requests.labels(self.name, str(result.status)).inc()
        self.metrics.request_seconds.labels(self.name).observe(result.seconds)
        self.metrics.request_bytes.labels(self.name).inc(result.body_bytes)
        self._handle(batch, attempt, result)
        self._wake.set()

    # Complexity: delivery/ is being rewritten on another branch; split there, not here.
    def _handle(self, batch: list[Pending], attempt: int, result: SendResult) -> None:  # noqa: C901
        outcome = result.outcome
        now = self.clock()
        if isinstance(outcome, Delivered | Rejected | Throttled):
            # Only an answer about the events proves the key was accepted; a 5xx or a 413 does not.
            self._set_credentials(False)
        if not isinstance(outcome, RetryLater):
            self._failures = 0
            self._gate = 0.0
        if isinstance(outcome, Delivered):
            self._finish(batch, "delivered", "")
            self.last_progress = now
        elif isinstance(outcome, Rejected):
            rest = [p for i, p in enumerate(batch) if i not in outcome.reasons]
            for i, reason in sorted(outcome.reasons.items()):
                self._dead(batch[i], reason)
            if rest:
                # Amplitude took none of the request: the rest keeps its tokens and goes at once.
                self._ready.appendleft((rest, attempt, True))
        elif isinstance(outcome, TooLarge):
            if len(batch) == 1:
                self._dead(batch[0], "payload_too_large", "413 for a single event")
            else:
                half = len(batch) // 2
                self._ready.appendleft((batch[half:], attempt, True))
                self._ready.appendleft((batch[:half], attempt, True))
        elif isinstance(outcome, Throttled):
            self._throttled(batch, outcome, now)
        elif isinstance(outcome, RetryLater):
            if outcome.credentials:
                self._set_credentials(True)
            if now >= self._gate:  # a probe (or the first failure); requests already in flight do not count
                self._failures += 1
            tries = max(attempt + 1, self._failures)
            delay = outcome.after if outcome.after is not None else self._backoff(_attempt(tries))
            delay = min(delay, self.limits.max_backoff) if outcome.after is None else delay
            due = min(now + delay, min(p.first_attempt for p in batch) + self.limits.retry_window)
            self._gate = max(self._gate, due)
            heapq.heappush(self._retries, (due, next(self._seq), batch, attempt + 1))
            log.warning(
                "%s request failed (%s); %d events retry in %.1fs",
                self.name,
                outcome.reason,
                len(batch),
                due - now,
            )
        elif isinstance(outcome, Fatal):
            for item in batch:
                self._dead(item, outcome.reason, outcome.detail)

    def _throttled(self, batch: list[Pending], outcome: Throttled, now: float) -> None:
        penalty = outcome.after if outcome.after is not None else self.penalty
        resend: list[Pending] = []
        held: dict[str, list[Pending]] = {}
        for i, item in enumerate(batch):
            device, user = key_ids(item.keys)
            if device in outcome.quota_devices or user in outcome.quota_users:
                self._dead(item, "daily_quota")
                continue
            named = _named_keys(item, outcome)
            if named or i in outcome.events:
                for key in named or item.keys:  # only listed by index: every key may be the hot one
                    self.limiter.penalize(key, penalty, now, outcome.eps_threshold)
                held.setdefault(item.keys[0], []).append(item)
            else:
                resend.append(item)
        for key, items in held.items():
            self._held.hold(key, items, now + penalty)
        if held:
            log.info(
                "%s throttled %d device(s)/user(s): their %d events wait %.1fs, then go slower",
                self.name,
                len(held),
                sum(len(items) for items in held.values()),
                penalty,
            )
        if resend:
            self._ready.appendleft((resend, 0, True))

    def _set_credentials(self, failing: bool) -> None:
        if failing != self.credentials_failing:
            self.credentials_failing = failing
            self.metrics.credentials_failing.labels(self.name).set(1 if failing else 0)
            if failing:
                log.error(
                    "%s refuses our credentials; events are kept and retried within the window", self.name
                )
            else:
                log.info("%s accepts our credentials again", self.name)

    # -- endings ---------------------------------------------------------------------------------
    def _dead(self, item: Pending, reason: str, detail: str = "") -> None:
        self.dead.write(
            reason,
            item.position,
            destination=self.name,
            event=self.decode(item.encoded),
            event_type=item.event_type,
            detail=detail,
            first_attempt=item.first_attempt,
        )
        self._finish([item], "dead_lettered", reason)

    def _finish(self, items: list[Pending], outcome: str, reason: str) -> None:
        live = self._live
        ended = [item for item in items if live.pop(id(item), None) is not None]
        if not ended:
            return
        self._bytes -= sum([item.size for item in ended])
        if len(live) < self.limits.max_pending and self._bytes < self.limits.max_pending_bytes:
            self._room.set()
        if not live:
            self._idle.set()
        try:
            self.on_done(ended, outcome, reason)
        except Exception:  # the events have ended either way; a failing callback must not strand others
            log.exception("%s: the callback for %d ended events failed", self.name, len(ended))

    def flush(self) -> None:
        """Send the partial batch now instead of waiting for its age."""
        self._seal()
        self._wake.set()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Send everything now (no batch age) and wait until nothing is pending; ``False`` on timeout."""
        self.flush()
        self._flush_now = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._flush_now = False

    async def close(self) -> None:
        """Stop the pump and cancel requests in flight; pending events are abandoned (not acknowledged)."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)


def _named_keys(item: Pending, outcome: Throttled) -> list[str]:
    """The keys of ``item`` that a 429 names as throttled (its device, its user, or both)."""
    device, user = key_ids(item.keys)
    named = set()
    if device and device in outcome.devices:
        named.add(f"d:{device}")
    if user and user in outcome.users:
        named.add(f"u:{user}")
    return [key for key in item.keys if key in named]
