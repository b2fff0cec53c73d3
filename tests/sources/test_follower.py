"""The Follower (consumer.sources.storage.follow) over a local directory: what a poll lists, a store
that fails and recovers (said once each way), and a schedule that dies on a bug (a Fault, not a stall)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from kafka_harness import eventually
from prometheus_client import CollectorRegistry

from consumer.ops.faults import Fault
from consumer.ops.metrics import Metrics
from consumer.positions.follow import FollowLedger
from consumer.positions.follow_state import FollowState
from consumer.sources.storage.follow import Follower
from consumer.sources.storage.follow_listing import date_segment
from consumer.sources.storage.selection import Selection
from consumer.sources.storage.store import LocalStore, StoredObject, StoreError
from consumer.sources.storage.stores import Stores


def tree(root: Path, hours_ago: list[int]) -> dict[int, Path]:
    """One file per hour in ``hours_ago`` (0: the current hour), under an event_type= folder."""
    files = {}
    for ago in hours_ago:
        hour = int((time.time() - ago * 3600) // 3600 * 3600)
        path = root / "conn" / "event_type=X" / date_segment(hour) / "v1" / f"f{ago}.avro"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        files[ago] = path
    return files


def follower(root: Path, metrics: Metrics, *, stores: Stores | None = None, swept: bool = True) -> Follower:
    state = FollowState((str(root),), margin=0)
    if swept:
        state.swept_at = time.time()  # a sweep just completed: only polls run
    ledger = FollowLedger(state, None, metrics)
    return Follower(
        [str(root)], Selection(), ledger, metrics, poll_interval=0.05, sweep_interval=3600,
        late_window=3600, stores=stores,
    )  # fmt: skip


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_poll_lists_the_live_hours_folders_and_never_the_history(tmp_path: Path) -> None:
    files = tree(tmp_path, [0, 1, 5, 30])
    metrics = Metrics(CollectorRegistry())
    feed = follower(tmp_path, metrics)
    try:
        got = {(await asyncio.wait_for(feed.get(), 10)).url for _ in range(2)}  # type: ignore[union-attr]
        assert got == {str(files[0]), str(files[1])}  # this hour, and the last one within --late-window
        await eventually(
            lambda: sample(metrics, "currents_follow_listings_total", listing="poll", outcome="ok") >= 3,
            message="three polls",
        )
        polls = sample(metrics, "currents_follow_listings_total", listing="poll", outcome="ok")
        flat = sample(metrics, "currents_follow_listed_keys_total", kind="flat")
        assert flat <= 2 * (polls + 1)  # the two live files at most, each poll; never the old hours'
        assert feed.queued == 0  # what the polls find again is neither queued nor handed out again
    finally:
        feed.cancel()


class Failing(LocalStore):
    """A local store whose listings fail while ``down``."""

    def __init__(self) -> None:
        self.down = True

    def list_level(self, path: str, within: float | None = None) -> tuple[list[str], list[StoredObject]]:
        if self.down:
            raise StoreError(f"cannot list {path}: Connection refused")
        return super().list_level(path, within)


class OneStore(Stores):
    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def get(self, root: str) -> Any:
        return self.store


async def outage(
    tmp_path: Path, store: Failing, caplog: pytest.LogCaptureFixture, failed_polls: int
) -> tuple[list[str], list[str]]:
    """A follower of ``tmp_path`` over ``store``, down for ``failed_polls`` failed polls and then up; the
    file landed meanwhile is delivered. Returns the 'listing failed' and the 'works again' lines."""
    files = tree(tmp_path, [0])
    metrics = Metrics(CollectorRegistry())
    feed = follower(tmp_path, metrics, stores=OneStore(store))
    caplog.set_level(logging.INFO, logger="currents.follow")
    try:
        feed.get_nowait()  # starts the schedule
        await eventually(
            lambda: (
                sample(metrics, "currents_follow_listings_total", listing="poll", outcome="failed")
                >= failed_polls
            ),
            message=f"{failed_polls} failed polls",
        )
        store.down = False
        assert (await asyncio.wait_for(feed.get(), 10)).url == str(files[0])  # type: ignore[union-attr]
    finally:
        feed.cancel()
    messages = [r.getMessage() for r in caplog.records]
    return [m for m in messages if "listing failed" in m], [m for m in messages if "works again" in m]


async def test_a_store_that_fails_is_said_once_retried_and_its_recovery_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failed, again = await outage(tmp_path, Failing(), caplog, failed_polls=3)
    assert len(failed) == 1 and "Connection refused" in failed[0]
    assert len(again) == 1


class Flapping(Failing):
    """A store whose failing listings give two reasons in turn (as a poll's quick refusal and a sweep's
    listing outlasting its bound do during one outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def list_level(self, path: str, within: float | None = None) -> tuple[list[str], list[StoredObject]]:
        self.calls += 1
        if self.down and self.calls % 2:
            raise StoreError(f"cannot list {path}: no answer within 10s")
        return super().list_level(path, within)


async def test_an_outage_whose_reasons_alternate_says_each_reason_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failed, again = await outage(tmp_path, Flapping(), caplog, failed_polls=6)
    assert len(failed) == 2, failed
    assert any("no answer within 10s" in m for m in failed) and any("Connection refused" in m for m in failed)
    assert all(m.endswith("retrying with back-off up to 0.05s") for m in failed), failed
    assert len(again) == 1


async def test_a_schedule_that_dies_on_a_bug_is_a_fault_for_the_reader(tmp_path: Path) -> None:
    tree(tmp_path, [0])
    feed = follower(tmp_path, Metrics(CollectorRegistry()))

    def broken(obj: StoredObject, swept: bool) -> bool:
        raise RuntimeError("a bug in the ledger")

    feed.ledger.offer = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(Fault, match="the follower stopped: RuntimeError: a bug in the ledger"):
            await asyncio.wait_for(feed.get(), 10)
    finally:
        feed.cancel()
