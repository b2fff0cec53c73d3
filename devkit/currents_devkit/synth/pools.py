"""The people, devices and messages synthetic Currents events are about, drawn once per generator.

:class:`Population` draws every entity from the generator's ``random.Random`` in one fixed order, so
a seed always yields the same users, devices, workspace ids, campaigns and Canvases. Identities are
coherent: a device belongs to one user, an ad id matches its platform, campaign and Canvas names match
their ids; a configurable share of users carries the external-id edge cases Amplitude refuses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from currents_devkit.synth.values import (
    CAMPAIGNS,
    CANVASES,
    CARRIERS,
    COUNTRIES,
    FIRST_NAMES,
    LAST_NAMES,
    MAIL_DOMAINS,
    MODELS,
    OS_VERSIONS,
    PHONE_PREFIXES,
    PLACEHOLDER_IDS,
    PLATFORMS,
    RESOLUTIONS,
    SDK_VERSIONS,
    STEPS,
    STRING_CHOICES,
    UNICODE_IDS,
    ZERO_UUID,
    uuid_from,
)


@dataclass(slots=True, kw_only=True)
class Profile:
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
class Device:
    """A device and the Braze user it belongs to; its fields stay consistent across events."""

    device_id: str
    platform: str
    profile: Profile
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
class Source:
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


class Population:
    """Workspace ids, ``devices`` users and devices (some users own several), campaigns and Canvases.

    ``external_id_share`` of users have an external id; of those, ``placeholder_share`` carry one
    Amplitude refuses (``"0"``, ``"null"``, ...), ``short_id_share`` a 1-4 character one and
    ``unicode_id_share`` a non-ASCII one. Everything is drawn in ``__init__``, from ``rng``, in a
    fixed order; afterwards the population is read-only.
    """

    def __init__(
        self,
        rng: random.Random,
        devices: int,
        *,
        external_id_share: float,
        placeholder_share: float,
        short_id_share: float,
        unicode_id_share: float,
    ) -> None:
        self._external_id_share = external_id_share
        self._placeholder_share = placeholder_share
        self._short_id_share = short_id_share
        self._unicode_id_share = unicode_id_share
        self._rng = rng
        self._rnd = rng.random
        self._bits = rng.getrandbits
        self.app_group_id = self._uuid()
        self.apps = {p: self._uuid() for p in sorted(MODELS)}
        self.sub_groups = [self._uuid() for _ in range(4)]
        self.senders = [f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}" for _ in range(3)]
        self.profiles = [self._profile(i) for i in range(devices)]
        self.known = [p for p in self.profiles if p.external_id is not None]
        """Users with an external id (to attribute events of schemas without ``device_id``)."""
        self.devices = [self._device(i) for i in range(devices)]
        self.campaigns, self.canvases = self._sources()

    def _uuid(self) -> str:
        return uuid_from(self._bits(128))

    def _hex24(self) -> str:
        return f"{self._bits(96):024x}"

    def _external_id(self, i: int) -> str | None:
        rng, r = self._rng, self._rnd()
        if r >= self._external_id_share:
            return None
        r = self._rnd()
        if r < self._placeholder_share:
            return rng.choice(PLACEHOLDER_IDS)
        r -= self._placeholder_share
        if r < self._short_id_share:
            return rng.choice((str(rng.randrange(1, 10)), rng.choice(("ab", "x9", "Q")),
                               str(rng.randrange(10, 10_000))))  # fmt: skip
        r -= self._short_id_share
        if r < self._unicode_id_share:
            return rng.choice(UNICODE_IDS).format(n=rng.randrange(1, 1000))
        kind = rng.randrange(4)
        if kind == 0:
            return str(rng.randrange(10_000_000, 99_999_999))
        if kind == 1:
            return f"cust_{self._bits(40):010x}"
        if kind == 2:
            return self._uuid()
        return f"user-{i:06d}"

    def _profile(self, i: int) -> Profile:
        rng = self._rng
        country = rng.choice(COUNTRIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}".lower().replace("'", "")
        return Profile(
            braze_id=self._hex24(), external_id=self._external_id(i), country=country, first=first,
            last=last, gender=rng.choice(STRING_CHOICES["gender"]),
            email=f"{local}{rng.randrange(1, 999)}@{rng.choice(MAIL_DOMAINS)}",
            phone=f"{PHONE_PREFIXES[country]}{rng.randrange(200_000_000, 999_999_999)}{rng.randrange(10)}",
        )  # fmt: skip

    def _device(self, i: int) -> Device:
        rng = self._rng
        platform = rng.choice(PLATFORMS)
        owner = i if rng.random() < 0.85 else rng.randrange(i + 1)  # some users own several devices
        dev_id = self._uuid()
        ad_id: str | None = None
        ad_type: str | None = None
        tracking: bool | None = None
        if platform == "ios":
            ad_type, tracking = "ios_idfa", rng.random() >= 0.1
            ad_id = self._uuid().upper() if tracking else ZERO_UUID  # Limit Ad Tracking: all-zero IDFA
            dev_id = dev_id.upper()
        elif platform == "android":
            ad_type, tracking, ad_id = "google_adid", True, self._uuid()
        token: str | None = None
        if platform in ("ios", "tvos"):
            token = f"{self._bits(256):064x}"
        elif platform in ("android", "kindle"):
            token = f"{self._bits(88):022x}:APA91b{self._bits(256):064x}"
        return Device(
            device_id=dev_id, platform=platform, profile=self.profiles[owner],
            model=rng.choice(MODELS[platform]), os=rng.choice(OS_VERSIONS[platform]),
            sdk=SDK_VERSIONS[platform], app_id=self.apps[platform], ad_id=ad_id, ad_type=ad_type,
            ad_tracking=tracking,
            carrier=rng.choice(CARRIERS) if platform in ("ios", "android") else None,
            resolution=rng.choice(RESOLUTIONS), push_token=token,
        )  # fmt: skip

    def _sources(self) -> tuple[list[Source], list[Source]]:
        campaigns = []
        for name in CAMPAIGNS:
            cid, dispatch = self._hex24(), [self._hex24() for _ in range(3)]
            for var in ("Variant A", "Variant B"):
                campaigns.append(Source(kind="campaign", id=cid, name=name, var_id=self._hex24(),
                                        var_name=var, dispatch=dispatch))  # fmt: skip
        canvases = []
        for name in CANVASES:
            cid, api_id, dispatch = self._hex24(), self._uuid(), [self._hex24() for _ in range(3)]
            steps = [(self._hex24(), self._uuid(), self._hex24(), step) for step in
                     self._rng.sample(STEPS, 3)]  # fmt: skip
            for var in ("Variant 1", "Control"):
                var_id, var_api = self._hex24(), self._uuid()
                for step_id, step_api, smv, step_name in steps:
                    canvases.append(Source(
                        kind="canvas", id=cid, name=name, api_id=api_id, var_id=var_id, var_name=var,
                        var_api_id=var_api, step_id=step_id, step_api_id=step_api, step_name=step_name,
                        smv_id=smv, dispatch=dispatch))  # fmt: skip
        return campaigns, canvases
