"""Waiting for an :class:`asyncio.Event` with a deadline, without ever losing a cancellation."""

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
