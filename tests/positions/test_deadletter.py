"""Tests for consumer.positions.deadletter: JSON lines with reason, time, position and the event or raw input."""

from __future__ import annotations

import base64
import calendar
import re
import time
from pathlib import Path

import pytest

from consumer.events import Position
from consumer.positions.deadletter import (
    DeadLetterTopic,
    DeadLetterWriter,
    device_key,
    open_dead_letters,
    read_dead_letters,
)
from consumer.settings import SettingsError, load


def test_records_carry_reason_time_position_and_the_event(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path / "dl")
    ev = {"event_type": "[Appboy] Purchase", "insert_id": "abc-1", "device_id": "dev-1", "time": "bad"}
    writer.write(
        "invalid_field:time",
        Position("in/file.avro", -1, 7),
        event=ev,
        event_type="users.behaviors.Purchase",
        detail="as Amplitude said",
        first_attempt=1_700_000_000.0,
    )
    writer.write(
        "undecodable", Position("currents.events", 3, 1234), raw=b"\x00\xffnot avro", detail="bad magic"
    )
    writer.close()
    assert writer.count == 2
    (path,) = (tmp_path / "dl").iterdir()
    assert re.fullmatch(r"dead-letter-\d{8}T\d{2}-.+-\d+\.jsonl", path.name)
    records = [r for _, _, r in read_dead_letters([str(tmp_path / "dl")])]
    first, second = records
    assert first["reason"] == "invalid_field:time"
    assert first["event"] == ev
    assert first["position"] == {"file": "in/file.avro", "record": 7}
    assert first["event_type"] == "users.behaviors.Purchase"
    assert first["detail"] == "as Amplitude said"
    assert first["first_attempt"] == "2023-11-14T22:13:20Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["time"])
    written = calendar.timegm(time.strptime(first["time"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(written - time.time()) < 120
    assert second["position"] == {"topic": "currents.events", "partition": 3, "offset": 1234}
    assert base64.b64decode(second["raw"]) == b"\x00\xffnot avro"
    assert "event" not in second


def test_sync_makes_records_readable_before_close(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path)
    writer.write("daily_quota", Position("f", -1, 0), event={"event_type": "x", "insert_id": "1"})
    writer.sync()
    assert [r["reason"] for _, _, r in read_dead_letters([str(tmp_path)])] == ["daily_quota"]
    writer.close()
    writer.close()  # idempotent


def test_reading_reports_lines_that_are_not_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_bytes(b'{"reason": "a"}\n\nnot json\n[1, 2]\n{"reason": "b"}\n')
    records = list(read_dead_letters([str(path)]))
    assert [(n, r.get("reason")) for _, n, r in records] == [(1, "a"), (3, None), (4, None), (5, "b")]
    assert records[1][2] == {"unparseable": "not json\n"}


def test_reading_a_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        list(read_dead_letters([str(tmp_path / "nope")]))


def test_nothing_written_means_no_file(tmp_path: Path) -> None:
    writer = DeadLetterWriter(tmp_path / "dl")
    writer.close()
    assert not (tmp_path / "dl").exists()


def test_a_topic_record_is_keyed_by_device_then_user_and_raw_input_has_no_key() -> None:
    assert device_key({"event": {"device_id": "dev-1", "user_id": "u-1"}}) == b"dev-1"
    assert device_key({"event": {"device_id": None, "user_id": "u-1"}}) == b"u-1"
    assert device_key({"event": {"device_id": "", "user_id": ""}}) is None
    assert device_key({"raw": "AAE="}) is None


def test_dead_letter_option_names_a_directory_or_a_topic(tmp_path: Path) -> None:
    kafka = load(None, env={}).kafka
    assert isinstance(open_dead_letters(str(tmp_path / "dl"), kafka), DeadLetterWriter)
    topic = open_dead_letters("kafka://currents-dl", kafka)
    assert isinstance(topic, DeadLetterTopic) and topic.topic == "currents-dl"
    assert not list(tmp_path.iterdir()), "nothing is created before a record is written"
    with pytest.raises(SettingsError, match="writes dead letters to a directory"):
        open_dead_letters("kafka://currents-dl", None)
    for bad in ("kafka://", "kafka://a b", "kafka://..", "kafka://" + "x" * 250):
        with pytest.raises(SettingsError, match="kafka://TOPIC takes a Kafka topic name"):
            load(None, env={"CURRENTS_DEAD_LETTER": bad})
