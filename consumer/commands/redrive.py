"""``currents-consumer redrive``: re-send dead-lettered events to the destination they failed at.

Reads the dead-letter files given (records that carry an ``event``; optionally only some reasons),
and sends each event again through the normal delivery engine of the destination the record names
(``destination``; records without one are Amplitude's) — for Amplitude with the same ``insert_id``, so
anything Amplitude already has is deduplicated. Events that fail again are dead-lettered again into
the configured dead-letter directory, in a new file; records without an event (undecodable input) or
for a destination that is not enabled are counted and reported, since there is nothing to send.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Sequence
from typing import Any

from consumer.app.destinations import Destination
from consumer.app.pipeline import Pipeline
from consumer.events import Position
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.positions.deadletter import DeadLetterWriter, read_dead_letters
from consumer.settings import Settings

log = logging.getLogger("currents.redrive")


async def redrive(
    paths: list[str],
    destinations: Sequence[Destination],
    settings: Settings,
    metrics: Metrics,
    reasons: tuple[str, ...] = (),
) -> Summary:
    """Re-send the events of the dead-letter records under ``paths``; returns the run's summary."""
    records = list(read_dead_letters(paths))  # list first: new dead-letters must not be read back
    dead = DeadLetterWriter(settings.dead_letter)
    pipeline = Pipeline(destinations, dead, metrics, lambda _pos: None)
    by_name = {d.name: (d, engine) for d, engine in zip(pipeline.destinations, pipeline.engines, strict=True)}
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
            name = str(record.get("destination") or "amplitude")
            if (
                not isinstance(event, dict)
                or not event
                or (name == "amplitude" and not event.get("event_type"))
            ):
                summary.skipped["no_event"] += 1
                continue
            if name not in by_name:
                summary.skipped[f"destination_not_enabled:{name}"] += 1
                continue
            dest, engine = by_name[name]
            event_type = str(record.get("event_type") or event.get("event_type") or "")
            summary.read[event_type] += 1
            await engine.submit(dest.pending(event, event_type, Position(file, -1, line), time.time()))
        await pipeline.drain()
    finally:
        await pipeline.close()
        dead.close()
    return summary
