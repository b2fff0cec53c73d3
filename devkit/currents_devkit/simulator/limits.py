"""The Amplitude simulator's per-id limits (429) and deduplication, as plain classes with no clock.

- Rates are measured per ``device_id`` and per ``user_id`` over a sliding window of ``window_s``
  seconds (the simulator's default is 1 s, so tests are quick; Amplitude averages over 30 s). A request
  is throttled when, for some id, the events *accepted* in the window plus this request's exceed
  ``eps * window_s``; refused requests do not count. The 429 reports ``ceil(total / window_s)`` per
  id, and ``throttled_events`` lists every event of a throttled or over-quota id.
- The daily quota counts accepted events per id and UTC day (``quota=0`` disables it; its counters
  grow with the number of distinct ids per day). ``eps=0`` disables a rate limit.
- Duplicates ``(insert_id, device_id or user_id)`` are told apart from fresh events; the memory is
  bounded by ``capacity`` keys (64-bit hashes, two generations).

Every method takes the current time from its caller, so behaviour is deterministic in tests. The
protocol per request: ``over`` on each limit, then, only if the request is accepted, ``add``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any


class RateWindow:
    """Events accepted per device and per user of one endpoint over the last ``window_s`` seconds."""

    def __init__(self, eps: int, window_s: float) -> None:
        self.eps = eps
        self.window_s = window_s
        self._devices = _SlidingCounts(window_s)
        self._users = _SlidingCounts(window_s)

    def over(
        self, devices: dict[str, int], users: dict[str, int], now: float
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Devices and users this request would push over ``eps * window_s``, with their totals."""
        if self.eps <= 0:
            return {}, {}
        self._devices.expire(now)
        self._users.expire(now)
        cap = self.eps * self.window_s
        return _over(devices, self._devices.counts, cap), _over(users, self._users.counts, cap)

    def add(self, devices: dict[str, int], users: dict[str, int], now: float) -> None:
        """Count an accepted request's events."""
        if self.eps > 0:
            self._devices.add(now, devices)
            self._users.add(now, users)


class DailyQuota:
    """Events accepted per device and per user on the current UTC day (shared by all endpoints)."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self._day = -1
        self._devices: dict[str, int] = {}
        self._users: dict[str, int] = {}

    def over(
        self, devices: dict[str, int], users: dict[str, int], now: float
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Devices and users this request would push over the quota, with their totals; a new UTC day
        starts from zero."""
        if self.quota <= 0:
            return {}, {}
        day = int(now // 86400)
        if day != self._day:
            self._day, self._devices, self._users = day, {}, {}
        return _over(devices, self._devices, self.quota), _over(users, self._users, self.quota)

    def add(self, devices: dict[str, int], users: dict[str, int]) -> None:
        """Count an accepted request's events (after :meth:`over` for the same instant)."""
        if self.quota > 0:
            _add_counts(self._devices, devices)
            _add_counts(self._users, users)


def throttled_body(
    events: list[dict[str, Any]],
    rates: RateWindow,
    rate_over: tuple[dict[str, int], dict[str, int]],
    quota_over: tuple[dict[str, int], dict[str, int]],
) -> dict[str, Any] | None:
    """The 429 body for ids over their rate or daily quota (from the ``over`` calls), else None."""
    (td, tu), (qd, qu) = rate_over, quota_over
    if not (td or tu or qd or qu):
        return None
    bad_devices, bad_users = td.keys() | qd.keys(), tu.keys() | qu.keys()
    throttled_events = [
        i
        for i, ev in enumerate(events)
        if ev.get("device_id") in bad_devices or ev.get("user_id") in bad_users
    ]
    window = rates.window_s
    return {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": rates.eps,
        "throttled_devices": {k: math.ceil(v / window) for k, v in td.items()},
        "throttled_users": {k: math.ceil(v / window) for k, v in tu.items()},
        "throttled_events": throttled_events,
        "exceeded_daily_quota_devices": qd,
        "exceeded_daily_quota_users": qu,
    }


class _SlidingCounts:
    """Events per id over the last ``window_s`` seconds, exact at request granularity, O(1) amortised."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._log: deque[tuple[float, dict[str, int]]] = deque()
        self.counts: dict[str, int] = {}

    def expire(self, now: float) -> None:
        cutoff = now - self._window
        log_, counts = self._log, self.counts
        while log_ and log_[0][0] <= cutoff:
            for key, n in log_.popleft()[1].items():
                left = counts[key] - n
                if left:
                    counts[key] = left
                else:
                    del counts[key]

    def add(self, now: float, batch: dict[str, int]) -> None:
        self._log.append((now, batch))
        _add_counts(self.counts, batch)


class Dedup:
    """Remembers between ``capacity / 2`` and ``capacity`` recent keys in two generations of sets."""

    def __init__(self, capacity: int) -> None:
        self._half = max(1, capacity // 2)
        self._new: set[int] = set()
        self._old: set[int] = set()

    def split(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(fresh, duplicates)`` by ``(insert_id, device_id or user_id)``; no insert_id: always fresh."""
        fresh: list[dict[str, Any]] = []
        dups: list[dict[str, Any]] = []
        new, old, half = self._new, self._old, self._half
        for ev in events:
            insert_id = ev.get("insert_id")
            if insert_id:
                key = hash((insert_id, ev.get("device_id") or ev.get("user_id")))
                if key in new or key in old:
                    dups.append(ev)
                    continue
                new.add(key)
                if len(new) >= half:
                    self._old, self._new = old, new = new, set()
            fresh.append(ev)
        return fresh, dups


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


def _over(request_counts: dict[str, int], known: dict[str, int], cap: float) -> dict[str, int]:
    """Ids whose known count plus this request's exceeds ``cap``, with that total."""
    over: dict[str, int] = {}
    for key, n in request_counts.items():
        total = known.get(key, 0) + n
        if total > cap:
            over[key] = total
    return over
