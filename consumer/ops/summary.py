"""Run totals: what was read, delivered (or converted), skipped and dead-lettered, per event type.

One :class:`Summary` per run; the commands print it at the end (human table on a terminal, JSON
otherwise) and the progress log line reads from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """Counters of one run. Plain counters: the pipeline updates them from one thread.

    ``done`` counts, per event type, what the primary destination (the first one; Amplitude by
    default) delivered; ``by_destination`` counts deliveries per destination. Skip and dead-letter
    reasons of destinations other than Amplitude carry their name (``movableink:no_identity``).
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

    def delivered(self, destination: str, event_types: Counter[str]) -> None:
        """Count deliveries by ``destination``: ``event_types`` says how many of each type."""
        self.by_destination[destination] += event_types.total()
        if destination == self.primary:
            self.done.update(event_types)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals and per-type breakdown."""
        types = sorted(set(self.read) | set(self.done))
        return {
            "read": sum(self.read.values()),
            self.done_label: sum(self.done.values()),
            f"{self.done_label}_by_destination": dict(sorted(self.by_destination.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "dead_lettered": dict(sorted(self.dead_lettered.items())),
            "unreadable": list(self.unreadable),
            "per_event_type": {t: {"read": self.read[t], self.done_label: self.done[t]} for t in types},
            **({"exit_code": self.exit[0], "exit": self.exit[1]} if self.exit is not None else {}),
        }

    def render(self) -> str:
        """A human-readable multi-line summary."""
        d = self.as_dict()
        lines = [
            f"read {d['read']}, {self.done_label} {d[self.done_label]}, "
            f"skipped {sum(self.skipped.values())}, dead-lettered {sum(self.dead_lettered.values())}"
        ]
        if len(self.by_destination) > 1:
            lines.append(
                f"  {self.done_label} by destination: "
                + ", ".join(f"{name} {n}" for name, n in sorted(self.by_destination.items()))
            )
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
