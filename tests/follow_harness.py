"""A Currents bucket that Braze keeps writing to, for the follower's tests, and the follower as a process.

:class:`Landing` writes Currents files the way Braze does — one event type per file, under
``<connector>/event_type=<type>/date=<queue hour>/version=<n>/us-01/<connector>+<partition>+<offset>.avro``
— into a local directory or a bucket (through its own client, never the product's), in the folder of
the current UTC hour, of an earlier hour (history) or of the previous hour (a late file), and keeps
the ``insert_id`` of every event each file must give Amplitude (records the mapping skips give none),
so a test counts delivered, dead-lettered and lost events by ``insert_id``.
"""

from __future__ import annotations

import io
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import httpx
from amplitude_harness import KEY, eventually, insert_ids
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth
from objectstore_harness import ObjectBucket
from replay_harness import Command, start

from consumer.decode.schemas import raw_schemas
from consumer.instants import format_instant
from consumer.settings import load
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

CONNECTOR = "dataexport.prod-01.S3.integration.5e2329f992760e5a1b2c3d4e"
TYPES = ("users.behaviors.CustomEvent", "users.messages.email.Open", "users.behaviors.Purchase")


def hour_folder(start: float) -> str:
    """``date=YYYY-MM-DD-HH`` of the hour ``start`` is in (UTC)."""
    text = format_instant(int(start // 3600 * 3600))
    return f"date={text[:10]}-{text[11:13]}"


def avro(event_type: str, records: Iterable[dict[str, Any]], seed: int) -> bytes:
    out = io.BytesIO()
    marker = seed.to_bytes(16, "big")
    fastavro.writer(out, raw_schemas()[event_type], records, sync_marker=marker, disable_tuple_notation=True)
    return out.getvalue()


@dataclass
class Landing:
    """Files landing under ``root`` (a local directory) or ``bucket``'s ``prefix``."""

    root: Path | None = None
    bucket: ObjectBucket | None = None
    prefix: str = "currents"
    expected: dict[str, str] = field(default_factory=dict)
    """``insert_id`` -> the key of the file that gives it."""
    files: list[str] = field(default_factory=list)
    """Keys written, in order."""
    _seed: int = 0
    _transformer: Transformer = field(default_factory=lambda: Transformer(load(env={}).mapping))

    @property
    def url(self) -> str:
        """What the follower follows."""
        if self.bucket is not None:
            return self.bucket.url(self.prefix)
        assert self.root is not None
        return str(self.root / self.prefix)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (relative to the followed root), whole: a local file appears by a rename."""
        if self.bucket is not None:
            self.bucket.put(f"{self.prefix}/{key}", data)
            return
        assert self.root is not None
        path = self.root / self.prefix / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")  # hidden: never listed while it is written
        partial.write_bytes(data)
        partial.rename(path)

    def land(
        self, events: int = 20, *, hours_ago: int = 0, event_type: str = TYPES[0], partition: int = 0
    ) -> str:
        """Write one file of ``events`` events queued ``hours_ago`` hours before now (0: the current hour,
        1: the previous one); returns its key."""
        self._seed += 1
        queued = time.time() - hours_ago * 3600
        synth = Synth(self._seed, devices=50, start_time=int(queued // 3600 * 3600))
        records = list(synth.records(event_type, events, at=int(queued)))
        offset = 1000 * self._seed
        key = (
            f"{CONNECTOR}/event_type={event_type}/{hour_folder(queued)}/version=1/us-01/"
            f"{CONNECTOR}+{partition}+{offset}.avro"
        )
        self.put(key, avro(event_type, records, self._seed))
        self.files.append(key)
        for record in records:
            result = self._transformer.transform(event_type, record)
            if not isinstance(result, Skip):
                self.expected[str(result["insert_id"])] = key
        return key

    def ids_of(self, key: str) -> set[str]:
        """The ``insert_id`` of every event the file ``key`` gives."""
        return {i for i, k in self.expected.items() if k == key}


def follow_args(url: str, tmp_path: Path, sim_url: str, *extra: str, state: str | None = None) -> list[str]:
    """``replay --follow URL`` into the simulator at ``sim_url``, polling every half second, with its
    dead letters and state under ``tmp_path`` (or ``state``)."""
    return [
        "replay", url, "--follow", "--poll-interval", "0.5s", "--amplitude-url", sim_url,
        "--dead-letter", str(tmp_path / "dead-letter"),
        "--state-dir", state if state is not None else str(tmp_path / "state"),
        "--batch-age", "20ms", "--max-backoff", "200ms", "--throttle-penalty", "300ms",
        "--log-format", "json", "--summary-json", *extra,
    ]  # fmt: skip


ENV = {"AMPLITUDE_API_KEY": KEY}
"""The environment of a follower in the tests (the simulator accepts this key)."""


async def start_shards(url: str, tmp_path: Path, sim_url: str, env: dict[str, str], n: int) -> list[Command]:
    """``n`` followers of ``url``, shard 0/n to n-1/n, each with its own state under ``tmp_path``."""
    return [
        await start(follow_args(url, tmp_path, sim_url, "--shard", f"{i}/{n}"), env, tmp_path)
        for i in range(n)
    ]


def delivered(sim: AmplitudeSimulator) -> Counter[str]:
    """How many times the simulator received each ``insert_id``."""
    return Counter(insert_ids(sim.events))


async def all_delivered(sim: AmplitudeSimulator, landing: Landing, within: float = 90) -> None:
    """Wait until every event ``landing`` expects was delivered."""
    # Counted first (sim.events decodes every event): the set is built once enough events arrived.
    await eventually(
        lambda: (
            sim.stats.events_ingested >= len(landing.expected)
            and set(landing.expected) <= set(delivered(sim))
        ),
        within=within,
        message=f"{len(landing.expected)} events delivered",
    )


async def stop(command: Command, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the follower, wait for its end: its exit code and stderr."""
    command.proc.send_signal(sig)
    code, _, err = await command.finish(within=60)
    return code, err


async def metric(port: int, series: str) -> float:
    """The sum of the samples of ``series`` (a name, optionally with its labels) on ``/metrics``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(series) and not line.startswith(f"{series.split('{')[0]}_created")
    )
