"""Writing synthetic Currents data where the exporter reads it: Avro container files, Braze's
Currents storage tree (in any of its three generations of object keys), and Kafka message bodies in
the Confluent wire format.

Everything here is deterministic for a seeded :class:`~currents_devkit.synth.Synth` (sync markers, paths
and offsets are drawn from seeded generators too), and memory stays bounded by one file's records.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro

from consumer.decode.schemas import parsed_schema, raw_schemas
from currents_devkit.registry import local_event_type, local_schema_id
from currents_devkit.synth.values import CLUSTER, CODECS, ENVIRONMENT, ZONE

LAYOUTS = ("current", "2019", "2017")
"""The generations of Currents object keys :func:`write_currents_tree` can write (see :func:`object_key`)."""

if TYPE_CHECKING:
    from currents_devkit.synth.generator import Synth


def write_container(
    path: str | Path,
    event_type: str,
    records: Iterable[dict[str, Any]],
    codec: str = "null",
    *,
    sync_marker: bytes | None = None,
) -> Path:
    """Write ``records`` as an Avro Object Container File whose writer schema is the shipped one.

    The header carries the ``.avsc`` JSON as shipped (name and namespace as Braze writes them).
    ``codec`` is ``"null"``, ``"deflate"`` or ``"snappy"``. ``sync_marker`` (16 bytes) makes the
    output byte-for-byte reproducible; by default it is random, as the Avro spec intends. Parent
    directories are created; ``records`` is consumed lazily. Returns ``path``. An empty ``records``
    gives a valid file with no blocks (Braze never writes one, and :func:`write_currents_tree` does not).

    The file appears whole, as an object does in a bucket: it is written under a hidden name
    (``.<name>.<random>.tmp``, which listings pass over) in the same directory and renamed into place,
    so a follower (``replay --follow``) of the directory never lists half a file.
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.urandom(4).hex()}.tmp")
    try:
        with partial.open("wb") as fo:
            fastavro.writer(
                fo,
                raw_schemas()[event_type],
                records,
                codec=codec,
                sync_marker=sync_marker if sync_marker is not None else os.urandom(16),
                disable_tuple_notation=True,  # records are plain dicts; skips a per-union check
            )
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def object_key(layout: str, integration: str, event_type: str, date: str, partition: int, offset: int) -> str:
    """The key of one Currents file, relative to the bucket prefix, as generation ``layout`` writes it.

    ``integration`` is the hex integration id, ``date`` the queue hour ``YYYY-MM-DD-HH``. The three
    generations, as Braze's documentation and public samples show them:

    * ``current``: ``dataexport.prod-01.S3.integration.<id>/event_type=<type>/date=<hour>/version=<n>/
      us-01/dataexport.prod-01.S3.integration.<id>+<partition>+<offset>.avro`` (a ``version=``
      segment and an environment where older keys had the schema id and the zone; offsets not padded);
    * ``2019``: ``dataexport.prod-01.S3.integration.<id>/event_type=<type>/date=<hour>/<schema-id>/
      <zone>/dataexport.prod-01.S3.integration.<id>+<partition>+<offset, 10 digits>.avro``;
    * ``2017``: no cluster part in the names (``dataexport.S3.integration.<id>+2+0000035465.avro``,
      the file name of Braze's 2017 sample); only that file name survives, so the folders above it
      are assumed to be the 2019 ones.

    ``<n>`` and ``<schema-id>`` are :func:`schema_id_for` of the type.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    connector = f"dataexport.{CLUSTER}.S3.integration.{integration}"
    schema, place, name = str(schema_id_for(event_type)), ZONE, f"{partition}+{offset:010d}"
    if layout == "current":
        schema, place, name = f"version={schema}", ENVIRONMENT, f"{partition}+{offset}"
    elif layout == "2017":
        connector = f"dataexport.S3.integration.{integration}"
    return f"{connector}/event_type={event_type}/date={date}/{schema}/{place}/{connector}+{name}.avro"


def write_currents_tree(
    root: str | Path,
    synth: Synth,
    n_events: int,
    *,
    event_types: Sequence[str] | None = None,
    codecs: Sequence[str] = CODECS,
    integrations: int = 1,
    hours: int = 2,
    max_per_file: int = 15000,
    layout: str = "current",
    until: int | None = None,
) -> list[Path]:
    """Write ``n_events`` mixed events under ``root`` in Braze's Currents storage layout; return the files.

    Keys are :func:`object_key` of ``layout`` (``current``, as Braze writes today, ``2019`` or ``2017``):
    ``<root>/<connector>/event_type=<event-type>/date=<YYYY-MM-DD-HH>/...`` down to
    ``<connector>+<partition>+<offset>.avro``. Events are spread evenly over ``hours`` consecutive UTC
    hours from the hour of ``synth.start_time`` (the ``date`` folder is the queue hour, as in Braze:
    an event's ``time`` is never after the end of its hour, and sometimes well before), over
    ``integrations`` connectors, and per (integration, hour, type) into files of at most
    ``max_per_file`` records; files take the ``codecs`` in turn. One event type per file, never an
    empty file; ``<offset>`` is the offset of the file's first record in its partition. Deterministic
    for a seed: a fresh ``Synth`` with the same arguments gives the same paths and byte-identical
    files (sync markers are seeded too); the layout changes the paths only, never the files or their
    order. ``until`` (UNIX seconds): no event is queued after it, for files of an hour that has not
    ended yet (the files Braze is writing now); by default events are queued over the whole hour.
    Memory stays bounded by one file's records.
    """
    if n_events < 0 or integrations < 1 or hours < 1 or max_per_file < 1 or not codecs:
        raise ValueError("need n_events >= 0, integrations >= 1, hours >= 1, max_per_file >= 1, codecs")
    for codec in codecs:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    draw_type = synth.type_draw(event_types)
    names = random.Random(f"currents-tree:{synth.seed}")  # names stay stable whatever n_events is
    integration_ids = [f"{names.getrandbits(96):024x}" for _ in range(integrations)]
    offsets: dict[tuple[int, str, int], int] = {}
    base_hour = synth.start_time // 3600 * 3600
    paths: list[Path] = []
    rnd = synth.draw
    for h in range(hours):
        count = n_events * (h + 1) // hours - n_events * h // hours
        counts: dict[tuple[int, str], int] = {}
        for _ in range(count):
            key = (int(rnd() * integrations), draw_type())
            counts[key] = counts.get(key, 0) + 1
        hour = base_hour + h * 3600
        span = 3600 if until is None else max(1, min(3600, until - hour))
        date = time.strftime("%Y-%m-%d-%H", time.gmtime(hour))
        for (k, event_type), remaining in sorted(counts.items()):
            while remaining:
                size = min(remaining, max_per_file)
                remaining -= size
                partition = names.randrange(6)
                start = offsets.get((k, event_type, partition))
                if start is None:
                    start = names.randrange(50_000)
                offsets[(k, event_type, partition)] = start + size
                path = Path(root, object_key(layout, integration_ids[k], event_type, date, partition, start))
                records = (synth.record(event_type, at=hour + int(rnd() * span)) for _ in range(size))
                codec = codecs[len(paths) % len(codecs)]
                marker = names.randbytes(16)
                paths.append(write_container(path, event_type, records, codec, sync_marker=marker))
    return paths


# --- Kafka ---------------------------------------------------------------------------------------------
# The ids of the local schema registry (consumer.decode.registry), so generated frames decode there.
schema_id_for = local_schema_id
event_type_for_schema_id = local_event_type


def avro_body(event_type: str, record: dict[str, Any]) -> bytes:
    """``record`` as plain Avro binary (no header, no framing) with the shipped schema."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(event_type), record)
    return buf.getvalue()


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """Confluent wire format: magic byte ``0x00``, 4-byte big-endian ``schema_id``, then ``body``."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
    return b"\x00" + schema_id.to_bytes(4, "big") + body
