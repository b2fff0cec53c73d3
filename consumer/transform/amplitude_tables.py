"""Braze's Currents -> Amplitude mapping table of the ``seed`` profile, as data.

For every event type Braze's own connector exports: the Amplitude name (after the ``[Appboy] ``
prefix) and the Currents fields it sends as ``event_properties`` (from the partner page's per-event
listings). :func:`is_exported` and :func:`amplitude_name` apply a user's
:class:`~consumer.settings.MappingConfig` (prefixes, names, enabled and disabled types) to it or to
another profile's table (:mod:`consumer.transform.amplitude_glossary`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumer.settings import MappingConfig

# The campaign/canvas fields Braze's connector sends for message engagement events.
_CAMP = (
    "campaign_id",
    "campaign_name",
    "message_variation_id",
    "canvas_id",
    "canvas_name",
    "canvas_variation_id",
    "canvas_step_id",
    "send_id",
)
_DEVICE = ("app_id", "platform", "os_version", "device_model")
_SESSION = ("session_id", *_DEVICE)
_EMAIL = (
    *_CAMP,
    "dispatch_id",
    "email_address",
    "url",
    "user_agent",
    "link_id",
    "link_alias",
    "machine_open",
)
_SMS = (
    *_CAMP,
    "canvas_variation_name",
    "canvas_step_name",
    "dispatch_id",
    "to_phone_number",
    "subscription_group_id",
)
_CARD = ("card_id", "app_id", *_CAMP, "platform", "os_version", "device_model")
_NEWSFEED = ("card_id", *_DEVICE)


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """How one Currents event type becomes an Amplitude event by default.

    ``properties`` are the ``event_properties`` names (a renamed field under its new name);
    ``top_level`` the (Currents field, Amplitude field) pairs copied to the event itself and
    ``constants`` the fixed top-level fields: the ``seed`` table has neither (its top-level fields
    are rules of the plans), the ``glossary`` table lists them per type.
    """

    name: str
    properties: tuple[str, ...]
    top_level: tuple[tuple[str, str], ...] = ()
    constants: tuple[tuple[str, Any], ...] = ()


# Event type -> (Amplitude name after the prefix, event_properties Braze sends).
BRAZE_TYPES: dict[str, TypeSpec] = {
    "users.behaviors.CustomEvent": TypeSpec("[Custom Event] ", _DEVICE),
    "users.behaviors.Purchase": TypeSpec("Purchase", ("product_id", "price", "currency", *_DEVICE)),
    "users.behaviors.app.FirstSession": TypeSpec("First Session", _SESSION),
    "users.behaviors.app.SessionStart": TypeSpec("Session Start", _SESSION),
    "users.behaviors.app.SessionEnd": TypeSpec("Session End", ("session_id", "duration", *_DEVICE)),
    "users.behaviors.Location": TypeSpec(
        "Location", ("longitude", "latitude", "altitude", "ll_accuracy", "alt_accuracy", *_DEVICE)
    ),
    "users.behaviors.InstallAttribution": TypeSpec("Install Attribution", ("source",)),
    "users.behaviors.Uninstall": TypeSpec("Uninstall", ("app_id",)),
    "users.behaviors.subscriptiongroup.StateChange": TypeSpec(
        "Subscription Group State Change",
        (*_CAMP, "email_address", "subscription_group_id", "subscription_status"),
    ),
    "users.behaviors.app.NewsFeedImpression": TypeSpec("News Feed Impression", _DEVICE),
    "users.messages.pushnotification.Send": TypeSpec(
        "Push Notification Send", (*_CAMP, "app_id", "platform", "dispatch_id")
    ),
    "users.messages.pushnotification.Open": TypeSpec(
        "Push Notification Open", (*_CAMP, *_DEVICE, "dispatch_id")
    ),
    "users.messages.pushnotification.IosForeground": TypeSpec(
        "Push Notification iOS Foreground Open", (*_CAMP, "app_id", "platform", "dispatch_id")
    ),
    "users.messages.pushnotification.Bounce": TypeSpec(
        "Push Notification Bounce", (*_CAMP, "app_id", "platform", "dispatch_id")
    ),
    "users.messages.email.Send": TypeSpec("Email Send", _EMAIL),
    "users.messages.email.Delivery": TypeSpec("Email Delivery", _EMAIL),
    "users.messages.email.Open": TypeSpec("Email Open", _EMAIL),
    "users.messages.email.Click": TypeSpec("Email Click", _EMAIL),
    "users.messages.email.Bounce": TypeSpec("Email Bounce", _EMAIL),
    "users.messages.email.SoftBounce": TypeSpec("Email Soft Bounce", _EMAIL),
    "users.messages.email.MarkAsSpam": TypeSpec("Email Mark As Spam", _EMAIL),
    "users.messages.email.Unsubscribe": TypeSpec("Email Unsubscribe", _EMAIL),
    "users.messages.sms.Send": TypeSpec("SMS Send", _SMS),
    "users.messages.sms.CarrierSend": TypeSpec("SMS Send To Carrier", (*_SMS, "from_phone_number")),
    "users.messages.sms.Delivery": TypeSpec("SMS Delivery", (*_SMS, "from_phone_number")),
    "users.messages.sms.Rejection": TypeSpec(
        "SMS Rejection", (*_SMS, "from_phone_number", "error", "provider_error_code")
    ),
    "users.messages.sms.DeliveryFailure": TypeSpec(
        "SMS Delivery Failure", (*_SMS, "from_phone_number", "error", "provider_error_code")
    ),
    "users.messages.inappmessage.Impression": TypeSpec("In-App Message Impression", (*_CAMP, *_DEVICE)),
    "users.messages.inappmessage.Click": TypeSpec("In-App Message Click", ("button_id", *_CAMP, *_DEVICE)),
    "users.messages.webhook.Send": TypeSpec("Webhook Send", _CAMP),
    "users.messages.contentcard.Send": TypeSpec("Content Card Send", ("card_id", *_CAMP)),
    "users.messages.contentcard.Impression": TypeSpec("Content Card Impression", _CARD),
    "users.messages.contentcard.Click": TypeSpec("Content Card Click", _CARD),
    "users.messages.contentcard.Dismiss": TypeSpec("Content Card Dismiss", _CARD),
    "users.messages.newsfeedcard.Impression": TypeSpec("News Feed Card Impression", _NEWSFEED),
    "users.messages.newsfeedcard.Click": TypeSpec("News Feed Card Click", _NEWSFEED),
    "users.campaigns.Conversion": TypeSpec(
        "Campaign Conversion Event",
        (
            "campaign_id",
            "campaign_name",
            "conversion_behavior_index",
            "conversion_behavior",
            "message_variation_id",
            "send_id",
        ),
    ),
    "users.canvas.Conversion": TypeSpec(
        "Canvas Conversion Event",
        (
            "canvas_id",
            "canvas_name",
            "conversion_behavior_index",
            "conversion_behavior",
            "canvas_variation_id",
            "canvas_step_id",
        ),
    ),
    "users.canvas.Entry": TypeSpec(
        "Canvas Entry", ("canvas_id", "canvas_name", "canvas_variation_id", "in_control_group")
    ),
    "users.campaigns.EnrollInControl": TypeSpec(
        "Campaign Control Group Enrollment",
        ("campaign_id", "campaign_name", "message_variation_id", "send_id"),
    ),
}

# Where the seed names a field differently from today's schema, the seed's name is sent.
FIELD_RENAMES: dict[str, str] = {"content_card_id": "card_id"}

# Fields that are top-level in Amplitude already, or used for naming; never repeated as properties.
IDENTITY_FIELDS = frozenset({"id", "time", "time_ms", "external_user_id", "device_id", "user_id"})

_WORDS = {
    "whatsapp": "WhatsApp",
    "rcs": "RCS",
    "line": "LINE",
    "sms": "SMS",
    "email": "Email",
    "pushnotification": "Push Notification",
    "inappmessage": "In-App Message",
    "contentcard": "Content Card",
    "newsfeedcard": "News Feed Card",
    "featureflag": "Feature Flag",
    "liveactivity": "Live Activity",
    "subscriptiongroup": "Subscription Group",
    "experimentstep": "Experiment Step",
    "canvasstep": "Canvas Step",
    "costep": "Content Optimizer Step",
    "agentconsole": "Agent Console",
    "webhook": "Webhook",
    "banner": "Banner",
    "canvas": "Canvas",
    "campaigns": "Campaign",
    "profile": "Profile",
    "app": "",
    "messages": "",
    "behaviors": "",
    "users": "",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def derived_name(event_type: str) -> str:
    """A readable Amplitude name for a type outside Braze's table (``users.messages.whatsapp.Send``
    -> ``WhatsApp Send``), in the style of Braze's event glossary."""
    words: list[str] = []
    for part in event_type.split("."):
        mapped = _WORDS.get(part)
        if mapped is None:
            mapped = _CAMEL.sub(" ", part)
            mapped = mapped[:1].upper() + mapped[1:]
        if mapped:
            words.append(mapped)
    return " ".join(words)


def is_exported(config: MappingConfig, event_type: str, types: Mapping[str, TypeSpec] = BRAZE_TYPES) -> bool:
    """Whether events of ``event_type`` are sent (otherwise skipped as ``unmapped_type``): in the
    profile's ``types`` or enabled, and not disabled."""
    if any(fnmatch.fnmatchcase(event_type, pat) for pat in config.disabled):
        return False
    return event_type in types or any(fnmatch.fnmatchcase(event_type, pat) for pat in config.enabled)


def amplitude_name(
    config: MappingConfig, event_type: str, types: Mapping[str, TypeSpec] = BRAZE_TYPES
) -> str:
    """The Amplitude ``event_type`` (with prefix) of a non-custom event type: the configured name,
    else the profile's (``types``), else one derived from the type."""
    if event_type in config.names:
        return config.event_prefix + config.names[event_type]
    spec = types.get(event_type)
    return config.event_prefix + (spec.name if spec else derived_name(event_type))
