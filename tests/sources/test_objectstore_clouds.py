"""What only an object store can do, on a real server of each cloud (moto for S3, gcp-storage-emulator for
GCS, Azurite for Azure Blob): object versions, reads pinned to the version listed, missing buckets and
objects, directory-marker objects, corrupt and vanished objects told apart."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from objectstore_harness import CLOUDS, ObjectBucket, currents_tree

from consumer.decode.avro import DecodeError
from consumer.events import CurrentsRecord
from consumer.sources.storage import cloud as cloudstore
from consumer.sources.storage.files import ReadError, list_objects, read_object
from consumer.sources.storage.store import StoreError
from consumer.sources.storage.stores import Stores


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest) -> ObjectBucket:
    """A fresh bucket (container) of each cloud's server, the environment pointing at it."""
    bucket: ObjectBucket = request.getfixturevalue(request.param)
    return bucket


def test_a_missing_root_stops_before_anything_is_listed(cloud: ObjectBucket, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        list(list_objects([str(tmp_path), str(tmp_path / "nope")]))
    cloud.put("currents/a.avro", b"x")
    with pytest.raises(StoreError, match=f"no such object or prefix: {cloud.url('nope')}"):
        next(list_objects([cloud.url("currents"), cloud.url("nope")]))
    missing = f"{cloud.scheme}://no-such-bucket-here"
    with pytest.raises(StoreError, match=f"no such object or prefix: {missing}"):
        next(list_objects([f"{missing}/x"]))


def test_an_object_version_is_its_etag_or_generation_and_changes_with_it(cloud: ObjectBucket) -> None:
    cloud.put("p/a.avro", b"one")
    (before,) = list_objects([cloud.url("p")])
    assert before.version == cloud.version("p/a.avro")
    cloud.put("p/a.avro", b"two")
    (after,) = list_objects([cloud.url("p")])
    assert after.version == cloud.version("p/a.avro") != before.version
    assert after.url == cloud.url("p/a.avro")


def test_an_object_rewritten_mid_read_fails_the_read_instead_of_mixing_contents(
    cloud: ObjectBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = 64 << 10
    monkeypatch.setattr(cloudstore, "READ_BLOCK", block)  # several ranged GETs for a small object
    old, new = bytes(range(256)) * (4 * block // 256), b"\xff" * (4 * block)
    cloud.put("r/x.avro", old)
    (obj,) = list_objects([cloud.url("r")])
    stores = Stores()
    with contextlib.closing(stores.get(obj.url).open(obj)) as fo:
        assert fo.read(100) == old[:100]  # the first block, fetched before the rewrite
        cloud.put("r/x.avro", new)
        with pytest.raises(Exception) as err:  # each client raises its own kind, ReadError's cause
            fo.seek(3 * block)
            fo.read(100)
    assert not isinstance(err.value, AssertionError)
    # Opened after the rewrite with the version listed before it: refused too (S3 pins at open).
    if cloud.scheme != "s3":
        with pytest.raises(ReadError, match=r"cannot open|read failed"):
            list(read_object(stores.get(obj.url), obj))


def test_a_directory_marker_blob_does_not_hide_what_is_under_it(cloud: ObjectBucket) -> None:
    for key in ("m/", "m/a/", "m/a/one.avro", "m/two.avro"):
        cloud.put(key, b"" if key.endswith("/") else b"x")
    assert [o.url for o in list_objects([cloud.url("m")])] == [
        cloud.url("m/two.avro"),
        cloud.url("m/a/one.avro"),
    ]


def test_a_corrupt_object_is_a_decode_error_naming_its_url(cloud: ObjectBucket, tmp_path: Path) -> None:
    paths = currents_tree(tmp_path / "t")
    data = paths[0].read_bytes()
    cloud.put("c/x.avro", data[: len(data) // 2])
    (obj,) = list_objects([cloud.url("c")])
    got: list[CurrentsRecord] = []
    with pytest.raises(DecodeError) as err:
        got.extend(read_object(Stores().get(obj.url), obj))
    assert err.value.position.source == cloud.url("c/x.avro")
    assert err.value.position.offset == len(got)


def test_an_object_gone_after_listing_is_a_read_error_not_damage(cloud: ObjectBucket, tmp_path: Path) -> None:
    cloud.put("g/x.avro", currents_tree(tmp_path / "t")[0].read_bytes())
    (obj,) = list_objects([cloud.url("g")])
    cloud.delete("g/x.avro")
    with pytest.raises(ReadError, match="cannot open") as err:
        list(read_object(Stores().get(obj.url), obj, skip=3))
    assert err.value.url == obj.url and err.value.record == 3


def test_one_level_and_a_flat_listing_of_a_folder_with_when_each_object_landed(
    cloud: ObjectBucket, tmp_path: Path
) -> None:
    keys = ["p/a.avro", "p/_SUCCESS", "p/sub/b.avro", "p/sub/deep/c.avro", "p/.hidden/d.avro", "p/z.crc"]
    before = time.time() - 2  # a store's clock may run a little behind; moto stamps whole seconds
    for key in keys:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
        cloud.put(key, b"x")
    for root in (str(tmp_path / "p"), cloud.url("p")):
        store = Stores().get(root)
        dirs, objects = store.list_level(root)
        assert [d.rsplit("/", 1)[-1] for d in dirs] == ["sub"]  # hidden directories are passed over
        assert [o.url.rsplit("/", 1)[-1] for o in objects] == ["a.avro"]  # side files too
        flat = sorted(o.url.split("/p/", 1)[1] for o in store.list_flat(root))
        assert flat == ["a.avro", "sub/b.avro", "sub/deep/c.avro"]
        assert all(before <= o.landed <= time.time() + 2 for o in store.list_flat(root))
        # A folder that does not exist lists as empty: a poll looks at hours that may have no files yet.
        assert store.list_level(f"{root}/nope") == ([], [])
        assert store.list_flat(f"{root}/nope") == []
