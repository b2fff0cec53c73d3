"""Logging set-up: JSON lines when stderr is not a terminal, readable lines on a terminal.

One line per batch, interval or incident, never per event at INFO. Values that look like secrets are
never passed to the logger in the first place (the API key lives only in :class:`~consumer.settings.Secret`
and in request bodies); as a second line of defence every known secret is masked in formatted output.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it would appear in a log line."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def _mask(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _mask(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = _mask(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: message`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


def setup(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure the root logger once for a command (``fmt``: auto, json or text)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The object-store clients log every retry and give-up with its traceback (several KB per failure);
    # the command's own line names the URL and the cause once (consumer.sources.storage.cloud).
    for cloud in CLOUD_LOGGERS:
        logging.getLogger(cloud).setLevel(logging.CRITICAL)


CLOUD_LOGGERS = ("gcsfs", "adlfs", "azure", "s3fs", "aiobotocore", "botocore", "boto3", "google", "fsspec")
"""The loggers of the object-store client libraries, kept quiet below CRITICAL."""
