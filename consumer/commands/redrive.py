"""``currents-consumer redrive``: re-send dead-lettered events to the destination they failed at.

Reads the dead-letter files given, or a dead-letter topic (``kafka://TOPIC``: from a consumer group of
its own, or an offset range), taking the records that carry an ``event`` (optionally only some reasons),
and sends each event again through the normal delivery engine of the destination the record names
(``destination``; records without one are Amplitude's) — for Amplitude with the same ``insert_id``, so
anything Amplitude already has is deduplicated. Events that fail again are dead-lettered again into
the configured dead-letter output (a new file, or the topic); records without an event (undecodable input) or
for a destination that is not enabled are counted and reported, since there is nothing to send.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from consumer.app.pipeline import Pipeline
from consumer.delivery.destination import Destination
from consumer.events import Group, Position
from consumer.ops.faults import io_fault
from consumer.ops.metrics import Metrics
from consumer.ops.summary import Summary
from consumer.positions.deadletter import open_dead_letters, read_dead_letters
from consumer.settings import Settings, SettingsError
from consumer.settings.model import dead_letter_topic
from consumer.sources.kafka.deadletter import Ranges, TopicReader

log = logging.getLogger("currents.redrive")


async def redrive(
    paths: list[str],
    destinations: Sequence[Destination],
    settings: Settings,
    metrics: Metrics,
    reasons: tuple[str, ...] = (),
    move_to: str | None = None,
    *,
    group: str | None = None,
    ranges: Ranges | None = None,
) -> Summary:
    """Re-send the events of the dead-letter records under ``paths`` (files and directories, or one
    ``kafka://TOPIC``); returns the run's summary.

    With ``move_to``, once every event has been delivered or dead-lettered again (and the new
    dead-letter output is on disk), each file all of whose records were re-sent is moved under
    ``move_to``; a file with a record that was not re-sent (another reason, no event, a destination
    not enabled, an unparseable line) stays where it is. Nothing is moved if the run ends in a fault.

    From a topic, ``group`` (redrive's own consumer group) starts at its committed offsets and commits
    what was read once every event settled (the new dead letters acknowledged); ``ranges`` reads only
    the given offsets. Nothing is committed if the run ends in a fault.
    """
    topic = _topic_source(paths)
    if topic is not None:
        if move_to is not None:
            raise SettingsError(
                "--move-to moves files; a dead-letter topic's progress is committed with --group"
            )
        return await _redrive_topic(topic, destinations, settings, metrics, reasons, group, ranges)
    if group or ranges:
        raise SettingsError("--group and --offsets are for a dead-letter topic (kafka://TOPIC)")
    # list first: new dead-letters must not be read back
    records = [
        (Position(file, -1, line), f"{file}:{line}", record)
        for file, line, record in read_dead_letters(paths)
    ]
    target = _move_target(paths, move_to) if move_to is not None else None
    pipeline = Pipeline(
        destinations, open_dead_letters(settings.dead_letter, settings.kafka), metrics, _ignore
    )
    try:
        kept = await _resend(records, pipeline, reasons)
    finally:
        await _close(pipeline)
    if target is not None:
        _move_settled(sorted({position.source for position, _, _ in records} - kept), target, kept)
    return pipeline.summary


async def _redrive_topic(
    topic: str,
    destinations: Sequence[Destination],
    settings: Settings,
    metrics: Metrics,
    reasons: tuple[str, ...],
    group: str | None,
    ranges: Ranges | None,
) -> Summary:
    """:func:`redrive` from a topic: read up to its end, re-send, settle, then commit (with a group)."""
    reader = TopicReader(settings.kafka, topic, group=group, ranges=ranges)
    try:
        messages = await reader.records()
        records = [(position, _label(position), _parsed(value)) for position, value in messages]
        pipeline = Pipeline(
            destinations, open_dead_letters(settings.dead_letter, settings.kafka), metrics, _ignore
        )
        try:
            await _resend(records, pipeline, reasons)
        finally:
            await _close(pipeline)
        await reader.commit()
        log.info("redrove %d records of %s%s", len(records), topic, f" (group {group})" if group else "")
    finally:
        await reader.close()
    return pipeline.summary


def _ignore(_groups: list[Group]) -> None:
    """Redrive acknowledges nothing per event: it commits (or moves files) once everything settled."""


async def _resend(
    records: list[tuple[Position, str, dict[str, Any]]], pipeline: Pipeline, reasons: tuple[str, ...]
) -> set[str]:
    """Submit each record's event to its destination and wait until every one settled (delivered or
    dead-lettered again, the new dead letters durable); the sources (files) of records not re-sent."""
    enabled = {d.name for d in pipeline.destinations}
    summary = pipeline.summary
    kept: set[str] = set()
    for position, label, record in records:
        unsent = _unsendable(record, reasons, enabled)
        if unsent is not None:
            kept.add(position.source)
            if unsent == "unparseable":  # reported whatever --reason says: it has no reason to match
                summary.unreadable.append(f"{label}: not a JSON object")
            else:
                summary.skip_input(unsent)
            continue
        event: dict[str, Any] = record["event"]
        destination = str(record.get("destination") or "amplitude")
        event_type = str(record.get("event_type") or event.get("event_type") or "")
        await pipeline.redeliver(destination, event, event_type, position)
    await pipeline.drain()
    pipeline.faults.raise_first()
    await pipeline.dead.settle()
    return kept


async def _close(pipeline: Pipeline) -> None:
    """Stop the engines, then settle and close the dead-letter output."""
    try:
        await pipeline.close()
    finally:
        await pipeline.dead.aclose()


def _topic_source(paths: list[str]) -> str | None:
    """The topic of ``kafka://TOPIC`` when that is the one path given; a topic among other paths is a
    usage error."""
    topics = [topic for p in paths if (topic := dead_letter_topic(p)) is not None]
    if not topics:
        return None
    if len(paths) > 1:
        raise SettingsError("redrive reads one dead-letter topic, or files and directories, not both")
    return topics[0]


def parse_offsets(given: list[str]) -> dict[int, tuple[int, int | None]]:
    """``--offsets P:FROM-TO`` (TO may be empty: to the end) as partition -> (first, last or ``None``)."""
    ranges: dict[int, tuple[int, int | None]] = {}
    for text in given:
        m = re.fullmatch(r"(\d+):(\d+)-(\d*)", text.strip())
        if m is None or (m[3] and int(m[3]) < int(m[2])):
            raise SettingsError(f"--offsets {text!r}: give PARTITION:FROM-TO (e.g. 0:120-180, or 0:120-)")
        if int(m[1]) in ranges:
            raise SettingsError(f"--offsets: partition {m[1]} given twice")
        ranges[int(m[1])] = (int(m[2]), int(m[3]) if m[3] else None)
    return ranges


def _label(position: Position) -> str:
    return f"{position.source}[{position.partition}]@{position.offset}"


def _parsed(value: bytes | None) -> dict[str, Any]:
    """A topic's record as :func:`~consumer.positions.deadletter.read_dead_letters` gives a line."""
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return {"unparseable": (value or b"").decode("utf-8", "replace")[:500]}
    return record


def _unsendable(record: dict[str, Any], reasons: tuple[str, ...], enabled: set[str]) -> str | None:
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
    if name not in enabled:
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
