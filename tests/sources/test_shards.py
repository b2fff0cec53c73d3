"""Tests of sharded listings (consumer.sources.storage.selection.Shard, applied by consumer.sources.storage.files.list_objects)
and of the options that choose a shard: the N shards of a tree are disjoint and cover it, roughly
balanced, stable when files are added, keyed relative to the root (local and S3 alike), and a shard
that cannot be worked out is a configuration error naming the option."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from currents_devkit.synth import Synth, write_currents_tree
from objectstore_harness import S3

from consumer.settings import SettingsError, load
from consumer.sources.storage.files import Listing, list_objects
from consumer.sources.storage.selection import Selection, Shard, relative_key

KEYS = [
    f"dataexport.prod-01.S3.integration.X/event_type=users.messages.email.Send/date=2024-05-{d:02d}-{h:02d}/"
    f"version=6/us-01/dataexport.prod-01.S3.integration.X+{p}+{o}.avro"
    for d in range(1, 11)
    for h in range(0, 24, 3)
    for p in range(3)
    for o in range(0, 50_000, 10_000)
]


def shard_of(key: str, count: int) -> int:
    (index,) = [i for i in range(count) if Shard(i, count).includes(key)]  # exactly one shard includes a key
    return index


def test_the_shards_of_a_set_of_keys_are_disjoint_cover_it_and_are_roughly_balanced() -> None:
    assert len(KEYS) == 1200
    for count in (2, 3, 8):
        sizes = Counter(shard_of(key, count) for key in KEYS)
        assert set(sizes) == set(range(count))
        mean = len(KEYS) / count
        assert all(abs(n - mean) < 0.2 * mean for n in sizes.values()), sizes


def test_added_files_never_move_a_file_to_another_shard() -> None:
    before = {key: shard_of(key, 3) for key in KEYS[:600]}
    after = {key: shard_of(key, 3) for key in KEYS}  # 600 more objects written since
    assert {key: after[key] for key in before} == before


def test_the_hash_is_the_same_in_every_process_and_release() -> None:
    """BLAKE2b of the key, not Python's ``hash()`` (salted per process): fixed values guard it."""
    assert [shard_of(f"k{i}", 5) for i in range(10)] == FIXED_SHARDS_OF_K


FIXED_SHARDS_OF_K = [1, 1, 1, 3, 2, 1, 2, 4, 1, 1]


def test_keys_are_relative_to_the_root_whatever_names_it() -> None:
    rel = "event_type=t/date=2024-05-01-00/a+0+1.avro"
    assert relative_key("/mnt/currents", f"/mnt/currents/{rel}") == rel
    assert relative_key("./in/", f"in/{rel}") == rel
    assert relative_key("s3://bucket/prefix/", f"s3://bucket/prefix/{rel}") == rel
    assert relative_key("gs://other/deeper/prefix", f"gs://other/deeper/prefix/{rel}") == rel
    assert relative_key("abfs://c@acct.dfs.core.windows.net/p", f"abfs://c/p/{rel}") == rel
    assert relative_key("s3://bucket/p/a+0+1.avro", "s3://bucket/p/a+0+1.avro") == "a+0+1.avro"
    assert relative_key("/mnt/a+0+1.avro", "/mnt/a+0+1.avro") == "a+0+1.avro"


def test_a_listing_takes_only_its_shard_local_and_in_s3_alike(tmp_path: Path, s3: S3) -> None:
    write_currents_tree(tmp_path / "in", Synth(3, devices=50), 3000, max_per_file=60, codecs=("null",))
    s3.upload_tree(tmp_path / "in", "currents/tree")
    everything = [obj.url for obj in list_objects([str(tmp_path / "in")])]
    assert len(everything) > 30
    local: dict[str, int] = {}
    remote: dict[str, int] = {}
    for index in range(3):
        sel = Selection(shard=Shard(index, 3))
        for obj in list_objects([str(tmp_path / "in")], sel):
            assert obj.url not in local, "two shards took the same file"
            local[obj.url] = index
        for obj in list_objects([s3.url("currents/tree")], sel):
            remote[obj.url] = index
    assert sorted(local) == sorted(everything)
    assert {relative_key(str(tmp_path / "in"), u): i for u, i in local.items()} == {
        relative_key(s3.url("currents/tree"), u): i for u, i in remote.items()
    }, "the same tree in a bucket shards differently"


def test_a_shard_that_gets_nothing_says_the_other_shards_took_it(tmp_path: Path) -> None:
    root = str(tmp_path / "in")
    write_currents_tree(tmp_path / "in", Synth(4, devices=5), 40, max_per_file=40, codecs=("null",))
    urls = [obj.url for obj in list_objects([root])]
    count = len(urls) + 1  # more shards than objects: one of them gets nothing
    empty = next(
        i for i in range(count) if not any(Shard(i, count).includes(relative_key(root, u)) for u in urls)
    )
    listing = Listing()
    assert list(list_objects([root], Selection(shard=Shard(empty, count)), listing=listing)) == []
    assert listing.nothing_found([root]) == (
        f"nothing to read: nothing under {root} is inside the selection: "
        f"{len(urls)} objects in other shards (--shard/--shards)"
    )


def test_one_shard_of_one_is_everything() -> None:
    assert Selection.of(shard=(0, 1)).shard is None
    assert Selection.of(shard=(1, 3)).describe() == "shard 1/3"
    assert Selection.of(shard=(1, 3)).key() == "" and not Selection.of(shard=(1, 3)).empty


def shard_settings(*flags: str, **env: str) -> tuple[int, int] | None:
    import argparse

    from consumer.settings import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser, ("input",))
    return load(parser.parse_args(list(flags)), env).input.shard_of()


def test_the_shard_comes_from_shard_or_from_shards_and_job_completion_index() -> None:
    assert shard_settings() is None
    assert shard_settings("--shard", "2/3") == (2, 3)
    assert shard_settings(CURRENTS_SHARD="0/4") == (0, 4)
    assert shard_settings("--shards", "3", JOB_COMPLETION_INDEX="0") == (0, 3)
    assert shard_settings(CURRENTS_SHARDS="3", JOB_COMPLETION_INDEX="2") == (2, 3)
    assert shard_settings(JOB_COMPLETION_INDEX="2") is None, "an Indexed Job without --shards is not sharded"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (["--shard", "3/3"], {}, "--shard (from flag): '3/3' is out of range (the index runs from 0 to 2)"),
        (["--shard", "1"], {}, "--shard (from flag): '1' is not I/N"),
        (["--shard", "0/0"], {}, "--shard (from flag): '0/0' is out of range (at least 1 shard)"),
        (["--shards", "3"], {}, "--shards 3 needs this process's shard index: JOB_COMPLETION_INDEX"),
        (
            ["--shards", "3"],
            {"JOB_COMPLETION_INDEX": "3"},
            "--shard-index (from env JOB_COMPLETION_INDEX): '3' is out of range (the index runs from 0 to 2)",
        ),
        (["--shards", "3"], {"JOB_COMPLETION_INDEX": "x"}, "'x' is not a whole number"),
        (["--shards", "3", "--shard", "0/3"], {}, "use --shard I/N or --shards N"),
    ],
)
def test_a_shard_that_cannot_be_worked_out_is_a_configuration_error(
    flags: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        shard_settings(*flags, **env)
    assert message in str(caught.value)
