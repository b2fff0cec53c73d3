"""A batch of Kafka messages in the daemon: what is left of it when partitions are revoked midway."""

from __future__ import annotations

from consumer.app.pipeline import Taken
from consumer.commands.run import _Batch
from consumer.events import Position
from consumer.transform.base import Skip


def record(partition: int, offset: int) -> Taken:
    return (Position("t", partition, offset), "users.behaviors.CustomEvent", (Skip("no_identity"),))


def test_a_revocation_midway_leaves_out_only_the_revoked_records_not_taken_yet() -> None:
    taken = [record(0, 10), record(1, 20)]
    rest = [record(0, 11), record(1, 21), record(0, 12), record(1, 22)]
    batch = _Batch(messages=[], results=None, run=taken + rest, next=len(taken))
    batch.dropped |= {("t", 0)}
    batch.drop_revoked()
    assert batch.run == [*taken, record(1, 21), record(1, 22)]
    assert batch.next == 2 and batch.left == 2  # partition 1's records after the cut are all still due
    assert batch.dropped == set()
    batch.drop_revoked()  # nothing more revoked: nothing changes
    assert batch.run == [*taken, record(1, 21), record(1, 22)]
