"""Tests for consumer.ops.summary: run totals kept as before, each destination's counts apart."""

from __future__ import annotations

from collections import Counter

from consumer.ops.summary import Summary


def _fanout() -> Summary:
    s = Summary.of(["amplitude", "movableink", "remerge"])
    s.read.update({"t": 10})
    s.delivered("amplitude", Counter({"t": 8}))
    s.skip("amplitude", "no_identity", 2)
    s.delivered("movableink", Counter({"t": 1}))
    s.skip("movableink", "not_forwarded", 9)
    s.skip("remerge", "not_forwarded", 9)
    s.dead("remerge", "invalid", 1)
    s.dead_input("undecodable", 3)
    return s


def test_each_destination_keeps_its_own_counts_and_the_totals_keys_stay() -> None:
    d = _fanout().as_dict()
    assert d["read"] == 10 and d["delivered"] == 8
    assert d["skipped"] == {"no_identity": 2, "movableink:not_forwarded": 9, "remerge:not_forwarded": 9}
    assert d["dead_lettered"] == {"remerge:invalid": 1, "undecodable": 3}
    assert d["delivered_by_destination"] == {
        "amplitude": 8,
        "movableink": 1,
    }
    assert d["destinations"] == {
        "amplitude": {"delivered": 8, "skipped": {"no_identity": 2}, "dead_lettered": {}},
        "movableink": {"delivered": 1, "skipped": {"not_forwarded": 9}, "dead_lettered": {}},
        "remerge": {"delivered": 0, "skipped": {"not_forwarded": 9}, "dead_lettered": {"invalid": 1}},
    }
    assert d["before_destinations"] == {"skipped": {}, "dead_lettered": {"undecodable": 3}}
    for counts in d["destinations"].values():
        assert sum(counts["skipped"].values()) <= d["read"]


def test_the_text_summary_shows_one_line_per_destination_and_no_sum_of_their_skips() -> None:
    text = _fanout().render()
    assert text.splitlines()[:5] == [
        "read 10; per destination:",
        "  amplitude               delivered 8, skipped 2 (no_identity 2), dead-lettered 0",
        "  movableink              delivered 1, skipped 9 (not_forwarded 9), dead-lettered 0",
        "  remerge                 delivered 0, skipped 9 (not_forwarded 9), dead-lettered 1 (invalid 1)",
        "  before any destination  dead-lettered 3 (undecodable 3)",
    ]
    assert "skipped 20" not in text


def test_one_destination_keeps_the_one_line_of_totals() -> None:
    s = Summary.of(["amplitude"])
    s.read.update({"t": 3})
    s.delivered("amplitude", Counter({"t": 2}))
    s.skip("amplitude", "no_identity")
    assert s.render().splitlines()[0] == "read 3, delivered 2, skipped 1, dead-lettered 0"
    assert s.as_dict()["destinations"] == {
        "amplitude": {"delivered": 2, "skipped": {"no_identity": 1}, "dead_lettered": {}}
    }
    assert "destinations" not in Summary(done_label="converted").as_dict(), "convert delivers nowhere"
