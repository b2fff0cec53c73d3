"""The delivery engine: throttle per device, batch, send concurrently, apply the retry policy.

Contract
--------
* :meth:`DeliveryEngine.submit` takes one :class:`~consumer.events.Pending` event. It returns at once
  while the engine holds fewer than ``max_pending`` events / ``max_pending_bytes`` bytes, and otherwise
  waits until there is room: that wait *is* the back-pressure (a Kafka source stops fetching and pauses,
  a file replay stops reading). Memory is bounded whatever Amplitude does.
* Every submitted event ends exactly once, through ``on_done(event, outcome, reason)`` with outcome
  ``"delivered"`` or ``"dead_lettered"`` (after its dead-letter record is written). Nothing is dropped
  without a dead-letter record.
* Events of a device or user over its rate wait aside in a per-key queue; every other event keeps
  flowing (one hot device never holds back the others). Events over the daily quota are dead-lettered
  (``daily_quota``). Events still failing when their retry window ends are dead-lettered
  (``retry_window_expired``).
* :meth:`drain` flushes and waits until nothing is pending (or a time bound passes); :meth:`close`
  stops the engine, abandoning whatever is still pending (its positions are never acknowledged, so a
  restart re-reads them).

Policy per outcome of one request (see :mod:`consumer.sink`): delivered -> done; rejected events ->
dead-letter exactly those, resend the rest at once; 413 -> split in halves (a single event ->
dead-letter ``payload_too_large``); 429 -> daily-quota identities dead-lettered, throttled identities
held back ``throttle_penalty`` seconds, the rest resent at once; retry-later -> the same batch again
after capped exponential backoff with jitter (or the server's ``Retry-After``); fatal -> dead-letter.
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
from typing import Protocol

from tenacity import RetryCallState, wait_exponential_jitter

from consumer.deadletter import DeadLetterWriter
from consumer.events import Pending
from consumer.metrics import Metrics
from consumer.settings import AmplitudeSettings, LimitSettings
from consumer.sink import Delivered, Fatal, Rejected, RetryLater, SendResult, Throttled, TooLarge
from consumer.throttle import ADMIT, DAILY_QUOTA, KeyLimiter

log = logging.getLogger("currents.delivery")

DoneCallback = Callable[[Pending, str, str], None]


class Sink(Protocol):
    """What the engine needs from a destination: one attempt per call, never raising for HTTP trouble."""

    async def send(self, batch: Sequence[Pending]) -> SendResult:
        """Send ``batch`` once and classify the answer."""
        ...


def _attempt(n: int) -> RetryCallState:
    """A tenacity call state saying "attempt ``n``", to reuse tenacity's wait strategies."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # no Retrying needed
    state.attempt_number = n
    return state


class DeliveryEngine:
    """Throttle, batch, send and retry; see the module docstring for the contract."""

    def __init__(
        self,
        amplitude: AmplitudeSettings,
        limits: LimitSettings,
        sink: Sink,
        dead_letter: DeadLetterWriter,
        on_done: DoneCallback,
        metrics: Metrics,
        *,
        throttle_penalty: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.amp = amplitude
        self.limits = limits
        self.sink = sink
        self.dead = dead_letter
        self.on_done = on_done
        self.metrics = metrics
        self.penalty = throttle_penalty
        self.clock = clock
        self.limiter = KeyLimiter(limits.device_rate, limits.device_daily_limit)
        self._backoff = wait_exponential_jitter(initial=0.5, max=limits.max_backoff, jitter=1.0)
        self._seq = itertools.count()
        self._held: dict[str, deque[Pending]] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._retries: list[tuple[float, int, list[Pending], int]] = []
        self._ready: deque[tuple[list[Pending], int]] = deque()
        self._batch: list[Pending] = []
        self._batch_bytes = 0
        self._batch_started = 0.0
        self._live: dict[int, Pending] = {}
        self._bytes = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flush_now = False
        self._pump: asyncio.Task[None] | None = None
        self._project_tokens = 0.0
        self._project_at = 0.0
        self.last_progress = clock()
        self.credentials_failing = False

    # -- input -----------------------------------------------------------------------------------
    async def submit(self, item: Pending) -> None:
        """Take one event; waits while the engine is full (back-pressure)."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="delivery-pump")
        while not self._room.is_set():
            await self._room.wait()
        self._live[id(item)] = item
        self._bytes += item.size
        self._idle.clear()
        if len(self._live) >= self.limits.max_pending or self._bytes >= self.limits.max_pending_bytes:
            self._room.clear()
        self._admit(item, self.clock())
        self._wake.set()

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

    # -- admission and throttling ----------------------------------------------------------------
    def _admit(self, item: Pending, now: float) -> None:
        key = item.keys[0]
        queue = self._held.get(key)
        if queue is not None:
            queue.append(item)  # keep each device's events in order behind the ones waiting
            return
        verdict = self.limiter.take(item.keys, now)
        if verdict == ADMIT:
            self._add(item, now)
        elif verdict == DAILY_QUOTA:
            self._dead(item, "daily_quota")
        else:
            self._hold(key, item, now + verdict)

    def _hold(self, key: str, item: Pending, ready_at: float) -> None:
        queue = self._held.get(key)
        if queue is None:
            queue = self._held[key] = deque()
            heapq.heappush(self._timers, (ready_at, next(self._seq), key))
        queue.append(item)

    def _release(self, key: str, now: float) -> None:
        queue = self._held.get(key)
        while queue:
            item = queue[0]
            if self._expired(item, now):
                queue.popleft()
                self._dead(item, "retry_window_expired")
                continue
            verdict = self.limiter.take(item.keys, now)
            if verdict == ADMIT:
                queue.popleft()
                self._add(item, now)
            elif verdict == DAILY_QUOTA:
                queue.popleft()
                self._dead(item, "daily_quota")
            else:
                heapq.heappush(self._timers, (now + verdict, next(self._seq), key))
                return
        self._held.pop(key, None)

    def _expired(self, item: Pending, now: float) -> bool:
        return now - item.first_attempt >= self.limits.retry_window

    # -- batching --------------------------------------------------------------------------------
    def _add(self, item: Pending, now: float) -> None:
        if item.size + 64 > self.amp.bytes_cap:
            self._dead(item, "payload_too_large", f"{item.size} bytes")
            return
        if self._batch and (
            len(self._batch) >= self.amp.events_cap or self._batch_bytes + item.size > self.amp.bytes_cap
        ):
            self._seal()
        if not self._batch:
            self._batch_started = now
        self._batch.append(item)
        self._batch_bytes += item.size

    def _seal(self) -> None:
        if self._batch:
            self._ready.append((self._batch, 0))
            self._batch = []
            self._batch_bytes = 0

    # -- the pump --------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                self._release(key, now)
            while self._retries and self._retries[0][0] <= now:
                _, _, batch, attempt = heapq.heappop(self._retries)
                live = [p for p in batch if not self._expired_dead(p, now)]
                if live:
                    self._ready.append((live, attempt))
            if self._batch and (self._flush_now or now - self._batch_started >= self.amp.batch_age):
                self._seal()
            project_wait = 0.0
            while self._ready and len(self._inflight) < self.amp.concurrency:
                project_wait = self._project_take(len(self._ready[0][0]), now)
                if project_wait > 0:
                    break
                batch, attempt = self._ready.popleft()
                task = asyncio.create_task(self._send(batch, attempt))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            deadline = min(
                self._timers[0][0] if self._timers else float("inf"),
                self._retries[0][0] if self._retries else float("inf"),
                self._batch_started + self.amp.batch_age if self._batch else float("inf"),
                now + project_wait if project_wait > 0 else float("inf"),
            )
            self._wake.clear()
            timeout = None if deadline == float("inf") else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _project_take(self, n: int, now: float) -> float:
        rate = self.limits.project_rate
        if rate <= 0:
            return 0.0
        self._project_tokens = min(rate, self._project_tokens + (now - self._project_at) * rate)
        self._project_at = now
        if self._project_tokens >= min(n, rate):
            self._project_tokens -= n
            return 0.0
        return (min(n, rate) - self._project_tokens) / rate

    def _expired_dead(self, item: Pending, now: float) -> bool:
        if self._expired(item, now):
            self._dead(item, "retry_window_expired")
            return True
        return False

    async def _send(self, batch: list[Pending], attempt: int) -> None:
        try:
            result = await self.sink.send(batch)
        except Exception as exc:  # a bug below must not lose the batch: retry it like a 5xx
            log.exception("sink raised; the batch will be retried")
            result = SendResult(RetryLater(f"sink_error:{type(exc).__name__}"), 0, 0.0)
        self.metrics.requests.labels(str(result.status)).inc()
        self.metrics.request_seconds.observe(result.seconds)
        self.metrics.request_bytes.inc(result.body_bytes)
        self._handle(batch, attempt, result)
        self._wake.set()

    def _handle(self, batch: list[Pending], attempt: int, result: SendResult) -> None:
        outcome = result.outcome
        now = self.clock()
        if not isinstance(outcome, RetryLater) or not outcome.credentials:
            self._set_credentials(False)
        if isinstance(outcome, Delivered):
            for item in batch:
                self._finish(item, "delivered", "")
            self.last_progress = now
        elif isinstance(outcome, Rejected):
            rest = [p for i, p in enumerate(batch) if i not in outcome.reasons]
            for i, reason in sorted(outcome.reasons.items()):
                self._dead(batch[i], reason)
            if rest:
                self._ready.appendleft((rest, attempt))
        elif isinstance(outcome, TooLarge):
            if len(batch) == 1:
                self._dead(batch[0], "payload_too_large", "413 for a single event")
            else:
                half = len(batch) // 2
                self._ready.appendleft((batch[half:], attempt))
                self._ready.appendleft((batch[:half], attempt))
        elif isinstance(outcome, Throttled):
            self._throttled(batch, outcome, now)
        elif isinstance(outcome, RetryLater):
            if outcome.credentials:
                self._set_credentials(True)
            delay = outcome.after if outcome.after is not None else self._backoff(_attempt(attempt + 1))
            delay = min(delay, self.limits.max_backoff) if outcome.after is None else delay
            due = min(now + delay, min(p.first_attempt for p in batch) + self.limits.retry_window)
            heapq.heappush(self._retries, (due, next(self._seq), batch, attempt + 1))
            log.warning(
                "amplitude request failed (%s); %d events retry in %.1fs",
                outcome.reason,
                len(batch),
                due - now,
            )
        elif isinstance(outcome, Fatal):
            for item in batch:
                self._dead(item, outcome.reason, outcome.detail)

    def _throttled(self, batch: list[Pending], outcome: Throttled, now: float) -> None:
        resend: list[Pending] = []
        for i, item in enumerate(batch):
            device = item.event.get("device_id")
            user = item.event.get("user_id")
            if device in outcome.quota_devices or user in outcome.quota_users:
                self._dead(item, "daily_quota")
            elif device in outcome.devices or user in outcome.users or i in outcome.events:
                for key in item.keys:
                    self.limiter.penalize(key, self.penalty, now)
                self._hold(item.keys[0], item, now + self.penalty)
            else:
                resend.append(item)
        if resend:
            self._ready.appendleft((resend, 0))

    def _set_credentials(self, failing: bool) -> None:
        if failing != self.credentials_failing:
            self.credentials_failing = failing
            self.metrics.credentials_failing.set(1 if failing else 0)
            if failing:
                log.error("Amplitude refuses the API key; events are kept and retried within the window")
            else:
                log.info("Amplitude accepts the API key again")

    # -- endings ---------------------------------------------------------------------------------
    def _dead(self, item: Pending, reason: str, detail: str = "") -> None:
        self.dead.write(
            reason,
            item.position,
            event=item.event,
            event_type=item.event_type,
            detail=detail,
            first_attempt=item.first_attempt,
        )
        self._finish(item, "dead_lettered", reason)

    def _finish(self, item: Pending, outcome: str, reason: str) -> None:
        if self._live.pop(id(item), None) is None:
            return
        self._bytes -= item.size
        if len(self._live) < self.limits.max_pending and self._bytes < self.limits.max_pending_bytes:
            self._room.set()
        if not self._live:
            self._idle.set()
        self.on_done(item, outcome, reason)

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
