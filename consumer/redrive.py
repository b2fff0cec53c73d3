"""``currents-consumer redrive``: re-send dead-lettered events to Amplitude.

Reads the dead-letter files given (records that carry an ``event``; optionally only some reasons),
and sends each event again through the normal delivery engine — same ``insert_id``, so anything
Amplitude already has is deduplicated. Events that fail again are dead-lettered again into the
configured dead-letter directory, in a new file; records without an event (undecodable input) are
counted and reported, since there is nothing to send.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import Any

import orjson

from consumer.deadletter import DeadLetterWriter, read_dead_letters
from consumer.delivery import Sink
from consumer.events import Pending, Position
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.settings import Settings
from consumer.summary import Summary
from consumer.throttle import limiter_keys

log = logging.getLogger("currents.redrive")


async def redrive(
    paths: list[str], settings: Settings, sink: Sink, metrics: Metrics, reasons: tuple[str, ...] = ()
) -> Summary:
    """Re-send the events of the dead-letter records under ``paths``; returns the run's summary."""
    records = list(read_dead_letters(paths))  # list first: new dead-letters must not be read back
    dead = DeadLetterWriter(settings.dead_letter)
    pipeline = Pipeline(settings, sink, dead, metrics, lambda _pos: None)
    summary = pipeline.summary
    try:
        for file, line, record in records:
            if "unparseable" in record:  # reported whatever --reason says: it has no reason to match
                summary.unreadable.append(f"{file}:{line}: not a JSON object")
                continue
            event: Any = record.get("event")
            reason = str(record.get("reason", ""))
            if reasons and not any(fnmatch.fnmatchcase(reason, pat) for pat in reasons):
                summary.skipped["reason_not_selected"] += 1
                continue
            if not isinstance(event, dict) or not event.get("event_type"):
                summary.skipped["no_event"] += 1
                continue
            event_type = str(record.get("event_type") or event["event_type"])
            summary.read[event_type] += 1
            await pipeline.engine.submit(
                Pending(
                    event,
                    event_type,
                    Position(file, -1, line),
                    orjson.dumps(event),
                    time.time(),
                    0,
                    limiter_keys(event),
                )
            )
        await pipeline.engine.drain()
    finally:
        await pipeline.engine.close()
        dead.close()
    return summary
