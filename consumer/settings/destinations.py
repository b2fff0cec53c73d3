"""The registry of destinations: each is one :class:`DestinationSpec`, and nothing else names it.

A spec says a destination's name (the ``--destination`` value, its ``[name]`` table in TOML, the
``destination`` label of metrics and dead letters, the option group of ``--help``), its help title,
its settings section (a :class:`~consumer.settings.delivery.DestinationSection`: its options, request
shape, limits and what it cannot start without) and where its mapper and sink are (``module:attr``,
imported only when the destination is built: a worker process that maps never imports the HTTP
client, and the settings layer imports neither).

The built-in destinations are :data:`BUILT_IN`. Another installed distribution adds one with a line in
its entry points, in the group :data:`GROUP`, whose object is its ``DestinationSpec``::

    [project.entry-points."currents_consumer.destinations"]
    jsonhook = "jsonhook:SPEC"

This is how plugins bring commands too (:mod:`consumer.commands.plugins`). :func:`registry` gives every
destination once, built-ins first; the settings, the parser's groups, secret masking, ``config`` and
the pipeline are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pkgutil import resolve_name
from typing import Any

from consumer.settings.delivery import AmplitudeSettings, DestinationSection
from consumer.settings.partners import MovableInkSettings, RemergeSettings

GROUP = "currents_consumer.destinations"
"""The entry-point group of destinations from other distributions."""


@dataclass(frozen=True)
class DestinationSpec:
    """One destination. ``mapper`` names a callable ``(section, mapping) -> Mapper`` (``mapping``: the
    run's :class:`~consumer.settings.mapping.MappingConfig`); ``sink`` a callable ``(section) -> Sink``."""

    name: str
    title: str
    section: type[DestinationSection]
    mapper: str
    sink: str

    def mapper_factory(self) -> Any:
        """The callable that makes this destination's mapper (imported now)."""
        return resolve_name(self.mapper)

    def sink_factory(self) -> Any:
        """The callable that makes this destination's sink (imported now)."""
        return resolve_name(self.sink)


BUILT_IN = (
    DestinationSpec(
        "amplitude",
        "Amplitude",
        AmplitudeSettings,
        "consumer.transform.amplitude:AmplitudeMapper.of",
        "consumer.sinks.amplitude:AmplitudeSink",
    ),
    DestinationSpec(
        "movableink",
        "Movable Ink",
        MovableInkSettings,
        "consumer.transform.movableink:MovableInkMapper.of",
        "consumer.sinks.webhook:MovableInkSink",
    ),
    DestinationSpec(
        "remerge",
        "Remerge",
        RemergeSettings,
        "consumer.transform.remerge:RemergeMapper.of",
        "consumer.sinks.webhook:RemergeSink",
    ),
)


@cache
def registry() -> tuple[DestinationSpec, ...]:
    """Every destination: the built-in ones, then those of installed plugins (by entry point name). A
    plugin's entry that is not a :class:`DestinationSpec`, or that reuses a name, is refused with an
    error naming it."""
    specs = list(BUILT_IN)
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        spec = point.load()
        if not isinstance(spec, DestinationSpec):
            raise TypeError(f"entry point {point.name} = {point.value} ({GROUP}) is not a DestinationSpec")
        if any(s.name == spec.name for s in specs):
            raise ValueError(f"entry point {point.name} = {point.value} ({GROUP}): {spec.name!r} is taken")
        specs.append(spec)
    return tuple(specs)


def names() -> tuple[str, ...]:
    """The name of every destination, in registry order."""
    return tuple(spec.name for spec in registry())


def spec_of(name: str) -> DestinationSpec:
    """The destination called ``name`` (``KeyError`` if there is none)."""
    for spec in registry():
        if spec.name == name:
            return spec
    raise KeyError(name)
