"""The naive alternative: fastavro + Amplitude's official Python SDK, one ``track()`` per event.

``python bench/sdk_naive.py DIR SERVER_URL`` reads every ``*.avro`` file under ``DIR`` with
``fastavro.reader``, builds each event with the product's own
:class:`consumer.transform.amplitude.Transformer`
(so the SDK sends exactly the fields replay sends, and skips exactly what replay skips), and calls
``client.track(BaseEvent(...))``; at the end ``client.shutdown()`` flushes and waits. It prints
``{"read", "tracked", "skipped", "callback_codes"}`` on stdout, where ``callback_codes`` counts the
status the SDK reported per event (200 = sent; anything else = the SDK gave up on that event).

SDK settings are its defaults (200 events per request, 10 s flush interval, 12 retries, 16 sender
threads, no gzip), except ``server_url`` (the simulator) and ``min_id_length=1``, which replay also
sends: without it Amplitude's default of 5 refuses Braze's short external ids, and the two rows
would not deliver the same events.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
from amplitude import Amplitude, BaseEvent, Config

from consumer.decode.schemas import event_type_of
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

# Amplitude event keys -> BaseEvent keyword arguments (the SDK spells productId in snake case).
_KWARG = {"productId": "product_id"}


class Tally:
    """What a peer script prints: records read, events tracked and skipped, and the status the SDK
    reported per event (``on_result`` is the SDK's callback)."""

    def __init__(self) -> None:
        self.read = self.tracked = self.skipped = 0
        self.codes: Counter[int] = Counter()

    def on_result(self, _event: Any, code: int, _message: str | None) -> None:
        self.codes[code] += 1

    def print(self) -> None:
        out = {"read": self.read, "tracked": self.tracked, "skipped": self.skipped}
        print(json.dumps(out | {"callback_codes": self.codes}))


def avro_files(root: str) -> Iterator[tuple[str, Iterator[Any]]]:
    """Every ``*.avro`` file under ``root``, in order: its Currents event type and its records."""
    for path in sorted(Path(root).rglob("*.avro")):
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            schema: Any = reader.writer_schema
            yield event_type_of(schema["name"]), reader  # fastavro gives the full name


def main(root: str, server_url: str) -> None:
    """Track every exportable event under ``root`` through the SDK, then shut it down."""
    tally = Tally()
    client = Amplitude("bench-key", Config(server_url=server_url, min_id_length=1, callback=tally.on_result))
    transformer = Transformer()
    for event_type, records in avro_files(root):
        for record in records:
            tally.read += 1
            event = transformer.transform(event_type, record)
            if isinstance(event, Skip):
                tally.skipped += 1
                continue
            client.track(BaseEvent(**{_KWARG.get(k, k): v for k, v in event.items()}))
            tally.tracked += 1
    client.shutdown()
    tally.print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
