"""The enabled destinations, built from the registry (:mod:`consumer.settings.destinations`).

A :class:`~consumer.delivery.destination.Destination` bundles everything the delivery engine and the
pipeline need for one destination, each part made from its registry entry and settings section:

* a :class:`Mapper` (the spec's mapper factory): Currents record -> zero or more payloads, or a
  :class:`~consumer.transform.base.Skip` with a reason; the limiter keys and the bytes of a payload;
* a :class:`~consumer.sinks.base.Sink` (the spec's sink factory): one attempt per call, classified into
  an outcome;
* its request shape (the section's ``request_shape()``): events and bytes per request, batch age,
  requests in flight;
* its own :class:`~consumer.settings.LimitSettings` (the section's ``own_limits()``): per-key rate and
  daily limit (Amplitude's per-device limits; none for one-event-per-request partners), project rate,
  retry window, back-off and memory bound.

Every destination gets its own :class:`~consumer.delivery.engine.DeliveryEngine`. The pipeline acknowledges a
record's position only when every enabled destination has finished it (delivered, skipped or
dead-lettered), so commits stay at-least-once for all of them. Nothing here names a destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from consumer.delivery.destination import Destination
from consumer.settings import Settings, SettingsError
from consumer.settings.destinations import DestinationSpec, spec_of
from consumer.transform.base import Mapper

if TYPE_CHECKING:  # the delivery side is not needed where only mappers run (worker processes)
    from consumer.sinks.base import Sink


def enabled(settings: Settings) -> list[DestinationSpec]:
    """The destinations ``settings.destinations`` enables, in that order; refuses one that lacks what it
    cannot work without (the message names the options)."""
    specs = [spec_of(name) for name in settings.destinations]
    for spec in specs:
        problem = settings.section(spec.name).missing()
        if problem:
            raise SettingsError(problem)
    return specs


def build_mappers(settings: Settings) -> list[Mapper]:
    """The mapper of every enabled destination, in order: all that worker processes need, built without
    the sinks (so without importing the HTTP client)."""
    return [
        spec.mapper_factory()(settings.section(spec.name), settings.mapping) for spec in enabled(settings)
    ]


def build_destinations(settings: Settings, mappers: Sequence[Mapper] | None = None) -> list[Destination]:
    """Every enabled destination, in order, each with its own sink; with ``mappers`` (from
    :func:`build_mappers` on the same settings) those mapper objects are used."""
    specs = enabled(settings)
    mappers = build_mappers(settings) if mappers is None else mappers
    return [
        destination(settings, spec.name, spec.sink_factory()(settings.section(spec.name)), mapper)
        for spec, mapper in zip(specs, mappers, strict=True)
    ]


def destination(settings: Settings, name: str, sink: Sink, mapper: Mapper | None = None) -> Destination:
    """The destination ``name`` over ``sink``, with its request shape and limits from ``settings`` (and
    the mapper its registry entry makes unless ``mapper`` is given)."""
    section = settings.section(name)
    if mapper is None:
        mapper = spec_of(name).mapper_factory()(section, settings.mapping)
    return Destination(name, mapper, sink, section.request_shape(), section.own_limits(settings.limits))


def amplitude_destination(settings: Settings, sink: Sink, mapper: Mapper | None = None) -> Destination:
    """The Amplitude destination over ``sink`` (with Braze's mapping unless ``mapper`` is given)."""
    return destination(settings, "amplitude", sink, mapper)


async def close_all(destinations: list[Destination]) -> None:
    """Close every destination's sink (idempotent: closing twice is harmless)."""
    for d in destinations:
        await d.sink.close()
