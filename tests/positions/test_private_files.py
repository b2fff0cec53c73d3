"""Tests for consumer.positions.private through its two users: dead-letter records and resume state are
created 0600 in 0700 directories, under a permissive (022) and a strict (077) umask alike, and the
umask is never widened (no chmod after the fact)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.events import Position
from consumer.positions.deadletter import DeadLetterWriter
from consumer.positions.resume import ResumeState


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask set to the test's parameter for the test, then restored."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_dead_letter(directory: Path) -> Path:
    writer = DeadLetterWriter(directory)
    event = {"event_type": "x", "insert_id": "i-1", "user_id": "u-1", "user_properties": {"email": "a@b.c"}}
    writer.write("invalid_field:time", Position("in.avro", -1, 0), event=event)
    writer.close()
    (path,) = directory.iterdir()
    return path


def save_state(state_dir: Path) -> Path:
    state = ResumeState.load(str(state_dir), ["/data/in"])
    state.mark_done("/data/in/a.avro|1|2", 10)
    state.save()
    assert state.path is not None
    return state.path


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True, ids=["umask-022", "umask-077"])
def test_dead_letter_files_are_0600_in_a_0700_directory(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "missing-parent" / "dead-letter"
    before = mode(tmp_path)
    path = write_dead_letter(directory)
    assert mode(path) == 0o600
    assert mode(directory) == 0o700
    assert mode(directory.parent) == 0o700  # a parent created on the way is not left world-readable
    assert mode(tmp_path) == before  # what existed before is untouched


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True, ids=["umask-022", "umask-077"])
def test_resume_state_is_0600_in_a_0700_directory(tmp_path: Path, umask: int) -> None:
    path = save_state(tmp_path / "state")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("umask", [0o022], indirect=True, ids=["umask-022"])
def test_a_resume_state_left_world_readable_by_an_older_version_becomes_0600(
    tmp_path: Path, umask: int
) -> None:
    path = save_state(tmp_path / "state")
    path.chmod(0o644)
    path.with_suffix(".tmp").write_bytes(b"{}")  # a crash between write and rename, old mode too
    path.with_suffix(".tmp").chmod(0o644)
    again = ResumeState.load(str(tmp_path / "state"), ["/data/in"])
    assert again.is_done("/data/in/a.avro|1|2")
    again.save()
    assert mode(path) == 0o600


@pytest.mark.parametrize("umask", [0o277], indirect=True, ids=["umask-277"])
def test_a_stricter_umask_narrows_the_modes_and_is_never_widened(tmp_path: Path, umask: int) -> None:
    """Under umask 277 a created file is owner read-only (0400): the writer does not chmod it back to
    0600 (it still writes through the descriptor it opened)."""
    directory = tmp_path / "dead-letter"
    directory.mkdir()  # made by the operator; umask 277 would make a new one unusable (0500)
    path = write_dead_letter(directory)
    assert mode(path) == 0o400
    assert path.read_bytes().count(b"\n") == 1


@pytest.mark.parametrize("umask", [0o022], indirect=True, ids=["umask-022"])
def test_an_existing_directory_keeps_the_operators_mode(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "shared-dead-letter"
    directory.mkdir()
    directory.chmod(0o750)  # group-readable on purpose (a redrive job running as another user)
    path = write_dead_letter(directory)
    assert mode(directory) == 0o750
    assert mode(path) == 0o600
