"""The three generations of Currents object keys, read alike: selection, listing, resume and the dry run.

Braze's keys changed twice. Today: ``.../date=<hour>/version=<n>/<environment>/<connector>+<p>+<offset>``
with offsets not padded; in 2019: ``.../date=<hour>/<schema-id>/<zone>/<connector>+<p>+<10-digit
offset>``; in 2017 the names had no cluster part (``dataexport.S3.integration.<id>+2+0000035465.avro``).
Each tree here is written by the dev kit's ``write_currents_tree(layout=...)`` and told apart by this
file's own patterns, never by the product's parsing; the current generation is also read from a real
S3-compatible server (moto).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from amplitude_harness import KEY, insert_ids, settings, simulator
from currents_devkit.commands import SAMPLE_LAYOUTS
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import LAYOUTS, Synth, write_currents_tree
from objectstore_harness import S3, listing_order
from replay_harness import last_json, start

from consumer.decode.avro import event_type_from_path
from consumer.sources.storage.files import list_objects, read_file
from consumer.sources.storage.selection import Selection
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

_ID = r"(?P<integration>[0-9a-f]{24})"
_PARTITIONS = r"/event_type=(?P<event_type>[A-Za-z0-9_.]+)/date=(?P<date>\d{4}-\d{2}-\d{2}-\d{2})"
KEY_PATTERNS = {
    "current": re.compile(
        rf"^dataexport\.prod-01\.S3\.integration\.{_ID}{_PARTITIONS}/version=\d+/us-01"
        r"/dataexport\.prod-01\.S3\.integration\.(?P=integration)\+(?P<partition>\d)\+(?P<offset>[1-9]\d*|0)\.avro$"
    ),
    "2019": re.compile(
        rf"^dataexport\.prod-01\.S3\.integration\.{_ID}{_PARTITIONS}/\d+/0"
        r"/dataexport\.prod-01\.S3\.integration\.(?P=integration)\+(?P<partition>\d)\+(?P<offset>\d{10})\.avro$"
    ),
    "2017": re.compile(
        rf"^dataexport\.S3\.integration\.{_ID}{_PARTITIONS}/\d+/0"
        r"/dataexport\.S3\.integration\.(?P=integration)\+(?P<partition>\d)\+(?P<offset>\d{10})\.avro$"
    ),
}
"""Each generation's keys, relative to the prefix (the ``2017`` folders are as assumed by the dev kit)."""

TYPES = ("users.messages.email.Send", "users.messages.email.Open", "users.behaviors.CustomEvent")


@dataclass
class Tree:
    """A Currents tree of one generation: the root to read, its local copy and its files by key."""

    layout: str
    root: str
    local: Path
    keys: dict[str, re.Match[str]]  # key relative to the root -> its parts, by this file's pattern

    def url(self, key: str) -> str:
        return f"{self.root}/{key}"

    def hours(self) -> list[str]:
        return sorted({m["date"] for m in self.keys.values()})

    def selected(self, keep_type: Selection, hours: list[str]) -> list[str]:
        """The keys of the types ``keep_type`` takes, in ``hours``, in listing order (digits as numbers)."""
        keys = [
            k for k, m in self.keys.items() if keep_type.type_selected(m["event_type"]) and m["date"] in hours
        ]
        return sorted(keys, key=listing_order)


def write_tree(local: Path, layout: str) -> dict[str, re.Match[str]]:
    paths = write_currents_tree(
        local, Synth(7, devices=60), 900, event_types=TYPES, integrations=2, hours=3, max_per_file=25,
        codecs=("null", "deflate"), layout=layout,
    )  # fmt: skip
    (local / "_SUCCESS").write_bytes(b"")
    keys: dict[str, re.Match[str]] = {}
    for path in paths:
        key = path.relative_to(local).as_posix()
        match = KEY_PATTERNS[layout].match(key)
        assert match, f"{layout}: {key}"
        keys[key] = match
    return keys


@pytest.fixture(
    params=[("current", "local"), ("2019", "local"), ("2017", "local"), ("current", "s3")],
    ids=["current-local", "2019-local", "2017-local", "current-s3"],
)
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> Tree:
    layout, where = request.param
    local = tmp_path / "bucket"
    keys = write_tree(local, layout)
    if where == "local":
        return Tree(layout, str(local), local, keys)
    bucket: S3 = request.getfixturevalue("s3")
    bucket.upload_tree(local, "currents")
    return Tree(layout, bucket.url("currents"), local, keys)


# -- what `sample` writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--layout", "current"], ["--layout", "2019"], ["--layout", "2017"]])
def test_sample_writes_the_current_layout_unless_told_otherwise(tmp_path: Path, flags: list[str]) -> None:
    layout = flags[1] if flags else "current"
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "sample", str(tmp_path / "s"), "--events", "300", *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.avro"))
    assert files and all(KEY_PATTERNS[layout].match(f) for f in files), files[:3]
    assert f"in {len(files)} files under {tmp_path / 's'} ({layout} layout)" in proc.stderr
    assert sum(1 for f in files for _ in read_file(str(tmp_path / "s" / f))) == 300


def test_the_sample_flag_offers_every_layout_the_writer_knows() -> None:
    assert SAMPLE_LAYOUTS == LAYOUTS
    with pytest.raises(ValueError, match="layout must be one of"):
        write_currents_tree("/nonexistent", Synth(1), 10, layout="2015")


def test_layouts_change_the_keys_and_nothing_else(tmp_path: Path) -> None:
    contents = {}
    for layout in LAYOUTS:
        keys = write_tree(tmp_path / layout, layout)
        contents[layout] = [(tmp_path / layout / k).read_bytes() for k in keys]
    assert contents["current"] == contents["2019"] == contents["2017"]


# -- selection and listing ------------------------------------------------------------------------------


def test_a_selection_takes_the_files_of_its_types_and_hours(tree: Tree) -> None:
    hours = tree.hours()
    assert len(hours) == 3
    everything = [o.url for o in list_objects([tree.root])]
    assert everything == [tree.url(k) for k in tree.selected(Selection(), hours)]
    sel = Selection.of(("users.messages.email.*",), since=hours[1], until=hours[2])
    wanted = tree.selected(sel, hours[1:2])
    assert wanted and len(wanted) < len(tree.keys) // 3
    assert [o.url for o in list_objects([tree.root], sel)] == [tree.url(k) for k in wanted]
    custom = Selection.of(("users.behaviors.CustomEvent",), since=hours[2])
    assert [o.url for o in list_objects([tree.root], custom)] == [
        tree.url(k) for k in tree.selected(custom, hours[2:])
    ]


def test_the_segments_below_the_hour_never_read_as_partitions(tree: Tree) -> None:
    """``version=6``, ``us-01``, a schema id or a zone: kept by every selection, never a type or an hour."""
    key, match = next(iter(tree.keys.items()))
    below = key.split("/")[3:5]
    assert all(Selection.of(("x.*",), since="2030-01-01").keep_dir(s) for s in below)
    assert event_type_from_path(tree.url(key)) == match["event_type"]
    # a root given inside the hour, down to the version or zone folder, is read and selected alike
    inner = "/".join(key.split("/")[:5])
    sel = Selection.of((match["event_type"],), since=match["date"])
    assert sel.keep_root(tree.url(inner))
    listed = [o.url for o in list_objects([tree.url(inner)], sel)]
    assert listed == [tree.url(k) for k in tree.selected(sel, [match["date"]]) if k.startswith(inner + "/")]


def test_files_of_one_partition_are_listed_in_offset_order_however_offsets_are_written(tree: Tree) -> None:
    """Current keys do not pad offsets (``+0+99999`` before ``+0+100000``); listing follows the numbers."""
    listed = [o.url for o in list_objects([tree.root])]
    by_partition: dict[tuple[str, str, str, str], list[int]] = {}
    for url in listed:
        m = tree.keys[url[len(tree.root) + 1 :]]
        by_partition.setdefault((m["integration"], m["event_type"], m["date"], m["partition"]), []).append(
            int(m["offset"])
        )
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())


def test_unpadded_offsets_across_a_power_of_ten_list_in_numeric_order(tmp_path: Path, s3: S3) -> None:
    local = tmp_path / "tree"
    keys = write_tree(local, "current")
    first = next(iter(keys))
    folder = (local / first).parent
    connector = first.split("/")[0]
    for offset in (99_975, 100_000, 9_999, 1_000_000):
        shutil.copy(local / first, folder / f"{connector}+5+{offset}.avro")
    s3.upload_tree(local, "c")
    for root in (str(folder), s3.url(f"c/{folder.relative_to(local).as_posix()}")):
        names = [o.url.rsplit("/", 1)[1] for o in list_objects([root])]
        fives = [int(n.rsplit("+", 1)[1].removesuffix(".avro")) for n in names if "+5+" in n]
        assert fives == [9_999, 99_975, 100_000, 1_000_000], root


# -- resume and the dry run, through the command line ---------------------------------------------------


async def test_the_dry_run_lists_a_replay_resumes_and_finished_files_are_skipped(
    tree: Tree, tmp_path: Path
) -> None:
    hours = tree.hours()
    sel = Selection.of(("users.messages.email.*",), since=hours[1])
    wanted = tree.selected(sel, hours[1:])
    env = {"AMPLITUDE_API_KEY": KEY}
    async with simulator() as sim:
        args = [
            "replay", tree.root, "--event-type", "users.messages.email.*", "--since", hours[1],
            "--amplitude-url", sim.http_v2_url, "--dead-letter", str(tmp_path / "dead-letter"),
            "--state-dir", str(tmp_path / "state"), "--batch-age", "20ms", "--summary-json",
        ]  # fmt: skip
        code, stdout, stderr = await (await start([*args, "--dry-run"], env, tmp_path)).finish()
        assert code == 0, stderr
        sizes = {k: (tree.local / k).stat().st_size for k in wanted}
        assert [line.split("\t") for line in stdout.splitlines()] == [
            ["todo", str(sizes[k]), tree.url(k)] for k in wanted
        ]
        totals = orjson.loads(stderr.strip().splitlines()[-1])
        assert set(totals["per_event_type"]) == {tree.keys[k]["event_type"] for k in wanted}
        assert totals["queued_from"] == f"{hours[1][:10]}T{hours[1][11:]}:00:00Z"
        assert totals["queued_to"] == f"{hours[2][:10]}T{hours[2][11:]}:00:00Z"

        code, _, stderr = await (await start(args, env, tmp_path)).finish(within=120)
        assert code == 0, stderr
        assert set(insert_ids(sim.events)) == expected_ids(tree, wanted, tmp_path, sim)
        assert last_json(stderr)["read"] == sum(len(list(read_file(str(tree.local / k)))) for k in wanted)

        code, stdout, stderr = await (await start([*args, "--dry-run"], env, tmp_path)).finish()
        assert code == 0, stderr
        assert [line.split("\t")[0] for line in stdout.splitlines()] == ["done"] * len(wanted)

        delivered = len(sim.events)
        code, _, stderr = await (await start(args, env, tmp_path)).finish(within=120)
        assert code == 0, stderr
        assert f"files already finished by an earlier run: {len(wanted)}" in stderr
        assert last_json(stderr)["read"] == 0 and len(sim.events) == delivered


def expected_ids(tree: Tree, keys: list[str], tmp_path: Path, sim: AmplitudeSimulator) -> set[str]:
    """The ``insert_id`` of every event the records of ``keys`` give."""
    transformer = Transformer(settings(sim, tmp_path).mapping)
    out: set[str] = set()
    for key in keys:
        for rec in read_file(str(tree.local / key)):
            result = transformer.transform(rec.event_type, rec.record)
            if not isinstance(result, Skip):
                out.add(result["insert_id"])
    return out
