"""Worker processes for replay: the same prepared records as in-process decoding, in listing order,
failures reported as in-process reading reports them, dead or stopped workers never lose the pool."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from currents_devkit.synth import Synth, write_container, write_currents_tree

from consumer.decode.avro import DecodeError
from consumer.settings import load
from consumer.sources.storage.files import ReadError, ReadProgress, list_objects, read_file
from consumer.sources.storage.readahead import loads
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import StoredObject
from consumer.sources.workers.file_pool import WorkerPool
from consumer.sources.workers.process import CancelFlag
from consumer.transform.amplitude import AmplitudeMapper, Transformer
from consumer.transform.prepare import Chunk, Output, Preparer

EVENT_TYPE = "users.behaviors.CustomEvent"


def mappers() -> list[AmplitudeMapper]:
    return [AmplitudeMapper(Transformer(load(None, {"AMPLITUDE_API_KEY": "k"}).mapping))]


@contextlib.contextmanager
def pool_of(size: int, selection: Selection | None = None) -> Iterator[WorkerPool]:
    pool = WorkerPool(size, mappers(), selection or Selection())
    pool.start()
    try:
        yield pool
    finally:
        pool.close()


def big_file(tmp_path: Path, records: int = 20_000, name: str = "big.avro") -> StoredObject:
    """One container of ``records`` custom events: many chunks, more than a pipe holds."""
    synth = Synth(5, devices=200)
    path = tmp_path / name
    write_container(path, EVENT_TYPE, [synth.record(EVENT_TYPE) for _ in range(records)])
    return obj(path)


def obj(path: Path) -> StoredObject:
    (found,) = list_objects([str(path)])
    return found


Row = tuple[int, str, tuple[Output, ...]]


def read_all(pool: WorkerPool, ticket: int, target: StoredObject, skip: int = 0) -> list[Row]:
    """Every row the worker sent, read back from its chunks' columns (each chunk of ``target``'s stream)."""
    out: list[Row] = []
    for data in pool.read(ticket, target, skip, ReadProgress(records=skip), threading.Event()):
        chunk: Chunk = loads(data)
        assert chunk.stream == (target.url, -1)
        out.extend(chunk.rows())
    return out


def in_process(path: str, skip: int = 0) -> list[Row]:
    preparer = Preparer(mappers())
    return [
        (r.position.offset, r.event_type, preparer.outputs(r.event_type, r.record))
        for r in read_file(path, skip=skip)
    ]


def test_a_worker_prepares_exactly_what_this_process_would(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(2, devices=300), 2500, max_per_file=400)
    objects = list(list_objects([str(tmp_path / "in")]))
    assert len(objects) > 3
    with pool_of(2) as pool:
        for target in objects:
            assert read_all(pool, pool.ticket(), target) == in_process(target.url)
        # resuming inside a file skips exactly the records already done
        target = objects[0]
        assert read_all(pool, pool.ticket(), target, skip=7) == in_process(target.url, skip=7)


def test_records_the_selection_leaves_out_are_counted_not_sent(tmp_path: Path) -> None:
    write_currents_tree(tmp_path / "in", Synth(4, devices=100), 1200, max_per_file=1200)
    objects = list(list_objects([str(tmp_path / "in")]))
    selection = Selection.of((EVENT_TYPE,), "", "", False)
    with pool_of(1, selection) as pool:
        for target in objects:
            progress = ReadProgress()
            got = [
                p
                for c in pool.read(pool.ticket(), target, 0, progress, threading.Event())
                for p in loads(c).rows()
            ]
            expected = [p for p in in_process(target.url) if p[1] == EVENT_TYPE]
            assert got == expected
            assert progress.filtered == len(in_process(target.url)) - len(expected)


def test_bad_bytes_come_back_as_the_error_in_process_reading_raises(tmp_path: Path) -> None:
    good = big_file(tmp_path, 3000)
    truncated = tmp_path / "truncated.avro"
    data = Path(good.url).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.avro"
    garbage.write_bytes(b"not avro at all\n" * 50)
    with pool_of(1) as pool:
        for path in (truncated, garbage):
            with pytest.raises(DecodeError) as in_worker:
                read_all(pool, pool.ticket(), obj(path))
            with pytest.raises(DecodeError) as here:
                in_process(str(path))
            assert in_worker.value.position == here.value.position
            assert in_worker.value.reason == here.value.reason
        # the worker goes on serving after a damaged file
        assert len(read_all(pool, pool.ticket(), good)) == 3000


def test_a_worker_that_dies_is_reported_as_a_read_error_and_replaced(tmp_path: Path) -> None:
    target = big_file(tmp_path)
    with pool_of(1) as pool:
        (worker,) = pool._all
        chunks = pool.read(pool.ticket(), target, 0, ReadProgress(), threading.Event())
        first = loads(next(chunks))  # the worker now blocks on a full pipe: it cannot finish the file
        worker.process.kill()
        with pytest.raises(ReadError) as failed:
            for _ in chunks:
                pass
        assert failed.value.url == target.url and "worker died" in failed.value.reason
        assert failed.value.record >= len(first)
        (replacement,) = pool._all
        assert replacement.process.pid != worker.process.pid
        assert len(read_all(pool, pool.ticket(), target)) == 20_000


def test_stopping_early_gives_the_same_worker_back(tmp_path: Path) -> None:
    target = big_file(tmp_path)
    other = big_file(tmp_path, 500, "small.avro")
    with pool_of(1) as pool:
        (worker,) = pool._all
        chunks = pool.read(pool.ticket(), target, 0, ReadProgress(), threading.Event())
        assert isinstance(chunks, Generator)  # closeable, as read() promises
        next(chunks)
        chunks.close()  # what closing an object's reader does
        assert read_all(pool, pool.ticket(), other) == in_process(other.url)
        assert pool._all == [worker] and worker.process.is_alive()


def test_objects_get_workers_in_ticket_order(tmp_path: Path) -> None:
    """With one worker, the second object waits until the first has had its turn, whatever thread asks
    first: a later object holding the only worker would block the one being delivered forever."""
    first, second = big_file(tmp_path, 3000, "a.avro"), big_file(tmp_path, 3000, "b.avro")
    with pool_of(1) as pool:
        t0, t1 = pool.ticket(), pool.ticket()
        got: dict[str, Any] = {}
        later = threading.Thread(target=lambda: got.setdefault("second", read_all(pool, t1, second)))
        later.start()
        later.join(0.5)
        assert later.is_alive() and "second" not in got, "the later ticket took the worker first"
        assert len(read_all(pool, t0, first)) == 3000
        later.join(30)
        assert not later.is_alive() and len(got["second"]) == 3000


def test_a_cancelled_ticket_passes_its_turn(tmp_path: Path) -> None:
    target = big_file(tmp_path, 1000)
    with pool_of(1) as pool:
        t0, t1 = pool.ticket(), pool.ticket()
        cancelled = threading.Event()
        cancelled.set()
        assert list(pool.read(t0, target, 0, ReadProgress(), cancelled)) == []
        done: list[int] = []
        after = threading.Thread(target=lambda: done.append(len(read_all(pool, t1, target))))
        after.start()
        after.join(30)
        assert done == [1000], "the ticket after a cancelled one never got a worker"


def _read_flag_for_ever(flag: CancelFlag, reading: Any) -> None:
    reading.set()
    while True:
        flag.is_set()


def test_a_worker_killed_while_it_reads_its_cancel_flag_leaves_nothing_held() -> None:
    """A worker reads its cancel flag at every chunk. Killed (-9) while reading it, it must not leave
    the main process unable to set it: with a multiprocessing.Event (a lock held while reading) the
    main process's set() waited for ever, and a replay hung after a worker died."""
    ctx = multiprocessing.get_context("spawn")
    flag = CancelFlag(ctx)
    for _ in range(5):  # with a multiprocessing.Event, the first kill already left its lock held
        reading = ctx.Event()
        reader = ctx.Process(target=_read_flag_for_ever, args=(flag, reading), daemon=True)
        reader.start()
        assert reading.wait(30)
        time.sleep(0.05)  # let it read its flag thousands of times: it is killed in the middle of one
        reader.kill()
        reader.join(30)
        setter = threading.Thread(target=flag.set, daemon=True)
        setter.start()
        setter.join(10)
        assert not setter.is_alive(), "set() waits for a lock the killed reader held"
        assert flag.is_set()
        flag.clear()
