"""The stages every source shares: count, transform, skip or hand to the delivery engine, acknowledge.

A source (file replay, Kafka) reads :class:`~consumer.events.CurrentsRecord` values in position order
and calls :meth:`Pipeline.ingest` for each, after tracking its position. Skipped and undecodable inputs
are acknowledged at once; delivered and dead-lettered events are acknowledged when the engine finishes
them. The pipeline owns the run summary and the event-level metrics, so both sources report the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson

from consumer.deadletter import DeadLetterWriter
from consumer.decode import DecodeError
from consumer.delivery import DeliveryEngine, Sink
from consumer.events import CurrentsRecord, Pending, Position
from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.summary import Summary
from consumer.throttle import limiter_keys
from consumer.transform import Skip, Transformer

log = logging.getLogger("currents.pipeline")

AckCallback = Callable[[Position], None]


class Pipeline:
    """Transform and deliver records; call ``on_ack(position)`` once per record when it is done."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        dead_letter: DeadLetterWriter,
        metrics: Metrics,
        on_ack: AckCallback,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.transformer = Transformer(settings.mapping)
        self.dead = dead_letter
        self.metrics = metrics
        self.on_ack = on_ack
        self.summary = Summary()
        self.engine = DeliveryEngine(
            settings.amplitude,
            settings.limits,
            sink,
            dead_letter,
            self._done,
            metrics,
            clock=clock or time.time,
        )
        self._clock = self.engine.clock
        self._since_yield = 0

    def _done(self, item: Pending, outcome: str, reason: str) -> None:
        if outcome == "delivered":
            self.summary.done[item.event_type] += 1
            self.metrics.count(self.metrics.delivered, item.event_type)
        else:
            self.summary.dead_lettered[reason] += 1
            self.metrics.count(self.metrics.dead_lettered, reason)
        self.on_ack(item.position)

    async def ingest(self, record: CurrentsRecord) -> None:
        """Transform one record and either acknowledge it (skipped) or submit it for delivery."""
        self.summary.read[record.event_type] += 1
        self.metrics.count(self.metrics.read, record.event_type)
        result = self.transformer.transform(record.event_type, record.record)
        if isinstance(result, Skip):
            self.summary.skipped[result.reason] += 1
            self.metrics.count(self.metrics.skipped, result.reason)
            self.on_ack(record.position)
        else:
            try:
                # Copied to its exact size: orjson's own buffer keeps ~4 KiB per event alive, which
                # would make every waiting event cost 8x what --max-pending-bytes counts.
                encoded = bytes(memoryview(orjson.dumps(result)))
            except TypeError as exc:  # cannot happen with Avro/JSON input; never lose the event silently
                self.dead_letter_input(record.position, "unencodable", str(exc), event_type=record.event_type)
                return
            item = Pending(
                result, record.event_type, record.position, encoded, self._clock(), 0, limiter_keys(result)
            )
            if not self.engine.offer(item):
                await self.engine.submit(item)
        self._since_yield += 1
        if self._since_yield >= 256:
            # Let requests in flight make progress while a fast source keeps reading.
            self._since_yield = 0
            await asyncio.sleep(0)

    def dead_letter_input(
        self,
        position: Position,
        reason: str,
        detail: str,
        *,
        raw: bytes | None = None,
        event_type: str | None = None,
    ) -> None:
        """Record input that never became an event (undecodable bytes, unreadable file) and acknowledge it."""
        self.dead.write(reason, position, raw=raw, detail=detail, event_type=event_type)
        self.summary.dead_lettered[reason] += 1
        self.metrics.count(self.metrics.dead_lettered, reason)
        self.on_ack(position)

    def undecodable(self, error: DecodeError) -> None:
        """Dead-letter one undecodable input (with its raw bytes when it has them) and acknowledge it."""
        log.warning("undecodable input %s", error)
        self.dead_letter_input(error.position, "undecodable", error.reason, raw=error.raw)
