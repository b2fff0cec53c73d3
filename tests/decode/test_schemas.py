"""The shipped Avro schemas: every file loads, is named so fastavro resolves it, and matches the listing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastavro
import pytest

from consumer.decode.schemas import FULLNAME_PREFIX, event_types, parsed_schema, schema_dir
from consumer.transform.amplitude_tables import BRAZE_TYPES

ROOT = Path(__file__).resolve().parents[2]
LISTING = ROOT.parent / "shared" / "reference" / "currents-events.md"
FILES = sorted(schema_dir().glob("*.avsc"))


def test_every_current_and_retired_type_is_shipped() -> None:
    assert len(FILES) == 100  # 94 current types + 6 retired ones (News Feed, aborts)
    assert set(BRAZE_TYPES) <= set(event_types())
    for retired in ("users.messages.newsfeedcard.Impression", "users.behaviors.app.NewsFeedImpression"):
        assert retired in event_types()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_loads_and_is_named_by_its_full_name(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    full = f"{raw['namespace']}.{raw['name']}"
    assert full.startswith(FULLNAME_PREFIX)
    assert path.name == f"{full}.avsc"  # what fastavro.schema.load_schema resolves by name
    loaded = fastavro.schema.load_schema(str(path))
    assert isinstance(loaded, dict) and loaded["name"] == full
    names = [f["name"] for f in raw["fields"]]
    assert len(names) == len(set(names))
    for field in raw["fields"]:
        if isinstance(field["type"], list):  # every optional field is ["null", T] with default null
            assert field["type"][0] == "null" and len(field["type"]) == 2
            assert "default" in field and field["default"] is None
        else:
            assert "default" not in field
    assert {"id", "time"} <= set(names)
    parsed_schema(full[len(FULLNAME_PREFIX) :])


def test_schemas_match_the_reference_listing(tmp_path: Path) -> None:
    if not LISTING.exists():
        pytest.skip(f"reference listing not found at {LISTING}")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schemas.py"), str(LISTING), str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    generated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.avsc")}
    shipped = {p.name: p.read_text(encoding="utf-8") for p in FILES}
    assert generated == shipped
