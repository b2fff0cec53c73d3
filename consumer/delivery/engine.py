"""The delivery engine: batch, throttle per device as requests leave, send concurrently, retry.

Contract
--------
* :meth:`DeliveryEngine.submit` takes one :class:`~consumer.events.Pending` event, or a
  :class:`~consumer.events.PendingRun` of a chunk's payloads (what the pipeline hands over: a run goes
  through batching, tokens and a delivered request whole, and is taken apart into one ``Pending`` per
  payload only when one must be handled alone: a key waiting aside, a payload too large for any
  request, a request not delivered whole). It returns at once
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
  (``retry_window_expired``, with the last answer they had: ``last_answer`` and ``last_status``).
* Refused credentials and a URL that is not the destination API's hold the events like any retry;
  :class:`~consumer.delivery.refusals.Refusals` reports them (a line per change of state, gauges).
* :meth:`drain` flushes and waits until nothing is pending (or a time bound passes); :meth:`close`
  stops the engine, abandoning whatever is still pending (its positions are never acknowledged, so a
  restart re-reads them).
* **A fault ends delivery, never strands it.** A dead-letter record that cannot be written, or any
  exception escaping a request's task, is reported to the run's :class:`~consumer.ops.faults.Faults`
  (no task exception is left unretrieved). From the first fault on (of this engine or any other part of
  the run) the engine starts no request, :meth:`offer_many` / :meth:`submit` raise the fault instead of
  taking events, and :meth:`drain` returns ``False`` at once; the events it still holds are never
  acknowledged. A long outage is logged by :class:`~consumer.delivery.outage.OutageLog`.

The stages live beside it: :mod:`.batching` builds requests by count, bytes and age;
:mod:`.policy` decides what each outcome of a request means (split, hold back, back off, dead-letter)
and paces a failing destination with probes; :mod:`.throttle` and :mod:`.holdback` are the per-key
limits; :mod:`.live` holds the events taken, signals room and idleness, and ends each one. This module is
the pump: it takes events, starts requests, applies decisions, drains, closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence

from consumer.delivery.batching import Batcher, Request
from consumer.delivery.departures import Departures
from consumer.delivery.destination import Destination
from consumer.delivery.live import DoneCallback, LiveEvents
from consumer.delivery.outage import OutageLog
from consumer.delivery.policy import Decision, Retry, RetryPolicy
from consumer.delivery.refusals import Refusals
from consumer.delivery.throttle import ProjectLimiter, key_limiter
from consumer.events import Pending, PendingRun, Queued
from consumer.ops.faults import Fault, Faults
from consumer.ops.metrics import Metrics
from consumer.ops.waits import wait_set
from consumer.positions.deadletter import DeadLetterOutput
from consumer.sinks.base import Delivered, RetryLater, SendResult

log = logging.getLogger("currents.delivery")


class DeliveryEngine:
    """Batch, throttle, send and retry for one :class:`~consumer.delivery.destination.Destination`; see
    the module docstring for the contract.

    The destination gives the request shape, the limits and the sink; its name is the ``destination``
    label of the request metrics and the ``destination`` field of dead-letter records, and its mapper
    decodes a dead-lettered event for the record. A ``limits.device_rate`` of
    :data:`~consumer.delivery.throttle.UNLIMITED` means the destination has no per-key limits (no per-key
    state). The dead-letter output, ``on_done``, the metrics, the clock and the faults are the run's.
    """

    def __init__(
        self,
        destination: Destination,
        dead_letter: DeadLetterOutput,
        on_done: DoneCallback,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ) -> None:
        self.destination = destination
        self.caps = caps = destination.shape
        self.name = name = destination.name
        self.limits = limits = destination.limits
        self.sink = sink = destination.sink
        self.metrics = metrics
        self.clock = clock
        self.faults = faults if faults is not None else Faults()
        self.live = LiveEvents(name, limits, dead_letter, destination.mapper.decode, on_done, self.faults)
        self.policy = RetryPolicy(
            retry_window=limits.retry_window, max_backoff=limits.max_backoff, penalty=limits.throttle_penalty
        )
        # What a request body adds around its events, so that ``bytes_cap`` bounds the whole body.
        self.batcher = Batcher(caps, sink.overhead, split=self._split)
        self.departures = Departures(
            key_limiter(limits.device_rate, limits.device_daily_limit),
            self.batcher,
            fits=self._fits,
            expired=self.policy.expired,
            dead=self._dead_waiting,
            apart=self._apart,
        )
        self.limiter = self.departures.limiter
        self._retries: list[Retry] = []  # a heap: the next one due first
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._flush_now = False
        self._pump: asyncio.Task[None] | None = None
        self.project = ProjectLimiter(limits.project_rate)
        self.last_progress = clock()
        self.refusals = Refusals(name, metrics)
        self.outage = OutageLog(name, clock=clock)
        self.faults.listen(self._stop_on_fault)

    # -- input -----------------------------------------------------------------------------------
    async def submit(self, item: Queued) -> None:
        """Take one event (or a run of them); waits while the engine is full (back-pressure)."""
        while not self.offer(item):
            await self.live.room.wait()

    def offer(self, item: Queued) -> bool:
        """Take one event (or a run) if there is room (``True``), else take nothing (``False``); never
        waits."""
        return self.offer_many((item,)) == 1

    def offer_many(self, items: Sequence[Queued], start: int = 0, *, beyond_room: bool = False) -> int:
        """Take ``items[start:]`` in order while there is room; returns the index of the first one not
        taken (``len(items)`` when all were). Never waits: the synchronous form of :meth:`submit` for
        the hot path, with the per-call work (clock, wake-up) done once for all of them. Raises the
        run's first :class:`~consumer.ops.faults.Fault` once there is one (nothing more is taken).
        With ``beyond_room`` every item is taken, room or not (the caller bounds what it offers).
        """
        self.faults.raise_first()
        held = self.live
        if not beyond_room and not held.room.is_set():
            return start
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="delivery-pump")
        live, limits = held.items, self.limits
        now = self.clock()
        end = len(items)
        if beyond_room:  # every item is taken: counted, then queued, together
            taking = items[start:] if start else items
            live.update([(id(item), item) for item in taking])
            held.events += sum([item.count for item in taking])
            held.bytes += sum([item.size for item in taking])
            if held.events >= limits.max_pending or held.bytes >= limits.max_pending_bytes:
                held.room.clear()
            self.departures.enqueue_many(taking, now)  # may end some at once (too large for any request)
            i = end
        else:
            i = start
            while i < end:
                item = items[i]
                i += 1
                live[id(item)] = item
                held.events += item.count
                held.bytes += item.size
                full = held.events >= limits.max_pending or held.bytes >= limits.max_pending_bytes
                if full:
                    held.room.clear()
                # may end the item at once (a payload too large for any request)
                self.departures.enqueue_many((item,), now)
                if full:
                    break
        # Only the state after the loop is seen (nothing else runs meanwhile): idle iff nothing is live.
        if live:
            held.idle.clear()
        self._wake.set()
        return i

    @property
    def has_room(self) -> bool:
        """Whether :meth:`submit` would return without waiting."""
        return self.live.room.is_set()

    async def wait_room(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the engine takes more events (at most ``timeout`` seconds); whether it does."""
        return await wait_set(self.live.room, timeout)

    def room(self) -> list[int]:
        """``[events, bytes]`` the engine takes before it is full (zeros while it is)."""
        return self.live.room_left()

    @property
    def pending(self) -> int:
        """Events taken and not yet done."""
        return self.live.events

    def oldest_pending_age(self) -> float:
        """Seconds since the oldest pending event was first taken (0 when none)."""
        oldest = self.live.oldest()
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def throttled_keys(self) -> int:
        """Devices/users with events waiting aside."""
        return len(self.departures)

    # -- the pump --------------------------------------------------------------------------------
    async def _run(self) -> None:
        """The pump: start what is due, then wait for a wake-up or the next deadline; again, until a fault
        (or :meth:`close`)."""
        while not self.faults.failed:
            try:
                deadline = self._start_due()
                self._wake.clear()
                timeout = None if deadline == float("inf") else max(0.0, deadline - self.clock())
                await wait_set(self._wake, timeout)
            except Fault:  # reported where it was raised; the loop condition ends the pump
                pass
            except Exception:  # a bug in one turn (or in a callback) must not stop delivery for good
                log.exception("%s delivery pump: a turn failed; going on", self.name)
                await asyncio.sleep(0.1)  # back off: a turn that keeps failing must not spin

    def _start_due(self) -> float:
        """Release the keys and the retries that are due, seal the open batch if it is due, and start the
        requests the free slots and the project rate allow; when to look again (``inf``: at the next
        wake-up only)."""
        now = self.clock()
        batcher, policy = self.batcher, self.policy
        self.departures.release_due(now)
        while self._retries and self._retries[0].due <= now:
            retry = heapq.heappop(self._retries)
            last = retry.last_answer
            live = [p for p in retry.batch if not self._expired_dead(p, now, last)]
            if live:
                batcher.queue(live, retry.attempt)
        batcher.seal_if_due(now, self._flush_now)
        project_wait = 0.0
        slots = policy.slots(now, self.caps.concurrency)
        while len(self._inflight) < slots and (request := batcher.next()) is not None:
            project_wait = self.project.admit(request.events, now)
            if project_wait > 0:
                break
            batcher.pop(request)
            task = asyncio.create_task(self._send(request))
            self._inflight.add(task)
            task.add_done_callback(self._sent)
        return min(
            self.departures.next_due(),
            self._retries[0].due if self._retries else float("inf"),
            batcher.due(),
            now + project_wait if project_wait > 0 else float("inf"),
            now + 0.05 if batcher.hot and len(self._inflight) < slots else float("inf"),
            policy.gate if policy.gate > now and batcher.waiting() else float("inf"),
        )

    def _sent(self, task: asyncio.Task[None]) -> None:
        # The pump must look again once a send slot is really free: a wake-up sent from inside the
        # task arrives before the task counts as done, which once left batches waiting forever.
        self._inflight.discard(task)
        self._wake.set()
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, always: the batch it held can no longer finish
        if exc is not None and not isinstance(exc, Fault):
            log.error("%s: a request's task failed", self.name, exc_info=exc)
            self.faults.report(Fault(f"{self.name} delivery failed: {type(exc).__name__}: {exc}"))

    def _stop_on_fault(self, _: Fault) -> None:
        # Wake everyone waiting on this engine: submitters raise the fault, drain returns, the pump ends.
        self.live.room.set()
        self.live.idle.set()
        self._wake.set()

    def _split(self, run: PendingRun, tail: PendingRun) -> None:
        """The batcher split ``run``: its tail is held from now on too."""
        self.live.replace(run, [run, tail])

    def _apart(self, items: Sequence[Queued]) -> list[Pending]:
        """``items`` with each run taken apart into its payloads, held one by one from now on."""
        out: list[Pending] = []
        for item in items:
            if isinstance(item, Pending):
                out.append(item)
            else:
                parts = item.apart()
                self.live.replace(item, parts)
                out += parts
        return out

    def _fits(self, item: Pending) -> bool:
        """Whether ``item`` fits a request at all; if not it is dead-lettered."""
        if self.batcher.fits(item):
            return True
        self.live.dead(item, "payload_too_large", f"{item.size} bytes")
        return False

    def _expired_dead(self, item: Pending, now: float, last: tuple[str, int]) -> bool:
        if self.policy.expired(item, now):
            self.live.dead(item, "retry_window_expired", last=last)
            return True
        return False

    def _dead_waiting(self, item: Pending, reason: str, detail: str) -> None:
        """Dead-letter an event that waited aside; one whose window ran out there gets the destination's
        last failing answer, since that is what kept it waiting."""
        self.live.dead(
            item, reason, detail, self.outage.last_answer if reason == "retry_window_expired" else None
        )

    async def _send(self, request: Request) -> None:
        # Tokens are taken as the request starts, not when it was queued: a busy event loop between
        # the two would otherwise bunch one device's requests together on the wire.
        queued = request.batch
        batch = queued if request.admitted else self.departures.admit(queued, self.clock())
        if batch is not queued:
            self.project.refund(request.events - sum([item.count for item in batch]))
        if not batch or self.faults.failed:
            return
        try:
            result = await self.sink.send(batch)
        except Exception as exc:  # a bug below must not lose the batch: retry it like a 5xx
            log.exception("sink raised; the batch will be retried")
            result = SendResult(RetryLater(f"sink_error:{type(exc).__name__}"), 0, 0.0)
        self.metrics.requests.labels(self.name, str(result.status)).inc()
        self.metrics.request_seconds.labels(self.name).observe(result.seconds)
        self.metrics.request_bytes.labels(self.name).inc(result.body_bytes)
        now = self.clock()
        with contextlib.suppress(Fault):  # reported where raised (a dead letter); the fault stops the engine
            outcome = result.outcome
            if isinstance(outcome, Delivered):
                decision = self.policy.delivered(batch)
            else:  # the policy looks at payloads one by one (by index, by device): runs are taken apart
                each = self._apart(batch)
                decision = self.policy.decide(each, request.attempt, outcome, now, result.status)
            self._apply(decision, now)
        self._wake.set()

    def _apply(self, decision: Decision, now: float) -> None:
        """Carry out the policy's decision about one answered request."""
        retry = decision.retry
        self.refusals.update(decision.credentials, decision.endpoint, retry.reason if retry else "")
        if decision.delivered:
            self.live.finish(decision.delivered, "delivered", "")
            self.last_progress = now
            self.outage.delivered()
        for item, reason, detail in decision.dead:
            self.live.dead(item, reason, detail)
        for key, seconds, threshold in decision.penalties:
            self.limiter.penalize(key, seconds, now, threshold)
        for key, items in decision.held.items():
            self.departures.hold(key, items, decision.hold_until)
        if decision.held:
            log.info(
                "%s throttled %d device(s)/user(s): their %d events wait %.1fs, then go slower",
                self.name,
                len(decision.held),
                sum(len(items) for items in decision.held.values()),
                decision.hold_until - now,
            )
        for batch, attempt in reversed(decision.resend):
            self.batcher.front(batch, attempt)
        if retry is not None:
            heapq.heappush(self._retries, retry)
            self.outage.retrying(
                retry.reason,
                len(retry.batch),
                retry.after,
                self.live.events,
                self.refusals.cause,
                retry.status,
            )

    def flush(self) -> None:
        """Send the partial batch now instead of waiting for its age."""
        self.batcher.seal()
        self._wake.set()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Send everything now (no batch age) and wait until nothing is pending; ``False`` on timeout or
        after a fault (at once: what is pending then never finishes)."""
        self.flush()
        self._flush_now = True
        self._wake.set()
        try:
            return await wait_set(self.live.idle, timeout) and not self.faults.failed
        finally:
            self._flush_now = False

    async def settle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for the requests in flight to be answered (after a fault none starts)."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def close(self) -> None:
        """Stop the pump and cancel requests in flight; pending events are abandoned (not acknowledged)."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
