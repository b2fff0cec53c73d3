"""The progress line's figures (``RunLoop.counts``): with several destinations, each has its own, so
no figure is a sum over destinations that exceeds what was read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumer.app.destinations import build_destinations, close_all
from consumer.app.loop import RunLoop
from consumer.ops.metrics import Metrics
from consumer.settings import Settings, load

CUSTOM = "users.behaviors.CustomEvent"


def _loop(tmp_path: Path, destinations: str) -> RunLoop:
    settings: Settings = load(
        env={
            "AMPLITUDE_API_KEY": "k",
            "MOVABLEINK_ENDPOINT": "http://127.0.0.1:9/mi",
            "MOVABLEINK_KEY": "m",
            "REMERGE_ENDPOINT": "http://127.0.0.1:9/remerge",
            "REMERGE_KEY": "r",
            "REMERGE_APP_IDS": "app=com.example",
            "CURRENTS_DESTINATIONS": destinations,
            "CURRENTS_DEAD_LETTER": str(tmp_path / "dl"),
        }
    )
    return RunLoop(build_destinations(settings), settings.dead_letter, Metrics(CollectorRegistry()))


async def test_one_destination_keeps_the_single_line(tmp_path: Path) -> None:
    loop = _loop(tmp_path, "amplitude")
    s = loop.pipeline.summary
    s.read[CUSTOM] += 10
    s.delivered("amplitude", Counter({CUSTOM: 8}))
    s.skip("amplitude", "no_identity", 2)
    try:
        assert loop.counts() == ("read 10 delivered 8 skipped 2 dead-lettered 0 pending 0 held-devices 0")
    finally:
        await close_all(loop.pipeline.destinations)


async def test_each_destination_has_its_own_figures(tmp_path: Path) -> None:
    loop = _loop(tmp_path, "amplitude,movableink,remerge")
    s = loop.pipeline.summary
    s.read[CUSTOM] += 10
    s.delivered("amplitude", Counter({CUSTOM: 8}))
    s.skip("amplitude", "no_identity", 2)
    s.delivered("movableink", Counter({CUSTOM: 1}))
    s.skip("movableink", "not_forwarded", 9)
    s.skip("remerge", "not_forwarded", 9)
    s.dead("remerge", "invalid", 1)
    try:
        assert loop.counts() == (
            "read 10 | amplitude: delivered 8 skipped 2 dead-lettered 0"
            " | movableink: delivered 1 skipped 9 dead-lettered 0"
            " | remerge: delivered 0 skipped 9 dead-lettered 1"
            " | pending 0 held-devices 0"
        )
    finally:
        await close_all(loop.pipeline.destinations)
