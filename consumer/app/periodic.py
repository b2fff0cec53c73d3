"""Work a run repeats while it lasts (progress lines, checkpoints, a lock's lease), with its failures seen.

:func:`every` calls a job every few seconds in a task of its own; a fault it raises (or any exception: a
bug) is reported to the run's :class:`~consumer.ops.faults.Faults` and ends the repetition, so no
exception waits unseen in a task until the end of the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from consumer.ops.faults import Fault, Faults

log = logging.getLogger("currents.loop")

Periodic = tuple[float, Callable[[], Awaitable[None] | None]]
"""``(interval in seconds, what to call)``: work a run repeats."""


async def every(interval: float, job: Callable[[], Awaitable[None] | None], faults: Faults) -> None:
    """Call ``job`` every ``interval`` seconds; its fault (or any exception: a bug) is reported and ends
    the repetition, so no exception waits unseen in a task until the end of the run."""
    while True:
        await asyncio.sleep(interval)
        try:
            result = job()
            if result is not None:
                await result
        except Fault as fault:
            faults.report(fault)
            return
        except Exception as exc:
            log.exception("a periodic job failed")
            faults.report(Fault(f"a periodic job failed: {type(exc).__name__}: {exc}"))
            return
