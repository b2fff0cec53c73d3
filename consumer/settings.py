"""One settings object, built once from flags, environment and an optional TOML file.

Every option is declared once in :data:`OPTIONS` with its flag, environment variable, TOML key,
type and default. Precedence is flag > environment > file (``--config`` / ``CURRENTS_CONFIG``) >
default. The result is a frozen :class:`Settings`; secrets are :class:`Secret` values that never print.
Components receive their own slice and never read ``os.environ`` themselves.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from consumer.instants import canonical_instant


class Secret:
    """A secret string: ``str()``/``repr()`` mask it; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SettingsError(ValueError):
    """An option has a value that cannot be used; the message names the option and its source."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``48h``, ``2d``, ``500ms`` or plain seconds -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 48h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


PropertyMode = Literal["braze", "all"]


@dataclass(frozen=True)
class MappingConfig:
    """User-overridable mapping settings; every default reproduces Braze's connector.

    ``enabled``/``disabled`` are globs on event types: a type is exported when it is in Braze's table
    or matches ``enabled``, and does not match ``disabled``. ``names`` overrides the Amplitude name
    (after ``event_prefix``) of any type. ``properties="all"`` sends every non-null Currents field
    instead of Braze's per-type list.
    """

    event_prefix: str = "[Appboy] "
    custom_event_prefix: str = "[Custom Event] "
    custom_property_prefix: str = "[Custom event property] "
    purchase_property_prefix: str = "[Purchase property] "
    properties: PropertyMode = "braze"
    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)
    braze_id_property: str = "braze_id"
    device_fields_top_level: bool = True
    ad_ids_top_level: bool = True


@dataclass(frozen=True)
class Option:
    """One setting: where it can come from, how to parse it, its default."""

    key: str  # dotted TOML key, e.g. "amplitude.api_key"; also the Settings attribute path
    flag: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    choices: tuple[str, ...] = ()
    repeatable: bool = False
    group: str = "delivery"
    switch: bool = False  # a flag without a value (``--event-time``); environment and file say true/false


def _opt(key: str, flag: str, env: str, default: Any, help: str, **kw: Any) -> Option:
    return Option(key, flag, env, default, help, **kw)


OPTIONS: tuple[Option, ...] = (
    # Amplitude destination
    _opt("amplitude.api_key", "--api-key", "AMPLITUDE_API_KEY", "", "Amplitude project API key", secret=True),
    _opt("amplitude.region", "--region", "AMPLITUDE_REGION", "us", "Amplitude region", choices=("us", "eu")),
    _opt(
        "amplitude.url",
        "--amplitude-url",
        "AMPLITUDE_URL",
        "",
        "full endpoint URL, overrides --region/--api (proxies, the simulator)",
    ),
    _opt(
        "amplitude.api",
        "--api",
        "AMPLITUDE_API",
        "http",
        "HTTP V2 API or Batch API",
        choices=("http", "batch"),
    ),
    _opt(
        "amplitude.min_id_length",
        "--min-id-length",
        "AMPLITUDE_MIN_ID_LENGTH",
        1,
        "options.min_id_length sent with every request (Braze ids can be 1 character)",
        parse=int,
    ),
    _opt(
        "amplitude.max_events",
        "--batch-events",
        "CURRENTS_BATCH_EVENTS",
        0,
        "events per request (0 = the endpoint's cap: 2000)",
        parse=int,
    ),
    _opt(
        "amplitude.max_bytes",
        "--batch-bytes",
        "CURRENTS_BATCH_BYTES",
        0,
        "request body bytes (0 = the endpoint's cap: 1 MB HTTP V2, 20 MB Batch)",
        parse=int,
    ),
    _opt(
        "amplitude.batch_age",
        "--batch-age",
        "CURRENTS_BATCH_AGE",
        0.5,
        "send a partial batch after this long",
        parse=parse_duration,
    ),
    _opt(
        "amplitude.concurrency",
        "--concurrency",
        "CURRENTS_CONCURRENCY",
        8,
        "requests in flight at once",
        parse=int,
    ),
    _opt(
        "amplitude.timeout",
        "--request-timeout",
        "CURRENTS_REQUEST_TIMEOUT",
        30.0,
        "timeout of one request",
        parse=parse_duration,
    ),
    _opt("amplitude.gzip", "--gzip", "CURRENTS_GZIP", True, "gzip request bodies", parse=_bool),
    # Destinations (fan-out): which ones, and the Movable Ink and Remerge ones' own settings
    _opt(
        "destinations",
        "--destination",
        "CURRENTS_DESTINATIONS",
        ("amplitude",),
        "destinations every event goes to (repeatable; amplitude, movableink, remerge)",
        parse=_list,
        repeatable=True,
    ),
    _opt(
        "movableink.endpoint",
        "--movableink-endpoint",
        "MOVABLEINK_ENDPOINT",
        "",
        "Movable Ink Customer Data API endpoint (events go to <endpoint>/behavioral/<key>)",
        group="movableink",
    ),
    _opt(
        "movableink.key",
        "--movableink-key",
        "MOVABLEINK_KEY",
        "",
        "the <key> path segment Movable Ink gave you",
        secret=True,
        group="movableink",
    ),
    _opt(
        "movableink.username",
        "--movableink-username",
        "MOVABLEINK_USERNAME",
        "",
        "HTTP Basic user name",
        secret=True,
        group="movableink",
    ),
    _opt(
        "movableink.password",
        "--movableink-password",
        "MOVABLEINK_PASSWORD",
        "",
        "HTTP Basic password",
        secret=True,
        group="movableink",
    ),
    _opt(
        "movableink.event_types",
        "--movableink-event-type",
        "MOVABLEINK_EVENT_TYPES",
        ("users.behaviors.CustomEvent", "users.behaviors.Purchase"),
        "Currents event types sent to Movable Ink (glob, repeatable)",
        parse=_list,
        repeatable=True,
        group="movableink",
    ),
    _opt(
        "movableink.event_names",
        "--movableink-event-names",
        "MOVABLEINK_EVENT_NAMES",
        "snake_case",
        "custom event names as sent: snake_case (Product Viewed -> product_viewed) or verbatim",
        choices=("snake_case", "verbatim"),
        group="movableink",
    ),
    _opt(
        "movableink.purchase_event",
        "--movableink-purchase-event",
        "MOVABLEINK_PURCHASE_EVENT",
        "purchase",
        "event name of a Currents purchase",
        group="movableink",
    ),
    _opt(
        "movableink.anonymous_id",
        "--movableink-anonymous-id",
        "MOVABLEINK_ANONYMOUS_ID",
        "device_id",
        "anonymous_id of users without an external id: the device id, the md5 of the email address, "
        "or Braze's user id",
        choices=("device_id", "email_md5", "braze_id"),
        group="movableink",
    ),
    _opt(
        "movableink.identify",
        "--movableink-identify",
        "MOVABLEINK_IDENTIFY",
        True,
        "send an identify event linking anonymous_id and user_id the first time both are seen",
        parse=_bool,
        group="movableink",
    ),
    _opt(
        "movableink.concurrency",
        "--movableink-concurrency",
        "MOVABLEINK_CONCURRENCY",
        8,
        "Movable Ink requests in flight at once (one event per request)",
        parse=int,
        group="movableink",
    ),
    _opt(
        "movableink.rate",
        "--movableink-rate",
        "MOVABLEINK_RATE",
        0.0,
        "events per second to Movable Ink (0 = unlimited)",
        parse=float,
        group="movableink",
    ),
    _opt(
        "movableink.timeout",
        "--movableink-timeout",
        "MOVABLEINK_TIMEOUT",
        30.0,
        "timeout of one Movable Ink request",
        parse=parse_duration,
        group="movableink",
    ),
    _opt(
        "movableink.retry_window",
        "--movableink-retry-window",
        "MOVABLEINK_RETRY_WINDOW",
        48 * 3600.0,
        "how long a Movable Ink event may keep failing before it is dead-lettered",
        parse=parse_duration,
        group="movableink",
    ),
    _opt(
        "remerge.endpoint",
        "--remerge-endpoint",
        "REMERGE_ENDPOINT",
        "https://refusion.events/event",
        "Remerge event tracking endpoint",
        group="remerge",
    ),
    _opt(
        "remerge.key",
        "--remerge-key",
        "REMERGE_KEY",
        "",
        "the key Remerge gave you",
        secret=True,
        group="remerge",
    ),
    _opt(
        "remerge.partner",
        "--remerge-partner",
        "REMERGE_PARTNER",
        "braze",
        "partner parameter",
        group="remerge",
    ),
    _opt(
        "remerge.app_ids",
        "--remerge-app-id",
        "REMERGE_APP_IDS",
        (),
        "BRAZE_APP_ID=STORE_APP_ID pairs (repeatable): the store app id sent for a Braze app",
        parse=_list,
        repeatable=True,
        group="remerge",
    ),
    _opt(
        "remerge.ios_app_id",
        "--remerge-ios-app-id",
        "REMERGE_IOS_APP_ID",
        "",
        "store app id of iOS events whose Braze app is not in --remerge-app-id (e.g. 012345678)",
        group="remerge",
    ),
    _opt(
        "remerge.android_app_id",
        "--remerge-android-app-id",
        "REMERGE_ANDROID_APP_ID",
        "",
        "store app id of Android events whose Braze app is not in --remerge-app-id (e.g. com.example)",
        group="remerge",
    ),
    _opt(
        "remerge.event_types",
        "--remerge-event-type",
        "REMERGE_EVENT_TYPES",
        ("users.behaviors.CustomEvent", "users.behaviors.Purchase"),
        "Currents event types sent to Remerge (glob, repeatable)",
        parse=_list,
        repeatable=True,
        group="remerge",
    ),
    _opt(
        "remerge.event_names",
        "--remerge-event-names",
        "REMERGE_EVENT_NAMES",
        "verbatim",
        "custom event names as sent: verbatim or snake_case",
        choices=("snake_case", "verbatim"),
        group="remerge",
    ),
    _opt(
        "remerge.purchase_event",
        "--remerge-purchase-event",
        "REMERGE_PURCHASE_EVENT",
        "purchase",
        "event name of a Currents purchase",
        group="remerge",
    ),
    _opt(
        "remerge.non_app_event",
        "--remerge-non-app-event",
        "REMERGE_NON_APP_EVENT",
        True,
        "non_app_event parameter (true: the event did not come from Remerge's SDK)",
        parse=_bool,
        group="remerge",
    ),
    _opt(
        "remerge.concurrency",
        "--remerge-concurrency",
        "REMERGE_CONCURRENCY",
        8,
        "Remerge requests in flight at once (one event per request)",
        parse=int,
        group="remerge",
    ),
    _opt(
        "remerge.rate",
        "--remerge-rate",
        "REMERGE_RATE",
        0.0,
        "events per second to Remerge (0 = unlimited)",
        parse=float,
        group="remerge",
    ),
    _opt(
        "remerge.timeout",
        "--remerge-timeout",
        "REMERGE_TIMEOUT",
        30.0,
        "timeout of one Remerge request",
        parse=parse_duration,
        group="remerge",
    ),
    _opt(
        "remerge.retry_window",
        "--remerge-retry-window",
        "REMERGE_RETRY_WINDOW",
        48 * 3600.0,
        "how long a Remerge event may keep failing before it is dead-lettered",
        parse=parse_duration,
        group="remerge",
    ),
    # Limits and retries
    _opt(
        "limits.device_rate",
        "--device-rate",
        "CURRENTS_DEVICE_RATE",
        30.0,
        "events per second per device and per user",
        parse=float,
    ),
    _opt(
        "limits.device_daily_limit",
        "--device-daily-limit",
        "CURRENTS_DEVICE_DAILY_LIMIT",
        500_000,
        "events per UTC day per device and per user; above it events are dead-lettered (daily_quota)",
        parse=int,
    ),
    _opt(
        "limits.project_rate",
        "--project-rate",
        "CURRENTS_PROJECT_RATE",
        0.0,
        "events per second for the whole project (0 = unlimited)",
        parse=float,
    ),
    _opt(
        "limits.retry_window",
        "--retry-window",
        "CURRENTS_RETRY_WINDOW",
        48 * 3600.0,
        "how long an event may keep failing before it is dead-lettered (e.g. 90s, 30m, 48h)",
        parse=parse_duration,
    ),
    _opt(
        "limits.max_backoff",
        "--max-backoff",
        "CURRENTS_MAX_BACKOFF",
        300.0,
        "longest wait between retries of a failing request",
        parse=parse_duration,
    ),
    _opt(
        "limits.throttle_penalty",
        "--throttle-penalty",
        "CURRENTS_THROTTLE_PENALTY",
        30.0,
        "how long a device or user Amplitude answered 429 for is held back (unless it sends Retry-After)",
        parse=parse_duration,
    ),
    _opt(
        "limits.max_pending",
        "--max-pending",
        "CURRENTS_MAX_PENDING",
        50_000,
        "events held in memory (batching, throttled, in flight) before input pauses",
        parse=int,
    ),
    _opt(
        "limits.max_pending_bytes",
        "--max-pending-bytes",
        "CURRENTS_MAX_PENDING_BYTES",
        256 << 20,
        "bytes of events held in memory before input pauses",
        parse=int,
    ),
    # Outputs and state
    _opt(
        "dead_letter",
        "--dead-letter",
        "CURRENTS_DEAD_LETTER",
        "dead-letter",
        "dead-letter directory (JSON lines)",
        group="io",
    ),
    _opt(
        "state_dir",
        "--state-dir",
        "CURRENTS_STATE_DIR",
        ".currents-state",
        "replay resume state directory",
        group="io",
    ),
    # Which input replay and convert take (local paths or s3://, gs://, az:// URLs)
    _opt(
        "input.event_types",
        "--event-type",
        "CURRENTS_EVENT_TYPES",
        (),
        "only these event types (glob on the event_type= partition and on each file's type, repeatable)",
        parse=_list,
        repeatable=True,
        group="input",
    ),
    _opt(
        "input.since",
        "--since",
        "CURRENTS_SINCE",
        "",
        "only events queued from this UTC time on (date= partitions; 2024-05-01-13, 2024-05-01, ISO 8601)",
        parse=canonical_instant,
        group="input",
    ),
    _opt(
        "input.until",
        "--until",
        "CURRENTS_UNTIL",
        "",
        "only events queued before this UTC time (exclusive; same forms as --since)",
        parse=canonical_instant,
        group="input",
    ),
    _opt(
        "input.event_time",
        "--event-time",
        "CURRENTS_EVENT_TIME",
        False,
        "apply --since/--until to each event's time field instead of the hour it was queued (a switch)",
        parse=_bool,
        switch=True,
        group="input",
    ),
    _opt(
        "input.files_in_flight",
        "--files-in-flight",
        "CURRENTS_FILES_IN_FLIGHT",
        4,
        "files (objects) fetched and decoded at once, ahead of the one being delivered",
        parse=int,
        group="input",
    ),
    _opt(
        "input.workers",
        "--workers",
        "CURRENTS_WORKERS",
        2,
        "processes that decode and map records (files for replay, message batches for run) while the main "
        "process delivers; 0 decodes in the main process",
        parse=int,
        group="workers",
    ),
    # Mapping
    _opt(
        "mapping.properties",
        "--properties",
        "CURRENTS_PROPERTIES",
        "braze",
        "event_properties: Braze's per-type list, or every non-null field",
        choices=("braze", "all"),
        group="mapping",
    ),
    _opt(
        "mapping.enabled",
        "--enable-type",
        "CURRENTS_ENABLE_TYPES",
        (),
        "also export these event types (glob, repeatable)",
        parse=_list,
        repeatable=True,
        group="mapping",
    ),
    _opt(
        "mapping.disabled",
        "--disable-type",
        "CURRENTS_DISABLE_TYPES",
        (),
        "never export these event types (glob, repeatable)",
        parse=_list,
        repeatable=True,
        group="mapping",
    ),
    _opt(
        "mapping.event_prefix",
        "--event-prefix",
        "CURRENTS_EVENT_PREFIX",
        "[Appboy] ",
        "prefix of every Amplitude event name",
        group="mapping",
    ),
    _opt(
        "mapping.custom_event_prefix",
        "--custom-event-prefix",
        "CURRENTS_CUSTOM_EVENT_PREFIX",
        "[Custom Event] ",
        "prefix of custom event names, after --event-prefix",
        group="mapping",
    ),
    _opt(
        "mapping.custom_property_prefix",
        "--custom-property-prefix",
        "CURRENTS_CUSTOM_PROPERTY_PREFIX",
        "[Custom event property] ",
        "prefix of each custom event property",
        group="mapping",
    ),
    _opt(
        "mapping.purchase_property_prefix",
        "--purchase-property-prefix",
        "CURRENTS_PURCHASE_PROPERTY_PREFIX",
        "[Purchase property] ",
        "prefix of each purchase property",
        group="mapping",
    ),
    _opt(
        "mapping.braze_id_property",
        "--braze-id-property",
        "CURRENTS_BRAZE_ID_PROPERTY",
        "braze_id",
        "event property holding Braze's internal user id (empty: not sent)",
        group="mapping",
    ),
    _opt(
        "mapping.device_fields_top_level",
        "--device-fields-top-level",
        "CURRENTS_DEVICE_FIELDS_TOP_LEVEL",
        True,
        "also send platform/os_version/device_model as Amplitude's top-level fields",
        parse=_bool,
        group="mapping",
    ),
    _opt(
        "mapping.ad_ids_top_level",
        "--ad-ids-top-level",
        "CURRENTS_AD_IDS_TOP_LEVEL",
        True,
        "send ad_id as Amplitude's idfa/adid (by ad_id_type)",
        parse=_bool,
        group="mapping",
    ),
    # Kafka (the `run` daemon)
    _opt(
        "kafka.bootstrap_servers",
        "--bootstrap-servers",
        "KAFKA_BOOTSTRAP_SERVERS",
        "localhost:9092",
        "Kafka bootstrap servers (host:port, comma-separated)",
        group="kafka",
    ),
    _opt(
        "kafka.topics",
        "--topic",
        "KAFKA_TOPICS",
        (),
        "topics to consume (repeatable; env comma-separated)",
        parse=_list,
        repeatable=True,
        group="kafka",
    ),
    _opt(
        "kafka.topic_pattern",
        "--topic-pattern",
        "KAFKA_TOPIC_PATTERN",
        "",
        "regex of topics to consume (instead of --topic)",
        group="kafka",
    ),
    _opt(
        "kafka.group_id", "--group-id", "KAFKA_GROUP_ID", "currents-consumer", "consumer group", group="kafka"
    ),
    _opt(
        "kafka.client_id",
        "--client-id",
        "KAFKA_CLIENT_ID",
        "currents-consumer",
        "Kafka client id",
        group="kafka",
    ),
    _opt(
        "kafka.security_protocol",
        "--security-protocol",
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka security protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        group="kafka",
    ),
    _opt(
        "kafka.sasl_mechanism",
        "--sasl-mechanism",
        "KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        group="kafka",
    ),
    _opt(
        "kafka.sasl_username", "--sasl-username", "KAFKA_SASL_USERNAME", "", "SASL user name", group="kafka"
    ),
    _opt(
        "kafka.sasl_password",
        "--sasl-password",
        "KAFKA_SASL_PASSWORD",
        "",
        "SASL password",
        secret=True,
        group="kafka",
    ),
    _opt("kafka.ssl_cafile", "--ssl-cafile", "KAFKA_SSL_CAFILE", "", "CA bundle for TLS", group="kafka"),
    _opt(
        "kafka.ssl_certfile",
        "--ssl-certfile",
        "KAFKA_SSL_CERTFILE",
        "",
        "client certificate (mTLS)",
        group="kafka",
    ),
    _opt("kafka.ssl_keyfile", "--ssl-keyfile", "KAFKA_SSL_KEYFILE", "", "client key (mTLS)", group="kafka"),
    _opt(
        "kafka.schema_registry_url",
        "--schema-registry-url",
        "SCHEMA_REGISTRY_URL",
        "",
        "Confluent Schema Registry for wire-format values",
        group="kafka",
    ),
    _opt(
        "kafka.schema_registry_username",
        "--schema-registry-username",
        "SCHEMA_REGISTRY_USERNAME",
        "",
        "Schema Registry basic-auth user",
        group="kafka",
    ),
    _opt(
        "kafka.schema_registry_password",
        "--schema-registry-password",
        "SCHEMA_REGISTRY_PASSWORD",
        "",
        "Schema Registry basic-auth password",
        secret=True,
        group="kafka",
    ),
    _opt(
        "kafka.topic_event_types",
        "--topic-event-type",
        "KAFKA_TOPIC_EVENT_TYPES",
        (),
        "TOPIC=EVENT_TYPE: values on TOPIC are plain Avro of that type (repeatable)",
        parse=_list,
        repeatable=True,
        group="kafka",
    ),
    _opt(
        "kafka.commit_interval",
        "--commit-interval",
        "CURRENTS_COMMIT_INTERVAL",
        5.0,
        "how often done offsets are committed",
        parse=parse_duration,
        group="kafka",
    ),
    _opt(
        "kafka.shutdown_grace",
        "--shutdown-grace",
        "CURRENTS_SHUTDOWN_GRACE",
        30.0,
        "on SIGTERM, time to finish events in flight before committing and exiting",
        parse=parse_duration,
        group="kafka",
    ),
    _opt(
        "kafka.revoke_timeout",
        "--revoke-timeout",
        "CURRENTS_REVOKE_TIMEOUT",
        10.0,
        "on a rebalance, time to finish revoked partitions' events before committing them",
        parse=parse_duration,
        group="kafka",
    ),
    _opt(
        "kafka.session_timeout",
        "--session-timeout",
        "KAFKA_SESSION_TIMEOUT",
        10.0,
        "consumer group session timeout",
        parse=parse_duration,
        group="kafka",
    ),
    _opt(
        "kafka.auto_offset_reset",
        "--auto-offset-reset",
        "KAFKA_AUTO_OFFSET_RESET",
        "earliest",
        "where a new group starts",
        choices=("earliest", "latest"),
        group="kafka",
    ),
    # Observability
    _opt(
        "metrics_port",
        "--metrics-port",
        "CURRENTS_METRICS_PORT",
        0,
        "port for /metrics, /livez, /readyz (0 = off)",
        parse=int,
        group="obs",
    ),
    _opt(
        "log_format",
        "--log-format",
        "CURRENTS_LOG_FORMAT",
        "auto",
        "log lines: json, text, or auto (text on a tty)",
        choices=("auto", "json", "text"),
        group="obs",
    ),
    _opt("log_level", "--log-level", "CURRENTS_LOG_LEVEL", "INFO", "log level", group="obs"),
)
OPTION_BY_KEY = {o.key: o for o in OPTIONS}


@dataclass(frozen=True)
class AmplitudeSettings:
    """The Amplitude destination: where, how, and the request caps."""

    api_key: Secret
    region: str
    url: str
    api: str
    min_id_length: int
    max_events: int
    max_bytes: int
    batch_age: float
    concurrency: int
    timeout: float
    gzip: bool

    @property
    def endpoint(self) -> str:
        """The full URL requests go to."""
        if self.url:
            return self.url
        host = "https://api.eu.amplitude.com" if self.region == "eu" else "https://api2.amplitude.com"
        return host + ("/batch" if self.api == "batch" else "/2/httpapi")

    @property
    def events_cap(self) -> int:
        """Events per request."""
        return self.max_events or 2000

    @property
    def bytes_cap(self) -> int:
        """Request body bytes (uncompressed: Amplitude counts after decompression)."""
        if self.max_bytes:
            return self.max_bytes
        return 20_000_000 - 4096 if self.api == "batch" else 1_000_000 - 4096


DESTINATIONS = ("amplitude", "movableink", "remerge")


@dataclass(frozen=True)
class MovableInkSettings:
    """The Movable Ink Customer Data API destination (one event per request)."""

    endpoint: str
    key: Secret
    username: Secret
    password: Secret
    event_types: tuple[str, ...]
    event_names: str
    purchase_event: str
    anonymous_id: str
    identify: bool
    concurrency: int
    rate: float
    timeout: float
    retry_window: float

    @property
    def url(self) -> str:
        """Where events are posted (the key is part of the path: never log it)."""
        return f"{self.endpoint.rstrip('/')}/behavioral/{self.key.reveal()}"


@dataclass(frozen=True)
class RemergeSettings:
    """The Remerge event tracking destination (one GET per event)."""

    endpoint: str
    key: Secret
    partner: str
    app_ids: tuple[str, ...]
    ios_app_id: str
    android_app_id: str
    event_types: tuple[str, ...]
    event_names: str
    purchase_event: str
    non_app_event: bool
    concurrency: int
    rate: float
    timeout: float
    retry_window: float

    def store_app_ids(self) -> dict[str, str]:
        """``BRAZE_APP_ID=STORE_APP_ID`` pairs as a dict; raises ``SettingsError`` on a malformed pair."""
        return _pairs(self.app_ids, "--remerge-app-id", "BRAZE_APP_ID=STORE_APP_ID")


@dataclass(frozen=True)
class LimitSettings:
    """Throttling, retry window and memory bounds."""

    device_rate: float
    device_daily_limit: int
    project_rate: float
    retry_window: float
    max_backoff: float
    max_pending: int
    max_pending_bytes: int
    throttle_penalty: float = 30.0


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka source of the ``run`` daemon."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    topic_pattern: str
    group_id: str
    client_id: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: Secret
    ssl_cafile: str
    ssl_certfile: str
    ssl_keyfile: str
    schema_registry_url: str
    schema_registry_username: str
    schema_registry_password: Secret
    topic_event_types: tuple[str, ...]
    commit_interval: float
    shutdown_grace: float
    revoke_timeout: float
    session_timeout: float
    auto_offset_reset: str

    def event_type_for_topic(self) -> dict[str, str]:
        """``TOPIC=EVENT_TYPE`` pairs as a dict; raises ``SettingsError`` on a malformed pair."""
        return _pairs(self.topic_event_types, "--topic-event-type", "TOPIC=EVENT_TYPE")


def _pairs(items: tuple[str, ...], flag: str, shape: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in items:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise SettingsError(f"{flag}: expected {shape}, got {pair!r}")
        out[left.strip()] = right.strip()
    return out


@dataclass(frozen=True)
class InputSettings:
    """What replay and convert read: event types, a time window, how many files at once."""

    event_types: tuple[str, ...] = ()
    since: str = ""
    until: str = ""
    event_time: bool = False
    files_in_flight: int = 4
    workers: int = 2


@dataclass(frozen=True)
class Settings:
    """Everything a command needs, resolved once. ``sources`` says where each value came from."""

    amplitude: AmplitudeSettings
    limits: LimitSettings
    mapping: MappingConfig
    kafka: KafkaSettings
    dead_letter: str
    state_dir: str
    metrics_port: int
    log_format: str
    log_level: str
    sources: Mapping[str, str]
    input: InputSettings = InputSettings()
    destinations: tuple[str, ...] = ("amplitude",)
    movableink: MovableInkSettings = field(
        default_factory=lambda: _defaults(MovableInkSettings, "movableink")
    )
    remerge: RemergeSettings = field(default_factory=lambda: _defaults(RemergeSettings, "remerge"))

    def describe(self) -> dict[str, Any]:
        """Effective configuration with secrets masked, for ``currents-consumer config``."""
        out: dict[str, Any] = {}
        for opt in OPTIONS:
            value = _get(self, opt.key)
            if isinstance(value, Secret):
                value = "***" if value else ""
            elif isinstance(value, tuple):
                value = list(value)
            out[opt.key] = {"value": value, "source": self.sources.get(opt.key, "default")}
        out["mapping.names"] = {
            "value": dict(self.mapping.names),
            "source": "file" if self.mapping.names else "default",
        }
        return out


def _get(settings: Settings, key: str) -> Any:
    obj: Any = settings
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def add_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Add the flags of the option ``groups`` to a subcommand parser (all default to unset)."""
    parser.add_argument("--config", default=None, help="TOML config file (env CURRENTS_CONFIG)")
    if "destinations" in groups:
        groups = (*groups, "movableink", "remerge")
    for opt in OPTIONS:
        if opt.group not in groups:
            continue
        help_text = f"{opt.help} [env {opt.env}; default {_show_default(opt)}]"
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": opt.key}
        if opt.choices:
            kwargs["choices"] = opt.choices
        if opt.repeatable:
            kwargs["action"] = "append"
        if opt.switch:
            kwargs.update(action="store_const", const="true")
        parser.add_argument(opt.flag, **kwargs)


def _show_default(opt: Option) -> str:
    if opt.secret:
        return "none"
    if isinstance(opt.default, tuple):
        return ",".join(opt.default) or "none"
    return repr(opt.default) if isinstance(opt.default, str) else str(opt.default)


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option: flag > environment > config file > default."""
    env = os.environ if env is None else env
    flags = vars(args) if args is not None else {}
    config_path = flags.get("config") or env.get("CURRENTS_CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                file_values = _flatten(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {config_path}: {exc}") from exc
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        raw: Any = flags.get(opt.key)
        source = "flag"
        if raw is None and opt.env in env:
            raw, source = env[opt.env], f"env {opt.env}"
        if raw is None and opt.key in file_values:
            raw, source = file_values[opt.key], f"file {config_path}"
        if raw is None:
            value: Any = opt.default
            source = "default"
        else:
            value = _convert(opt, raw, source)
        values[opt.key] = Secret(value) if opt.secret else value
        sources[opt.key] = source
    unknown = sorted(set(file_values) - set(OPTION_BY_KEY) - {"mapping.names"})
    if unknown:
        raise SettingsError(f"unknown keys in config file {config_path}: {', '.join(unknown)}")
    names = file_values.get("mapping.names", {})
    return _build(values, sources, names if isinstance(names, dict) else {})


def _convert(opt: Option, raw: Any, source: str) -> Any:
    try:
        if opt.repeatable and isinstance(raw, list):
            return tuple(item for part in raw for item in opt.parse(str(part)))
        value = opt.parse(raw) if isinstance(raw, str) else _typed(opt.default, raw)
    except ValueError as exc:
        detail = "expected a string" if opt.secret else str(exc)  # never echo a secret
        raise SettingsError(f"{opt.flag} (from {source}): {detail}") from None
    if opt.choices and value not in opt.choices:
        raise SettingsError(f"{opt.flag} (from {source}): {value!r} is not one of {', '.join(opt.choices)}")
    return value


def _typed(default: Any, raw: Any) -> Any:
    """A non-string value from the config file, checked against the option's type."""
    if isinstance(default, tuple):
        if isinstance(raw, list):
            return tuple(str(x) for x in raw)
    elif isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
    elif isinstance(raw, bool):
        pass  # a TOML boolean is never a number or a string here
    elif isinstance(default, float):
        if isinstance(raw, int | float):
            return float(raw)
    elif isinstance(default, int) and isinstance(raw, int):
        return raw
    expected = {bool: "true or false", int: "an integer", float: "a number", tuple: "a list"}
    raise ValueError(f"expected {expected.get(type(default), 'a string')}, got {raw!r}")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full != "mapping.names":
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _names(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``[mapping.names]``: event type -> Amplitude name. An unquoted dotted TOML key
    (``users.messages.email.Open = "..."``) arrives as nested tables; it means the same as quoted."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_names(value, f"{prefix}{key}."))
        elif isinstance(value, str):
            out[f"{prefix}{key}"] = value
        else:
            raise SettingsError(f"[mapping.names] {prefix}{key}: expected a string, got {value!r}")
    return out


def _build(values: dict[str, Any], sources: dict[str, str], names: dict[str, Any]) -> Settings:
    def section(prefix: str) -> dict[str, Any]:
        return {k[len(prefix) + 1 :]: v for k, v in values.items() if k.startswith(prefix + ".")}

    amplitude = AmplitudeSettings(**section("amplitude"))
    if amplitude.api == "batch" and sources.get("limits.device_rate") == "default":
        # The Batch API allows 1000 events/s per device and per user (HTTP V2: 30).
        values["limits.device_rate"] = 1000.0
        sources["limits.device_rate"] = "default (batch API)"
    limits = LimitSettings(**section("limits"))
    for key, check, rule in (
        ("amplitude.concurrency", amplitude.concurrency >= 1, "at least 1"),
        (
            "amplitude.max_events",
            amplitude.max_events >= 0 and (amplitude.max_events <= 2000 or amplitude.api == "batch"),
            "0 to 2000 (more only with --api batch)",
        ),
        ("amplitude.max_bytes", amplitude.max_bytes >= 0, "0 or more"),
        ("amplitude.min_id_length", amplitude.min_id_length >= 0, "0 or more"),
        ("amplitude.batch_age", amplitude.batch_age >= 0, "0 or more"),
        ("amplitude.timeout", amplitude.timeout > 0, "more than 0"),
        ("limits.device_rate", limits.device_rate > 0, "more than 0"),
        ("limits.device_daily_limit", limits.device_daily_limit >= 1, "at least 1"),
        ("limits.project_rate", limits.project_rate >= 0, "0 (unlimited) or more"),
        ("limits.retry_window", limits.retry_window > 0, "more than 0"),
        ("limits.max_backoff", limits.max_backoff >= 0, "0 or more"),
        ("limits.throttle_penalty", limits.throttle_penalty >= 0, "0 or more"),
        ("limits.max_pending", limits.max_pending >= 1, "at least 1"),
        ("limits.max_pending_bytes", limits.max_pending_bytes >= 1, "at least 1"),
        ("metrics_port", 0 <= values["metrics_port"] <= 65535, "0 to 65535"),
        ("movableink.concurrency", values["movableink.concurrency"] >= 1, "at least 1"),
        ("movableink.rate", values["movableink.rate"] >= 0, "0 (unlimited) or more"),
        ("movableink.timeout", values["movableink.timeout"] > 0, "more than 0"),
        ("movableink.retry_window", values["movableink.retry_window"] > 0, "more than 0"),
        ("remerge.concurrency", values["remerge.concurrency"] >= 1, "at least 1"),
        ("remerge.rate", values["remerge.rate"] >= 0, "0 (unlimited) or more"),
        ("remerge.timeout", values["remerge.timeout"] > 0, "more than 0"),
        ("remerge.retry_window", values["remerge.retry_window"] > 0, "more than 0"),
    ):
        if not check:
            opt = OPTION_BY_KEY[key]
            raise SettingsError(
                f"{opt.flag} (from {sources.get(key, 'default')}): {values[key]!r} is out of range ({rule})"
            )
    kafka = KafkaSettings(**section("kafka"))
    kafka.event_type_for_topic()
    movableink = MovableInkSettings(**section("movableink"))
    remerge = RemergeSettings(**section("remerge"))
    remerge.store_app_ids()
    mapping = MappingConfig(**section("mapping"), names=_names(names))
    return Settings(
        amplitude=amplitude,
        limits=limits,
        mapping=mapping,
        kafka=kafka,
        dead_letter=values["dead_letter"],
        state_dir=values["state_dir"],
        metrics_port=values["metrics_port"],
        log_format=values["log_format"],
        log_level=values["log_level"],
        input=_input(values, sources, section("input")),
        sources=sources,
        destinations=_destinations(values, sources),
        movableink=movableink,
        remerge=remerge,
    )


def _defaults(cls: Any, prefix: str) -> Any:
    """A destination's settings with every option at its default (for Settings built in code)."""
    kw = {o.key[len(prefix) + 1 :]: o.default for o in OPTIONS if o.key.startswith(prefix + ".")}
    return cls(**{k: Secret(v) if OPTION_BY_KEY[f"{prefix}.{k}"].secret else v for k, v in kw.items()})


def _destinations(values: dict[str, Any], sources: dict[str, str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(values["destinations"]))  # in order, once each
    unknown = [d for d in chosen if d not in DESTINATIONS]
    if unknown or not chosen:
        raise SettingsError(
            f"--destination (from {sources.get('destinations', 'default')}): "
            f"{', '.join(unknown) or 'none given'}; choose among {', '.join(DESTINATIONS)}"
        )
    return chosen


def _input(values: dict[str, Any], sources: dict[str, str], section: dict[str, Any]) -> InputSettings:
    settings = InputSettings(**section)
    problem = ""
    if settings.files_in_flight < 1:
        key, problem = "input.files_in_flight", "at least 1"
    elif settings.workers < 0:
        key, problem = "input.workers", "0 or more"
    elif settings.since and settings.until and settings.since >= settings.until:
        key, problem = "input.until", "after --since"
    if problem:
        opt = OPTION_BY_KEY[key]
        raise SettingsError(
            f"{opt.flag} (from {sources.get(key, 'default')}): {values[key]!r} is out of range ({problem})"
        )
    return settings
