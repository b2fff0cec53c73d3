"""``currents-consumer convert``: Currents Avro files -> Amplitude events as JSON lines (a dry run).

Reads every selected file under the given roots (local paths or ``s3://``, ``gs://``, ``az://`` URLs;
``files_in_flight`` of them fetched and decoded ahead, output still file after file in listing
order), prints each Amplitude event exactly as it would be uploaded (one JSON object per line) to
``out``, and a summary (read, converted, skipped by reason, per event type, unreadable files) to
``err``. An unreadable or corrupt file is named with the reason and the run goes on with the next file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import BinaryIO, TextIO

import orjson

from consumer.decode.avro import DecodeError
from consumer.ops.summary import Summary
from consumer.settings import MappingConfig
from consumer.sources.storage.files import Listing, ReadError, list_objects
from consumer.sources.storage.readahead import ReadAhead
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.stores import Stores
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip


def convert(
    paths: list[str],
    mapping: MappingConfig,
    out: BinaryIO,
    err: TextIO = sys.stderr,
    *,
    selection: Selection | None = None,
    files_in_flight: int = 1,
    listing: Listing | None = None,
) -> Summary:
    """Convert every selected file under ``paths``; return the run's summary. ``listing`` (when given)
    is filled with what the listing found (:meth:`Listing.nothing_found` says why nothing was)."""
    listing = listing if listing is not None else Listing()
    return asyncio.run(_convert(paths, mapping, out, err, selection or Selection(), files_in_flight, listing))


async def _convert(
    paths: list[str],
    mapping: MappingConfig,
    out: BinaryIO,
    err: TextIO,
    selection: Selection,
    in_flight: int,
    listing: Listing,
) -> Summary:
    transformer = Transformer(mapping)
    summary = Summary(done_label="converted")
    dumps = orjson.dumps
    write = out.write
    stores = Stores()
    ahead = ReadAhead(
        list_objects(paths, selection, stores, listing),
        stores,
        in_flight=in_flight,
        keep=selection.record_filter(),
    )
    async with contextlib.aclosing(ahead.readers()) as readers:
        async for reader in readers:
            try:
                async for rec in reader.records():
                    summary.read[rec.event_type] += 1
                    result = transformer.transform(rec.event_type, rec.record)
                    if isinstance(result, Skip):
                        summary.skipped[result.reason] += 1
                        continue
                    write(dumps(result) + b"\n")
                    summary.done[rec.event_type] += 1
            except DecodeError as exc:
                summary.unreadable.append(f"{reader.obj.url}: {exc.reason} (record {exc.position.offset})")
                print(f"unreadable: {exc}", file=err)
            except ReadError as exc:
                summary.unreadable.append(f"{reader.obj.url}: {exc.reason} (record {exc.record})")
                print(f"unreadable: {exc}", file=err)
    out.flush()
    return summary
