"""The sections of the destinations that take one event per request: a shared base, and each partner's
own options and defaults.

:class:`OnePerRequest` declares the options every such destination has once; a partner's section
extends it and declares only what differs (another default, another help line, options of its own).
The options' flags, environment variables and TOML keys are named after the section (see
:func:`~consumer.settings.fields.derived`): the field ``rate`` of the section ``remerge`` is
``--remerge-rate``, ``REMERGE_RATE`` and ``remerge.rate``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import model_validator

from consumer.settings.delivery import DestinationSection, LimitSettings, RequestShape
from consumer.settings.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Float,
    Int,
    OptionError,
    SecretText,
    SettingsError,
    Text,
    Words,
    derived,
)

PARTNER_TYPES = ("users.behaviors.CustomEvent", "users.behaviors.Purchase")
"""The Currents event types a partner receives unless told otherwise."""
EventNames = Annotated[Literal["snake_case", "verbatim"], AS_TEXT]
ONE_REQUEST_BYTES = 1 << 20
"""The most one partner request may carry (one event is far smaller)."""
NO_DAILY_LIMIT = 1 << 62


class OnePerRequest(DestinationSection):
    """A destination that takes one event per request, with no per-device limit: the options all of them
    share, and their own limits (none inherited from Amplitude's)."""

    endpoint: Text = derived("", "endpoint URL", metavar="URL", common=True)
    key: SecretText = derived("", "the key the partner gave you", metavar="KEY", common=True)
    event_types: Words = derived(
        PARTNER_TYPES, "Currents event types sent (glob, repeatable)", word="event-type", metavar="GLOB"
    )
    event_names: EventNames = derived(
        "verbatim", "custom event names as sent: verbatim or snake_case (Product Viewed -> product_viewed)"
    )
    purchase_event: Text = derived("purchase", "event name of a Currents purchase", metavar="NAME")
    concurrency: Int = derived(8, "requests in flight at once (one event per request)", ge=1)
    rate: Float = derived(0.0, "events per second (0 = unlimited)", ge=0, metavar="RATE")
    timeout: Duration = derived(
        30.0, "deadline for one whole request (connection wait to the last byte)", gt=0
    )
    retry_window: Duration = derived(
        48 * 3600.0, "how long an event may keep failing before it is dead-lettered", gt=0
    )
    max_backoff: Duration = derived(300.0, "longest wait between retries of a failing request", ge=0)
    throttle_penalty: Duration = derived(
        30.0, "how long sending pauses after a 429 that gives no Retry-After", ge=0
    )
    max_pending: Int = derived(50_000, "events held in memory for this destination before input pauses", ge=1)

    def request_shape(self) -> RequestShape:
        """One event per request, sent at once, ``concurrency`` requests at a time."""
        return RequestShape(1, ONE_REQUEST_BYTES, 0.0, self.concurrency)

    def own_limits(self, limits: LimitSettings) -> LimitSettings:
        """No per-device limit; the rate, retry window, back-off and memory bound of this section (the
        ``[limits]`` section is Amplitude's and is not read)."""
        return LimitSettings(
            device_rate=float("inf"),
            device_daily_limit=NO_DAILY_LIMIT,
            project_rate=self.rate,
            retry_window=self.retry_window,
            max_backoff=self.max_backoff,
            throttle_penalty=self.throttle_penalty,
            max_pending=self.max_pending,
        )


class MovableInkSettings(OnePerRequest):
    """The Movable Ink Customer Data API destination."""

    endpoint: Text = derived(
        "",
        "Movable Ink Customer Data API endpoint (events go to <endpoint>/behavioral/<key>)",
        metavar="URL",
        common=True,
    )
    key: SecretText = derived("", "the <key> path segment Movable Ink gave you", metavar="KEY", common=True)
    username: SecretText = derived("", "HTTP Basic user name", metavar="NAME", common=True)
    password: SecretText = derived("", "HTTP Basic password", common=True)
    event_names: EventNames = derived(
        "snake_case", "custom event names as sent: snake_case (Product Viewed -> product_viewed) or verbatim"
    )
    anonymous_id: Annotated[Literal["device_id", "email_md5", "braze_id"], AS_TEXT] = derived(
        "device_id",
        "anonymous_id of users without an external id: the device id, the md5 of the email address, "
        "or Braze's user id",
    )
    identify: Bool = derived(
        True, "send an identify event linking anonymous_id and user_id the first time both are seen"
    )

    def missing(self) -> str:
        """Movable Ink needs its endpoint and key."""
        ok = self.endpoint and self.key
        return "" if ok else "movableink needs --movableink-endpoint and --movableink-key"

    @property
    def url(self) -> str:
        """Where events are posted (the key is part of the path: never log it)."""
        return f"{self.endpoint.rstrip('/')}/behavioral/{self.key.reveal()}"


class RemergeSettings(OnePerRequest):
    """The Remerge event tracking destination (one GET per event)."""

    endpoint: Text = derived(
        "https://refusion.events/event", "Remerge event tracking endpoint", metavar="URL"
    )
    key: SecretText = derived("", "the key Remerge gave you", metavar="KEY", common=True)
    partner: Text = derived("braze", "partner parameter", metavar="NAME")
    app_ids: Words = derived(
        (),
        "BRAZE_APP_ID=STORE_APP_ID pairs (repeatable): the store app id sent for a Braze app",
        word="app-id",
        metavar="BRAZE_APP_ID=STORE_APP_ID",
        common=True,
    )
    ios_app_id: Text = derived(
        "",
        "store app id of iOS events whose Braze app is not in --remerge-app-id (e.g. 012345678)",
        metavar="ID",
        common=True,
    )
    android_app_id: Text = derived(
        "",
        "store app id of Android events whose Braze app is not in --remerge-app-id (e.g. com.example)",
        metavar="ID",
        common=True,
    )
    non_app_event: Bool = derived(
        True, "non_app_event parameter (true: the event did not come from Remerge's SDK)"
    )

    @model_validator(mode="after")
    def _app_ids_are_pairs(self) -> RemergeSettings:
        try:
            self.store_app_ids()
        except SettingsError as exc:
            raise OptionError("app_ids", str(exc).partition(": ")[2]) from None
        return self

    def missing(self) -> str:
        """Remerge needs its key and a store app id."""
        if not self.key:
            return "remerge needs --remerge-key"
        if not (self.app_ids or self.ios_app_id or self.android_app_id):
            return "remerge needs store app ids (--remerge-app-id, --remerge-ios-app-id, ...)"
        return ""

    def store_app_ids(self) -> dict[str, str]:
        """``BRAZE_APP_ID=STORE_APP_ID`` pairs as a dict; raises ``SettingsError`` on a malformed pair."""
        return pairs(self.app_ids, "--remerge-app-id", "BRAZE_APP_ID=STORE_APP_ID")


def pairs(items: tuple[str, ...], flag: str, shape: str) -> dict[str, str]:
    """``LEFT=RIGHT`` items as a dict; raises ``SettingsError`` naming ``flag`` on a malformed one."""
    out: dict[str, str] = {}
    for pair in items:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise SettingsError(f"{flag}: expected {shape}, got {pair!r}")
        out[left.strip()] = right.strip()
    return out
