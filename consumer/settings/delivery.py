"""What every destination's section answers, the Amplitude destination's section, and the limits
Amplitude is delivered under."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

from pydantic import model_validator

from consumer.settings.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Float,
    Int,
    OptionError,
    SecretText,
    Section,
    Text,
)
from consumer.settings.fields import option as _option

_amplitude = partial(_option, group="amplitude")
_limits = partial(_option, group="limits")

HTTP_V2_EVENTS_CAP = 2000


@dataclass(frozen=True)
class RequestShape:
    """What one request carries and how many go at once (a :class:`~consumer.sinks.base.RequestCaps`)."""

    events_cap: int
    bytes_cap: int
    batch_age: float
    concurrency: int


class DestinationSection(Section):
    """The settings of one destination (its ``[name]`` table, its help group): it says how its requests
    are shaped (:meth:`request_shape`), what it cannot work without (:meth:`missing`) and which limits
    its events are delivered under (:meth:`own_limits`)."""

    def request_shape(self) -> RequestShape:
        """What one request carries and how many go at once."""
        raise NotImplementedError

    def missing(self) -> str:
        """What the destination lacks to start (names the options), or ``""``."""
        return ""

    def own_limits(self, limits: LimitSettings) -> LimitSettings:
        """The limits of this destination's events; ``limits`` is the ``[limits]`` section (Amplitude's)."""
        return limits


class AmplitudeSettings(DestinationSection):
    """The Amplitude destination: where, how, and the request caps."""

    api_key: SecretText = _amplitude(
        "", "--api-key", "AMPLITUDE_API_KEY", "Amplitude project API key", metavar="KEY", common=True
    )
    region: Annotated[Literal["us", "eu"], AS_TEXT] = _amplitude(
        "us", "--region", "AMPLITUDE_REGION", "Amplitude region", common=True
    )
    url: Text = _amplitude(
        "",
        "--amplitude-url",
        "AMPLITUDE_URL",
        "full endpoint URL, overrides --region/--api (proxies, the simulator)",
        metavar="URL",
    )
    api: Annotated[Literal["http", "batch"], AS_TEXT] = _amplitude(
        "http", "--api", "AMPLITUDE_API", "HTTP V2 API or Batch API", common=True
    )
    min_id_length: Int = _amplitude(
        1,
        "--min-id-length",
        "AMPLITUDE_MIN_ID_LENGTH",
        "options.min_id_length sent with every request (Braze ids can be 1 character)",
        ge=0,
    )
    max_events: Int = _amplitude(
        0,
        "--batch-events",
        "CURRENTS_BATCH_EVENTS",
        "events per request (0 = the endpoint's cap: 2000)",
        ge=0,
    )
    max_bytes: Int = _amplitude(
        0,
        "--batch-bytes",
        "CURRENTS_BATCH_BYTES",
        "request body bytes (0 = the endpoint's cap: 1 MB HTTP V2, 20 MB Batch)",
        metavar="BYTES",
        ge=0,
    )
    batch_age: Duration = _amplitude(
        0.5, "--batch-age", "CURRENTS_BATCH_AGE", "send a partial batch after this long", ge=0
    )
    concurrency: Int = _amplitude(
        8, "--concurrency", "CURRENTS_CONCURRENCY", "requests in flight at once", ge=1
    )
    timeout: Duration = _amplitude(
        30.0,
        "--request-timeout",
        "CURRENTS_REQUEST_TIMEOUT",
        "deadline for one whole request, connection wait to last byte (not per read; then retried)",
        gt=0,
    )
    gzip: Bool = _amplitude(True, "--gzip", "CURRENTS_GZIP", "gzip request bodies")

    @model_validator(mode="after")
    def _batch_api_allows_more_events(self) -> AmplitudeSettings:
        if self.max_events > HTTP_V2_EVENTS_CAP and self.api != "batch":
            raise OptionError(
                "max_events", f"{self.max_events!r} is out of range (0 to 2000 (more only with --api batch))"
            )
        return self

    def request_shape(self) -> RequestShape:
        """Batches up to the endpoint's caps."""
        return RequestShape(self.events_cap, self.bytes_cap, self.batch_age, self.concurrency)

    def missing(self) -> str:
        """Amplitude needs its project's API key."""
        return "" if self.api_key else "no Amplitude API key (--api-key or AMPLITUDE_API_KEY)"

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
        return self.max_events or HTTP_V2_EVENTS_CAP

    @property
    def bytes_cap(self) -> int:
        """Request body bytes (uncompressed: Amplitude counts after decompression)."""
        if self.max_bytes:
            return self.max_bytes
        return 20_000_000 - 4096 if self.api == "batch" else 1_000_000 - 4096


BATCH_API_DEVICE_RATE = 1000.0
"""The default per-device rate with ``--api batch``: the Batch API allows 1000 events/s per device and
per user (HTTP V2: 30)."""


class LimitSettings(Section):
    """Throttling, retry window and memory bounds."""

    device_rate: Float = _limits(
        30.0,
        "--device-rate",
        "CURRENTS_DEVICE_RATE",
        "events per second per device and per user",
        gt=0,
        metavar="RATE",
    )
    device_daily_limit: Int = _limits(
        500_000,
        "--device-daily-limit",
        "CURRENTS_DEVICE_DAILY_LIMIT",
        "events per UTC day per device and per user; above it events are dead-lettered (daily_quota)",
        ge=1,  # 0 would dead-letter every event as over its daily quota
    )
    project_rate: Float = _limits(
        0.0,
        "--project-rate",
        "CURRENTS_PROJECT_RATE",
        "events per second for the whole project (0 = unlimited)",
        ge=0,
        metavar="RATE",
    )
    retry_window: Duration = _limits(
        48 * 3600.0,
        "--retry-window",
        "CURRENTS_RETRY_WINDOW",
        "how long an event may keep failing before it is dead-lettered (e.g. 90s, 30m, 48h)",
        gt=0,
    )
    max_backoff: Duration = _limits(
        300.0,
        "--max-backoff",
        "CURRENTS_MAX_BACKOFF",
        "longest wait between retries of a failing request",
        ge=0,
    )
    throttle_penalty: Duration = _limits(
        30.0,
        "--throttle-penalty",
        "CURRENTS_THROTTLE_PENALTY",
        "how long a device or user Amplitude answered 429 for is held back (unless it sends Retry-After)",
        ge=0,
    )
    max_pending: Int = _limits(
        50_000,
        "--max-pending",
        "CURRENTS_MAX_PENDING",
        "events held in memory (batching, throttled, in flight) before input pauses",
        ge=1,
    )
    max_pending_bytes: Int = _limits(
        256 << 20,
        "--max-pending-bytes",
        "CURRENTS_MAX_PENDING_BYTES",
        "bytes of events held in memory before input pauses",
        metavar="BYTES",
        ge=1,  # 0 would deadlock: the engine would never have room again after its first event
    )
