"""Waiting for an event with a deadline keeps every cancellation (``asyncio.wait_for`` on 3.11 does not)."""

from __future__ import annotations

import asyncio

import pytest

from consumer.ops.waits import wait_set


async def test_set_timed_out_and_no_limit() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    assert await wait_set(event, -1.0) is False  # a deadline already passed
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_set(event, None) is True
    assert await wait_set(event, 0.0) is True  # already set: no wait at all


async def test_a_cancellation_in_the_turn_the_event_is_set_is_kept() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_set(event, 30.0))
    await asyncio.sleep(0)  # the waiter now waits
    event.set()  # its wake-up is due in the next turn...
    waiter.cancel()  # ...and so is its cancellation
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()
