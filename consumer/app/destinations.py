"""Destinations: what one Currents stream is delivered to, each with its own mapping, requests and limits.

A :class:`Destination` bundles everything the delivery engine and the pipeline need for one partner:

* a :class:`Mapper`: Currents record -> zero or more payloads (its own JSON or query shape), or a
  :class:`~consumer.transform.base.Skip` with a reason; the limiter keys of a payload; the bytes of a payload;
* a :class:`~consumer.sinks.base.Sink`: one attempt per call, classified into an outcome;
* its request caps (:class:`~consumer.sinks.base.RequestCaps`): events and bytes per request, batch age,
  requests in flight (Amplitude's settings, or a :class:`RequestShape`);
* its own :class:`~consumer.settings.LimitSettings`: per-key rate and daily limit (Amplitude's per-device
  limits; none for the others), project rate, retry window, memory bounds.

Every destination gets its own :class:`~consumer.delivery.engine.DeliveryEngine`. The pipeline acknowledges a
record's position only when every enabled destination has finished it (delivered, skipped or
dead-lettered), so commits stay at-least-once for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from consumer.delivery.destination import Destination, RequestShape
from consumer.delivery.throttle import UNLIMITED
from consumer.settings import LimitSettings, Settings, SettingsError
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.base import Mapper

if TYPE_CHECKING:  # the delivery side is not needed where only mappers run (worker processes)
    from consumer.sinks.base import Sink


def one_per_request(
    limits: LimitSettings, rate: float, retry_window: float, concurrency: int
) -> tuple[RequestShape, LimitSettings]:
    """The shape and limits of a destination that takes one event per request and has no per-key limit."""
    shape = RequestShape(events_cap=1, bytes_cap=1 << 20, batch_age=0.0, concurrency=concurrency)
    own = limits.model_copy(
        update={
            "device_rate": UNLIMITED,
            "device_daily_limit": 1 << 62,
            "project_rate": rate,
            "retry_window": retry_window,
        }
    )
    return shape, own


def amplitude_destination(settings: Settings, sink: Sink, mapper: Mapper | None = None) -> Destination:
    """The Amplitude destination over ``sink`` (with Braze's mapping unless ``mapper`` is given)."""
    return Destination(
        "amplitude", mapper or amplitude_mapper(settings), sink, settings.amplitude, settings.limits
    )


def amplitude_mapper(settings: Settings) -> AmplitudeMapper:
    """Braze's Amplitude mapping as ``settings.mapping`` configures it."""
    return AmplitudeMapper(Transformer(settings.mapping))


def build_mappers(settings: Settings) -> list[Mapper]:
    """The mapper of every destination ``settings.destinations`` enables, in that order: all that worker
    processes need, built without the sinks (so without importing the HTTP client). Refuses a
    destination that lacks what it cannot work without."""
    from consumer.transform.movableink import MovableInkMapper
    from consumer.transform.remerge import RemergeMapper

    check_destination_settings(settings)
    out: list[Mapper] = []
    for name in settings.destinations:
        if name == "amplitude":
            out.append(amplitude_mapper(settings))
        elif name == "movableink":
            out.append(MovableInkMapper(settings.movableink))
        elif name == "remerge":
            out.append(RemergeMapper(settings.remerge))
    return out


def build_destinations(settings: Settings, mappers: Sequence[Mapper] | None = None) -> list[Destination]:
    """Every destination ``settings.destinations`` enables, in that order, each with its own sink; with
    ``mappers`` (from :func:`build_mappers` on the same settings) those mapper objects are used."""
    from consumer.sinks.amplitude import AmplitudeSink
    from consumer.sinks.webhook import MovableInkSink, RemergeSink

    mappers = build_mappers(settings) if mappers is None else mappers
    out: list[Destination] = []
    for name, mapper in zip(settings.destinations, mappers, strict=True):
        if name == "amplitude":
            out.append(amplitude_destination(settings, AmplitudeSink(settings.amplitude), mapper))
        elif name == "movableink":
            mi = settings.movableink
            shape, limits = one_per_request(settings.limits, mi.rate, mi.retry_window, mi.concurrency)
            out.append(Destination(name, mapper, MovableInkSink(mi), shape, limits))
        elif name == "remerge":
            rm = settings.remerge
            shape, limits = one_per_request(settings.limits, rm.rate, rm.retry_window, rm.concurrency)
            out.append(Destination(name, mapper, RemergeSink(rm), shape, limits))
    return out


async def close_all(destinations: list[Destination]) -> None:
    """Close every destination's sink (idempotent: closing twice is harmless)."""
    for d in destinations:
        await d.sink.close()


def check_destination_settings(settings: Settings) -> None:
    """Refuse to start a destination that lacks what it cannot work without (names the option)."""
    if "amplitude" in settings.destinations and not settings.amplitude.api_key:
        raise SettingsError("no Amplitude API key (--api-key or AMPLITUDE_API_KEY)")
    if "movableink" in settings.destinations:
        mi = settings.movableink
        if not mi.endpoint or not mi.key:
            raise SettingsError("movableink needs --movableink-endpoint and --movableink-key")
    if "remerge" in settings.destinations:
        rm = settings.remerge
        if not rm.key:
            raise SettingsError("remerge needs --remerge-key")
        if not (rm.app_ids or rm.ios_app_id or rm.android_app_id):
            raise SettingsError("remerge needs store app ids (--remerge-app-id, --remerge-ios-app-id, ...)")
