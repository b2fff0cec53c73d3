"""What a run leaves behind, said for people after its summary: what was passed over or left out, why
nothing was read, and after a fault or a signal what became of the events in flight and how the next run
goes on."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.ops.faults import Fault
from consumer.ops.summary import Summary


@dataclass
class ReplayResult:
    """The summary of a replay and how many files an earlier run had already finished."""

    summary: Summary
    files_resumed: int = 0
    files_done: int = 0
    bytes_done: int = 0
    """The listed size of the files finished by this run."""
    unfinished: list[str] = field(default_factory=list)
    filtered: int = 0
    """Records the selection left out (another event type, outside the ``--event-time`` window)."""
    nothing_found: str | None = None
    """Why no object was listed at all (no Avro files, or all outside the selection), else ``None``."""


def replay_lines(
    result: ReplayResult,
    unfinished: int,
    grace: float,
    fault: Fault | None,
    stopped: bool,
    following: bool,
    kept: bool,
) -> list[str]:
    """A replay's closing lines: files an earlier run finished, records the selection left out, why
    nothing was read, and after a fault or a signal what happens to the ``unfinished`` events and how the
    next run goes on (from the beginning without a ``kept`` state); a follower stopped by a signal only
    says what of its files is read again."""
    lines = []
    if result.files_resumed:
        lines.append(f"  files already finished by an earlier run: {result.files_resumed}")
    if result.filtered:
        lines.append(f"  records left out by the selection: {result.filtered}")
    if result.nothing_found is not None:
        lines.append(f"currents-consumer: {result.nothing_found}")
    if fault is not None:
        lines.append(f"currents-consumer: stopped: {fault}")
    if fault is not None or (stopped and not following):
        by = "stopped" if fault is not None else "interrupted"
        lines += _unfinished_lines(unfinished, grace, by, kept)
    elif following and unfinished:
        lines.append(
            f"  {unfinished} events were neither delivered nor dead-lettered within --grace {grace:g}s: "
            "their files are read again from where they stopped when it starts again"
        )
    return lines


def _unfinished_lines(unfinished: int, grace: float, stopped_by: str, kept: bool) -> list[str]:
    """After a fault or a signal: what became of the events still in flight, and where the next run
    begins (where this one stopped, or from the beginning without a state directory)."""
    lines = []
    if unfinished:
        within = f" within --grace {grace:g}s" if stopped_by == "interrupted" else ""
        then = (
            "their files are not recorded as done in the resume state, so the next run reads them again"
            if kept
            else "no resume state is kept (--state-dir ''), only a new run from the beginning sends them"
        )
        lines.append(f"  {unfinished} events were neither delivered nor dead-lettered{within}: {then}")
    if not kept:
        lines.append(
            f"  {stopped_by}: without a state directory (--state-dir '') nothing records what was done,"
            " so running again starts from the beginning and sends everything again (Amplitude drops"
            " the events it already has by insert_id, within 7 days)"
        )
    elif stopped_by == "stopped":
        lines.append("  nothing unfinished was recorded as done: fix the cause and run again")
    else:
        lines.append("  interrupted: run the same command again to resume")
    return lines
