"""Tests for consumer.commands.redrive: dead-lettered events sent again, same ``insert_id``, nothing read twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from amplitude_harness import (
    MOVABLEINK_KEY,
    MOVABLEINK_PASSWORD,
    MOVABLEINK_USER,
    dead_letters,
    engine,
    event,
    insert_ids,
    movableink_bodies,
    partner_simulator,
    settings,
    simulator,
)
from prometheus_client import CollectorRegistry

from consumer.app.destinations import amplitude_destination, build_destinations, close_all
from consumer.commands.redrive import redrive
from consumer.events import Position
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterWriter
from consumer.settings import SettingsError
from consumer.sinks.amplitude import AmplitudeSink


async def test_expired_events_are_dead_lettered_then_redriven_with_the_same_ids(tmp_path: Path) -> None:
    events = [event(i, user=f"user-{i % 4}") for i in range(30)]
    async with simulator() as sim:
        down = settings(sim, tmp_path / "first", CURRENTS_RETRY_WINDOW="2s")
        sim.faults.down()
        async with engine(down) as e:
            await e.submit_all(events)
            assert await e.engine.drain(15)
            assert e.engine.pending == 0
            assert set(e.dead_lettered().values()) == {"retry_window_expired"}
            assert len(e.dead_lettered()) == 30
            assert sim.events == []
            records = e.records()
        assert sorted(r["event"]["insert_id"] for r in records) == sorted(ev["insert_id"] for ev in events)
        assert all(r["reason"] == "retry_window_expired" and "first_attempt" in r for r in records)

        sim.faults.up()
        again = settings(sim, tmp_path / "second")
        sink = AmplitudeSink(again.amplitude)
        summary = await redrive(
            [down.dead_letter], [amplitude_destination(again, sink)], again, Metrics(CollectorRegistry())
        )
        await sink.close()
        assert sum(summary.done.values()) == 30
        assert summary.dead_lettered == Counter()
        assert sorted(insert_ids(sim.events)) == sorted(ev["insert_id"] for ev in events)
        assert {e.event["insert_id"]: e.event for e in sim.events} == {ev["insert_id"]: ev for ev in events}
        assert dead_letters(again.dead_letter) == []


async def test_redrive_selects_reasons_and_reports_what_it_cannot_send(tmp_path: Path) -> None:
    source = tmp_path / "old"
    writer = DeadLetterWriter(source)
    for i in range(3):
        writer.write("retry_window_expired", Position("f.avro", -1, i), event=event(i), event_type="t")
    for i in range(3, 5):
        writer.write("invalid_field:time", Position("f.avro", -1, i), event=event(i, time="later"))
    writer.write("undecodable", Position("topic", 0, 9), raw=b"\x01junk")
    writer.write("unreadable_input", Position("g.avro", -1, 4), detail="truncated")
    writer.close()
    damaged = next(source.iterdir())
    damaged.write_bytes(damaged.read_bytes() + b"{half a line\n")  # a crash mid-write

    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        metrics = Metrics(CollectorRegistry())
        chosen = await redrive([str(source)], [amplitude_destination(s, sink)], s, metrics, ("retry_*",))
        assert sorted(insert_ids(sim.events)) == ["ev-000000", "ev-000001", "ev-000002"]
        assert chosen.skipped == Counter({"reason_not_selected": 4})
        assert len(chosen.unreadable) == 1, "a damaged line is reported whatever reasons are chosen"
        assert "not a JSON object" in chosen.unreadable[0]

        everything = await redrive([str(source)], [amplitude_destination(s, sink)], s, metrics)
        await sink.close()
        assert everything.skipped == Counter({"no_event": 2})  # raw input and unreadable files
        assert everything.dead_lettered == Counter({"invalid_field:time": 2})
        assert sim.stats.events_duplicate == 3  # the first three again: deduplicated by insert_id
    # the events that failed again are in the configured directory, in a new file; the input is intact
    again = dead_letters(s.dead_letter)
    assert sorted(r["event"]["insert_id"] for r in again) == ["ev-000003", "ev-000004"]
    assert {r["reason"] for r in again} == {"invalid_field:time"}
    assert len(dead_letters(source)) == 8


async def test_redrive_sends_each_record_to_the_destination_it_names(tmp_path: Path) -> None:
    source = tmp_path / "old"
    writer = DeadLetterWriter(source)
    track = {"type": "track", "event": "product_viewed", "timestamp": 1700000000000, "user_id": "u-1"}
    remerge = {
        "partner": "braze",
        "app_id": "com.example",
        "ts": 1700000000,
        "aaid": "a-1",
        "event": "x",
        "non_app_event": "true",
    }
    writer.write("retry_window_expired", Position("f.avro", -1, 0), event=event(0), event_type="t")
    writer.write("retry_window_expired", Position("f.avro", -1, 1), destination="movableink", event=track)
    writer.write("retry_window_expired", Position("f.avro", -1, 2), destination="remerge", event=remerge)
    writer.close()
    async with partner_simulator() as sim:
        s = settings(
            sim,
            tmp_path,
            CURRENTS_DESTINATIONS="amplitude,movableink",
            MOVABLEINK_ENDPOINT=sim.url,
            MOVABLEINK_KEY=MOVABLEINK_KEY,
            MOVABLEINK_USERNAME=MOVABLEINK_USER,
            MOVABLEINK_PASSWORD=MOVABLEINK_PASSWORD,
        )
        destinations = build_destinations(s)
        try:
            summary = await redrive([str(source)], destinations, s, Metrics(CollectorRegistry()))
        finally:
            await close_all(destinations)
        assert insert_ids(sim.events) == ["ev-000000"]
        assert movableink_bodies(sim) == [track]
        assert sim.remerge_events() == []
    assert summary.by_destination == Counter({"amplitude": 1, "movableink": 1})
    assert summary.skipped == Counter({"destination_not_enabled:remerge": 1})
    assert dead_letters(s.dead_letter) == []


def _dead_letter_file(directory: Path, records: list[tuple[str, dict[str, object] | None]]) -> Path:
    """One dead-letter file under ``directory`` holding ``records`` (reason, event or ``None`` for raw input)."""
    writer = DeadLetterWriter(directory)
    for i, (reason, ev) in enumerate(records):
        if ev is None:
            writer.write(reason, Position("topic", 0, i), raw=b"\x01junk")
        else:
            writer.write(reason, Position("f.avro", -1, i), event=ev, event_type="t")
    writer.close()
    (path,) = directory.iterdir()
    return path


async def test_redrive_move_to_moves_settled_files_so_a_second_redrive_sends_nothing_again(
    tmp_path: Path,
) -> None:
    old, done = tmp_path / "old", tmp_path / "done"
    sent = _dead_letter_file(old / "a", [("retry_window_expired", event(i)) for i in range(3)])
    # one record fails again: the file is moved, its failure is in the new dead-letter output
    failing = _dead_letter_file(
        old / "b", [("retry_window_expired", event(3)), ("invalid_field:time", event(4, time="later"))]
    )
    # raw input cannot be re-sent: the file stays, with the event beside it
    mixed = _dead_letter_file(old / "c", [("undecodable", None), ("retry_window_expired", event(5))])
    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        metrics = Metrics(CollectorRegistry())
        try:
            for _ in range(2):
                await redrive([str(old)], [amplitude_destination(s, sink)], s, metrics, move_to=str(done))
        finally:
            await sink.close()
    assert Counter(insert_ids(sim.events)) == Counter({f"ev-{i:06d}": 1 for i in (0, 1, 2, 3, 5)})
    assert sim.stats.events_duplicate == 1, "only the kept file's event (ev-000005) was sent twice"
    assert not sent.exists() and (done / "a" / sent.name).exists()
    assert not failing.exists() and (done / "b" / failing.name).exists()
    assert mixed.exists() and not (done / "c").exists()
    again = dead_letters(s.dead_letter)
    assert [r["event"]["insert_id"] for r in again] == ["ev-000004"], "dead-lettered again once, not twice"
    assert {r["reason"] for r in again} == {"invalid_field:time"}


async def test_redrive_refuses_a_move_to_inside_what_it_redrives(tmp_path: Path) -> None:
    old = tmp_path / "old"
    _dead_letter_file(old, [("retry_window_expired", event(0))])
    async with simulator() as sim:
        s = settings(sim, tmp_path)
        sink = AmplitudeSink(s.amplitude)
        try:
            with pytest.raises(SettingsError, match="inside"):
                await redrive(
                    [str(old)],
                    [amplitude_destination(s, sink)],
                    s,
                    Metrics(CollectorRegistry()),
                    move_to=str(old / "done"),
                )
        finally:
            await sink.close()
        assert sim.events == []
