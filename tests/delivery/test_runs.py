"""Runs of payloads (:class:`consumer.events.PendingRun`) as the batcher cuts them into requests.

A run is a slice of a chunk's columns; the batcher splits it where a request's caps cut it. Whatever the
payload sizes, the caps and the run lengths, the requests hold every payload once, in order, byte for byte
as the payloads joined by commas, and none passes a cap (but for a payload that is alone in its request).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.delivery.batching import Batcher
from consumer.delivery.departures import Departures
from consumer.delivery.throttle import KeyLimiter
from consumer.events import Group, Pending, PendingRun, Position, Queued, apart, key_column
from consumer.settings.delivery import RequestShape
from consumer.transform.prepare import ChunkBuilder

OVERHEAD = 11


def payloads(sizes: list[int]) -> list[bytes]:
    """A distinct payload of each size (its index in front, padded)."""
    return [f"{i:04d}".encode().ljust(size, b"x")[: max(size, 4)] for i, size in enumerate(sizes)]


def runs(encoded: list[bytes], lengths: list[int]) -> list[PendingRun]:
    """``encoded`` laid out as one chunk's column (a row each, as a worker does) and taken in runs of
    ``lengths`` (cycled), each run owing its own group."""
    builder = ChunkBuilder(("t", 0), 1)
    for i, payload in enumerate(encoded):
        builder.add(100 + i, f"type-{i % 3}", ([(payload, (f"d:{i % 5}",))],))
    chunk = builder.build()
    out: list[PendingRun] = []
    first = 0
    k = 0
    while first < len(encoded):
        after = min(len(encoded), first + lengths[k % len(lengths)])
        group = Group(chunk.stream, chunk.offsets[first], chunk.offsets[after - 1], after - first)
        out.append(chunk.outputs[0].run(first, after, (chunk.types, chunk.offsets, group), 5.0))
        first, k = after, k + 1
    return out


def test_a_run_reads_its_payloads_back_from_the_columns() -> None:
    encoded = [b'{"a":1}', b'{"bb":22}', b"{}", b'{"c":3}']
    (run,) = runs(encoded, [4])
    assert run.part() == b",".join(encoded)
    assert (run.count, run.size, run.largest()) == (4, sum(len(p) + 1 for p in encoded), len(encoded[1]) + 1)
    assert run.key_column() == [("d:0",), ("d:1",), ("d:2",), ("d:3",)]
    assert run.event_types() == ["type-0", "type-1", "type-2", "type-0"]
    tail = run.split(1)
    assert (run.part(), tail.part()) == (encoded[0], b",".join(encoded[1:]))
    assert (run.count, tail.count, run.size + tail.size) == (1, 3, sum(len(p) + 1 for p in encoded))
    # the first payloads of the tail that fit 2 events and 12 bytes: '{"bb":22},' is 10, '{},' 3 more
    assert (tail.fitting(2, 12), tail.fitting(2, 13), tail.fitting(1, 100), tail.fitting(5, 9)) == (
        1,
        2,
        1,
        0,
    )
    each = tail.apart()
    assert [(p.encoded, p.position.offset, p.event_type, p.keys) for p in each] == [
        (encoded[1], 101, "type-1", ("d:1",)),
        (encoded[2], 102, "type-2", ("d:2",)),
        (encoded[3], 103, "type-0", ("d:3",)),
    ]
    assert all(p.group is run.group and p.first_attempt == 5.0 for p in each)


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=80),
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    events_cap=st.integers(1, 25),
    room=st.integers(0, 400),
    alone=st.sets(st.integers(0, 79)),
)
def test_requests_hold_every_payload_once_in_order_within_the_caps(
    sizes: list[int], lengths: list[int], events_cap: int, room: int, alone: set[int]
) -> None:
    """Runs (and payloads given alone, between them) cut into requests: every payload once, in order, byte
    for byte; each request within the event cap, and within the byte cap unless it is one payload; every
    split told, and the parts told of are exactly what the requests hold."""
    encoded = payloads(sizes)
    largest = max(len(p) for p in encoded) + 1
    caps = RequestShape(events_cap, OVERHEAD + largest + room, 1.0, 1)
    held: dict[int, Queued] = {}

    def split(run: PendingRun, tail: PendingRun) -> None:
        assert id(run) in held and run.after == tail.first  # the head stays, the tail follows it
        held[id(tail)] = tail

    batcher = Batcher(caps, OVERHEAD, split)
    items: list[Queued] = []
    for run in runs(encoded, lengths):
        if run.first in alone:  # this one goes payload by payload, as after a device was held aside
            items += run.apart()
        else:
            items.append(run)
    held.update((id(item), item) for item in items)
    batcher.add_many(items, now=0.0)
    batcher.seal()
    requests = list(batcher.ready)
    sent = [item for request in requests for item in request.batch]
    assert {id(item) for item in sent} == set(held)  # the parts held are the parts sent, each once
    assert b",".join(item.part() for item in sent) == b",".join(encoded)
    assert [p.encoded for p in apart(sent)] == encoded
    assert [p.position.offset for p in apart(sent)] == [100 + i for i in range(len(encoded))]
    assert len(key_column(sent)) == len(encoded)
    for request in requests:
        assert 0 < request.events <= events_cap
        body = OVERHEAD + sum(item.size for item in request.batch) - 1  # no comma after the last
        assert body <= caps.bytes_cap or request.events == 1
    # a request is cut only where the next payload would pass a cap: each but the last is full
    for request, following in itertools.pairwise(requests):
        first_next = apart(following.batch)[0]
        full_by_count = request.events == events_cap
        full_by_bytes = sum(item.size for item in request.batch) + first_next.size > caps.bytes_cap - OVERHEAD
        assert full_by_count or full_by_bytes


def test_a_payload_alone_keeps_its_own_bytes() -> None:
    """A payload taken apart from a run holds its own bytes, not a view into the chunk's blob."""
    (run,) = runs(payloads([8, 9, 10]), [3])
    first = run.apart()[0]
    assert isinstance(first, Pending) and first.encoded == first.part() == b"0000xxxx"
    assert len(first.encoded) == 8 and first.size == 9


def departures(batcher: Batcher, rate: float = 1000.0) -> tuple[Departures, list[Queued], list[Pending]]:
    """Departures over ``batcher`` with a per-key ``rate``; what it took apart and what it dead-lettered."""
    taken_apart: list[Queued] = []
    dead: list[Pending] = []

    def take_apart(items: Sequence[Queued]) -> list[Pending]:
        taken_apart.extend(item for item in items if isinstance(item, PendingRun))
        return apart(items)

    d = Departures(
        KeyLimiter(rate, 500_000),
        batcher,
        fits=lambda item: True,
        expired=lambda item, now: False,
        dead=lambda item, reason, detail: dead.append(item),
        apart=take_apart,
    )
    return d, taken_apart, dead


def test_only_a_run_with_a_key_waiting_aside_is_taken_apart() -> None:
    """Device d:3 waits aside: the run holding one of its payloads is taken apart and that payload queues
    behind d:3's; the run without d:3 joins the batch whole."""
    batcher = Batcher(RequestShape(100, 100_000, 1.0, 1), OVERHEAD)
    d, taken_apart, _ = departures(batcher)
    first, second = runs(payloads([6] * 8), [4])  # keys d:0 d:1 d:2 d:3 | d:4 d:0 d:1 d:2
    waiting = Pending.alone("t", Position("t", 0, 1), b"{}", 0.0, ("d:3",))
    d.hold("d:3", [waiting], until=10.0)
    d.enqueue_many([first, second], now=1.0)
    assert taken_apart == [first]
    batcher.seal()
    (request,) = batcher.ready
    assert [type(item).__name__ for item in request.batch] == ["Pending"] * 3 + ["PendingRun"]
    assert request.batch[-1] is second
    queue = d.held.queue("d:3")
    assert queue is not None and [p.position.offset for p in queue] == [1, 103]


def test_a_request_leaves_whole_when_every_payload_has_a_token_and_apart_when_one_has_none() -> None:
    batcher = Batcher(RequestShape(100, 100_000, 1.0, 1), OVERHEAD)
    d, taken_apart, _ = departures(batcher, rate=1.0)
    (run,) = runs(payloads([6] * 4), [4])  # four devices, one payload each
    assert d.admit([run], now=1.0) == [run] and taken_apart == []
    (again,) = runs(payloads([6] * 6), [6])  # d:0..d:3 sent a second ago and a bit; d:4, then d:0 again
    sent = d.admit([again], now=1.5)
    assert taken_apart == [again]
    assert [p.position.offset for p in apart(sent)] == [104]  # only d:4 has a token
    assert sorted(key for key in ("d:0", "d:1", "d:2", "d:3") if d.held.queue(key)) == [
        "d:0",
        "d:1",
        "d:2",
        "d:3",
    ]
    queue = d.held.queue("d:0")
    assert queue is not None and [p.position.offset for p in queue] == [100, 105]
