"""The sections of the one-event-per-request destinations: Movable Ink and Remerge."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from consumer.settings.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Float,
    Int,
    SecretText,
    Section,
    SettingsError,
    Text,
    Words,
)
from consumer.settings.fields import option as _option

DESTINATIONS = ("amplitude", "movableink", "remerge")

_movableink = partial(_option, group="movableink")
_remerge = partial(_option, group="remerge")
_PARTNER_TYPES = ("users.behaviors.CustomEvent", "users.behaviors.Purchase")
EventNames = Annotated[Literal["snake_case", "verbatim"], AS_TEXT]


class MovableInkSettings(Section):
    """The Movable Ink Customer Data API destination (one event per request)."""

    endpoint: Text = _movableink(
        "",
        "--movableink-endpoint",
        "MOVABLEINK_ENDPOINT",
        "Movable Ink Customer Data API endpoint (events go to <endpoint>/behavioral/<key>)",
        metavar="URL",
        common=True,
    )
    key: SecretText = _movableink(
        "",
        "--movableink-key",
        "MOVABLEINK_KEY",
        "the <key> path segment Movable Ink gave you",
        metavar="KEY",
        common=True,
    )
    username: SecretText = _movableink(
        "",
        "--movableink-username",
        "MOVABLEINK_USERNAME",
        "HTTP Basic user name",
        metavar="NAME",
        common=True,
    )
    password: SecretText = _movableink(
        "", "--movableink-password", "MOVABLEINK_PASSWORD", "HTTP Basic password", common=True
    )
    event_types: Words = _movableink(
        _PARTNER_TYPES,
        "--movableink-event-type",
        "MOVABLEINK_EVENT_TYPES",
        "Currents event types sent to Movable Ink (glob, repeatable)",
        metavar="GLOB",
    )
    event_names: EventNames = _movableink(
        "snake_case",
        "--movableink-event-names",
        "MOVABLEINK_EVENT_NAMES",
        "custom event names as sent: snake_case (Product Viewed -> product_viewed) or verbatim",
    )
    purchase_event: Text = _movableink(
        "purchase",
        "--movableink-purchase-event",
        "MOVABLEINK_PURCHASE_EVENT",
        "event name of a Currents purchase",
        metavar="NAME",
    )
    anonymous_id: Annotated[Literal["device_id", "email_md5", "braze_id"], AS_TEXT] = _movableink(
        "device_id",
        "--movableink-anonymous-id",
        "MOVABLEINK_ANONYMOUS_ID",
        "anonymous_id of users without an external id: the device id, the md5 of the email address, "
        "or Braze's user id",
    )
    identify: Bool = _movableink(
        True,
        "--movableink-identify",
        "MOVABLEINK_IDENTIFY",
        "send an identify event linking anonymous_id and user_id the first time both are seen",
    )
    concurrency: Int = _movableink(
        8,
        "--movableink-concurrency",
        "MOVABLEINK_CONCURRENCY",
        "Movable Ink requests in flight at once (one event per request)",
        ge=1,
    )
    rate: Float = _movableink(
        0.0,
        "--movableink-rate",
        "MOVABLEINK_RATE",
        "events per second to Movable Ink (0 = unlimited)",
        ge=0,
        metavar="RATE",
    )
    timeout: Duration = _movableink(
        30.0,
        "--movableink-timeout",
        "MOVABLEINK_TIMEOUT",
        "deadline for one whole Movable Ink request (connection wait to the last byte)",
        gt=0,
    )
    retry_window: Duration = _movableink(
        48 * 3600.0,
        "--movableink-retry-window",
        "MOVABLEINK_RETRY_WINDOW",
        "how long a Movable Ink event may keep failing before it is dead-lettered",
        gt=0,
    )

    @property
    def url(self) -> str:
        """Where events are posted (the key is part of the path: never log it)."""
        return f"{self.endpoint.rstrip('/')}/behavioral/{self.key.reveal()}"


class RemergeSettings(Section):
    """The Remerge event tracking destination (one GET per event)."""

    endpoint: Text = _remerge(
        "https://refusion.events/event",
        "--remerge-endpoint",
        "REMERGE_ENDPOINT",
        "Remerge event tracking endpoint",
        metavar="URL",
    )
    key: SecretText = _remerge(
        "", "--remerge-key", "REMERGE_KEY", "the key Remerge gave you", metavar="KEY", common=True
    )
    partner: Text = _remerge(
        "braze", "--remerge-partner", "REMERGE_PARTNER", "partner parameter", metavar="NAME"
    )
    app_ids: Words = _remerge(
        (),
        "--remerge-app-id",
        "REMERGE_APP_IDS",
        "BRAZE_APP_ID=STORE_APP_ID pairs (repeatable): the store app id sent for a Braze app",
        metavar="BRAZE_APP_ID=STORE_APP_ID",
        common=True,
    )
    ios_app_id: Text = _remerge(
        "",
        "--remerge-ios-app-id",
        "REMERGE_IOS_APP_ID",
        "store app id of iOS events whose Braze app is not in --remerge-app-id (e.g. 012345678)",
        metavar="ID",
        common=True,
    )
    android_app_id: Text = _remerge(
        "",
        "--remerge-android-app-id",
        "REMERGE_ANDROID_APP_ID",
        "store app id of Android events whose Braze app is not in --remerge-app-id (e.g. com.example)",
        metavar="ID",
        common=True,
    )
    event_types: Words = _remerge(
        _PARTNER_TYPES,
        "--remerge-event-type",
        "REMERGE_EVENT_TYPES",
        "Currents event types sent to Remerge (glob, repeatable)",
        metavar="GLOB",
    )
    event_names: EventNames = _remerge(
        "verbatim",
        "--remerge-event-names",
        "REMERGE_EVENT_NAMES",
        "custom event names as sent: verbatim or snake_case",
    )
    purchase_event: Text = _remerge(
        "purchase",
        "--remerge-purchase-event",
        "REMERGE_PURCHASE_EVENT",
        "event name of a Currents purchase",
        metavar="NAME",
    )
    non_app_event: Bool = _remerge(
        True,
        "--remerge-non-app-event",
        "REMERGE_NON_APP_EVENT",
        "non_app_event parameter (true: the event did not come from Remerge's SDK)",
    )
    concurrency: Int = _remerge(
        8,
        "--remerge-concurrency",
        "REMERGE_CONCURRENCY",
        "Remerge requests in flight at once (one event per request)",
        ge=1,
    )
    rate: Float = _remerge(
        0.0,
        "--remerge-rate",
        "REMERGE_RATE",
        "events per second to Remerge (0 = unlimited)",
        ge=0,
        metavar="RATE",
    )
    timeout: Duration = _remerge(
        30.0,
        "--remerge-timeout",
        "REMERGE_TIMEOUT",
        "deadline for one whole Remerge request (connection wait to the last byte)",
        gt=0,
    )
    retry_window: Duration = _remerge(
        48 * 3600.0,
        "--remerge-retry-window",
        "REMERGE_RETRY_WINDOW",
        "how long a Remerge event may keep failing before it is dead-lettered",
        gt=0,
    )

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
