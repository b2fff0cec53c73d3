"""``currents-consumer replay s3://|gs://|az://...`` and ``convert`` of them end to end: a real server of
each cloud (moto for S3, gcp-storage-emulator for GCS, Azurite for Azure Blob) holding a bucket laid out
exactly as Braze Currents writes it — two integrations, many event types, three hours, all three codecs,
a corrupt object and side files — replayed into the Amplitude simulator by the command line in a
subprocess, as a Kubernetes Job would run it."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from amplitude_harness import KEY, dead_letters, eventually, insert_ids, settings, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_container, write_currents_tree
from objectstore_harness import (
    CLOUDS,
    ObjectBucket,
    listing_order,
    new_azure_container,
    new_bucket,
    new_gcs_bucket,
)
from replay_harness import last_json, running, start

from consumer.decode.avro import DecodeError
from consumer.settings import Settings
from consumer.sources.storage.files import list_files, read_file
from consumer.sources.storage.selection import Selection
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

PREFIX = "currents"
TYPES = ("users.messages.email.*", "users.behaviors.CustomEvent")


@pytest.fixture(scope="module", params=CLOUDS)
def bucket(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    """The Currents bucket of each cloud: written locally, one object truncated, uploaded under
    ``currents/``. Shared by the tests of this module, which only read it (each keeps its own state
    and dead-letters)."""
    new = {"s3": ("s3_endpoint", new_bucket), "gcs": ("gcs_endpoint", new_gcs_bucket)}
    server, make = new.get(request.param, ("azurite", new_azure_container))
    store: ObjectBucket = make(request.getfixturevalue(server))
    local = tmp_path_factory.mktemp("currents") / "bucket"
    paths = write_currents_tree(
        local, Synth(31, devices=600), 5000, integrations=2, hours=3, max_per_file=150
    )
    hours = sorted({p.parts[-4] for p in paths})
    selected = [p for p in paths if _selected(p, hours)]
    corrupt = max(selected, key=lambda p: p.stat().st_size)
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[: len(data) * 2 // 3])
    (local / "_SUCCESS").write_bytes(b"")
    store.upload_tree(local, PREFIX)
    return Bucket(store, local, paths, hours, corrupt)


def _selected(path: Path, hours: list[str]) -> bool:
    event_type = path.parts[-5].removeprefix("event_type=")
    return Selection.of(TYPES).type_selected(event_type) and path.parts[-4] in hours[1:]


class Bucket:
    def __init__(
        self, store: ObjectBucket, local: Path, paths: list[Path], hours: list[str], corrupt: Path
    ) -> None:
        self.store, self.local, self.paths, self.hours, self.corrupt = store, local, paths, hours, corrupt

    def url(self, path: Path | None = None) -> str:
        key = PREFIX if path is None else f"{PREFIX}/{path.relative_to(self.local).as_posix()}"
        return self.store.url(key)

    @property
    def selection_flags(self) -> list[str]:
        """The selection of :func:`_selected` as flags: the two later hours of the email and custom types."""
        since = self.hours[1].removeprefix("date=")
        return ["--event-type", TYPES[0], "--event-type", TYPES[1], "--since", since]

    def expected(self, s: Settings, keep: Any = None) -> dict[str, tuple[str, dict[str, Any]]]:
        """``insert_id -> (object URL, event)`` of the readable records the selection takes."""
        transformer = Transformer(s.mapping)
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for path in self.paths:
            if keep is None and not _selected(path, self.hours):
                continue
            with contextlib.suppress(DecodeError):
                for rec in read_file(str(path)):
                    if keep is not None and not keep(rec):
                        continue
                    result = transformer.transform(rec.event_type, rec.record)
                    if not isinstance(result, Skip):
                        out[result["insert_id"]] = (self.url(path), orjson.loads(orjson.dumps(result)))
        return out

    def readable(self, path: Path) -> int:
        count = 0
        with contextlib.suppress(DecodeError):
            for _ in read_file(str(path)):
                count += 1
        return count


def replay_args(sim: AmplitudeSimulator, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--amplitude-url", sim.http_v2_url, "--dead-letter", str(tmp_path / "dead-letter"),
        "--state-dir", str(tmp_path / "state"), "--batch-age", "20ms", "--max-backoff", "200ms",
        "--throttle-penalty", "300ms", "--log-format", "json", "--summary-json", *extra,
    ]  # fmt: skip


def env(b: Bucket) -> dict[str, str]:
    return {"AMPLITUDE_API_KEY": KEY, **b.store.env}


async def test_replay_from_a_bucket_delivers_the_selected_types_and_hours_and_names_the_corrupt_object(
    bucket: Bucket, tmp_path: Path
) -> None:
    b = bucket
    corrupt_url = b.url(b.corrupt)
    async with simulator() as sim:
        expected = b.expected(settings(sim, tmp_path))
        args = ["replay", b.url(), *b.selection_flags, *replay_args(sim, tmp_path)]
        command = await start(args, env(b), tmp_path)
        code, _, stderr = await command.finish(within=120)
        assert code == 1, stderr
        delivered = {e.event["insert_id"]: e.event for e in sim.events}
        assert delivered == {k: v for k, (_, v) in expected.items()}
        assert sim.stats.events_duplicate == 0
    assert any(url == corrupt_url for url, _ in expected.values()), "the corrupt object's first records count"
    assert {url for url, _ in expected.values()} <= {b.url(p) for p in b.paths if _selected(p, b.hours)}
    summary = last_json(stderr)
    assert f"unreadable input {corrupt_url} (record " in stderr
    assert [line.split(": ")[0] for line in summary["unreadable"]] == [corrupt_url]
    (dead,) = [r for r in dead_letters(tmp_path / "dead-letter") if r["reason"] == "unreadable_input"]
    assert dead["position"]["file"] == corrupt_url
    assert summary["read"] == summary["delivered"] + sum(summary["skipped"].values())
    assert set(summary["per_event_type"]) <= {
        p.parts[-5].removeprefix("event_type=") for p in b.paths if _selected(p, b.hours)
    }


async def test_an_interrupted_bucket_replay_resumes_without_fetching_finished_objects(
    bucket: Bucket, tmp_path: Path
) -> None:
    b = bucket
    async with simulator() as sim:
        expected = b.expected(settings(sim, tmp_path))
        flags = [*b.selection_flags, "--files-in-flight", "4"]
        slow = replay_args(sim, tmp_path, "--project-rate", "1000", "--max-pending", "100")
        async with running(["replay", b.url(), *flags, *slow], env(b), tmp_path) as command:
            await eventually(lambda: sim.stats.events_ingested >= 500, within=60, message="first part")
            command.proc.send_signal(signal.SIGINT)
            code, _, stderr = await command.finish()
        assert code == 130, stderr
        assert sim.stats.events_ingested < len(expected), "the replay was not interrupted"
        (state_file,) = (tmp_path / "state").glob("replay-*.json")  # beside it: the job's lock
        state = orjson.loads(state_file.read_bytes())
        assert state["done"], "no object finished before the interruption"
        for ident in [*state["done"], *state["next_record"]]:
            url, etag = ident.rsplit("|", 1)
            assert url.startswith(b.url() + "/") and etag == b.store.version(
                url.removeprefix(b.store.url() + "/")
            )
        finished = {ident.rsplit("|", 1)[0] for ident in state["done"]}
        progress = {ident.rsplit("|", 1)[0]: n for ident, n in state["next_record"].items()}
        # What the second run must read: every unfinished object from its first record not done.
        left = sum(
            max(0, b.readable(p) - progress.get(b.url(p), 0))
            for p in b.paths
            if _selected(p, b.hours) and b.url(p) not in finished
        )

        async with running(
            ["replay", b.url(), *flags, *replay_args(sim, tmp_path)], env(b), tmp_path
        ) as command:
            code, _, stderr = await command.finish(within=120)
        assert code == 1, stderr  # the corrupt object, again
        assert f"files already finished by an earlier run: {len(finished)}" in stderr
        assert last_json(stderr)["read"] == left
        assert set(insert_ids(sim.events)) == set(expected)
        resent = sim.duplicates
        assert len(resent) <= 100, "more than the events in flight at the interruption were sent twice"
        assert not {expected[e.event["insert_id"]][0] for e in resent} & finished


async def test_dry_run_lists_objects_with_sizes_and_what_is_left(bucket: Bucket, tmp_path: Path) -> None:
    b = bucket
    selected = sorted(
        (p for p in b.paths if _selected(p, b.hours)),
        key=lambda p: listing_order(p.relative_to(b.local).as_posix()),
    )
    async with simulator() as sim:
        args = ["replay", b.url(), *b.selection_flags, *replay_args(sim, tmp_path)]
        command = await start([*args, "--dry-run"], b.store.env, tmp_path)
        code, stdout, stderr = await command.finish()
        assert code == 0, stderr
        assert sim.stats.events_ingested == 0 and not (tmp_path / "state").exists()
        lines = [line.split("\t") for line in stdout.splitlines()]
        assert lines == [["todo", str(p.stat().st_size), b.url(p)] for p in selected]
        totals = orjson.loads(stderr.strip().splitlines()[-1])
        assert totals["objects"] == totals["to_read_objects"] == len(selected)
        assert totals["bytes"] == sum(p.stat().st_size for p in selected)
        assert set(totals["per_event_type"]) == {p.parts[-5].removeprefix("event_type=") for p in selected}
        assert totals["queued_from"].startswith(b.hours[1].removeprefix("date=")[:10])

        code, _, stderr = await (await start(args, env(b), tmp_path)).finish(within=120)
        assert code == 1, stderr
        code, stdout, _ = await (await start([*args, "--dry-run"], b.store.env, tmp_path)).finish()
    states = {url: status for status, _, url in (line.split("\t") for line in stdout.splitlines())}
    corrupt = b.url(b.corrupt)
    assert states.pop(corrupt).startswith("resume@"), "a corrupt object is never finished"
    assert set(states.values()) == {"done"}


async def test_three_shards_side_by_side_deliver_the_bucket_once_between_them(
    bucket: Bucket, tmp_path: Path
) -> None:
    """``--shard I/3`` over a bucket of each cloud: three replays at once deliver exactly what one
    would (the corrupt object's readable records included) and no event twice, so no object was read
    by two shards."""
    b = bucket
    async with simulator() as sim:
        expected = b.expected(settings(sim, tmp_path))
        runs = []
        for index in range(3):
            own = tmp_path / f"shard-{index}"
            args = ["replay", b.url(), *b.selection_flags, *replay_args(sim, own), "--shard", f"{index}/3"]
            runs.append(await start(args, env(b), own.parent))
        results = [await run.finish(within=180) for run in runs]
        delivered = {e.event["insert_id"] for e in sim.events}
        assert sim.stats.events_duplicate == 0
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 0, 1], [err[-2000:] for _, _, err in results]  # one shard holds the corrupt object
    assert delivered == set(expected)  # with no duplicate: no object was read by two shards
    assert sum(last_json(err)["delivered"] for _, _, err in results) == len(expected)


async def test_event_time_selects_records_by_their_time(bucket: Bucket, tmp_path: Path) -> None:
    b = bucket
    start_hour = b.hours[1].removeprefix("date=")
    sel = Selection.of(since=start_hour, until=f"{start_hour[:10]}T{start_hour[11:]}:20Z", event_time=True)
    keep = sel.record_filter()
    assert keep is not None and sel.since is not None and sel.until is not None
    email = Selection.of((TYPES[0],)).type_selected
    flags = ["--event-time", "--since", str(sel.since), "--until", str(sel.until), "--event-type", TYPES[0]]
    async with simulator() as sim:
        expected = b.expected(settings(sim, tmp_path), keep=lambda rec: keep(rec) and email(rec.event_type))
        args = ["replay", b.url(), *flags, *replay_args(sim, tmp_path)]
        code, _, stderr = await (await start(args, env(b), tmp_path)).finish(within=120)
        assert code in (0, 1), stderr
        assert {e.event["insert_id"] for e in sim.events} == set(expected)
    assert 0 < len(expected) < 2000
    assert all(sel.since * 1000 <= e.event["time"] < sel.until * 1000 for e in sim.events)
    assert "records left out by the selection: " in stderr


async def test_convert_reads_a_bucket_exactly_as_the_local_copy(bucket: Bucket, tmp_path: Path) -> None:
    b = bucket
    outputs = []
    for root, in_flight in ((str(b.local), "1"), (b.url(), "4")):
        command = await start(["convert", root, "--files-in-flight", in_flight], b.store.env, tmp_path)
        code, stdout, stderr = await command.finish(within=120)
        assert code == 1, stderr  # the corrupt object
        outputs.append(stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) > 3000
    assert len(list(list_files([str(b.local)]))) == len(b.paths)


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest) -> ObjectBucket:
    """A fresh bucket (container) of each cloud's server."""
    store: ObjectBucket = request.getfixturevalue(request.param)
    return store


async def test_a_rewritten_object_is_replayed_again(cloud: ObjectBucket, tmp_path: Path) -> None:
    local = tmp_path / "bucket"
    paths = write_currents_tree(local, Synth(32, devices=100), 600, max_per_file=100, codecs=("snappy",))
    cloud.upload_tree(local, PREFIX)
    async with simulator() as sim:
        args = ["replay", cloud.url(PREFIX), *replay_args(sim, tmp_path)]
        e = {"AMPLITUDE_API_KEY": KEY, **cloud.env}
        code, _, stderr = await (await start(args, e, tmp_path)).finish(within=120)
        assert code == 0, stderr
        first = last_json(stderr)["read"]
        # Same key, new content (another Currents file): a new version (ETag, generation), so it is not
        # taken as finished.
        other = Synth(33, devices=10)
        records = (other.record("users.behaviors.CustomEvent") for _ in range(40))
        replacement = write_container(tmp_path / "other.avro", "users.behaviors.CustomEvent", records)
        key = f"{PREFIX}/{paths[0].relative_to(local).as_posix()}"
        cloud.put(key, replacement.read_bytes())
        code, _, stderr = await (await start(args, e, tmp_path)).finish(within=120)
        assert code == 0, stderr
    assert first == 600
    assert last_json(stderr)["read"] == 40
    assert f"files already finished by an earlier run: {len(paths) - 1}" in stderr


async def test_missing_buckets_and_prefixes_stop_before_anything_is_read(
    cloud: ObjectBucket, tmp_path: Path
) -> None:
    cloud.put(f"{PREFIX}/a.avro", b"x")
    e = {"AMPLITUDE_API_KEY": KEY, **cloud.env}
    for url in (f"{cloud.scheme}://no-such-bucket-anywhere/currents", cloud.url("nope")):
        for command in (["replay", url, "--state-dir", str(tmp_path / "s")], ["convert", url]):
            code, _, stderr = await (await start(command, e, tmp_path)).finish()
            assert code == 2, stderr
            assert "no such object or prefix: " in stderr and "Traceback" not in stderr


# -- the backfill recipes (deploy/replay, deploy/replay-gcs, deploy/replay-azure) -----------------------


@pytest.mark.parametrize(
    ("directory", "scheme", "annotation"),
    [
        ("deploy/replay", "s3://", "eks.amazonaws.com/role-arn"),
        ("deploy/replay-gcs", "gs://", "iam.gke.io/gcp-service-account"),
        ("deploy/replay-azure", "az://", "azure.workload.identity/client-id"),
    ],
)
def test_each_cloud_recipe_reads_its_bucket_with_its_workload_identity(
    directory: str, scheme: str, annotation: str
) -> None:
    from test_deploy import assert_locked_down, one, pod_spec, render

    docs = render(directory)
    job = one(docs, "Job", "currents-replay")
    spec = pod_spec(job)
    assert_locked_down(spec)
    (container,) = spec["containers"]
    assert container["args"][0] == "replay" and container["args"][1].startswith(scheme)
    account = one(docs, "ServiceAccount", spec["serviceAccountName"])
    identities = {k for k in account["metadata"]["annotations"] if "." in k and "/" in k}
    assert identities == {annotation}, "exactly one cloud's workload identity"
    env = one(docs, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])["data"]
    assert not {k for k in env if "KEY" in k or "SECRET" in k or "TOKEN" in k}, "no cloud credentials"
    if scheme == "az://":
        assert job["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        assert env["AZURE_STORAGE_ACCOUNT_NAME"]
    if scheme == "gs://":
        assert spec["nodeSelector"] == {"iam.gke.io/gke-metadata-server-enabled": "true"}
