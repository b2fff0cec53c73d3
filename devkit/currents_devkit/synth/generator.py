"""The record generator: :class:`Synth` picks who, where from and when for each record."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from consumer.decode.schemas import event_types, raw_schemas
from currents_devkit.synth.fields import Ctx, FieldCompiler, Gen, unwrap
from currents_devkit.synth.pools import Population
from currents_devkit.synth.values import DEFAULT_WEIGHTS, OTHER_WEIGHT

_CAMPAIGN_PREFIXES = ("campaign_", "message_variation_")


class _Plan:
    """The compiled generators for one event type."""

    __slots__ = ("fields", "has_device", "has_external", "source")

    def __init__(self, fields: list[tuple[str, Gen, float]], has_device: bool, has_external: bool,
                 source: str | None) -> None:  # fmt: skip
        self.fields = fields
        self.has_device = has_device
        self.has_external = has_external
        self.source = source


class Synth:
    """A seeded generator of Currents records for every shipped event type.

    ``devices`` devices (each owned by one user) emit the events; the first ``hot_devices`` of them
    receive ``hot_share`` of all events between them, the others share the rest evenly.
    ``external_id_share`` of users have an external id; of those, ``placeholder_share`` carry one
    Amplitude refuses (``"0"``, ``"null"``, ...), ``short_id_share`` a 1-4 character one and
    ``unicode_id_share`` a non-ASCII one. ``anonymous_share`` of events carry neither
    ``external_user_id`` nor ``device_id``; apart from those (and from types whose schema has neither
    field) every event carries at least one of them. Optional fields that are not about identity or
    message origin are filled with probability ``optional_fill``. Event ``time`` is within
    ``time_span`` seconds after ``start_time`` (or just before ``at``), except ``offline_share`` of
    events that are up to three days older (SDK offline queues).

    Not thread-safe; one instance is one deterministic stream.
    """

    def __init__(
        self,
        seed: int,
        devices: int = 1000,
        hot_devices: int = 0,
        hot_share: float = 0.0,
        external_id_share: float = 0.7,
        anonymous_share: float = 0.05,
        start_time: int = 1_700_000_000,
        *,
        placeholder_share: float = 0.01,
        short_id_share: float = 0.04,
        unicode_id_share: float = 0.04,
        optional_fill: float = 0.7,
        time_span: int = 3600,
        offline_share: float = 0.01,
    ) -> None:
        if devices < 1 or not 0 <= hot_devices <= devices:
            raise ValueError("need devices >= 1 and 0 <= hot_devices <= devices")
        shares = (hot_share, external_id_share, anonymous_share, placeholder_share, short_id_share,
                  unicode_id_share, optional_fill, offline_share)  # fmt: skip
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("shares must be within [0, 1]")
        self.seed = seed
        self.devices = devices
        self.hot_devices = hot_devices
        self.hot_share = hot_share
        self.external_id_share = external_id_share
        self.anonymous_share = anonymous_share
        self.start_time = start_time
        self.placeholder_share = placeholder_share
        self.short_id_share = short_id_share
        self.unicode_id_share = unicode_id_share
        self.optional_fill = optional_fill
        self.time_span = time_span
        self.offline_share = offline_share
        self._rng = random.Random(seed)
        self._rnd = self._rng.random
        pool = Population(
            self._rng,
            devices,
            external_id_share=external_id_share,
            placeholder_share=placeholder_share,
            short_id_share=short_id_share,
            unicode_id_share=unicode_id_share,
        )
        self.app_group_id = pool.app_group_id
        self._known = pool.known
        self._devices = pool.devices
        self._campaigns, self._canvases = pool.campaigns, pool.canvases
        if hot_devices == devices:
            self._hot_p = 1.0
        else:
            self._hot_p = hot_share if hot_devices else 0.0
        self._hot_scale = hot_devices / self._hot_p if self._hot_p else 0.0
        self._n_cold = devices - hot_devices
        self._plans: dict[str, _Plan] = {}
        self._fields = FieldCompiler(self._rng, optional_fill, pool)

    # --- compiling and context -------------------------------------------------------------------
    def _compile(self, event_type: str) -> _Plan:
        schema = raw_schemas()[event_type]
        names = {f["name"]: unwrap(f["type"])[0] for f in schema["fields"]}
        required_campaign = any(not opt and n.startswith(_CAMPAIGN_PREFIXES) for n, opt in names.items())
        required_canvas = any(not opt and n.startswith("canvas_") for n, opt in names.items())
        has_campaign = any(n.startswith(_CAMPAIGN_PREFIXES) for n in names)
        has_canvas = any(n.startswith("canvas_") for n in names)
        source = None
        if required_campaign or (has_campaign and not has_canvas):
            source = "campaign" if required_campaign else "campaign?"
        elif required_canvas or (has_canvas and not has_campaign):
            source = "canvas" if required_canvas else "canvas?"
        elif has_campaign:
            source = "either"
        fields = [(f["name"], *self._fields.field(f["name"], f["type"], names)) for f in schema["fields"]]
        plan = _Plan(fields, "device_id" in names, "external_user_id" in names, source)
        self._plans[event_type] = plan
        return plan

    def _ctx(self, plan: _Plan, at: int | None) -> Ctx:
        rnd = self._rnd
        c = Ctx()
        r = rnd()
        if r < self._hot_p:
            i = min(int(r * self._hot_scale), self.hot_devices - 1)
        else:
            i = self.hot_devices + int(rnd() * self._n_cold)
        c.dev = dev = self._devices[i]
        c.prof = prof = dev.profile
        c.ext = c.device_id = c.name = c.product = c.src = None
        if rnd() >= self.anonymous_share:
            c.ext = prof.external_id
            if plan.has_device:
                # only a user known by external id may lose the device id, so identity stays
                c.device_id = dev.device_id if c.ext is None or rnd() < 0.95 else None
            elif c.ext is None and plan.has_external and self._known:
                c.prof = prof = self._known[int(rnd() * len(self._known))]
                c.ext = prof.external_id
        if plan.source is not None:
            src, r = plan.source, rnd()
            if src == "either":
                src = "campaign?" if r < 0.55 else "canvas?"
                r = rnd()
            if not src.endswith("?") or r >= 0.1:  # ~10% of optional-origin events are API/transactional
                pool = self._campaigns if src.startswith("campaign") else self._canvases
                c.src = pool[int(rnd() * len(pool))]
        base = at if at is not None else self.start_time + int(rnd() * self.time_span)
        r = rnd()
        if r < self.offline_share:
            c.t = base - 600 - int(rnd() * 259_200)
        else:
            c.t = base - int(r * 120)
        return c

    # --- public API -------------------------------------------------------------------------------
    @property
    def hot_device_ids(self) -> list[str]:
        """The ``device_id`` of each hot device (they share ``hot_share`` of all events)."""
        return [d.device_id for d in self._devices[: self.hot_devices]]

    @property
    def device_ids(self) -> list[str]:
        """Every ``device_id`` the generator draws from, hot devices first."""
        return [d.device_id for d in self._devices]

    def record(self, event_type: str, *, at: int | None = None) -> dict[str, Any]:
        """One record of ``event_type`` that validates against its shipped schema.

        ``at`` (UNIX seconds) is when Braze queued the event: its ``time`` is then at or shortly before
        ``at`` (or up to three days before, for offline-queued events). ``KeyError`` for an unknown type.
        """
        plan = self._plans.get(event_type) or self._compile(event_type)
        c = self._ctx(plan, at)
        rnd = self._rnd
        return {name: gen(c) if p >= 1.0 or rnd() < p else None for name, gen, p in plan.fields}

    def records(self, event_type: str, n: int, *, at: int | None = None) -> Iterator[dict[str, Any]]:
        """``n`` records of ``event_type``, generated lazily."""
        for _ in range(n):
            yield self.record(event_type, at=at)

    def mixed(
        self,
        n: int,
        event_types: Sequence[str] | None = None,
        weights: Mapping[str, float] | Sequence[float] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``n`` ``(event_type, record)`` pairs, types drawn by weight.

        By default every shipped type is drawn with :data:`DEFAULT_WEIGHTS` (email and push sends and
        opens, sessions and custom events dominate; other types are rare). ``weights`` is either a
        mapping (missing types get their default weight) or one weight per ``event_types`` entry.
        """
        draw_type = self.type_draw(event_types, weights)
        for _ in range(n):
            t = draw_type()
            yield t, self.record(t)

    def type_draw(
        self,
        event_types: Sequence[str] | None = None,
        weights: Mapping[str, float] | Sequence[float] | None = None,
    ) -> Callable[[], str]:
        """A function drawing one event type by weight (as :meth:`mixed` does) from this stream.

        ``KeyError`` for a type without a shipped schema, ``ValueError`` for unusable weights, at once.
        """
        types, cum = _cumulative(self._types(event_types), weights)
        rnd, total = self._rnd, cum[-1]
        return lambda: types[bisect.bisect_right(cum, rnd() * total)]

    def draw(self) -> float:
        """The next uniform draw in ``[0, 1)`` from this generator's stream (for layouts kept in step)."""
        return self._rnd()

    def _types(self, wanted: Sequence[str] | None) -> list[str]:
        known = raw_schemas()
        types = list(wanted) if wanted is not None else event_types()
        missing = [t for t in types if t not in known]
        if missing or not types:
            raise KeyError(f"no shipped schema for {missing}" if missing else "no event types given")
        return types


def _cumulative(
    types: list[str], weights: Mapping[str, float] | Sequence[float] | None
) -> tuple[list[str], list[float]]:
    """Types with positive weight and their cumulative weights, for bisecting a uniform draw."""
    if weights is None or isinstance(weights, Mapping):
        given = weights or {}
        ws = [float(given.get(t, DEFAULT_WEIGHTS.get(t, OTHER_WEIGHT))) for t in types]
    else:
        ws = [float(w) for w in weights]
        if len(ws) != len(types):
            raise ValueError("weights must have one entry per event type")
    if any(w < 0 for w in ws):
        raise ValueError("weights must not be negative")
    kept = [(t, w) for t, w in zip(types, ws, strict=True) if w > 0]
    if not kept:
        raise ValueError("at least one event type needs a positive weight")
    cum: list[float] = []
    total = 0.0
    for _, w in kept:
        total += w
        cum.append(total)
    return [t for t, _ in kept], cum
