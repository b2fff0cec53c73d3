"""What a new user gets wrong at the inputs gets a clear answer, from ``convert`` and ``replay`` as
commands: a root with nothing to read says why (and exits 0: nothing to do), and a file that is not an
Avro container is named as such, counted unreadable (exit 1), while the other files are still read —
in process and in the worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from amplitude_harness import KEY, dead_letters, simulator
from currents_devkit.synth import Synth, write_currents_tree
from replay_harness import last_json, replay_argv, start

from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.selection import Selection

NOT_AVRO = "not an Avro container file (it starts with b'[inp')"


def tree(root: Path, events: int = 300) -> list[Path]:
    """Currents files spread over 2 queue hours of 2023-11-14 (the synth's start)."""
    return write_currents_tree(root, Synth(17, devices=50), events, max_per_file=100, codecs=("null",))


async def convert(args: list[str], cwd: Path) -> tuple[int, str, str]:
    command = await start(["convert", *args], {}, cwd)
    return await command.finish()


def test_a_listing_counts_what_the_selection_left_out_by_reason(tmp_path: Path) -> None:
    paths = tree(tmp_path / "in")
    listing = Listing()
    assert list(list_objects([str(tmp_path / "in")], Selection.of(since="2024-01-01"), listing=listing)) == []
    assert listing.objects == 0 and set(listing.left_out) == {"window"}
    assert listing.left_out["window"] == len({p.parents[2] for p in paths})  # date= folders
    assert listing.nothing_found([str(tmp_path / "in")]) == (
        f"nothing to read: nothing under {tmp_path / 'in'} is inside the selection: "
        f"{listing.left_out['window']} date= partitions outside --since/--until"
    )

    listing = Listing()
    assert list(list_objects([str(tmp_path / "in")], Selection.of(("nope.*",)), listing=listing)) == []
    assert set(listing.left_out) == {"event_type"}

    listing = Listing()
    assert len(list(list_objects([str(tmp_path / "in")], Selection(), listing=listing))) == len(paths)
    assert listing.objects == len(paths) and listing.nothing_found(["x"]) is None


async def test_convert_of_an_empty_directory_says_there_are_no_avro_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    code, out, err = await convert([str(tmp_path / "empty")], tmp_path)
    assert code == 0, err
    assert out == ""
    assert f"currents-consumer: nothing to read: no Avro files under {tmp_path / 'empty'}\n" in err


async def test_convert_with_a_window_after_every_file_says_so(tmp_path: Path) -> None:
    tree(tmp_path / "in")
    code, out, err = await convert([str(tmp_path / "in"), "--since", "2024-01-01"], tmp_path)
    assert code == 0, err
    assert out == ""
    assert f"nothing to read: nothing under {tmp_path / 'in'} is inside the selection: " in err
    assert "date= partitions outside --since/--until" in err
    # the message alone: no summary of nothing (an empty table) before it
    assert err.strip().splitlines() == [line for line in err.splitlines() if line.startswith("currents-")]
    assert "event type" not in err and "read 0" not in err
    code, _, err = await convert([str(tmp_path / "in"), "--since", "2024-01-01", "--summary-json"], tmp_path)
    assert code == 0 and '"read": 0' in err, "a script asking for the JSON summary still gets it"


async def test_convert_names_a_file_that_is_not_avro_and_converts_the_others(tmp_path: Path) -> None:
    paths = tree(tmp_path / "in")
    toml = tmp_path / "in" / "config.example.toml"
    toml.write_text('[input]\nevent_types = ["users.*"]\n')
    code, out, err = await convert([str(tmp_path / "in")], tmp_path)
    assert code == 1, err
    assert f"unreadable: {toml} (record 0): {NOT_AVRO}" in err
    assert "read length must be non-negative" not in err
    assert len(out.splitlines()) > 0 and len(paths) > 1
    assert "nothing to read" not in err


@pytest.mark.parametrize("workers", ["0", "2"])
async def test_replay_dead_letters_a_file_that_is_not_avro_and_delivers_the_others(
    tmp_path: Path, workers: str
) -> None:
    tree(tmp_path / "in")
    toml = tmp_path / "in" / "notes.toml"
    toml.write_text('[input]\nevent_types = ["users.*"]\n')
    async with simulator() as sim:
        args = replay_argv(sim.http_v2_url, tmp_path, "--metrics-port", "0", "--workers", workers, state="")
        code, _, err = await (await start(args, {"AMPLITUDE_API_KEY": KEY}, tmp_path)).finish()
        assert code == 1, err
        summary = last_json(err)
        assert summary["delivered"] > 0 and summary["delivered"] == len(sim.events)
    assert summary["unreadable"] == [f"{toml}: {NOT_AVRO} (record 0)"]
    (record,) = [r for r in dead_letters(tmp_path / "dead-letter") if r["reason"] == "unreadable_input"]
    assert record["position"] == {"file": str(toml), "record": 0} and record["detail"] == NOT_AVRO


async def test_replay_of_an_empty_directory_and_of_a_window_after_every_file_say_why(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    tree(tmp_path / "in")
    async with simulator() as sim:
        base = ["--amplitude-url", sim.http_v2_url, "--dead-letter", str(tmp_path / "dl")]
        base += ["--state-dir", str(tmp_path / "state"), "--metrics-port", "0"]
        env = {"AMPLITUDE_API_KEY": KEY}
        code, _, err = await (await start(["replay", str(tmp_path / "empty"), *base], env, tmp_path)).finish()
        assert code == 0, err
        assert f"currents-consumer: nothing to read: no Avro files under {tmp_path / 'empty'}\n" in err
        late = ["replay", str(tmp_path / "in"), "--since", "2024-01-01", *base]
        code, _, err = await (await start(late, env, tmp_path)).finish()
        assert code == 0, err
        assert "date= partitions outside --since/--until" in err
        assert sim.events == []


async def test_a_dry_run_that_would_read_nothing_says_why(tmp_path: Path) -> None:
    tree(tmp_path / "in")
    args = ["replay", str(tmp_path / "in"), "--dry-run", "--state-dir", "", "--event-type", "nope.*"]
    code, out, err = await (await start(args, {}, tmp_path)).finish()
    assert code == 0, err
    assert out == ""
    assert err.splitlines()[-1].startswith(
        f"nothing to read: nothing under {tmp_path / 'in'} is inside the selection: "
    )
    assert err.splitlines()[-1].endswith(" event_type= partitions of other types (--event-type)")
