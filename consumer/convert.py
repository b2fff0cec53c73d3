"""``currents-consumer convert``: Currents Avro files -> Amplitude events as JSON lines (a dry run).

Reads every file under the given paths, prints each Amplitude event exactly as it would be uploaded
(one JSON object per line) to ``out``, and a summary (read, converted, skipped by reason, per event
type, unreadable files) to ``err``. An unreadable or corrupt file is named with the reason and the
run goes on with the next file.
"""

from __future__ import annotations

import sys
from typing import BinaryIO, TextIO

import orjson

from consumer.decode import DecodeError
from consumer.files import list_files, read_file
from consumer.mapping import MappingConfig
from consumer.summary import Summary
from consumer.transform import Skip, Transformer


def convert(paths: list[str], mapping: MappingConfig, out: BinaryIO, err: TextIO = sys.stderr) -> Summary:
    """Convert every file under ``paths``; return the run's summary."""
    transformer = Transformer(mapping)
    summary = Summary(done_label="converted")
    dumps = orjson.dumps
    write = out.write
    for path in list_files(paths):
        try:
            for rec in read_file(path):
                summary.read[rec.event_type] += 1
                result = transformer.transform(rec.event_type, rec.record)
                if isinstance(result, Skip):
                    summary.skipped[result.reason] += 1
                    continue
                write(dumps(result) + b"\n")
                summary.done[rec.event_type] += 1
        except DecodeError as exc:
            summary.unreadable.append(f"{path}: {exc.reason} (record {exc.position.offset})")
            print(f"unreadable: {exc}", file=err)
    out.flush()
    return summary
