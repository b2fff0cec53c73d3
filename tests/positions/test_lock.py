"""Tests for consumer.positions.lock: one process per job, on a local directory (flock) and on each
object store's server (a lease object written conditionally).

Leases are judged on an injected clock, never by waiting. Processes that hold a lock are real child
processes (``python -c``, the PYTHONPATH of this one), told when to act through their stdin and
answering on their stdout, so nothing depends on how long anything takes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from objectstore_harness import CLOUDS, GCS, S3, Azure, ObjectBucket

from consumer.ops.faults import Fault
from consumer.positions.keeper import Keeper, KeeperError, Stored, keeper_for
from consumer.positions.lock import CLOCK_SKEW, Holder, JobLock, LockHeld, LockLost

NAME = "replay-0123456789abcdef.lock"
SINCE = "2026-01-02T03:04:05+00:00"
T0 = 1_800_000_000.0


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def holder(host: str, pid: int = 4242, token: str = "") -> Holder:
    return Holder(host, pid, SINCE, token or f"{host}-token")


@pytest.fixture(params=("local", *CLOUDS))
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A local directory (not made yet) or a prefix in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "state")
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket.url("state")


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest) -> ObjectBucket:
    """A fresh bucket of each cloud."""
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket


def lock(location: str, who: Holder, clock: Clock | None = None, lease: float = 60.0) -> JobLock:
    """A lock as a separate process would have it: a keeper of its own."""
    return JobLock(keeper_for(location), NAME, lease=lease, clock=clock or Clock(), me=who)


def test_a_second_lock_is_refused_naming_the_holder_until_it_is_released(location: str) -> None:
    clock = Clock()
    first = lock(location, holder("host-a", 111), clock)
    first.acquire()
    assert first.confirmed_at == T0
    second = lock(location, holder("host-b", 222), clock)
    with pytest.raises(LockHeld) as refused:
        second.acquire()
    text = str(refused.value)
    assert f"the lock {keeper_for(location).where(NAME)} is held by host-a pid 111 since {SINCE}" in text
    assert "\n" not in text
    if "://" in location:
        assert "last renewed 2027-01-15T08:00:00+00:00" in text
    first.release()
    first.release()  # idempotent
    second.acquire()
    with pytest.raises(LockHeld, match="host-b pid 222"):
        lock(location, holder("host-a", 111, "another-token"), clock).acquire()
    second.release()


def test_a_stale_lease_is_taken_over_and_the_old_holder_then_loses_it(cloud: ObjectBucket) -> None:
    clock = Clock()
    old = lock(cloud.url("state"), holder("host-a"), clock, lease=60)
    old.acquire()
    clock.now = T0 + 60 + CLOCK_SKEW - 1  # ran out, but within the skew allowed between hosts
    new = lock(cloud.url("state"), holder("host-b"), clock, lease=60)
    with pytest.raises(LockHeld, match="host-a"):
        new.acquire()
    clock.now = T0 + 60 + CLOCK_SKEW + 1
    new.acquire()
    with pytest.raises(LockLost, match="taken over by host-b pid 4242") as lost:
        old.renew()
    assert isinstance(lost.value, Fault)
    assert keeper_for(cloud.url("state")).where(NAME) in str(lost.value)
    old.release()  # must not release the new holder's lock
    with pytest.raises(LockHeld, match="host-b"):
        lock(cloud.url("state"), holder("host-c"), clock).acquire()
    new.renew()
    assert new.confirmed_at == clock.now


def test_renewing_keeps_the_lease(cloud: ObjectBucket) -> None:
    clock = Clock()
    held = lock(cloud.url("state"), holder("host-a"), clock, lease=60)
    held.acquire()
    for step in range(1, 6):  # renewed every lease/3 for five lease lengths
        clock.now = T0 + step * 20 * 3
        held.renew()
        assert held.confirmed_at == clock.now
        with pytest.raises(LockHeld, match="host-a"):
            lock(cloud.url("state"), holder("host-b"), clock).acquire()


def test_a_lease_left_by_this_host_is_free_at_once_if_its_pid_is_dead_or_this_process(
    cloud: ObjectBucket,
) -> None:
    host = socket.gethostname()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead_pid = int(gone.stdout)
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as alive:
        try:
            for pid, free in ((alive.pid, False), (dead_pid, True), (os.getpid(), True)):
                clock = Clock()  # the lease has not run out: only the pid decides
                earlier = lock(cloud.url("state"), holder(host, pid, f"earlier-{pid}"), clock)
                earlier.acquire()
                me = lock(cloud.url("state"), Holder.me(), clock)
                if free:
                    me.acquire()
                    me.release()
                else:
                    with pytest.raises(LockHeld, match=f"pid {pid} "):
                        me.acquire()
                    earlier.release()
        finally:
            assert alive.stdin is not None
            alive.stdin.close()


CHILD = """
import sys
from consumer.positions.keeper import keeper_for
from consumer.positions.lock import JobLock, LockHeld
lock = JobLock(keeper_for(sys.argv[1]), sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
try:
    lock.acquire()
    print("won", flush=True)
except LockHeld:
    print("held", flush=True)
sys.stdin.read()  # holds on until told to end (or killed)
"""


def child(location: str) -> subprocess.Popen[str]:
    """A process that takes the lock when it reads a line, says what came of it, then holds on."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, location, NAME],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_the_local_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    location = str(tmp_path / "state")
    with child(location) as proc:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "won\n"
            with pytest.raises(LockHeld, match=f"held by {socket.gethostname()} pid {proc.pid} since "):
                lock(location, Holder.me()).acquire()
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        finally:
            proc.kill()
    mine = lock(location, Holder.me())
    mine.acquire()  # no wait: the kernel let the flock go with the process
    mine.renew()
    mine.release()


def test_of_two_processes_acquiring_at_once_exactly_one_holds(cloud: ObjectBucket) -> None:
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(child(cloud.url("state"))) for _ in range(2)]
        for proc in procs:
            stack.callback(proc.kill)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = {proc.pid: proc.stdout.readline() for proc in procs if proc.stdout is not None}
        assert sorted(answers.values()) == ["held\n", "won\n"], answers
        winner = next(pid for pid, answer in answers.items() if answer == "won\n")
        with pytest.raises(LockHeld, match=f"pid {winner} "):  # on the clock the children used
            lock(cloud.url("state"), holder("elsewhere"), Clock(time.time())).acquire()


def race(locks: list[JobLock]) -> tuple[list[JobLock], list[str]]:
    """Each lock acquired from a thread of its own, all released at one barrier; (won, refusals)."""
    barrier = threading.Barrier(len(locks))
    won: list[JobLock] = []
    held: list[str] = []

    def contend(one: JobLock) -> None:
        barrier.wait()
        try:
            one.acquire()
            won.append(one)
        except LockHeld as exc:
            held.append(str(exc))

    threads = [threading.Thread(target=contend, args=(one,)) for one in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, held


def test_of_threads_racing_for_a_lock_exactly_one_holds(location: str) -> None:
    for round_ in range(3):
        clock = Clock()
        won, held = race([lock(location, holder(f"host-{round_}-{i}"), clock) for i in range(5)])
        assert len(won) == 1 and len(held) == 4, (won, held)
        assert all(f"held by {won[0].me.host} " in text for text in held)
        won[0].release()


def test_stopping_ends_a_wait_for_the_lock_at_once(location: str) -> None:
    clock = Clock()
    held = lock(location, holder("host-a"), clock)
    held.acquire()
    stopping = threading.Event()
    stopping.set()
    started = time.monotonic()
    with pytest.raises(LockHeld, match="host-a"):
        lock(location, holder("host-b"), clock).acquire(wait=600, stopping=stopping)
    assert time.monotonic() - started < 30  # not the 600 s asked for
    held.release()


class Watched:
    """A keeper that tells when a lease is written to (a waiter's attempt)."""

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self.location = keeper.location
        self.tried = threading.Event()

    def where(self, name: str) -> str:
        return self.keeper.where(name)

    def read(self, name: str) -> Stored | None:
        return self.keeper.read(name)

    def create(self, name: str, data: bytes) -> str:
        self.tried.set()
        return self.keeper.create(name, data)

    def replace(self, name: str, data: bytes, version: str) -> str:
        return self.keeper.replace(name, data, version)

    def names(self, prefix: str = "") -> list[str]:
        return self.keeper.names(prefix)


def test_a_waiter_takes_the_lock_once_it_is_released(cloud: ObjectBucket) -> None:
    clock = Clock()
    holding = lock(cloud.url("state"), holder("host-a"), clock)
    holding.acquire()
    watched = Watched(keeper_for(cloud.url("state")))
    waiter = JobLock(watched, NAME, clock=clock, me=holder("host-b"))
    failed: list[BaseException] = []

    def wait_for_it() -> None:
        try:
            waiter.acquire(wait=120)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    assert watched.tried.wait(60), "the waiter never tried"
    holding.release()
    thread.join(120)
    assert not thread.is_alive() and not failed, failed
    with pytest.raises(LockHeld, match="host-b"):
        lock(cloud.url("state"), holder("host-c"), clock).acquire()


def test_a_renewal_when_the_store_cannot_be_reached_is_a_keeper_error(cloud: ObjectBucket) -> None:
    held = lock(cloud.url("state"), holder("host-a"))
    held.acquire()
    cloud.delete(f"state/{NAME}")
    if isinstance(cloud, S3):
        cloud.client.delete_bucket(Bucket=cloud.bucket)
    elif isinstance(cloud, GCS):
        cloud.client.delete(f"/storage/v1/b/{cloud.bucket}").raise_for_status()
    elif isinstance(cloud, Azure):
        cloud.client.delete_container()
    with pytest.raises(KeeperError, match=cloud.url("state")):
        held.renew()


def test_a_renewal_of_a_removed_lease_is_lost(cloud: ObjectBucket) -> None:
    held = lock(cloud.url("state"), holder("host-a"))
    held.acquire()
    cloud.delete(f"state/{NAME}")
    with pytest.raises(LockLost, match="removed"):
        held.renew()


def test_a_local_lock_renews_in_place_and_is_kept_in_a_0600_file(tmp_path: Path) -> None:
    clock = Clock()
    held = lock(str(tmp_path / "state"), holder("host-a"), clock)
    held.acquire()
    clock.now += 3600
    held.renew()  # nothing to renew: the kernel holds the flock for as long as the process lives
    assert held.confirmed_at == clock.now
    assert oct((tmp_path / "state" / NAME).stat().st_mode & 0o777) == oct(0o600)
    held.release()
    with pytest.raises(LockLost):
        held.renew()
