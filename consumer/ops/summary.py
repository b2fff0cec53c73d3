"""Run totals: what was read, delivered (or converted), skipped and dead-lettered, per event type and
per destination.

One :class:`Summary` per run; the commands print it at the end (human table on a terminal, JSON
otherwise) and the progress log line reads from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def tag(destination: str, reason: str) -> str:
    """A skip or dead-letter reason as the run totals record it: Amplitude's own, the others' prefixed
    by their destination's name (``movableink:no_identity``)."""
    return reason if destination == "amplitude" else f"{destination}:{reason}"


@dataclass
class DestinationCounts:
    """What one destination made of the events read: delivered, skipped by reason, dead-lettered by
    reason (reasons untagged: the destination is known)."""

    delivered: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "delivered": self.delivered,
            "skipped": dict(sorted(self.skipped.items())),
            "dead_lettered": dict(sorted(self.dead_lettered.items())),
        }

    def line(self, name: str, width: int, *, delivered: bool = True) -> str:
        """One line of the text summary: the totals, each followed by its reasons with their counts.
        ``delivered=False`` (input no destination saw) leaves out deliveries and zero totals."""
        parts = [f"delivered {self.delivered}"] if delivered else []
        for label, counts in (("skipped", self.skipped), ("dead-lettered", self.dead_lettered)):
            if counts or delivered:
                reasons = ", ".join(f"{r} {n}" for r, n in sorted(counts.items()))
                parts.append(f"{label} {counts.total()}" + (f" ({reasons})" if reasons else ""))
        return f"  {name:<{width}}  " + ", ".join(parts)


@dataclass
class Summary:
    """Counters of one run. Plain counters: the pipeline updates them from one thread.

    ``done`` counts, per event type, what the primary destination (the first one; Amplitude by
    default) delivered; ``by_destination`` counts deliveries per destination. ``skipped`` and
    ``dead_lettered`` are the run's totals by tagged reason (see :func:`tag`): with several
    destinations an event can be skipped by each, so their sum can exceed ``read``; ``destinations``
    keeps each destination's own counts (filled by :meth:`delivered`, :meth:`skip` and
    :meth:`dead`); input that no destination saw (:meth:`dead_input`, :meth:`skip_input`) is in
    ``before``.
    """

    primary: str = "amplitude"
    by_destination: Counter[str] = field(default_factory=Counter)
    read: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    done_label: str = "delivered"
    exit: tuple[int, str] | None = None
    """The process exit code and its name, once the command has decided it (``--summary-json``)."""
    destinations: dict[str, DestinationCounts] = field(default_factory=dict)
    """Per destination, in the run's order; empty for a run that delivers nothing (``convert``)."""
    before: DestinationCounts = field(default_factory=DestinationCounts)
    """What was skipped or dead-lettered before reaching any destination (its ``delivered`` stays 0)."""

    @classmethod
    def of(cls, names: list[str]) -> Summary:
        """An empty summary of a run delivering to ``names`` (the first is the primary)."""
        return cls(primary=names[0], destinations={name: DestinationCounts() for name in names})

    def _counts(self, destination: str) -> DestinationCounts:
        counts = self.destinations.get(destination)
        if counts is None:
            counts = self.destinations[destination] = DestinationCounts()
        return counts

    def delivered(self, destination: str, event_types: Counter[str]) -> None:
        """Count deliveries by ``destination``: ``event_types`` says how many of each type."""
        n = event_types.total()
        self.by_destination[destination] += n
        self._counts(destination).delivered += n
        if destination == self.primary:
            self.done.update(event_types)

    def skip(self, destination: str, reason: str, n: int = 1) -> None:
        """Count ``n`` events that ``destination``'s mapping skipped for ``reason``."""
        self.skipped[tag(destination, reason)] += n
        self._counts(destination).skipped[reason] += n

    def dead(self, destination: str, reason: str, n: int = 1) -> None:
        """Count ``n`` of ``destination``'s payloads written to the dead-letter output for ``reason``."""
        self.dead_lettered[tag(destination, reason)] += n
        self._counts(destination).dead_lettered[reason] += n

    def dead_input(self, reason: str, n: int = 1) -> None:
        """Count input dead-lettered before any destination saw it (undecodable bytes)."""
        self.dead_lettered[reason] += n
        self.before.dead_lettered[reason] += n

    def skip_input(self, reason: str, n: int = 1) -> None:
        """Count input skipped before any destination saw it (a redrive's unselected records)."""
        self.skipped[reason] += n
        self.before.skipped[reason] += n

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals, per-destination counts and per-type breakdown."""
        types = sorted(set(self.read) | set(self.done))
        out: dict[str, Any] = {
            "read": sum(self.read.values()),
            self.done_label: sum(self.done.values()),
            f"{self.done_label}_by_destination": dict(sorted(self.by_destination.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "dead_lettered": dict(sorted(self.dead_lettered.items())),
        }
        if self.destinations:
            out["destinations"] = {name: c.as_dict() for name, c in self.destinations.items()}
        if self.before.skipped or self.before.dead_lettered:
            before = self.before.as_dict()
            del before["delivered"]
            out["before_destinations"] = before
        out["unreadable"] = list(self.unreadable)
        out["per_event_type"] = {t: {"read": self.read[t], self.done_label: self.done[t]} for t in types}
        if self.exit is not None:
            out.update(exit_code=self.exit[0], exit=self.exit[1])
        return out

    def render(self) -> str:
        """A human-readable multi-line summary: one line of totals, then (with several destinations)
        one line per destination, or (with one) the skip and dead-letter reasons; then the event types."""
        d = self.as_dict()
        if len(self.destinations) > 1:
            lines = self._render_destinations(d["read"])
        else:
            lines = [
                f"read {d['read']}, {self.done_label} {d[self.done_label]}, "
                f"skipped {sum(self.skipped.values())}, dead-lettered {sum(self.dead_lettered.values())}"
            ]
            for reason, n in d["skipped"].items():
                lines.append(f"  skipped  {reason:<28} {n:>10}")
            for reason, n in d["dead_lettered"].items():
                lines.append(f"  dead-letter {reason:<25} {n:>10}")
        width = max((len(t) for t in d["per_event_type"]), default=10)
        lines.append(f"  {'event type':<{width}} {'read':>10} {self.done_label:>10}")
        for t, row in d["per_event_type"].items():
            lines.append(f"  {t:<{width}} {row['read']:>10} {row[self.done_label]:>10}")
        for name in self.unreadable:
            lines.append(f"  unreadable: {name}")
        return "\n".join(lines)

    def _render_destinations(self, read: int) -> list[str]:
        # Each destination judges every event on its own, so its delivered, skipped and dead-lettered
        # figures are shown apart: summed across destinations they would exceed what was read.
        names = [*self.destinations, "before any destination"]
        width = max(len(name) for name in names)
        lines = [f"read {read}; per destination:"]
        lines.extend(counts.line(name, width) for name, counts in self.destinations.items())
        if self.before.skipped or self.before.dead_lettered:
            lines.append(self.before.line(names[-1], width, delivered=False))
        return lines
