"""Field generators for synthetic Currents records: one closure per Avro field, compiled once.

:class:`FieldCompiler` turns a field (name and Avro type) into a :data:`Gen`, a closure that takes the
record's :class:`Ctx` and returns a value of that type. Known field names (``external_user_id``,
``email_address``, ``campaign_id``, ``price``, ...) get values that look like Braze's and agree with the
record's user, device and message; any other field gets a value of its Avro type, shaped by its name's
suffix. Floats are exactly representable as Avro ``float``. All draws come from the generator's rng,
so compiling a field draws nothing and a seed fixes every value.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from currents_devkit.synth.pools import Device, Population, Profile, Source
from currents_devkit.synth.values import (
    CITIES,
    EVENT_NAMES,
    FIRST_NAMES,
    GEO,
    LANGUAGES,
    PRODUCTS,
    STRING_CHOICES,
    TIMEZONES,
    URLS,
    USER_AGENTS,
    WORDS,
    f32,
    uuid_from,
)

_ALWAYS = 1.0  # fill probability of fields that are always generated (checked before drawing)


class Ctx:
    """What one record's field generators share: who, from which device and message, when."""

    __slots__ = ("dev", "device_id", "ext", "name", "product", "prof", "src", "t")

    dev: Device
    device_id: str | None
    ext: str | None
    name: str | None
    product: tuple[str, str, float] | None
    prof: Profile
    src: Source | None
    t: int


Gen = Callable[[Ctx], Any]
"""A field generator: per-record context in, Avro-typed value out."""


def unwrap(avro_type: Any) -> tuple[bool, Any]:
    """``["null", T]`` -> ``(True, T)``; any other type -> ``(False, type)``."""
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return (len(rest) < len(avro_type), rest[0] if rest else "null")
    return (False, avro_type)


def primitive(avro_type: Any) -> str:
    """The primitive name of a type (``"string"``, ``"array"``, ...)."""
    if isinstance(avro_type, dict):
        return str(avro_type["type"])
    return str(avro_type)


class FieldCompiler:
    """Compiles fields into generators drawing from ``rng``; optional fields are filled with
    probability ``optional_fill`` unless their generator decides nulls itself."""

    def __init__(self, rng: random.Random, optional_fill: float, population: Population) -> None:
        self.optional_fill = optional_fill
        self._rng = rng
        self._rnd = rng.random
        self._bits = rng.getrandbits
        self._named = self._named_generators(population)

    def _named_generators(self, population: Population) -> dict[str, tuple[str, Gen, bool]]:
        """Field name -> (Avro primitive it applies to, generator, whether it decides nulls itself)."""
        rng, rnd, bits, pick = self._rng, self._rnd, self._bits, self.pick
        group, subs, senders = population.app_group_id, population.sub_groups, population.senders

        def camp(attr: str) -> Gen:
            return lambda c: getattr(c.src, attr) if c.src is not None and c.src.kind == "campaign" else None

        def canv(attr: str) -> Gen:
            return lambda c: getattr(c.src, attr) if c.src is not None and c.src.kind == "canvas" else None

        def event_name(c: Ctx) -> str:
            c.name = EVENT_NAMES[int(rnd() * len(EVENT_NAMES))]
            return c.name

        def product_id(c: Ctx) -> str:
            c.product = PRODUCTS[int(rnd() * len(PRODUCTS))]
            return c.product[0]

        def price(c: Ctx) -> float:
            base = c.product[2] if c.product is not None else round(rnd() * 200, 2)
            return f32(base)

        def geo(axis: int) -> Gen:
            return lambda c: f32(round(GEO[c.prof.country][axis] + (rnd() - 0.5), 5))

        def short_url(c: Ctx) -> str:
            return f"https://brz.ai/{bits(40):010x}"

        s = "string"
        # The device and workspace fields are present in practice whenever the schema has them, so
        # they "decide nulls" (never randomly nulled); identity and message-origin fields follow the
        # event's context.
        named: dict[str, tuple[str, Gen, bool]] = {
            "id": (s, lambda c: uuid_from(bits(128)), False),
            "user_id": (s, lambda c: c.prof.braze_id, False),
            "external_user_id": (s, lambda c: c.ext, True),
            "device_id": (s, lambda c: c.device_id, True),
            "push_token_device_id": (s, lambda c: c.dev.device_id, False),
            "app_group_id": (s, lambda c: group, True),
            "app_group_api_id": (s, lambda c: group, True),
            "app_id": (s, lambda c: c.dev.app_id, True),
            "time": ("int", lambda c: c.t, False),
            "time_ms": ("long", lambda c: c.t * 1000 + int(rnd() * 1000), False),
            "platform": (s, lambda c: c.dev.platform, True),
            "os_version": (s, lambda c: c.dev.os, True),
            "device_model": (s, lambda c: c.dev.model, True),
            "sdk_version": (s, lambda c: c.dev.sdk, True),
            "carrier": (s, lambda c: c.dev.carrier, True),
            "resolution": (s, lambda c: c.dev.resolution, False),
            "browser": (s, lambda c: c.dev.model if c.dev.platform == "web" else None, True),
            "ad_id": (s, lambda c: c.dev.ad_id, True),
            "ad_id_type": (s, lambda c: c.dev.ad_type, True),
            "ad_tracking_enabled": ("boolean", lambda c: c.dev.ad_tracking, True),
            "push_token": (s, lambda c: c.dev.push_token, True),
            "email_address": (s, lambda c: c.prof.email, False),
            "channel_identifier": (s, lambda c: c.prof.email, False),
            "phone_number": (s, lambda c: c.prof.phone, False),
            "to_phone_number": (s, lambda c: c.prof.phone, False),
            "user_phone_number": (s, lambda c: c.prof.phone, False),
            "from_phone_number": (s, pick(senders), False),
            "inbound_phone_number": (s, pick(senders), False),
            "from_rcs_sender": (s, lambda c: "ExampleBrand", False),
            "to_rcs_sender": (s, lambda c: "ExampleBrand", False),
            "gender": (s, lambda c: c.prof.gender, False),
            "country": (s, lambda c: c.prof.country, False),
            "language": (s, lambda c: LANGUAGES[c.prof.country], False),
            "timezone": (s, lambda c: TIMEZONES[c.prof.country], False),
            "first_name": (s, lambda c: c.prof.first, False),
            "last_name": (s, lambda c: c.prof.last, False),
            "home_city": (s, pick(CITIES), False),
            "dob": (
                s,
                lambda c: (
                    f"{rng.randrange(1950, 2008)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
                ),
                False,
            ),
            "campaign_id": (s, camp("id"), True),
            "campaign_name": (s, camp("name"), True),
            "message_variation_id": (s, camp("var_id"), True),
            "message_variation_name": (s, camp("var_name"), True),
            "canvas_id": (s, canv("id"), True),
            "canvas_name": (s, canv("name"), True),
            "canvas_api_id": (s, canv("api_id"), True),
            "canvas_variation_id": (s, canv("var_id"), True),
            "canvas_variation_name": (s, canv("var_name"), True),
            "canvas_variation_api_id": (s, canv("var_api_id"), True),
            "canvas_step_id": (s, canv("step_id"), True),
            "canvas_step_name": (s, canv("step_name"), True),
            "canvas_step_api_id": (s, canv("step_api_id"), True),
            "canvas_step_message_variation_id": (s, canv("smv_id"), True),
            "dispatch_id": (s, lambda c: c.src.dispatch[int(rnd() * 3)] if c.src else None, True),
            "subscription_group_id": (s, pick(subs), False),
            "name": (s, event_name, False),
            "product_id": (s, product_id, False),
            "price": ("float", price, False),
            "latitude": ("float", geo(0), False),
            "longitude": ("float", geo(1), False),
            "altitude": ("float", lambda c: f32(round(rnd() * 300, 1)), False),
            "ll_accuracy": ("float", lambda c: f32(round(3 + rnd() * 60, 1)), False),
            "alt_accuracy": ("float", lambda c: f32(round(3 + rnd() * 30, 1)), False),
            "session_id": (s, lambda c: uuid_from(bits(128)), False),
            "duration": ("float", lambda c: f32(round(5 + rnd() * rnd() * 1800, 1)), False),
            "conversion_behavior_index": ("int", lambda c: int(rnd() * 3), False),
            "conversion_behavior": (
                s,
                lambda c: '{"type":"perform_custom_event","name":"Order Completed","window":259200}',
                False,
            ),
            "in_control_group": ("boolean", lambda c: rnd() < 0.1, False),
            "random_bucket_number": ("int", lambda c: int(rnd() * 10_000), False),
            "prev_random_bucket_number": ("int", lambda c: int(rnd() * 10_000), False),
            "http_status_code": ("int", pick((500, 502, 503, 429, 404, 400)), False),
            "ios_push_token_apns_gateway": ("int", pick((1, 2)), False),
            "retry_count": ("int", lambda c: int(rnd() * 6), False),
            "attempt_count": ("int", lambda c: int(rnd() * 3) + 1, False),
            "content_length": ("int", lambda c: int(rnd() * 4000) + 60, False),
            "webhook_duration": ("int", lambda c: int(rnd() * rnd() * 30_000) + 40, False),
            "url": (s, pick(URLS), False),
            "endpoint_url": (s, lambda c: "https://hooks.example.com/braze/events", False),
            "host": (s, lambda c: "hooks.example.com", False),
            "url_path": (s, lambda c: "/braze/events", False),
            "raw_response": (s, lambda c: '{"error":"upstream timeout"}', False),
            "short_url": (s, short_url, False),
            "user_agent": (s, pick(USER_AGENTS), False),
            "sending_ip": (s, lambda c: f"203.0.113.{int(rnd() * 254) + 1}", False),
            "message_extras": (s, pick(('{"offer":"SPRING24"}', '{"tier":"gold","locale":"fr-FR"}')), False),
            "custom_attributes": (s, lambda c: '{"favorite_color":"bleu","loyalty_points":1200}', False),
            "link_id": (s, lambda c: str(int(rnd() * 12) + 1), False),
            "button_id": (s, lambda c: str(int(rnd() * 2)), False),
        }
        for field, choices in STRING_CHOICES.items():
            named.setdefault(field, (s, pick(choices), False))
        return named

    def type_gen(self, avro_type: Any, name: str) -> Gen:
        """A generator for any Avro type, shaped by the field name's suffix where that helps."""
        rnd, bits, prim = self._rnd, self._bits, primitive(avro_type)
        if prim == "string":
            return self._string_gen(name)
        if prim in ("int", "long"):
            if name.endswith("_at"):
                return lambda c: c.t - int(rnd() * 7_776_000)
            return lambda c: int(rnd() * 4000)
        if prim in ("float", "double"):
            return lambda c: f32(round(rnd() * 100, 2))
        if prim == "boolean":
            limit = 0.05 if name.startswith("is_") else 0.5
            return lambda c: rnd() < limit
        if prim in ("bytes", "fixed"):
            size = avro_type.get("size", 8) if isinstance(avro_type, dict) else 8
            return lambda c: bits(size * 8).to_bytes(size, "big")
        if prim == "enum":
            return self.pick(avro_type["symbols"])
        if prim in ("array", "map", "record"):
            return self._container_gen(prim, avro_type, name)
        if prim == "null":
            return lambda c: None
        raise ValueError(f"cannot generate Avro type {avro_type!r} for field {name!r}")

    def _string_gen(self, name: str) -> Gen:
        """A string generator chosen by the field name's suffix."""
        rnd, bits = self._rnd, self._bits
        if name.endswith("_api_id") or name.endswith("_uuid"):
            return lambda c: uuid_from(bits(128))
        if name.endswith("_token"):
            return lambda c: f"{bits(256):064x}"
        if name.endswith("_id"):
            return lambda c: f"{bits(96):024x}"
        if name.endswith("_url") or name.endswith("_urls"):
            return lambda c: URLS[int(rnd() * len(URLS))]
        if name.endswith("_phone_number"):
            return lambda c: c.prof.phone
        if name.endswith("_name") or name.endswith("_title"):
            return lambda c: f"{WORDS[int(rnd() * 10)].title()} {WORDS[int(rnd() * 10)]}"
        if name.endswith("_log") or name.endswith("_json") or name in ("input", "output"):
            return lambda c: f'{{"detail":"synthetic","step":{int(rnd() * 9)}}}'
        return lambda c: WORDS[int(rnd() * 10)]

    def _container_gen(self, prim: str, avro_type: Any, name: str) -> Gen:
        """A generator for an Avro array, map or record, built from generators of its parts."""
        rnd = self._rnd
        if prim == "array":
            optional, items = unwrap(avro_type["items"])
            item = self.type_gen(items, name.removesuffix("s"))
            if name == "suspected_bot_click_reason":
                item = self.pick(("user_agent", "ip_address", "click_speed"))
            fill = self.optional_fill if optional else 1.0
            return lambda c: [item(c) if rnd() < fill else None for _ in range(int(rnd() * 3) + 1)]
        if prim == "map":
            value = self.type_gen(avro_type["values"], name)
            return lambda c: {WORDS[int(rnd() * 10)]: value(c)}
        fields = [(f["name"], *self.field(f["name"], f["type"], ())) for f in avro_type["fields"]]
        return lambda c: {n: g(c) if p >= 1.0 or rnd() < p else None for n, g, p in fields}

    def pick(self, seq: Sequence[Any]) -> Gen:
        """A generator drawing uniformly from ``seq``."""
        rnd, n = self._rnd, len(seq)
        return lambda c: seq[int(rnd() * n)]

    def field(self, name: str, avro_type: Any, siblings: Collection[str]) -> tuple[Gen, float]:
        """Compile one field of a record whose field names are ``siblings``: a named generator if its
        type fits, else one by type.

        Returns the generator and the probability of calling it (else the value is null): 1 for
        required fields and for generators that decide nulls themselves, ``optional_fill`` otherwise.
        """
        optional, inner = unwrap(avro_type)
        prim = primitive(inner)
        known = self._named.get(name)
        gen: Gen
        if name == "properties" and prim == "string":
            gen, decides_nulls = self._properties_gen("name" in siblings), False
        elif known is not None and (known[0] == prim or {known[0], prim} <= {"int", "long"}):
            _, gen, decides_nulls = known
        else:
            gen, decides_nulls = self.type_gen(inner, name), False
        if not optional and decides_nulls:
            fallback, inner_gen = self.type_gen(inner, name), gen

            def gen(c: Ctx) -> Any:
                v = inner_gen(c)
                return fallback(c) if v is None else v

        return gen, (self.optional_fill if optional and not decides_nulls else _ALWAYS)

    def _properties_gen(self, custom_event: bool) -> Gen:
        """JSON-encoded ``properties``: custom-event ones keyed on the event's ``name`` (when the record
        has a ``name`` field), else purchase ones."""
        rng, rnd = self._rng, self._rnd
        dumps = orjson.dumps

        def item() -> dict[str, Any]:
            sku, title, cost = PRODUCTS[int(rnd() * len(PRODUCTS))]
            return {"sku": sku, "name": title, "price": cost, "qty": rng.randrange(1, 4)}

        def custom(c: Ctx) -> str:
            name, r = c.name, rnd()
            props: dict[str, Any]
            if r < 0.05:
                return "{}"
            if name in ("Product Viewed", "Added To Cart", "Wishlist Added"):
                props = {"product": item(), "source": rng.choice(("search", "home", "push", "email")),
                         "position": rng.randrange(1, 25), "tags": rng.sample(WORDS, 2)}  # fmt: skip
            elif name == "Search Performed":
                props = {"query": rng.choice(("running shoes", "café", "écouteurs sans fil", "ヨガ")),
                         "results": rng.randrange(0, 200),
                         "filters": {"size": ["42", "43"], "in_stock": rnd() < 0.5}}  # fmt: skip
            elif name in ("Checkout Started", "Order Completed", "Café Commandé"):
                items = [item() for _ in range(rng.randrange(1, 4))]
                props = {"order_id": f"ORD-{rng.randrange(100000, 999999)}", "items": items,
                         "total": round(sum(i["price"] * i["qty"] for i in items), 2),
                         "coupon": rng.choice((None, "SPRING24")), "first_order": rnd() < 0.2}  # fmt: skip
            elif name in ("Article Read", "Video Played"):
                props = {"title": rng.choice(("Les 10 meilleures pistes 🏃", "How we ship", "夏のセール")),
                         "duration_s": rng.randrange(30, 1200), "percent": round(rnd(), 2),
                         "author": {"name": rng.choice(FIRST_NAMES),
                                    "id": rng.randrange(1, 500)}}  # fmt: skip
            else:
                props = {"method": rng.choice(("email", "google", "apple")), "attempt": rng.randrange(1, 4)}
            if rnd() < 0.5:
                props["app_version"] = rng.choice(("4.12.0", "4.13.1"))
            return dumps(props).decode()

        def purchase(c: Ctx) -> str:
            props = {"quantity": rng.randrange(1, 4), "gift": rnd() < 0.1,
                     "payment_method": rng.choice(("card", "apple_pay", "paypal", "boleto")),
                     "promo": {"code": "SPRING24", "discount": 0.1} if rnd() < 0.2 else None,
                     "note": rng.choice(("", "Joyeux anniversaire 🎉", "for mom"))}  # fmt: skip
            return dumps(props).decode()

        return custom if custom_event else purchase
