"""Every Prometheus metric of the service, in one place, on a replaceable registry.

Names follow ``currents_<thing>_<unit>``; label sets stay small (destination, event type, reason,
status, topic/partition). Tests build a :class:`Metrics` on their own ``CollectorRegistry``; the commands
use the process-wide default one that ``/metrics`` serves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of :meth:`Metrics.exposition`: the 0.0.4 text format generate_latest writes by default.
prometheus_client's CONTENT_TYPE_LATEST was this up to 0.21; since 0.22 it names 1.0.0, which the library
itself only sends to a scraper that asks for it (without an Accept header it sends this one)."""


class Metrics:
    """The metric families; create one per process (or per test, with its own registry).

    :meth:`count` (several times per event) only adds to a plain dict; the amounts reach the
    Prometheus counters when the registry is collected (``/metrics``, ``get_sample_value``, any
    ``registry.collect()``), or on :meth:`flush`. A collector registered before the families flushes
    them, and the registry collects its collectors in the order they were registered, so every reader
    of the registry sees every count made before it read. (A ``registry.restricted_registry(...)`` only
    visits the collectors of the names it was given: call :meth:`flush` before reading one.)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        # (family, destination, label) -> everything counted, and what of it the family already has
        self._pending: dict[tuple[Counter, str | None, str], float] = {}
        self._flushed: dict[tuple[Counter, str | None, str], float] = {}
        self._children: dict[tuple[Counter, str | None, str], Any] = {}
        self._flush_lock = threading.Lock()
        r.register(_FlushFirst(self))  # first: collected before the families it brings up to date
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
        self.endpoint_misconfigured = Gauge(
            "currents_destination_misconfigured",
            "1 while the destination's URL answers as no destination API does (reason: what it answered)",
            ["destination", "reason"],
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
        # A bucket follower (replay --follow).
        self.follow_oldest_pending_age = Gauge(
            "currents_follow_oldest_pending_age_seconds",
            "Age (since it landed) of the oldest object listed and not finished: the follower's lag",
            registry=r,
        )
        self.follow_newest_finished_age = Gauge(
            "currents_follow_newest_finished_age_seconds",
            "Time since the newest finished object landed",
            registry=r,
        )
        self.follow_pending = Gauge(
            "currents_follow_pending_objects",
            "Objects listed and not finished (queued or being read)",
            registry=r,
        )
        self.follow_last_listing = Gauge(
            "currents_follow_last_listing_timestamp_seconds",
            "When a listing of the bucket last worked",
            registry=r,
        )
        self.follow_listings = Counter(
            "currents_follow_listings_total",
            "Polls and sweep steps by outcome (ok, failed)",
            ["listing", "outcome"],
            registry=r,
        )
        self.follow_list_requests = Counter(
            "currents_follow_list_requests_total",
            "Listing requests to the store (level: one directory; flat: everything under a folder)",
            ["kind"],
            registry=r,
        )
        self.follow_listed_keys = Counter(
            "currents_follow_listed_keys_total", "Keys the store's listings returned", ["kind"], registry=r
        )
        self.follow_swept = Counter(
            "currents_follow_swept_objects_total",
            "Objects a sweep found after a first complete sweep that no poll had found (a changed layout or "
            "a very late writer)",
            registry=r,
        )
        self.follow_rewritten = Counter(
            "currents_follow_rewritten_objects_total",
            "Objects listed again with another version after they were read (dead-lettered, not re-sent)",
            registry=r,
        )

    def count(self, family: Counter, label: str, amount: float = 1, destination: str | None = None) -> None:
        """``family.labels([destination,] label).inc(amount)``, deferred to the next collection or
        :meth:`flush` (per-event hot path: a dict update, no lock)."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        key = (family, destination, label)
        pending = self._pending
        total = pending.get(key)
        if total is None:  # a new series: it exists (and its _created time starts) from its first count
            self._children[key] = family.labels(*((label,) if destination is None else (destination, label)))
            total = 0
        pending[key] = total + amount

    def flush(self) -> None:
        """Bring the counters up to date with :meth:`count`.

        :meth:`count` keeps running totals and a flush adds to each counter only what it lacks, so a
        collection from another thread while the event loop counts loses nothing (a count that lands
        during a flush is applied by the next one); the lock keeps two flushes from adding the same
        amount twice.
        """
        with self._flush_lock:
            flushed = self._flushed
            children = self._children
            for key, total in self._pending.copy().items():
                done = flushed.get(key, 0)
                if total != done:
                    children[key].inc(total - done)
                    flushed[key] = total

    def exposition(self) -> bytes:
        """The text exposition format of this registry (what ``/metrics`` serves, as
        :data:`EXPOSITION_CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _FlushFirst:
    """A collector that yields no metric: collecting it flushes the counts of :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        self._metrics.flush()
        return iter(())


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide metrics on the default registry (created once)."""
    global _default
    if _default is None:
        _default = Metrics()
    return _default
