"""The Source contract: what every input (a Kafka consumer group, files or stored objects) promises.

A source yields records in position order per stream (a Kafka partition ``(topic, partition)``, or one
file ``(path, -1)``); how it yields them is its own (Kafka fetches batches of messages, the file source
hands out one reader per file). Everything after reading — tracking, acknowledging, committing — is
the same for every source and is what this contract fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

Stream = tuple[str, int]
"""``(topic, partition)`` for Kafka, ``(path or URL, -1)`` for a file."""


class Source(Protocol):
    """An input that is read in position order per stream and told which positions are done.

    * **What blocks.** Reading waits for input (a Kafka fetch long-polls up to its timeout; a file
      reader waits for the next decoded chunk). :meth:`pause`, :meth:`resume` and :meth:`close` never
      wait for input; :meth:`commit` waits only for the write of the positions (a broker round trip,
      a small file).
    * **Back-pressure.** When delivery is full the reader calls :meth:`pause`: the source stops taking
      more input (Kafka pauses every assigned partition but keeps polling so the group membership
      stays alive; a file source stops handing out chunks) until :meth:`resume`. A source never
      buffers more than one read ahead of what delivery took, so memory does not grow with lag.
    * **Acknowledging.** A position is acknowledged when its event is finished, whichever way:
      delivered, skipped by a mapping rule, or dead-lettered (the dead-letter record synced to disk
      before the position is committed). Acknowledgements arrive in any order.
    * **Committing.** :meth:`commit` is only ever given, per stream, the *contiguous* acknowledged
      prefix: the offset after which nothing is done yet (the next position to read, Kafka's
      convention), never a position past one that is unfinished. What is committed is where a
      restarted reader starts; it returns ``False`` when the commit could not be made (a rebalance,
      a fenced generation): the previous commit stands, which is safe, and a later commit retries.
    * **Shutdown.** The reader stops reading, gives events in flight a bounded grace, commits the done
      prefix, then calls :meth:`close`, which releases the input (leaves the group, stops the file
      threads) without committing anything itself: an event unfinished at shutdown is read again.
    """

    def pause(self) -> None:
        """Stop taking more input until :meth:`resume` (back-pressure); idempotent."""

    def resume(self) -> None:
        """Take input again after :meth:`pause`; idempotent."""

    async def commit(self, offsets: Mapping[Stream, int]) -> bool:
        """Make ``offsets`` (per stream, the next position to read) where a restart begins; ``False`` if
        the commit failed and the previous one stands."""

    async def close(self) -> None:
        """Release the input; commits nothing (the reader committed the done prefix before)."""
