"""Realistic synthetic Braze Currents data, generated from the shipped Avro schemas.

Used by tests, benchmarks and the demo. Every record is built by walking its schema's fields, so a
new ``.avsc`` works without code changes: known field names (``external_user_id``, ``email_address``,
``campaign_id``, ``price``, ...) get values that look like Braze's, unknown ones get a value of their
Avro type. Guarantees:

- every record validates against ``parsed_schema(event_type)``;
- the same seed and the same sequence of calls give the same records, files and paths;
- identities are coherent: a device belongs to one user, an ad id matches its platform, campaign and
  Canvas names match their ids; the identity edge cases the exporter must handle are present in
  configurable shares (short, unicode and placeholder external ids, events with no identity at all,
  all-zero IDFAs, hot devices, old timestamps from offline SDK queues);
- float values are exactly representable as Avro ``float`` (32 bit), so a record read back from a
  file equals the record written.

Per-schema field generators are compiled once per ``Synth`` and cached, so producing a record costs
one closure call per field, with no name inspection.
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import random
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import orjson

from consumer.schemas import event_types, parsed_schema, raw_schemas

__all__ = [
    "CLUSTER",
    "DEFAULT_WEIGHTS",
    "PLACEHOLDER_IDS",
    "ZONE",
    "Synth",
    "avro_body",
    "confluent_frame",
    "event_type_for_schema_id",
    "generate_sample",
    "schema_id_for",
    "write_container",
    "write_currents_tree",
]

CLUSTER = "prod-01"
"""Cluster segment of generated paths (``dataexport.<cluster>.S3.integration.<id>``)."""
ZONE = "0"
"""Zone segment of generated paths; Braze documents it only as internal, readers must not parse it."""
PLACEHOLDER_IDS = ("0", "-1", "null", "none", "undefined", "anonymous", "unknown", "n/a", "nil")
"""External ids that Amplitude refuses outright; a configurable share of users carry one."""
CODECS = ("null", "deflate", "snappy")

DEFAULT_WEIGHTS: dict[str, float] = {
    "users.messages.email.Send": 14, "users.messages.email.Delivery": 12, "users.messages.email.Open": 8,
    "users.messages.email.Click": 2, "users.messages.email.Bounce": 0.3,
    "users.messages.email.SoftBounce": 0.3, "users.messages.email.MarkAsSpam": 0.05,
    "users.messages.email.Unsubscribe": 0.2, "users.messages.pushnotification.Send": 14,
    "users.messages.pushnotification.Open": 3, "users.messages.pushnotification.IosForeground": 0.5,
    "users.messages.pushnotification.Bounce": 0.5, "users.behaviors.app.SessionStart": 10,
    "users.behaviors.app.SessionEnd": 9, "users.behaviors.app.FirstSession": 0.5,
    "users.behaviors.CustomEvent": 14, "users.behaviors.Purchase": 1.5, "users.behaviors.Location": 1,
    "users.messages.inappmessage.Impression": 3, "users.messages.inappmessage.Click": 0.6,
    "users.messages.contentcard.Send": 1, "users.messages.contentcard.Impression": 1.5,
    "users.messages.contentcard.Click": 0.3, "users.messages.contentcard.Dismiss": 0.2,
    "users.messages.sms.Send": 1.5, "users.messages.sms.CarrierSend": 1.2,
    "users.messages.sms.Delivery": 1.2, "users.messages.sms.Rejection": 0.1,
    "users.messages.sms.DeliveryFailure": 0.05, "users.messages.sms.InboundReceive": 0.1,
    "users.messages.webhook.Send": 1, "users.campaigns.Conversion": 0.5,
    "users.campaigns.EnrollInControl": 0.3, "users.canvas.Entry": 1, "users.canvas.Conversion": 0.4,
    "users.behaviors.subscriptiongroup.StateChange": 0.3, "users.behaviors.Uninstall": 0.2,
    "users.behaviors.InstallAttribution": 0.1,
}  # fmt: skip
"""Relative frequency of event types in :meth:`Synth.mixed`; other types get ``OTHER_WEIGHT``."""
OTHER_WEIGHT = 0.05

# --- value tables ------------------------------------------------------------------------------------
_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "BR", "IN", "JP", "ES", "CA", "MX", "AU", "NL")
_LANGS = {"US": "en", "GB": "en", "DE": "de", "FR": "fr", "BR": "pt", "IN": "hi", "JP": "ja", "ES": "es",
          "CA": "en", "MX": "es", "AU": "en", "NL": "nl"}  # fmt: skip
_TZ = {"US": "America/New_York", "GB": "Europe/London", "DE": "Europe/Berlin", "FR": "Europe/Paris",
       "BR": "America/Sao_Paulo", "IN": "Asia/Kolkata", "JP": "Asia/Tokyo", "ES": "Europe/Madrid",
       "CA": "America/Toronto", "MX": "America/Mexico_City", "AU": "Australia/Sydney",
       "NL": "Europe/Amsterdam"}  # fmt: skip
_CITIES = ("New York", "London", "Berlin", "Paris", "São Paulo", "Mumbai", "東京", "Madrid", "Toronto")
_FIRST = ("Emma", "Liam", "Olivia", "Noah", "José", "Zoë", "Chloé", "Mateo", "Aarav", "Yuki", "Søren")
_LAST = ("Smith", "García", "Müller", "Martin", "Silva", "Patel", "Tanaka", "O'Brien", "Nguyen")
_MAIL_DOMAINS = ("gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.fr")
_UNICODE_IDS = ("José-Ω-{n}", "Zoë.Müller{n}", "用户{n}", "Ñandú_{n}", "Ærø-{n}", "ユーザー{n}", "Çağla{n}")
_PLATFORMS = ("ios", "ios", "ios", "android", "android", "android", "web", "web", "kindle", "tvos",
              "roku")  # fmt: skip
_MODELS = {"ios": ("iPhone15,2", "iPhone14,5", "iPhone16,1", "iPad13,4"),
           "android": ("Pixel 7", "SM-S911B", "SM-A536B", "moto g power"),
           "web": ("Chrome", "Safari", "Firefox", "Edge"), "kindle": ("KFTRWI", "AFTMM"),
           "tvos": ("AppleTV6,2",), "roku": ("4800X",)}  # fmt: skip
_OS = {"ios": ("17.4.1", "16.7.2", "17.2"), "android": ("14", "13", "12"), "web": ("Mac OS X", "Windows"),
       "kindle": ("Fire OS 7",), "tvos": ("17.4",), "roku": ("12.5",)}  # fmt: skip
_SDK = {"ios": "9.0.0", "android": "30.1.1", "web": "5.2.0", "kindle": "30.1.1", "tvos": "9.0.0",
        "roku": "2.1.0"}  # fmt: skip
_CARRIERS = ("Verizon", "T-Mobile", "AT&T", "Vodafone", "Orange", "NTT DOCOMO")
_RESOLUTIONS = ("1170x2532", "1080x2400", "1920x1080", "2560x1440")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_CAMPAIGNS = ("Spring Sale 2024 - Push", "Welcome Email #1", "Cart Abandonment Reminder", "Weekly Digest",
              "Black Friday Teaser 🔥", "Winback 30d", "Price Drop Alert", "New Feature Announcement",
              "Order Shipped", "Rate Us Prompt", "Soldes d'été", "Loyalty Tier Upgrade")  # fmt: skip
_CANVASES = ("Onboarding Journey", "Re-engagement Flow", "Post-Purchase Upsell", "Trial Conversion",
             "Birthday Rewards 🎂", "Churn Prevention")  # fmt: skip
_STEPS = ("Welcome Email", "Day 2 Push", "Delay 1 day", "Audience Split", "In-App Survey", "SMS Nudge",
          "Discount Offer", "Exit")  # fmt: skip
_EVENT_NAMES = ("Product Viewed", "Product Viewed", "Product Viewed", "Added To Cart", "Added To Cart",
                "Search Performed", "Search Performed", "Checkout Started", "Order Completed",
                "Article Read", "Video Played", "Signed Up", "Logged In", "Logged In", "Wishlist Added",
                "Coupon Applied", "Level Completed", "Café Commandé")  # fmt: skip
_PRODUCTS = (("SKU-10023", "Trail Runner 2", 89.99), ("SKU-20417", "Café crème 1kg", 14.5),
             ("SKU-33001", "Wireless Earbuds Pro", 149.0), ("SKU-40999", "Yoga Mat", 29.95),
             ("sub_premium_monthly", "Premium Monthly", 9.99), ("SKU-55120", "Rucksack 25L", 64.0),
             ("gems_500", "500 Gems", 4.99))  # fmt: skip
_CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "BRL", "JPY", "CAD", "INR")
_UAS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36", "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", "GoogleImageProxy")  # fmt: skip
_URLS = ("https://shop.example.com/products/trail-runner-2?utm_source=braze", "https://example.com/blog/ete-2024",
         "https://example.com/account/settings", "https://shop.example.com/cart",
         "https://example.com/unsubscribe?u=abc123")  # fmt: skip
_PHONE_PREFIX = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33", "BR": "+55", "IN": "+91", "JP": "+81",
                 "ES": "+34", "CA": "+1", "MX": "+52", "AU": "+61", "NL": "+31"}  # fmt: skip
_GEO = {"US": (40.71, -74.0), "GB": (51.5, -0.12), "DE": (52.52, 13.4), "FR": (48.86, 2.35),
        "BR": (-23.55, -46.63), "IN": (19.07, 72.88), "JP": (35.68, 139.69), "ES": (40.42, -3.7),
        "CA": (43.65, -79.38), "MX": (19.43, -99.13), "AU": (-33.87, 151.21), "NL": (52.37, 4.9)}  # fmt: skip
_WORDS = ("alpha", "beacon", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper")
_CAMPAIGN_PREFIXES = ("campaign_", "message_variation_")
_STRING_CHOICES: dict[str, tuple[str, ...]] = {
    "gender": ("M", "F", "O", "N", "P", "U"),
    "ad_id_type": ("ios_idfa", "google_adid"),
    "ip_pool": ("marketing", "transactional", "default"),
    "esp": ("sendgrid", "sparkpost", "amazon_ses"),
    "from_domain": ("mail.example.com", "news.example.com"),
    "machine_open": ("true",),
    "device_class": ("desktop", "mobile", "tablet"),
    "device_os": ("iOS", "Android", "Windows", "macOS"),
    "mailbox_provider": ("Gmail", "Yahoo", "Outlook", "Apple"),
    "bounce_reason": ("550 5.1.1 The email account that you tried to reach does not exist",
                      "552 5.2.2 Mailbox full", "554 5.7.1 Message rejected as spam"),
    "link_alias": ("hero_cta", "footer_unsubscribe", "product_1", "view_in_browser"),
    "button_action_type": ("uri", "deep_link", "close"),
    "button_string": ("Shop now", "Later", "Voir l'offre", "Close"),
    "action": ("opt_in", "opt_out", "help", "other"),
    "message_body": ("STOP", "YES", "HELP", "Merci ! 😊", "when does my order arrive?"),
    "category": ("opt_in", "opt_out", "help"),
    "error": ("Undeliverable", "Invalid destination", "Carrier violation"),
    "provider_error_code": ("30003", "30005", "30007", "21610"),
    "subscription_status": ("Subscribed", "Unsubscribed", "Opted In"),
    "channel": ("email", "sms", "whats_app", "push"),
    "state_change_source": ("SDK", "REST API", "CSV Import", "Preference Center", "Dashboard"),
    "source": ("Facebook Ads", "Google Ads", "Organic", "TikTok", "Apple Search Ads"),
    "abort_type": ("liquid_abort_message", "rate_limit", "frequency_capping", "user_not_subscribed"),
    "retry_type": ("frequency_capped", "deprioritized"),
    "locale_key": ("en-US", "fr-FR", "de-DE", "ja-JP"),
    "timezone": tuple(sorted(set(_TZ.values()))),
    "country": _COUNTRIES,
    "language": tuple(sorted(set(_LANGS.values()))),
    "currency": _CURRENCIES,
    "name": _EVENT_NAMES,
    "model_provider": ("openai", "anthropic", "google"),
    "model_name": ("gpt-4o-mini", "claude-3-5-haiku", "gemini-1.5-flash"),
    "progression_type": ("entered_step", "exited_step", "exited_canvas"),
    "update_source": ("SDK", "REST API", "CSV Import"),
    "push_token_state_change_type": ("add", "update", "remove"),
    "webhook_failure_source": ("endpoint", "timeout", "connection"),
}  # fmt: skip

_F32 = struct.Struct("<f")
_ALWAYS = 1.0  # fill probability of fields that are always generated (checked before drawing)


def _f32(x: float) -> float:
    """``x`` rounded to the nearest 32-bit float, so Avro ``float`` round-trips it exactly."""
    return float(_F32.unpack(_F32.pack(x))[0])


def _uuid_from(bits: int) -> str:
    """Format 128 random bits as a version-4 UUID string."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True, kw_only=True)
class _Profile:
    """A Braze user: internal id, optional external id, contact and demographic data."""

    braze_id: str
    external_id: str | None
    country: str
    first: str
    last: str
    gender: str
    email: str
    phone: str


@dataclass(slots=True, kw_only=True)
class _Device:
    """A device and the Braze user it belongs to; its fields stay consistent across events."""

    device_id: str
    platform: str
    profile: _Profile
    model: str
    os: str
    sdk: str
    app_id: str
    ad_id: str | None
    ad_type: str | None
    ad_tracking: bool | None
    carrier: str | None
    resolution: str
    push_token: str | None


@dataclass(slots=True, kw_only=True)
class _Source:
    """The message an event belongs to: a campaign variation, or a Canvas variation's step."""

    kind: str  # "campaign" | "canvas"
    id: str
    name: str
    var_id: str
    var_name: str
    dispatch: list[str]
    api_id: str | None = None
    var_api_id: str | None = None
    step_id: str | None = None
    step_api_id: str | None = None
    step_name: str | None = None
    smv_id: str | None = None


class _Ctx:
    """What one record's field generators share: who, from which device and message, when."""

    __slots__ = ("dev", "device_id", "ext", "name", "product", "prof", "src", "t")

    dev: _Device
    device_id: str | None
    ext: str | None
    name: str | None
    product: tuple[str, str, float] | None
    prof: _Profile
    src: _Source | None
    t: int


Gen = Callable[[_Ctx], Any]
"""A field generator: per-record context in, Avro-typed value out."""


class _Plan:
    """The compiled generators for one event type."""

    __slots__ = ("fields", "has_device", "has_external", "source")

    def __init__(self, fields: list[tuple[str, Gen, float]], has_device: bool, has_external: bool,
                 source: str | None) -> None:  # fmt: skip
        self.fields = fields
        self.has_device = has_device
        self.has_external = has_external
        self.source = source


def _unwrap(avro_type: Any) -> tuple[bool, Any]:
    """``["null", T]`` -> ``(True, T)``; any other type -> ``(False, type)``."""
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return (len(rest) < len(avro_type), rest[0] if rest else "null")
    return (False, avro_type)


def _prim(avro_type: Any) -> str:
    """The primitive name of a type (``"string"``, ``"array"``, ...)."""
    if isinstance(avro_type, dict):
        return str(avro_type["type"])
    return str(avro_type)


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
        self._bits = self._rng.getrandbits
        self.app_group_id = self._uuid()
        self._apps = {p: self._uuid() for p in sorted(_MODELS)}
        self._sub_groups = [self._uuid() for _ in range(4)]
        self._senders = [f"+1{self._rng.randrange(2_000_000_000, 9_999_999_999)}" for _ in range(3)]
        self._profiles = [self._profile(i) for i in range(devices)]
        self._known = [p for p in self._profiles if p.external_id is not None]
        self._devices = [self._device(i) for i in range(devices)]
        self._campaigns, self._canvases = self._sources()
        if hot_devices == devices:
            self._hot_p = 1.0
        else:
            self._hot_p = hot_share if hot_devices else 0.0
        self._hot_scale = hot_devices / self._hot_p if self._hot_p else 0.0
        self._n_cold = devices - hot_devices
        self._plans: dict[str, _Plan] = {}
        self._named = self._named_generators()

    # --- entity pools ----------------------------------------------------------------------------
    def _uuid(self) -> str:
        return _uuid_from(self._bits(128))

    def _hex24(self) -> str:
        return f"{self._bits(96):024x}"

    def _external_id(self, i: int) -> str | None:
        rng, r = self._rng, self._rnd()
        if r >= self.external_id_share:
            return None
        r = self._rnd()
        if r < self.placeholder_share:
            return rng.choice(PLACEHOLDER_IDS)
        r -= self.placeholder_share
        if r < self.short_id_share:
            return rng.choice((str(rng.randrange(1, 10)), rng.choice(("ab", "x9", "Q")),
                               str(rng.randrange(10, 10_000))))  # fmt: skip
        r -= self.short_id_share
        if r < self.unicode_id_share:
            return rng.choice(_UNICODE_IDS).format(n=rng.randrange(1, 1000))
        kind = rng.randrange(4)
        if kind == 0:
            return str(rng.randrange(10_000_000, 99_999_999))
        if kind == 1:
            return f"cust_{self._bits(40):010x}"
        if kind == 2:
            return self._uuid()
        return f"user-{i:06d}"

    def _profile(self, i: int) -> _Profile:
        rng = self._rng
        country = rng.choice(_COUNTRIES)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower().replace("'", "")
        return _Profile(
            braze_id=self._hex24(), external_id=self._external_id(i), country=country, first=first,
            last=last, gender=rng.choice(_STRING_CHOICES["gender"]),
            email=f"{local}{rng.randrange(1, 999)}@{rng.choice(_MAIL_DOMAINS)}",
            phone=f"{_PHONE_PREFIX[country]}{rng.randrange(200_000_000, 999_999_999)}{rng.randrange(10)}",
        )  # fmt: skip

    def _device(self, i: int) -> _Device:
        rng = self._rng
        platform = rng.choice(_PLATFORMS)
        owner = i if rng.random() < 0.85 else rng.randrange(i + 1)  # some users own several devices
        dev_id = self._uuid()
        ad_id: str | None = None
        ad_type: str | None = None
        tracking: bool | None = None
        if platform == "ios":
            ad_type, tracking = "ios_idfa", rng.random() >= 0.1
            ad_id = self._uuid().upper() if tracking else _ZERO_UUID  # Limit Ad Tracking: all-zero IDFA
            dev_id = dev_id.upper()
        elif platform == "android":
            ad_type, tracking, ad_id = "google_adid", True, self._uuid()
        token: str | None = None
        if platform in ("ios", "tvos"):
            token = f"{self._bits(256):064x}"
        elif platform in ("android", "kindle"):
            token = f"{self._bits(88):022x}:APA91b{self._bits(256):064x}"
        return _Device(
            device_id=dev_id, platform=platform, profile=self._profiles[owner],
            model=rng.choice(_MODELS[platform]), os=rng.choice(_OS[platform]), sdk=_SDK[platform],
            app_id=self._apps[platform], ad_id=ad_id, ad_type=ad_type, ad_tracking=tracking,
            carrier=rng.choice(_CARRIERS) if platform in ("ios", "android") else None,
            resolution=rng.choice(_RESOLUTIONS), push_token=token,
        )  # fmt: skip

    def _sources(self) -> tuple[list[_Source], list[_Source]]:
        campaigns = []
        for name in _CAMPAIGNS:
            cid, dispatch = self._hex24(), [self._hex24() for _ in range(3)]
            for var in ("Variant A", "Variant B"):
                campaigns.append(_Source(kind="campaign", id=cid, name=name, var_id=self._hex24(),
                                         var_name=var, dispatch=dispatch))  # fmt: skip
        canvases = []
        for name in _CANVASES:
            cid, api_id, dispatch = self._hex24(), self._uuid(), [self._hex24() for _ in range(3)]
            steps = [(self._hex24(), self._uuid(), self._hex24(), step) for step in
                     self._rng.sample(_STEPS, 3)]  # fmt: skip
            for var in ("Variant 1", "Control"):
                var_id, var_api = self._hex24(), self._uuid()
                for step_id, step_api, smv, step_name in steps:
                    canvases.append(_Source(
                        kind="canvas", id=cid, name=name, api_id=api_id, var_id=var_id, var_name=var,
                        var_api_id=var_api, step_id=step_id, step_api_id=step_api, step_name=step_name,
                        smv_id=smv, dispatch=dispatch))  # fmt: skip
        return campaigns, canvases

    # --- field generators ------------------------------------------------------------------------
    def _named_generators(self) -> dict[str, tuple[str, Gen, bool]]:
        """Field name -> (Avro primitive it applies to, generator, whether it decides nulls itself)."""
        rng, rnd, bits, pick = self._rng, self._rnd, self._bits, self._pick
        group, subs, senders = self.app_group_id, self._sub_groups, self._senders

        def camp(attr: str) -> Gen:
            return lambda c: getattr(c.src, attr) if c.src is not None and c.src.kind == "campaign" else None

        def canv(attr: str) -> Gen:
            return lambda c: getattr(c.src, attr) if c.src is not None and c.src.kind == "canvas" else None

        def event_name(c: _Ctx) -> str:
            c.name = _EVENT_NAMES[int(rnd() * len(_EVENT_NAMES))]
            return c.name

        def product_id(c: _Ctx) -> str:
            c.product = _PRODUCTS[int(rnd() * len(_PRODUCTS))]
            return c.product[0]

        def price(c: _Ctx) -> float:
            base = c.product[2] if c.product is not None else round(rnd() * 200, 2)
            return _f32(base)

        def geo(axis: int) -> Gen:
            return lambda c: _f32(round(_GEO[c.prof.country][axis] + (rnd() - 0.5), 5))

        def short_url(c: _Ctx) -> str:
            return f"https://brz.ai/{bits(40):010x}"

        s = "string"
        # The device and workspace fields are present in practice whenever the schema has them, so
        # they "decide nulls" (never randomly nulled); identity and message-origin fields follow the
        # event's context.
        named: dict[str, tuple[str, Gen, bool]] = {
            "id": (s, lambda c: _uuid_from(bits(128)), False),
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
            "language": (s, lambda c: _LANGS[c.prof.country], False),
            "timezone": (s, lambda c: _TZ[c.prof.country], False),
            "first_name": (s, lambda c: c.prof.first, False),
            "last_name": (s, lambda c: c.prof.last, False),
            "home_city": (s, pick(_CITIES), False),
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
            "altitude": ("float", lambda c: _f32(round(rnd() * 300, 1)), False),
            "ll_accuracy": ("float", lambda c: _f32(round(3 + rnd() * 60, 1)), False),
            "alt_accuracy": ("float", lambda c: _f32(round(3 + rnd() * 30, 1)), False),
            "session_id": (s, lambda c: _uuid_from(bits(128)), False),
            "duration": ("float", lambda c: _f32(round(5 + rnd() * rnd() * 1800, 1)), False),
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
            "url": (s, pick(_URLS), False),
            "endpoint_url": (s, lambda c: "https://hooks.example.com/braze/events", False),
            "host": (s, lambda c: "hooks.example.com", False),
            "url_path": (s, lambda c: "/braze/events", False),
            "raw_response": (s, lambda c: '{"error":"upstream timeout"}', False),
            "short_url": (s, short_url, False),
            "user_agent": (s, pick(_UAS), False),
            "sending_ip": (s, lambda c: f"203.0.113.{int(rnd() * 254) + 1}", False),
            "message_extras": (s, pick(('{"offer":"SPRING24"}', '{"tier":"gold","locale":"fr-FR"}')), False),
            "custom_attributes": (s, lambda c: '{"favorite_color":"bleu","loyalty_points":1200}', False),
            "link_id": (s, lambda c: str(int(rnd() * 12) + 1), False),
            "button_id": (s, lambda c: str(int(rnd() * 2)), False),
        }
        for field, choices in _STRING_CHOICES.items():
            named.setdefault(field, (s, pick(choices), False))
        return named

    def _type_gen(self, avro_type: Any, name: str) -> Gen:
        """A generator for any Avro type, shaped by the field name's suffix where that helps."""
        rnd, bits, prim = self._rnd, self._bits, _prim(avro_type)
        if prim == "string":
            if name.endswith("_api_id") or name.endswith("_uuid"):
                return lambda c: _uuid_from(bits(128))
            if name.endswith("_token"):
                return lambda c: f"{bits(256):064x}"
            if name.endswith("_id"):
                return lambda c: f"{bits(96):024x}"
            if name.endswith("_url") or name.endswith("_urls"):
                return lambda c: _URLS[int(rnd() * len(_URLS))]
            if name.endswith("_phone_number"):
                return lambda c: c.prof.phone
            if name.endswith("_name") or name.endswith("_title"):
                return lambda c: f"{_WORDS[int(rnd() * 10)].title()} {_WORDS[int(rnd() * 10)]}"
            if name.endswith("_log") or name.endswith("_json") or name in ("input", "output"):
                return lambda c: f'{{"detail":"synthetic","step":{int(rnd() * 9)}}}'
            return lambda c: _WORDS[int(rnd() * 10)]
        if prim in ("int", "long"):
            if name.endswith("_at"):
                return lambda c: c.t - int(rnd() * 7_776_000)
            return lambda c: int(rnd() * 4000)
        if prim in ("float", "double"):
            return lambda c: _f32(round(rnd() * 100, 2))
        if prim == "boolean":
            limit = 0.05 if name.startswith("is_") else 0.5
            return lambda c: rnd() < limit
        if prim in ("bytes", "fixed"):
            size = avro_type.get("size", 8) if isinstance(avro_type, dict) else 8
            return lambda c: bits(size * 8).to_bytes(size, "big")
        if prim == "enum":
            return self._pick(avro_type["symbols"])
        if prim == "array":
            optional, items = _unwrap(avro_type["items"])
            item = self._type_gen(items, name.removesuffix("s"))
            if name == "suspected_bot_click_reason":
                item = self._pick(("user_agent", "ip_address", "click_speed"))
            fill = self.optional_fill if optional else 1.0
            return lambda c: [item(c) if rnd() < fill else None for _ in range(int(rnd() * 3) + 1)]
        if prim == "map":
            value = self._type_gen(avro_type["values"], name)
            return lambda c: {_WORDS[int(rnd() * 10)]: value(c)}
        if prim == "record":
            fields = [(f["name"], *self._field(f["name"], f["type"], "")) for f in avro_type["fields"]]
            return lambda c: {n: g(c) if p >= 1.0 or rnd() < p else None for n, g, p in fields}
        if prim == "null":
            return lambda c: None
        raise ValueError(f"cannot generate Avro type {avro_type!r} for field {name!r}")

    def _pick(self, seq: Sequence[Any]) -> Gen:
        rnd, n = self._rnd, len(seq)
        return lambda c: seq[int(rnd() * n)]

    def _field(self, name: str, avro_type: Any, event_type: str) -> tuple[Gen, float]:
        """Compile one field: a named generator if its type fits, else one by type.

        Returns the generator and the probability of calling it (else the value is null): 1 for
        required fields and for generators that decide nulls themselves, ``optional_fill`` otherwise.
        """
        optional, inner = _unwrap(avro_type)
        prim = _prim(inner)
        known = self._named.get(name)
        gen: Gen
        if name == "properties" and prim == "string":
            gen, decides_nulls = self._properties_gen(event_type), False
        elif known is not None and (known[0] == prim or {known[0], prim} <= {"int", "long"}):
            _, gen, decides_nulls = known
        else:
            gen, decides_nulls = self._type_gen(inner, name), False
        if not optional and decides_nulls:
            fallback, inner_gen = self._type_gen(inner, name), gen

            def gen(c: _Ctx) -> Any:
                v = inner_gen(c)
                return fallback(c) if v is None else v

        return gen, (self.optional_fill if optional and not decides_nulls else _ALWAYS)

    def _properties_gen(self, event_type: str) -> Gen:
        """JSON-encoded ``properties``: custom-event ones keyed on the event's ``name``, or purchase ones."""
        rng, rnd = self._rng, self._rnd
        dumps = orjson.dumps

        def item() -> dict[str, Any]:
            sku, title, cost = _PRODUCTS[int(rnd() * len(_PRODUCTS))]
            return {"sku": sku, "name": title, "price": cost, "qty": rng.randrange(1, 4)}

        def custom(c: _Ctx) -> str:
            name, r = c.name, rnd()
            props: dict[str, Any]
            if r < 0.05:
                return "{}"
            if name in ("Product Viewed", "Added To Cart", "Wishlist Added"):
                props = {"product": item(), "source": rng.choice(("search", "home", "push", "email")),
                         "position": rng.randrange(1, 25), "tags": rng.sample(_WORDS, 2)}  # fmt: skip
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
                         "author": {"name": rng.choice(_FIRST), "id": rng.randrange(1, 500)}}  # fmt: skip
            else:
                props = {"method": rng.choice(("email", "google", "apple")), "attempt": rng.randrange(1, 4)}
            if rnd() < 0.5:
                props["app_version"] = rng.choice(("4.12.0", "4.13.1"))
            return dumps(props).decode()

        def purchase(c: _Ctx) -> str:
            props = {"quantity": rng.randrange(1, 4), "gift": rnd() < 0.1,
                     "payment_method": rng.choice(("card", "apple_pay", "paypal", "boleto")),
                     "promo": {"code": "SPRING24", "discount": 0.1} if rnd() < 0.2 else None,
                     "note": rng.choice(("", "Joyeux anniversaire 🎉", "for mom"))}  # fmt: skip
            return dumps(props).decode()

        fields = {f["name"] for f in raw_schemas()[event_type]["fields"]} if event_type else set()
        return custom if "name" in fields else purchase

    def _compile(self, event_type: str) -> _Plan:
        schema = raw_schemas()[event_type]
        names = {f["name"]: _unwrap(f["type"])[0] for f in schema["fields"]}
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
        fields = [(f["name"], *self._field(f["name"], f["type"], event_type)) for f in schema["fields"]]
        plan = _Plan(fields, "device_id" in names, "external_user_id" in names, source)
        self._plans[event_type] = plan
        return plan

    def _ctx(self, plan: _Plan, at: int | None) -> _Ctx:
        rnd = self._rnd
        c = _Ctx()
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
        types, cum = _cumulative(self._types(event_types), weights)
        rnd, total = self._rnd, cum[-1]
        for _ in range(n):
            t = types[bisect.bisect_right(cum, rnd() * total)]
            yield t, self.record(t)

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


# --- files ---------------------------------------------------------------------------------------------
def write_container(
    path: str | Path,
    event_type: str,
    records: Iterable[dict[str, Any]],
    codec: str = "null",
    *,
    sync_marker: bytes | None = None,
) -> Path:
    """Write ``records`` as an Avro Object Container File whose writer schema is the shipped one.

    The header carries the ``.avsc`` JSON as shipped (name and namespace as Braze writes them).
    ``codec`` is ``"null"``, ``"deflate"`` or ``"snappy"``. ``sync_marker`` (16 bytes) makes the
    output byte-for-byte reproducible; by default it is random, as the Avro spec intends. Parent
    directories are created; ``records`` is consumed lazily. Returns ``path``. An empty ``records``
    gives a valid file with no blocks (Braze never writes one, and :func:`write_currents_tree` does not).
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fo:
        fastavro.writer(
            fo,
            raw_schemas()[event_type],
            records,
            codec=codec,
            sync_marker=sync_marker if sync_marker is not None else os.urandom(16),
            disable_tuple_notation=True,  # records are plain dicts; skips a per-union check
        )
    return out


def write_currents_tree(
    root: str | Path,
    synth: Synth,
    n_events: int,
    *,
    event_types: Sequence[str] | None = None,
    codecs: Sequence[str] = CODECS,
    integrations: int = 1,
    hours: int = 2,
    max_per_file: int = 15000,
) -> list[Path]:
    """Write ``n_events`` mixed events under ``root`` in Braze's Currents storage layout; return the files.

    Layout: ``<root>/dataexport.prod-01.S3.integration.<integration-id>/event_type=<event-type>/
    date=<YYYY-MM-DD-HH>/<schema-id>/<zone>/dataexport.prod-01.S3.integration.<integration-id>+
    <partition>+<offset>.avro``. Events are spread evenly over ``hours`` consecutive UTC hours from
    the hour of ``synth.start_time`` (the ``date`` folder is the queue hour, as in Braze: an event's
    ``time`` is never after the end of its hour, and sometimes well before), over ``integrations``
    connectors, and per (integration, hour, type) into files of at most ``max_per_file`` records;
    files take the ``codecs`` in turn. One event type per file, never an empty file;
    ``<schema-id>`` is :func:`schema_id_for`, ``<offset>`` the offset of the file's first record in
    its partition. Deterministic for a seed: a fresh ``Synth`` with the same arguments gives the
    same paths and byte-identical files (sync markers are seeded too).
    Memory stays bounded by one file's records.
    """
    if n_events < 0 or integrations < 1 or hours < 1 or max_per_file < 1 or not codecs:
        raise ValueError("need n_events >= 0, integrations >= 1, hours >= 1, max_per_file >= 1, codecs")
    for codec in codecs:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
    types, cum = _cumulative(synth._types(event_types), None)
    layout = random.Random(f"currents-tree:{synth.seed}")  # names stay stable whatever n_events is
    prefixes = [
        f"dataexport.{CLUSTER}.S3.integration.{layout.getrandbits(96):024x}" for _ in range(integrations)
    ]
    offsets: dict[tuple[int, str, int], int] = {}
    base_hour = synth.start_time // 3600 * 3600
    paths: list[Path] = []
    rnd, total = synth._rnd, cum[-1]
    for h in range(hours):
        count = n_events * (h + 1) // hours - n_events * h // hours
        counts: dict[tuple[int, str], int] = {}
        for _ in range(count):
            key = (int(rnd() * integrations), types[bisect.bisect_right(cum, rnd() * total)])
            counts[key] = counts.get(key, 0) + 1
        hour = base_hour + h * 3600
        date = time.strftime("%Y-%m-%d-%H", time.gmtime(hour))
        for (k, event_type), remaining in sorted(counts.items()):
            folder = Path(root, prefixes[k], f"event_type={event_type}", f"date={date}",
                          str(schema_id_for(event_type)), ZONE)  # fmt: skip
            while remaining:
                size = min(remaining, max_per_file)
                remaining -= size
                partition = layout.randrange(6)
                start = offsets.get((k, event_type, partition))
                if start is None:
                    start = layout.randrange(50_000)
                offsets[(k, event_type, partition)] = start + size
                path = folder / f"{prefixes[k]}+{partition}+{start:010d}.avro"
                records = (synth.record(event_type, at=hour + int(rnd() * 3600)) for _ in range(size))
                codec = codecs[len(paths) % len(codecs)]
                marker = layout.randbytes(16)
                paths.append(write_container(path, event_type, records, codec, sync_marker=marker))
    return paths


def generate_sample(root: str | Path, n_events: int, seed: int) -> list[Path]:
    """The demo data set behind ``currents-consumer sample``: a Currents tree under ``root``.

    Two hours, one integration, all three codecs, every shipped event type at realistic weights, and
    three hot devices receiving 8% of the events so that per-device throttling shows.
    """
    devices = max(20, min(20_000, n_events // 20))
    synth = Synth(seed, devices=devices, hot_devices=3, hot_share=0.08)
    return write_currents_tree(root, synth, n_events)


# --- Kafka ---------------------------------------------------------------------------------------------
@functools.cache
def _schema_ids() -> dict[str, int]:
    return {t: i + 1 for i, t in enumerate(event_types())}


def schema_id_for(event_type: str) -> int:
    """A registry id for ``event_type``: its 1-based index in :func:`event_types` (stable per schema set)."""
    try:
        return _schema_ids()[event_type]
    except KeyError:
        raise KeyError(f"no shipped schema for {event_type!r}") from None


def event_type_for_schema_id(schema_id: int) -> str:
    """The inverse of :func:`schema_id_for`, for a fake or local schema registry."""
    for event_type, sid in _schema_ids().items():
        if sid == schema_id:
            return event_type
    raise KeyError(f"no shipped schema has id {schema_id}")


def avro_body(event_type: str, record: dict[str, Any]) -> bytes:
    """``record`` as plain Avro binary (no header, no framing) with the shipped schema."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(event_type), record)
    return buf.getvalue()


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """Confluent wire format: magic byte ``0x00``, 4-byte big-endian ``schema_id``, then ``body``."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
    return b"\x00" + schema_id.to_bytes(4, "big") + body
