"""The floor: plain fastavro decoding of every file under a directory, nothing else.

``python bench/floor.py DIR`` opens each ``*.avro`` file (sorted, recursive) and runs
``for r in fastavro.reader(f): pass``, then prints ``{"records": N}`` on stdout. No product code is
imported, so this is the least any Python reader of these files can spend: every other row pays
this plus its own work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fastavro


def main(root: str) -> None:
    """Decode every record under ``root``; print how many there were."""
    records = 0
    for path in sorted(Path(root).rglob("*.avro")):
        with path.open("rb") as f:
            for _ in fastavro.reader(f):
                records += 1
    print(json.dumps({"records": records}))


if __name__ == "__main__":
    main(sys.argv[1])
