"""The value tables behind synthetic Currents data: names, places, devices, messages and event weights.

Pure data plus two tiny formatting helpers; nothing here draws random numbers. Tables are tuples so a
draw is ``table[int(rnd() * len(table))]``; repeated entries are deliberate (they weight the draw).
Changing an entry changes the records every seed produces.
"""

from __future__ import annotations

import struct

PLACEHOLDER_IDS = ("0", "-1", "null", "none", "undefined", "anonymous", "unknown", "n/a", "nil")
"""External ids that Amplitude refuses outright; a configurable share of users carry one."""

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

COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "BR", "IN", "JP", "ES", "CA", "MX", "AU", "NL")
LANGUAGES = {"US": "en", "GB": "en", "DE": "de", "FR": "fr", "BR": "pt", "IN": "hi", "JP": "ja", "ES": "es",
             "CA": "en", "MX": "es", "AU": "en", "NL": "nl"}  # fmt: skip
TIMEZONES = {"US": "America/New_York", "GB": "Europe/London", "DE": "Europe/Berlin", "FR": "Europe/Paris",
             "BR": "America/Sao_Paulo", "IN": "Asia/Kolkata", "JP": "Asia/Tokyo", "ES": "Europe/Madrid",
             "CA": "America/Toronto", "MX": "America/Mexico_City", "AU": "Australia/Sydney",
             "NL": "Europe/Amsterdam"}  # fmt: skip
CITIES = ("New York", "London", "Berlin", "Paris", "São Paulo", "Mumbai", "東京", "Madrid", "Toronto")
FIRST_NAMES = ("Emma", "Liam", "Olivia", "Noah", "José", "Zoë", "Chloé", "Mateo", "Aarav", "Yuki", "Søren")
LAST_NAMES = ("Smith", "García", "Müller", "Martin", "Silva", "Patel", "Tanaka", "O'Brien", "Nguyen")
MAIL_DOMAINS = ("gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.fr")
UNICODE_IDS = ("José-Ω-{n}", "Zoë.Müller{n}", "用户{n}", "Ñandú_{n}", "Ærø-{n}", "ユーザー{n}", "Çağla{n}")
PLATFORMS = ("ios", "ios", "ios", "android", "android", "android", "web", "web", "kindle", "tvos",
             "roku")  # fmt: skip
MODELS = {"ios": ("iPhone15,2", "iPhone14,5", "iPhone16,1", "iPad13,4"),
          "android": ("Pixel 7", "SM-S911B", "SM-A536B", "moto g power"),
          "web": ("Chrome", "Safari", "Firefox", "Edge"), "kindle": ("KFTRWI", "AFTMM"),
          "tvos": ("AppleTV6,2",), "roku": ("4800X",)}  # fmt: skip
OS_VERSIONS = {"ios": ("17.4.1", "16.7.2", "17.2"), "android": ("14", "13", "12"),
               "web": ("Mac OS X", "Windows"), "kindle": ("Fire OS 7",), "tvos": ("17.4",),
               "roku": ("12.5",)}  # fmt: skip
SDK_VERSIONS = {"ios": "9.0.0", "android": "30.1.1", "web": "5.2.0", "kindle": "30.1.1", "tvos": "9.0.0",
                "roku": "2.1.0"}  # fmt: skip
CARRIERS = ("Verizon", "T-Mobile", "AT&T", "Vodafone", "Orange", "NTT DOCOMO")
RESOLUTIONS = ("1170x2532", "1080x2400", "1920x1080", "2560x1440")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
CAMPAIGNS = ("Spring Sale 2024 - Push", "Welcome Email #1", "Cart Abandonment Reminder", "Weekly Digest",
             "Black Friday Teaser 🔥", "Winback 30d", "Price Drop Alert", "New Feature Announcement",
             "Order Shipped", "Rate Us Prompt", "Soldes d'été", "Loyalty Tier Upgrade")  # fmt: skip
CANVASES = ("Onboarding Journey", "Re-engagement Flow", "Post-Purchase Upsell", "Trial Conversion",
            "Birthday Rewards 🎂", "Churn Prevention")  # fmt: skip
STEPS = ("Welcome Email", "Day 2 Push", "Delay 1 day", "Audience Split", "In-App Survey", "SMS Nudge",
         "Discount Offer", "Exit")  # fmt: skip
EVENT_NAMES = ("Product Viewed", "Product Viewed", "Product Viewed", "Added To Cart", "Added To Cart",
               "Search Performed", "Search Performed", "Checkout Started", "Order Completed",
               "Article Read", "Video Played", "Signed Up", "Logged In", "Logged In", "Wishlist Added",
               "Coupon Applied", "Level Completed", "Café Commandé")  # fmt: skip
PRODUCTS = (("SKU-10023", "Trail Runner 2", 89.99), ("SKU-20417", "Café crème 1kg", 14.5),
            ("SKU-33001", "Wireless Earbuds Pro", 149.0), ("SKU-40999", "Yoga Mat", 29.95),
            ("sub_premium_monthly", "Premium Monthly", 9.99), ("SKU-55120", "Rucksack 25L", 64.0),
            ("gems_500", "500 Gems", 4.99))  # fmt: skip
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "BRL", "JPY", "CAD", "INR")
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "GoogleImageProxy",
)
URLS = ("https://shop.example.com/products/trail-runner-2?utm_source=braze", "https://example.com/blog/ete-2024",
        "https://example.com/account/settings", "https://shop.example.com/cart",
        "https://example.com/unsubscribe?u=abc123")  # fmt: skip
PHONE_PREFIXES = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33", "BR": "+55", "IN": "+91", "JP": "+81",
                  "ES": "+34", "CA": "+1", "MX": "+52", "AU": "+61", "NL": "+31"}  # fmt: skip
GEO = {"US": (40.71, -74.0), "GB": (51.5, -0.12), "DE": (52.52, 13.4), "FR": (48.86, 2.35),
       "BR": (-23.55, -46.63), "IN": (19.07, 72.88), "JP": (35.68, 139.69), "ES": (40.42, -3.7),
       "CA": (43.65, -79.38), "MX": (19.43, -99.13), "AU": (-33.87, 151.21), "NL": (52.37, 4.9)}  # fmt: skip
WORDS = ("alpha", "beacon", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper")
STRING_CHOICES: dict[str, tuple[str, ...]] = {
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
    "timezone": tuple(sorted(set(TIMEZONES.values()))),
    "country": COUNTRIES,
    "language": tuple(sorted(set(LANGUAGES.values()))),
    "currency": CURRENCIES,
    "name": EVENT_NAMES,
    "model_provider": ("openai", "anthropic", "google"),
    "model_name": ("gpt-4o-mini", "claude-3-5-haiku", "gemini-1.5-flash"),
    "progression_type": ("entered_step", "exited_step", "exited_canvas"),
    "update_source": ("SDK", "REST API", "CSV Import"),
    "push_token_state_change_type": ("add", "update", "remove"),
    "webhook_failure_source": ("endpoint", "timeout", "connection"),
}  # fmt: skip

_F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """``x`` rounded to the nearest 32-bit float, so Avro ``float`` round-trips it exactly."""
    return float(_F32.unpack(_F32.pack(x))[0])


def uuid_from(bits: int) -> str:
    """Format 128 random bits as a version-4 UUID string."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


CLUSTER = "prod-01"
"""Cluster segment of generated paths (``dataexport.<cluster>.S3.integration.<id>``)."""
ZONE = "0"
"""Zone segment of generated paths of the 2019 and 2017 layouts; Braze documents it only as internal,
readers must not parse it."""
ENVIRONMENT = "us-01"
"""Environment segment of generated paths of the current layout (where older keys had the zone)."""
CODECS = ("null", "deflate", "snappy")
