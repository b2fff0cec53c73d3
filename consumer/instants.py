"""Points in time as options give them: partition hours, dates, ISO 8601 or UNIX seconds, in UTC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_PLAIN_HOUR = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:-(\d{2}))?\s*$")


def parse_instant(text: str) -> int:
    """``2024-05-01-13`` (a partition hour), ``2024-05-01``, ISO 8601 (``2024-05-01T13:30Z``, an
    offset, or none = UTC) or UNIX seconds -> UNIX seconds. Raises ``ValueError`` naming the text."""
    raw = str(text).strip()
    if raw.isdigit():
        return int(raw)
    m = _PLAIN_HOUR.match(raw)
    try:
        if m:
            year, month, day, hour = m.groups()
            return int(datetime(int(year), int(month), int(day), int(hour or 0), tzinfo=UTC).timestamp())
        moment = datetime.fromisoformat(raw)
    except ValueError:
        pass
    else:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())
    raise ValueError(f"not a time: {text!r} (use e.g. 2024-05-01-13, 2024-05-01, 2024-05-01T13:30Z)")


def canonical_instant(text: str) -> str:
    """The option parser: ``""`` stays unset, anything else is checked and shown as ISO 8601 UTC."""
    if not str(text).strip():
        return ""
    return format_instant(parse_instant(text))


def format_instant(seconds: int) -> str:
    """``2024-05-01T13:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
