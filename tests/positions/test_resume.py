"""Tests for consumer.positions.resume kept through a Keeper: in a local directory as always, and now
under an s3://, gs:// or az:// prefix (moto, gcp-storage-emulator, Azurite) — saved and loaded back,
and a second writer of one job's state stopped with a Fault instead of overwriting the first."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from objectstore_harness import CLOUDS, ObjectBucket

from consumer.ops.faults import Fault
from consumer.positions.keeper import keeper_for
from consumer.positions.resume import ResumeState
from consumer.sources.storage.selection import Shard

INPUTS = ["s3://currents/export"]
A = "s3://currents/export/a.avro|etag-a"
B = "s3://currents/export/b.avro|etag-b"


@pytest.fixture(params=("local", *CLOUDS))
def state_dir(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where states are kept: a local directory (not made yet) or a prefix in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "state")
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket.url("replay/state")


def test_a_state_is_saved_and_loaded_back(state_dir: str) -> None:
    state = ResumeState.load(state_dir, INPUTS)
    assert not state.is_done(A)
    state.mark_done(A, 10)
    state.next_record[B] = 7
    state.save()
    state.next_record[B] = 9
    state.save()  # again, from the version it wrote
    again = ResumeState.load(state_dir, INPUTS)
    assert again.is_done(A) and again.done[A] == 10 and again.next_record == {B: 9}
    assert again.where == f"{state_dir}/{again.name}"
    assert again.name.startswith("replay-") and again.name.endswith(".json")
    assert keeper_for(state_dir).names() == [again.name]
    if "://" in state_dir:
        assert again.path is None
    else:
        assert again.path == Path(state_dir) / again.name


def test_a_second_writer_of_one_jobs_state_is_a_fault_and_the_first_state_stays(state_dir: str) -> None:
    first = ResumeState.load(state_dir, INPUTS)
    second = ResumeState.load(state_dir, INPUTS)  # loaded while there was no state yet
    first.mark_done(A, 10)
    first.save()
    second.mark_done(B, 5)
    with pytest.raises(
        Fault, match=r"another process wrote this job's resume state .* \(or removed it\)"
    ) as caught:
        second.save()
    assert f"{state_dir}/{first.name}" in str(caught.value)
    # and once both have loaded the same version: the one that saves first wins
    third = ResumeState.load(state_dir, INPUTS)
    fourth = ResumeState.load(state_dir, INPUTS)
    third.next_record[B] = 3
    third.save()
    fourth.next_record[B] = 4
    with pytest.raises(Fault, match="another process wrote"):
        fourth.save()
    kept = ResumeState.load(state_dir, INPUTS)
    assert kept.done == {A: 10} and kept.next_record == {B: 3}


def test_a_save_whose_bytes_are_already_there_is_taken_as_its_own(state_dir: str) -> None:
    """A client that retried a write whose answer was lost finds its own bytes: not another writer."""
    state = ResumeState.load(state_dir, INPUTS)
    state.mark_done(A, 10)
    state.save()
    keeper = keeper_for(state_dir)
    stored = keeper.read(state.name)
    assert stored is not None
    keeper.replace(state.name, stored.data, stored.version)  # the same bytes written once more
    state.save()
    state.mark_done(B, 1)
    state.save()
    assert ResumeState.load(state_dir, INPUTS).done == {A: 10, B: 1}


def test_another_sharding_of_the_same_job_is_refused_naming_the_state(state_dir: str) -> None:
    ResumeState.load(state_dir, INPUTS, shard=Shard(1, 3)).save()
    with pytest.raises(ValueError, match=r"kept as shard 1/3; this run is unsharded") as caught:
        ResumeState.load(state_dir, INPUTS)
    assert f"{state_dir}/replay-" in str(caught.value) and ".shard-1-of-3.json" in str(caught.value)
    ResumeState.load(state_dir, INPUTS, shard=Shard(2, 3))  # the same sharding is fine


def test_an_unreadable_state_is_a_value_error(state_dir: str) -> None:
    state = ResumeState.load(state_dir, INPUTS)
    keeper_for(state_dir).create(state.name, b"{not json")
    with pytest.raises(ValueError, match=f"cannot read resume state {state_dir}/replay-"):
        ResumeState.load(state_dir, INPUTS)


def test_the_lock_name_is_the_states_with_lock_for_json(tmp_path: Path) -> None:
    state = ResumeState.load(str(tmp_path), INPUTS, shard=Shard(2, 4))
    assert state.lock_name() == state.name.removesuffix(".json") + ".lock"
    assert state.lock_name().endswith(".shard-2-of-4.lock") and state.lock_name().startswith("replay-")
    with pytest.raises(ValueError):
        ResumeState.load(None, INPUTS).lock_name()


def test_a_state_that_cannot_be_written_is_a_fault_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    state = ResumeState(keeper_for(str(blocker)), "replay-x.json")
    with pytest.raises(Fault, match=rf"cannot write the resume state {blocker}/replay-x.json: \[Errno 20\]"):
        state.save()


def test_the_local_state_file_keeps_its_name_and_format(tmp_path: Path) -> None:
    state = ResumeState.load(str(tmp_path), ["/data/in"])
    state.mark_done("/data/in/a.avro|1|2", 10)
    state.save()
    assert state.path is not None and state.path.parent == tmp_path
    assert orjson.loads(state.path.read_bytes()) == {"done": {"/data/in/a.avro|1|2": 10}, "next_record": {}}
    assert [p.name for p in tmp_path.iterdir()] == [state.path.name]


def test_a_state_removed_while_the_run_kept_it_is_a_fault_not_a_fresh_start(tmp_path: Path) -> None:
    state = ResumeState.load(str(tmp_path), ["/data/in"])
    state.mark_done("/data/in/a.avro|1|2", 10)
    state.save()
    assert state.path is not None
    state.path.unlink()  # moved away by hand (or by another run) while this one goes on
    with pytest.raises(Fault, match="or removed it"):
        state.save()
    assert not state.path.exists()
