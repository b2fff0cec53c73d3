"""Micro-benchmark of the Amplitude request body's gzip: bytes against CPU, per compression level.

``python bench/micro_gzip.py [--events 200000] [--repeat 5]`` maps the bench data set's records
(``bench/dataset.py``, seed 1) with the product's mapping, builds the request bodies the sink sends
(``build_body``: 2,000 events or 1 MB, whichever comes first, as ``--batch-events``/``--batch-bytes``
default to), and compresses every body with zlib-ng at levels 1, 2 (the product's ``GZIP_LEVEL``), 3
and 6, and with the standard library's zlib at level 1 for reference. Per level it prints the CPU
microseconds per event and MB/s (best of ``--repeat`` passes over all bodies, process CPU time: the
sink compresses in a worker thread, on the other core), the compressed bytes per event and the ratio.
At Amplitude, what a body costs is its uncompressed size (the limits count it); gzip saves upload
bandwidth and the time a 1 MB body takes to leave.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from zlib_ng import zlib_ng

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from dataset import ensure  # noqa: E402

from consumer.settings import load  # noqa: E402
from consumer.sinks.amplitude import GZIP_LEVEL, build_body  # noqa: E402
from consumer.sources.storage.files import list_files, read_file  # noqa: E402
from consumer.transform.amplitude import AmplitudeMapper, Transformer  # noqa: E402
from consumer.transform.base import Skip  # noqa: E402

EVENTS_CAP, BYTES_CAP = 2000, 1_000_000 - 4096


def bodies(events: int) -> tuple[list[bytes], int]:
    """The request bodies of the data set's identifiable events, and how many events they hold."""
    data = ensure(BENCH / "out", 1, events).root
    mapper = AmplitudeMapper(Transformer(load(env={}).mapping))
    out: list[bytes] = []
    batch: list[bytes] = []
    size = total = 0
    for path in list_files([str(data)]):
        for record in read_file(path):
            event = mapper.transformer.transform(record.event_type, record.record)
            if isinstance(event, Skip):
                continue
            encoded = mapper.encode(event)
            if len(batch) == EVENTS_CAP or size + len(encoded) + 1 > BYTES_CAP:
                out.append(build_body("k" * 32, batch, 1))
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded) + 1
            total += 1
    if batch:
        out.append(build_body("k" * 32, batch, 1))
    return out, total


def ng(level: int) -> Callable[[bytes], bytes]:
    def gzip(body: bytes) -> bytes:
        compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
        return compressor.compress(body) + compressor.flush()

    return gzip


def stdlib(level: int) -> Callable[[bytes], bytes]:
    def gzip(body: bytes) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        return compressor.compress(body) + compressor.flush()

    return gzip


def main() -> None:
    p = argparse.ArgumentParser(prog="bench/micro_gzip.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    all_bodies, events = bodies(args.events)
    raw = sum(len(b) for b in all_bodies)
    print(f"{len(all_bodies)} bodies, {events:,} events, {raw / events:.0f} bytes per event uncompressed")
    print(f"{'compressor':<24}{'µs/event':>10}{'MB/s':>9}{'bytes/event':>13}{'ratio':>8}")
    rows = [(f"zlib-ng level {n}" + (" (today)" if n == GZIP_LEVEL else ""), ng(n)) for n in (1, 2, 3, 6)]
    for name, gzip in [*rows, ("stdlib zlib level 1", stdlib(1))]:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            packed = sum(len(gzip(body)) for body in all_bodies)
            best = min(best, time.process_time() - started)
        print(
            f"{name:<24}{best / events * 1e6:>10.2f}{raw / best / 1e6:>9.0f}"
            f"{packed / events:>13.1f}{raw / packed:>8.2f}"
        )


if __name__ == "__main__":
    main()
