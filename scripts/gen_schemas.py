"""Regenerate ``consumer/decode/schemas/*.avsc`` from the Currents field listing in ``currents-events.md``.

The listing (``../shared/reference/currents-events.md``) was extracted from the writer schemas in
Braze's public sample files; each ``## <event type>`` heading is followed by a line of
backticked ``name:type`` items in schema order, ``?`` marking ``["null", T]`` with default null.

Usage: ``python scripts/gen_schemas.py [LISTING] [OUTDIR]``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADING = re.compile(r"^## ((?:users|agentconsole)\.[A-Za-z0-9_.]+)( \(removed\))?\s*$")
ITEM = re.compile(r"`([a-z_0-9]+):([a-z<>?]+)`")
PRIMITIVES = {"string", "int", "long", "float", "boolean", "double"}


def avro_type(spec: str) -> object:
    """Turn ``string?`` / ``array<string?>?`` into an Avro type."""
    optional = spec.endswith("?")
    core = spec[:-1] if optional else spec
    inner: object
    if core.startswith("array<") and core.endswith(">"):
        inner = {"type": "array", "items": avro_type(core[6:-1])}
    elif core in PRIMITIVES:
        inner = core
    else:
        raise ValueError(f"unknown type {spec!r}")
    return ["null", inner] if optional else inner


def parse(text: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Event type -> (doc, [(field, type spec)]) for every type in the listing."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = HEADING.match(line)
        if not m:
            continue
        event_type = m.group(1)
        doc = ""
        for follow in lines[i + 1 : i + 6]:
            if follow.startswith("_"):
                doc = follow.split("_")[1].strip()
            if follow.startswith("`"):
                out.setdefault(event_type, (doc, ITEM.findall(follow)))
                break
    return out


def schema(event_type: str, doc: str, fields: list[tuple[str, str]]) -> dict[str, object]:
    """The Avro record schema Braze uses for ``event_type``."""
    namespace, _, name = event_type.rpartition(".")
    avro_fields: list[dict[str, object]] = []
    for field, spec in fields:
        entry: dict[str, object] = {"name": field, "type": avro_type(spec)}
        if spec.endswith("?"):
            entry["default"] = None
        avro_fields.append(entry)
    return {
        "type": "record",
        "name": name,
        "namespace": f"dataexport.S3.inner.{namespace}",
        "doc": doc or event_type,
        "fields": avro_fields,
    }


def main() -> None:
    listing = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/currents-events.md")
    outdir = Path(sys.argv[2] if len(sys.argv) > 2 else "consumer/decode/schemas")
    outdir.mkdir(exist_ok=True)
    types = parse(listing.read_text(encoding="utf-8"))
    for event_type, (doc, fields) in sorted(types.items()):
        path = outdir / f"dataexport.S3.inner.{event_type}.avsc"
        path.write_text(json.dumps(schema(event_type, doc, fields), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(types)} schemas to {outdir}")


if __name__ == "__main__":
    main()
