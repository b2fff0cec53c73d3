"""Micro-benchmark of :class:`consumer.delivery.throttle.KeyLimiter`: microseconds per ``admit`` (and
``check``).

``python bench/micro_limiter.py [-n N] [--impl PATH]`` offers N events (default 1,000,000) to a fresh
limiter, each carrying a device key drawn from 20,000 devices and a user key drawn from 20,000 users,
on a clock advancing 16,000 events per second (from 2023-11-14T22:13:20Z, so no UTC midnight falls
inside): at Amplitude's 30 events/s per key, at 1e6/s (no key ever waits), and at 30/s with 100
devices slowed down by a 429 at the start (as after any 429, for an hour). It prints one line per run
with the microseconds per call (the empty loop's own cost per iteration taken off) and the share of
calls admitted, then the microseconds per event of ``admit_many`` on a fresh limiter, offered the same
events in requests of ``--batch`` (default 100) consecutive events at the clock reading of each
request's last one, as the delivery engine does when a request leaves (its admitted share may differ
a little from ``admit``'s, the clock being coarser). ``--impl`` times the ``KeyLimiter`` of another
file instead (an older ``throttle.py``, where ``admit`` and ``admit_many`` were ``take`` and
``take_many``; the ``admit_many`` row is left out if it has none), for before/after comparisons. Set
``PYTHONHASHSEED`` for repeatable dict layouts; timings on a shared machine vary by a fifth from run to run.

The key tuples are built before timing and reused (their strings' hashes are cached) and kept out of
the garbage collector's generations (``gc.freeze``), so the numbers are the limiter's own cost,
including the collections its own allocations cause; the events of the real pipeline build their keys
once each.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0
EVENTS_PER_SECOND = 16_000.0
DEVICES = USERS = 20_000


def load_limiter(path: str | None) -> Any:
    """The ``KeyLimiter`` class of ``path`` (a throttle.py), or of :mod:`consumer.delivery.throttle`."""
    if path is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from consumer.delivery.throttle import KeyLimiter

        return KeyLimiter
    spec = importlib.util.spec_from_file_location("throttle_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KeyLimiter


def method(limiter: Any, name: str, older: str) -> Any:
    """``limiter``'s method ``name``, or ``older``, its name in an older ``throttle.py`` (``None``:
    neither)."""
    return getattr(limiter, name, None) or getattr(limiter, older, None)


def workload(n: int, seed: int = 7) -> tuple[list[tuple[str, ...]], list[float]]:
    """``n`` events' key tuples and their clock readings."""
    rng = random.Random(seed)
    devices = [f"d:{i:08x}-device" for i in range(DEVICES)]
    users = [f"u:user-{i}" for i in range(USERS)]
    keys = [(devices[rng.randrange(DEVICES)], users[rng.randrange(USERS)]) for _ in range(n)]
    times = [T0 + i / EVENTS_PER_SECOND for i in range(n)]
    return keys, times


def per_call(
    method: Callable[[tuple[str, ...], float], float], keys: list[tuple[str, ...]], times: list[float]
) -> tuple[float, int]:
    """(seconds spent, calls answered ADMIT) over the events."""
    admitted = 0
    start = time.perf_counter()
    for k, now in zip(keys, times, strict=True):
        if method(k, now) == 0.0:
            admitted += 1
    return time.perf_counter() - start, admitted


def per_request(
    method: Callable[[list[tuple[str, ...]], float], list[float]],
    requests: list[list[tuple[str, ...]]],
    times: list[float],
) -> tuple[float, int]:
    """(seconds spent, events answered ADMIT) over the requests, each at its clock reading."""
    admitted = 0
    start = time.perf_counter()
    for request, now in zip(requests, times, strict=True):
        admitted += method(request, now).count(0.0)
    return time.perf_counter() - start, admitted


def empty_loop(keys: list[tuple[str, ...]], times: list[float]) -> float:
    """The same loop around a call that does nothing."""

    def nothing(keys: tuple[str, ...], now: float) -> float:
        return 0.0

    return per_call(nothing, keys, times)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="events per run")
    parser.add_argument(
        "--impl", help="a throttle.py to take KeyLimiter from instead of consumer.delivery.throttle"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per rate; the fastest is printed")
    parser.add_argument("--batch", type=int, default=100, help="events per admit_many call")
    args = parser.parse_args()
    limiter_class = load_limiter(args.impl)
    keys, times = workload(args.n)
    requests = [keys[i : i + args.batch] for i in range(0, args.n, args.batch)]
    request_times = [times[min(i + args.batch, args.n) - 1] for i in range(0, args.n, args.batch)]
    gc.collect()
    gc.freeze()  # the workload's million tuples are not the limiter's: keep them out of the collector's walks
    overhead = min(empty_loop(keys, times) for _ in range(args.repeat))
    print(f"empty loop: {overhead / args.n * 1e6:.3f} us/iteration (taken off below)")
    checks = min(200_000, args.n)
    for rate, penalized in ((30.0, 0), (1e6, 0), (30.0, 100)):
        best_admit = best_check = float("inf")
        admitted = 0
        for _ in range(args.repeat):
            limiter = limiter_class(rate, 500_000)
            for device in range(penalized):  # Amplitude throttled a few devices: slower for an hour
                limiter.penalize(f"d:{device:08x}-device", 1.0, T0)
            spent, admitted = per_call(method(limiter, "admit", "take"), keys, times)
            best_admit = min(best_admit, spent)
            # check on a limiter holding the state of the whole run (the windows of its last second)
            best_check = min(best_check, per_call(limiter.check, keys[-checks:], [times[-1]] * checks)[0])
        admit_us = (best_admit - overhead) / args.n * 1e6
        check_us = (best_check - overhead * checks / args.n) / checks * 1e6
        slowed = f", {penalized} devices slowed" if penalized else ""
        print(
            f"rate {rate:>9g}{slowed}: admit {admit_us:.3f} us/call, check {check_us:.3f} us/call, "
            f"admitted {admitted / args.n:.1%}"
        )
        if method(limiter_class, "admit_many", "take_many") is None:
            continue
        best_many = float("inf")
        for _ in range(args.repeat):
            limiter = limiter_class(rate, 500_000)
            for device in range(penalized):
                limiter.penalize(f"d:{device:08x}-device", 1.0, T0)
            spent, admitted = per_request(method(limiter, "admit_many", "take_many"), requests, request_times)
            best_many = min(best_many, spent)
        print(
            f"rate {rate:>9g}{slowed}: admit_many {best_many / args.n * 1e6:.3f} us/event "
            f"({args.batch} events a call), admitted {admitted / args.n:.1%}"
        )


if __name__ == "__main__":
    main()
