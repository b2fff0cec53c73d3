"""Every Prometheus metric of the service, in one place, on a replaceable registry.

Names follow ``currents_<thing>_<unit>``; label sets stay small (destination, event type, reason,
status, topic/partition). Tests build a :class:`Metrics` on their own ``CollectorRegistry``; the commands
use the process-wide default one that ``/metrics`` serves.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The metric families; create one per process (or per test, with its own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        self.read = Counter("currents_events_read_total", "Currents events read", ["event_type"], registry=r)
        self.delivered = Counter(
            "currents_events_delivered_total",
            "Events a destination accepted",
            ["destination", "event_type"],
            registry=r,
        )
        self.skipped = Counter(
            "currents_events_skipped_total",
            "Events not sent to a destination, by rule",
            ["destination", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "currents_events_dead_lettered_total",
            "Events or inputs written to dead-letter (destination=input: undecodable or unreadable input)",
            ["destination", "reason"],
            registry=r,
        )
        self.requests = Counter(
            "currents_requests_total",
            "Destination requests by HTTP status (0 = no answer)",
            ["destination", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "currents_request_seconds",
            "Duration of one destination request",
            ["destination"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.request_bytes = Counter(
            "currents_request_bytes_total",
            "Uncompressed request body (or query) bytes sent",
            ["destination"],
            registry=r,
        )
        self.pending = Gauge(
            "currents_pending_events", "Events in memory not yet done", ["destination"], registry=r
        )
        self.oldest_pending_age = Gauge(
            "currents_oldest_pending_event_age_seconds",
            "Age of the oldest event not yet done (how much of the retry window is used)",
            ["destination"],
            registry=r,
        )
        self.throttled_devices = Gauge(
            "currents_throttled_devices",
            "Devices/users whose events are held back",
            ["destination"],
            registry=r,
        )
        self.credentials_failing = Gauge(
            "currents_credentials_failing",
            "1 while the destination refuses our credentials",
            ["destination"],
            registry=r,
        )
        self.last_progress = Gauge(
            "currents_last_progress_timestamp_seconds", "When the pipeline last made progress", registry=r
        )
        self.lag = Gauge(
            "currents_kafka_consumer_lag",
            "Messages between committed and end offset",
            ["topic", "partition"],
            registry=r,
        )
        self.committed = Gauge(
            "currents_committed_offset", "Last committed offset", ["topic", "partition"], registry=r
        )

        self._children: dict[tuple[int, str, str], Any] = {}

    def count(self, family: Counter, label: str, amount: float = 1, destination: str | None = None) -> None:
        """``family.labels([destination,] label).inc(amount)`` with the child cached: per-event hot path."""
        key = (id(family), destination or "", label)
        child = self._children.get(key)
        if child is None:
            labels = (label,) if destination is None else (destination, label)
            child = self._children[key] = family.labels(*labels)
        child.inc(amount)

    def exposition(self) -> bytes:
        """The text exposition format of this registry (what ``/metrics`` serves)."""
        return generate_latest(self.registry)


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide metrics on the default registry (created once)."""
    global _default
    if _default is None:
        _default = Metrics()
    return _default
