"""``currents-consumer replay --dry-run``: what a replay would read, without reading or sending it.

Lists the selected objects exactly as the replay would (same roots, selection and resume state) and
prints one line per object on ``out`` — ``todo``, ``resume@<record>`` or ``done`` (finished by an
earlier run), its size in bytes and its URL — then, on ``err``, the objects and bytes per event type
with the queue hours they span, and the totals. Nothing is fetched but listings; nothing is written.
With ``--shard`` only the shard's objects are listed, and the totals say which shard they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from consumer.decode.avro import event_type_from_path
from consumer.instants import format_instant
from consumer.positions.resume import ResumeState, object_identity
from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.selection import Selection, partition_span
from consumer.sources.storage.store import StoredObject


@dataclass
class _Row:
    objects: int = 0
    bytes: int = 0
    done_objects: int = 0
    done_bytes: int = 0
    hours: list[int] = field(default_factory=list)  # first and last queue hour seen

    def add(self, obj: StoredObject, done: bool, hour: int | None) -> None:
        self.objects += 1
        self.bytes += obj.size
        if done:
            self.done_objects += 1
            self.done_bytes += obj.size
        if hour is not None:
            self.hours = [min(self.hours[0], hour), max(self.hours[1], hour)] if self.hours else [hour, hour]

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "finished_objects": self.done_objects,
            "finished_bytes": self.done_bytes,
            "to_read_objects": self.objects - self.done_objects,
            "to_read_bytes": self.bytes - self.done_bytes,
            "queued_from": format_instant(self.hours[0]) if self.hours else None,
            "queued_to": format_instant(self.hours[1]) if self.hours else None,
        }


def _queue_hour(url: str) -> int | None:
    for segment in reversed(url.split("/")):
        span = partition_span(segment)
        if span is not None:
            return span[0]
    return None


def plan(
    paths: list[str], selection: Selection, state: ResumeState, listing: Listing | None = None
) -> Iterator[tuple[StoredObject, str]]:
    """Each selected object with what a replay would do with it: ``todo``, ``resume@N`` or ``done``
    (``listing`` counts what was found and left out, as for a replay)."""
    for obj in list_objects(paths, selection, listing=listing):
        ident = object_identity(obj)
        if state.is_done(ident):
            yield obj, "done"
        elif state.next_record.get(ident):
            yield obj, f"resume@{state.next_record[ident]}"
        else:
            yield obj, "todo"


def dry_run(
    paths: list[str], selection: Selection, state: ResumeState, out: TextIO, err: TextIO, as_json: bool
) -> dict[str, Any]:
    """Print the plan (objects on ``out``, totals on ``err``) and return the totals."""
    rows: dict[str, _Row] = {}
    total = _Row()
    listing = Listing()
    for obj, status in plan(paths, selection, state, listing):
        print(f"{status}\t{obj.size}\t{obj.url}", file=out)
        hour = _queue_hour(obj.url)
        event_type = event_type_from_path(obj.url) or "(no event_type= partition)"
        done = status == "done"
        rows.setdefault(event_type, _Row()).add(obj, done, hour)
        total.add(obj, done, hour)
    out.flush()
    summary = {
        "selection": selection.describe(),
        "shard": f"{selection.shard.index}/{selection.shard.count}" if selection.shard else None,
        **total.as_dict(),
        "per_event_type": {t: rows[t].as_dict() for t in sorted(rows)},
    }
    if as_json:
        print(json.dumps(summary), file=err)
        return summary
    print(f"dry run: {selection.describe()}", file=err)
    width = max([len(t) for t in rows] + [10])
    header = f"  {'event type':<{width}} {'objects':>9} {'MB':>10} {'finished':>9}  queued (UTC hours)"
    print(header, file=err)
    for event_type in sorted(rows):
        row = rows[event_type]
        span = f"{format_instant(row.hours[0])}..{format_instant(row.hours[1])}" if row.hours else "-"
        print(
            f"  {event_type:<{width}} {row.objects:>9} {row.bytes / 1e6:>10.1f} {row.done_objects:>9}"
            f"  {span}",
            file=err,
        )
    print(
        f"would read {total.objects - total.done_objects} objects "
        f"({(total.bytes - total.done_bytes) / 1e6:.1f} MB) of {total.objects} selected"
        f"{' in ' + selection.shard.describe() if selection.shard else ''}; "
        f"{total.done_objects} finished by an earlier run",
        file=err,
    )
    why = listing.nothing_found(paths)
    if why is not None:
        print(why, file=err)
    return summary
