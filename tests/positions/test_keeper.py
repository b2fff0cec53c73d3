"""Tests for consumer.positions.keeper: conditional create and replace on a local directory and on
each object store's server (moto, gcp-storage-emulator with the harness's ifGenerationMatch check,
Azurite) — of two writers exactly one wins, the loser gets Conflict and the winner's bytes stay.

The racing tests start their writers at one barrier, each through a keeper of its own (as separate
processes would have). They test the store's conditional write as the server applies it: moto 5.2
checks If-None-Match / If-Match and then writes without a lock, so on moto a lost race is only very
unlikely, not impossible (real S3 decides atomically); Azurite and the emulator (one request at a
time) decide atomically.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from objectstore_harness import CLOUDS, ObjectBucket

from consumer.positions.keeper import Conflict, Keeper, KeeperError, LocalKeeper, keeper_for

STORES = ("local", *CLOUDS)


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location to keep things in: a local directory not made yet, or a prefix in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "kept")
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket.url("positions/job-1")  # nested, with a sibling prefix job-10 in some tests


def race(location: str, writers: int, write: Callable[[Keeper, int], object]) -> tuple[list[int], list[int]]:
    """``write(keeper, i)`` from ``writers`` threads released at once; (winners, losers)."""
    keepers = [keeper_for(location) for _ in range(writers)]
    barrier = threading.Barrier(writers)
    won: list[int] = []
    lost: list[int] = []
    failed: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            write(keepers[i], i)
            won.append(i)
        except Conflict:
            lost.append(i)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed, failed
    return won, lost


def test_a_name_is_absent_then_created_then_read_back(location: str) -> None:
    keeper = keeper_for(location)
    assert keeper.location == location
    assert keeper.read("state.json") is None
    assert keeper.names() == []
    version = keeper.create("state.json", b'{"a": 1}')
    stored = keeper.read("state.json")
    assert stored is not None
    assert (stored.data, stored.version) == (b'{"a": 1}', version)
    assert keeper.names() == ["state.json"]
    assert keeper.where("state.json") == f"{location}/state.json"


def test_of_two_creates_the_second_is_a_conflict_and_the_first_stays(location: str) -> None:
    keeper = keeper_for(location)
    version = keeper.create("state.json", b"first")
    with pytest.raises(Conflict, match=r"state\.json"):
        keeper.create("state.json", b"second")
    stored = keeper.read("state.json")
    assert stored is not None and (stored.data, stored.version) == (b"first", version)


def test_replace_wins_only_from_the_current_version(location: str) -> None:
    keeper = keeper_for(location)
    first = keeper.create("state.json", b"one")
    second = keeper.replace("state.json", b"two", first)
    assert second != first
    with pytest.raises(Conflict):
        keeper.replace("state.json", b"stale writer", first)
    stored = keeper.read("state.json")
    assert stored is not None and (stored.data, stored.version) == (b"two", second)
    third = keeper.replace("state.json", b"three", second)
    assert len({first, second, third}) == 3


def test_replacing_a_name_that_is_gone_is_a_conflict(location: str) -> None:
    keeper = keeper_for(location)
    version = keeper.create("other.json", b"x")
    with pytest.raises(Conflict):
        keeper.replace("state.json", b"y", version)
    assert keeper.read("state.json") is None


def test_of_writers_racing_to_create_exactly_one_wins(location: str) -> None:
    for name in ("state-0.json", "state-1.json", "state-2.json"):

        def create(keeper: Keeper, i: int, name: str = name) -> object:
            return keeper.create(name, f"writer {i}".encode())

        won, lost = race(location, 6, create)
        assert len(won) == 1 and len(lost) == 5, (won, lost)
        stored = keeper_for(location).read(name)
        assert stored is not None and stored.data == f"writer {won[0]}".encode()


def test_of_writers_racing_to_replace_one_version_exactly_one_wins(location: str) -> None:
    version = keeper_for(location).create("state.json", b"start")
    won, lost = race(location, 6, lambda keeper, i: keeper.replace("state.json", f"w{i}".encode(), version))
    if isinstance(keeper_for(location), LocalKeeper):
        # Local replace is check-then-rename (exclusion is the job lock's): at least one wins, and
        # whatever the file holds is one writer's whole bytes.
        assert won
    else:
        assert len(won) == 1 and len(lost) == 5, (won, lost)
    stored = keeper_for(location).read("state.json")
    assert stored is not None and stored.data in {f"w{i}".encode() for i in won}


def test_names_lists_only_what_is_directly_in_the_location(
    location: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    keeper = keeper_for(location)
    for name in ("replay-b.json", "replay-a.json", "replay-a.lock", "other.json"):
        keeper.create(name, b"{}")
    if isinstance(keeper, LocalKeeper):
        (Path(location) / "replay-sub").mkdir()
        (Path(location) / ".replay-a.json.0123.tmp").write_bytes(b"left by a crash")
    else:
        bucket: ObjectBucket = request.getfixturevalue(request.node.callspec.params["location"])
        bucket.put("positions/job-1/replay-sub/deeper.json", b"{}")
        bucket.put("positions/job-10/replay-a.json", b"{}")  # a sibling prefix, not this location
    assert keeper.names("replay-") == ["replay-a.json", "replay-a.lock", "replay-b.json"]
    assert keeper.names() == ["other.json", "replay-a.json", "replay-a.lock", "replay-b.json"]
    assert keeper.names("replay-a.j") == ["replay-a.json"]


def test_a_local_keeper_writes_0600_files_in_a_0700_directory_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    previous = os.umask(0o022)
    try:
        keeper = keeper_for(str(tmp_path / "a" / "kept"))
        version = keeper.create("state.json", b"1")
        keeper.replace("state.json", b"2", version)
    finally:
        os.umask(previous)
    directory = tmp_path / "a" / "kept"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "state.json").stat().st_mode) == 0o600
    assert [p.name for p in directory.iterdir()] == ["state.json"]


def test_a_local_create_never_overwrites_a_file_put_there_otherwise(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(b"the operator's")
    with pytest.raises(Conflict):
        keeper_for(str(tmp_path)).create("state.json", b"mine")
    assert (tmp_path / "state.json").read_bytes() == b"the operator's"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_local_file_rewritten_by_another_hand_is_a_conflict(tmp_path: Path) -> None:
    keeper = keeper_for(str(tmp_path))
    version = keeper.create("state.json", b"mine")
    (tmp_path / "state.json").write_bytes(b"someone else's, longer")
    with pytest.raises(Conflict):
        keeper.replace("state.json", b"mine again", version)
    assert (tmp_path / "state.json").read_bytes() == b"someone else's, longer"


def test_a_local_location_that_cannot_be_used_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    keeper = keeper_for(str(blocker))
    for call in (lambda: keeper.read("s.json"), lambda: keeper.create("s.json", b"x"), keeper.names):
        with pytest.raises(KeeperError) as caught:
            call()
        text = str(caught.value)
        assert str(blocker) in text and "[Errno 20] Not a directory" in text and "\n" not in text


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_missing_bucket_is_a_one_line_error_naming_the_url(
    cloud: str, request: pytest.FixtureRequest
) -> None:
    bucket: ObjectBucket = request.getfixturevalue(cloud)
    url = f"{bucket.scheme}://no-such-bucket-{os.getpid()}/positions"
    keeper = keeper_for(url)
    with pytest.raises(KeeperError) as caught:
        keeper.create("state.json", b"x")
    text = str(caught.value)
    assert text.startswith(f"{url}/state.json: ") and "\n" not in text
    assert "testing" not in text and "AccountKey" not in text  # no credential in the message
    if cloud != "gcs":  # GCS answers a bare 404 for an object of a missing bucket too
        with pytest.raises(KeeperError, match=url):
            keeper.read("state.json")


def test_a_scheme_that_cannot_keep_positions_is_refused() -> None:
    with pytest.raises(KeeperError, match="http://"):
        keeper_for("http://example.com/positions")
