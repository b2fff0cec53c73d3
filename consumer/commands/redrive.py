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
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consumer.app.destinations import Destination
from consumer.app.pipeline import Pipeline
from consumer.events import Position
from consumer.ops.faults import io_fault
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.positions.deadletter import DeadLetterWriter, read_dead_letters
from consumer.settings import Settings, SettingsError

log = logging.getLogger("currents.redrive")


async def redrive(
    paths: list[str],
    destinations: Sequence[Destination],
    settings: Settings,
    metrics: Metrics,
    reasons: tuple[str, ...] = (),
    move_to: str | None = None,
) -> Summary:
    """Re-send the events of the dead-letter records under ``paths``; returns the run's summary.

    With ``move_to``, once every event has been delivered or dead-lettered again (and the new
    dead-letter output is on disk), each file all of whose records were re-sent is moved under
    ``move_to``; a file with a record that was not re-sent (another reason, no event, a destination
    not enabled, an unparseable line) stays where it is. Nothing is moved if the run ends in a fault.
    """
    records = list(read_dead_letters(paths))  # list first: new dead-letters must not be read back
    target = _move_target(paths, move_to) if move_to is not None else None
    dead = DeadLetterWriter(settings.dead_letter)
    pipeline = Pipeline(destinations, dead, metrics, lambda _pos: None)
    by_name = {d.name: (d, engine) for d, engine in zip(pipeline.destinations, pipeline.engines, strict=True)}
    summary = pipeline.summary
    kept: set[str] = set()
    try:
        for file, line, record in records:
            unsent = _unsendable(record, reasons, by_name)
            if unsent is not None:
                kept.add(file)
                if unsent == "unparseable":  # reported whatever --reason says: it has no reason to match
                    summary.unreadable.append(f"{file}:{line}: not a JSON object")
                else:
                    summary.skip_input(unsent)
                continue
            event: dict[str, Any] = record["event"]
            dest, engine = by_name[str(record.get("destination") or "amplitude")]
            event_type = str(record.get("event_type") or event.get("event_type") or "")
            summary.read[event_type] += 1
            await engine.submit(dest.pending(event, event_type, Position(file, -1, line), time.time()))
        await pipeline.drain()
    finally:
        await pipeline.close()
        dead.close()
    if target is not None:
        _move_settled(sorted({file for file, _, _ in records} - kept), target, kept)
    return summary


def _unsendable(record: dict[str, Any], reasons: tuple[str, ...], by_name: dict[str, Any]) -> str | None:
    """Why ``record`` cannot be re-sent (the skip reason, or ``unparseable``), or ``None`` if it can."""
    if "unparseable" in record:
        return "unparseable"
    reason = str(record.get("reason", ""))
    if reasons and not any(fnmatch.fnmatchcase(reason, pat) for pat in reasons):
        return "reason_not_selected"
    event: Any = record.get("event")
    name = str(record.get("destination") or "amplitude")
    if not isinstance(event, dict) or not event or (name == "amplitude" and not event.get("event_type")):
        return "no_event"
    if name not in by_name:
        return f"destination_not_enabled:{name}"
    return None


class _Target:
    """Where each redriven file goes: under ``directory``, at its path below the directory it was
    found in (a file given by name: its name alone)."""

    def __init__(self, directory: Path, roots: list[Path]) -> None:
        self.directory = directory
        self.roots = roots

    def of(self, file: str) -> Path:
        path = Path(file).resolve()
        for root in self.roots:
            if path.is_relative_to(root):
                return self.directory / path.relative_to(root)
        return self.directory / path.name


def _move_target(paths: list[str], move_to: str) -> _Target:
    """Check ``move_to`` before anything is sent: it must not lie inside a directory being redriven (a
    later redrive of that directory would read the moved files again)."""
    directory = Path(move_to).resolve()
    roots = [Path(p).resolve() for p in paths if Path(p).is_dir()]
    for root in roots:
        if directory.is_relative_to(root):
            raise SettingsError(f"--move-to {move_to}: inside {root}, which is being redriven")
    return _Target(directory, roots)


def _move_settled(files: list[str], target: _Target, kept: set[str]) -> None:
    """Move each of ``files`` (all its records settled) to its place under the target; never over an
    existing file (that one stays and is named)."""
    moved = 0
    for file in files:
        dest = target.of(file)
        if dest.exists():
            log.warning("not moving %s: %s already exists", file, dest)
            continue
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(file, dest)
        except OSError as exc:
            raise io_fault(f"--move-to directory ({file} to {dest})", exc) from None
        moved += 1
    log.info(
        "moved %d dead-letter files to %s; kept %d with records not re-sent",
        moved,
        target.directory,
        len(kept),
    )
