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
from pathlib import Path
from typing import Any

import fastavro
from amplitude import Amplitude, BaseEvent, Config

from consumer.decode.schemas import event_type_of
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

# Amplitude event keys -> BaseEvent keyword arguments (the SDK spells productId in snake case).
_KWARG = {"productId": "product_id"}


def main(root: str, server_url: str) -> None:
    """Track every exportable event under ``root`` through the SDK, then shut it down."""
    codes: Counter[int] = Counter()

    def on_result(_event: Any, code: int, _message: str | None) -> None:
        codes[code] += 1

    client = Amplitude("bench-key", Config(server_url=server_url, min_id_length=1, callback=on_result))
    transformer = Transformer()
    read = tracked = skipped = 0
    for path in sorted(Path(root).rglob("*.avro")):
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            schema: Any = reader.writer_schema
            event_type = event_type_of(schema["name"])  # fastavro gives the full name
            for record in reader:
                read += 1
                event = transformer.transform(event_type, record)
                if isinstance(event, Skip):
                    skipped += 1
                    continue
                client.track(BaseEvent(**{_KWARG.get(k, k): v for k, v in event.items()}))
                tracked += 1
    client.shutdown()
    print(json.dumps({"read": read, "tracked": tracked, "skipped": skipped, "callback_codes": codes}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
