"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumer.broker import EmbeddedBroker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A fresh, empty Tansu broker for one test (starts in ~40 ms); its log is ``tmp_path/tansu.log``."""
    async with EmbeddedBroker(log_path=tmp_path / "tansu.log") as started:
        yield started
