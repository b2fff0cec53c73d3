"""A destination as delivery sees it: a mapper, a sink, a request shape and its own limits.

What each destination is (its settings, its mapper and sink factories) is the registry's
(:mod:`consumer.settings.destinations`); :mod:`consumer.app.destinations` builds this value from it, and
the pipeline and the engine are built from this value.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.events import Pending, Position
from consumer.settings import LimitSettings
from consumer.sinks.base import RequestCaps, Sink
from consumer.transform.base import Mapper, Payload


@dataclass
class Destination:
    """One delivery target: name (metric label, dead-letter tag), mapping, sink, request shape, limits."""

    name: str
    mapper: Mapper
    sink: Sink
    shape: RequestCaps
    limits: LimitSettings

    def pending(self, payload: Payload, event_type: str, position: Position, now: float) -> Pending:
        """``payload`` on its way here: encoded once, with its limiter keys; its retry window starts at
        ``now``. Raises ``TypeError`` if the payload cannot be encoded."""
        mapper = self.mapper
        return Pending.alone(event_type, position, mapper.encode(payload), now, mapper.keys(payload))
