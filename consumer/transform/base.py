"""The transform stage's contract: what a destination's mapper does with a Currents record.

A :class:`Mapper` is pure and synchronous: one decoded record in, the destination's payloads out (in
send order), or a :class:`Skip` naming why the record is deliberately not sent. Mappers run in the
main process or in worker processes (they are pickled once at start), so they hold no I/O clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Payload = dict[str, Any]
"""One request item for a destination, ready for encoding (an Amplitude event, a Movable Ink event, ...)."""


class Mapper(Protocol):
    """How a destination turns Currents records into its payloads."""

    def map(self, event_type: str, record: dict[str, Any]) -> Skip | list[Payload]:
        """The payloads for one record (in send order), or why it is not sent."""
        ...

    def keys(self, payload: Payload) -> tuple[str, ...]:
        """The limiter/ordering keys of a payload (at least one: its events are kept in order per key)."""
        ...

    def encode(self, payload: Payload) -> bytes:
        """The bytes of a payload as it travels in a request (also what the byte caps count)."""
        ...

    def decode(self, encoded: bytes) -> Payload:
        """The payload back from its bytes (for a dead-letter record: waiting events keep only bytes)."""
        ...


@dataclass(frozen=True, slots=True)
class Skip:
    """An event that is deliberately not sent, and why (a metric label and summary key)."""

    reason: str


NO_IDENTITY = Skip("no_identity")
INVALID_IDENTITY = Skip("invalid_identity")
UNMAPPED_TYPE = Skip("unmapped_type")
MISSING_ID = Skip("missing_id")
