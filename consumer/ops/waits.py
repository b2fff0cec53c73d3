"""Waiting for :class:`asyncio.Event` values: one with a deadline, without ever losing a cancellation
(:func:`wait_set`), or the first of two (:func:`either`)."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set or ``timeout`` seconds have passed (``None``: no limit); whether it is
    set.

    ``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11 returns normally when the event is set in
    the turn of the event loop in which the waiting task is cancelled: the cancellation is lost, and a
    loop that waits that way (the delivery pump) went on after its ``cancel()``, so whoever awaited it
    hung. ``asyncio.timeout`` keeps the cancellation.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()


async def either(first: asyncio.Event, second: asyncio.Event | None) -> None:
    """Wait until ``first`` or ``second`` (if given) is set (no bound: wrap it in ``asyncio.timeout``)."""
    if second is None:
        await first.wait()
        return
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
