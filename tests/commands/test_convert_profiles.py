"""`currents-consumer convert --mapping-profile glossary` end to end, in a subprocess.

One Avro container file per glossary type (a record with every field filled) is converted by the
command; each printed event must have exactly the glossary's keys. The ``seed`` profile (the default)
converts the same files as before, as the in-process transformer does.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from currents_devkit.synth import write_container
from glossary_harness import expected_keys, expected_name, exported_types, full_record
from replay_harness import last_json, start

from consumer.settings import MappingConfig
from consumer.transform.amplitude import Transformer


def write_inputs(root: Path) -> dict[str, str]:
    """One file per glossary type; returns insert_id -> event type."""
    types = {}
    for n, event_type in enumerate(exported_types()):
        rec = {**full_record(event_type), "id": f"evt-{n}"}
        write_container(root / f"{event_type}.avro", event_type, [rec])
        types[rec["id"]] = event_type
    return types


async def test_convert_with_the_glossary_profile_gives_the_glossary_keys_for_every_type(
    tmp_path: Path,
) -> None:
    types = write_inputs(tmp_path / "in")
    command = await start(
        ["convert", str(tmp_path / "in"), "--mapping-profile", "glossary", "--summary-json"], {}, tmp_path
    )
    code, stdout, stderr = await command.finish(within=120)
    assert code == 0, stderr
    events = [orjson.loads(line) for line in stdout.splitlines()]
    assert sorted(e["insert_id"] for e in events) == sorted(types)
    assert len(events) == 80
    for event in events:
        event_type = types[event["insert_id"]]
        want = expected_keys(event_type)
        assert sorted(event) == sorted(want.top_level), event_type
        assert sorted(event["event_properties"]) == sorted(want.properties), event_type
        if event_type != "users.behaviors.CustomEvent":
            assert event["event_type"] == expected_name(event_type)
    assert last_json(stderr)["read"] == 80


async def test_convert_by_default_is_the_seed_profile(tmp_path: Path) -> None:
    types = write_inputs(tmp_path / "in")
    command = await start(["convert", str(tmp_path / "in")], {"CURRENTS_PROPERTIES": "all"}, tmp_path)
    code, stdout, stderr = await command.finish(within=120)
    assert code == 0, stderr
    printed = {orjson.loads(line)["insert_id"]: line for line in stdout.splitlines()}
    seed = Transformer(MappingConfig(properties="all"))
    for n, event_type in enumerate(exported_types()):
        event = seed.transform(event_type, {**full_record(event_type), "id": f"evt-{n}"})
        if isinstance(event, dict):
            assert orjson.loads(printed.pop(event["insert_id"])) == event
    assert printed == {}
    assert len(types) == 80
