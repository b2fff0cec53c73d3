"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.registry import LocalRegistry
from currents_devkit.simulator.server import AmplitudeSimulator, SimulatorConfig
from objectstore_harness import (
    GCS,
    S3,
    Azure,
    ObjectBucket,
    aws_env,
    azurite_server,
    gcs_server,
    new_azure_container,
    new_bucket,
    new_gcs_bucket,
    s3_server,
)
from replay_harness import kill_leftovers
from sim_harness import FakeClock, FakeSleep

B = TypeVar("B", bound=ObjectBucket)


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    """A test that stops early (a failure, a skip) between starting a ``currents-consumer`` child and
    stopping it leaves no process running (a follower never ends by itself)."""
    yield
    kill_leftovers()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A fresh, empty Tansu broker for one test (starts in ~40 ms); its log is ``tmp_path/tansu.log``."""
    async with EmbeddedBroker(log_path=tmp_path / "tansu.log") as started:
        yield started


@pytest.fixture
async def sim() -> AsyncIterator[AmplitudeSimulator]:
    """An Amplitude simulator on a free loopback port (strict 1-second rate window)."""
    simulator = AmplitudeSimulator(SimulatorConfig(rate_window_s=1.0, log_interval_s=3600))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def registry_url() -> AsyncIterator[str]:
    """A local schema registry serving schemas/; yields its base URL."""
    registry = LocalRegistry()
    url = await registry.start()
    try:
        yield url
    finally:
        await registry.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on loopback, one per test module."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket on that server, with the AWS environment pointing at it."""
    for name, value in aws_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    return new_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """gcp-storage-emulator on loopback, one per test session."""
    with gcs_server() as endpoint:
        yield endpoint


@pytest.fixture
def gcs(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> GCS:
    """A fresh bucket on that emulator, with ``STORAGE_EMULATOR_HOST`` pointing at it."""
    return _pointed_at(new_gcs_bucket(gcs_endpoint), monkeypatch)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on loopback, one per test session; yields its connection string."""
    with azurite_server(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture
def azure(azurite: str, monkeypatch: pytest.MonkeyPatch) -> Azure:
    """A fresh container on Azurite, with ``AZURE_STORAGE_CONNECTION_STRING`` naming its account."""
    return _pointed_at(new_azure_container(azurite), monkeypatch)


def _pointed_at(bucket: B, monkeypatch: pytest.MonkeyPatch) -> B:
    for name, value in bucket.env.items():
        monkeypatch.setenv(name, value)
    return bucket


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock (the simulator tests)."""
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    """A sleep that records instead of waiting (the simulator tests)."""
    return FakeSleep()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for one test (the simulator tests)."""
    async with httpx.AsyncClient(timeout=5) as c:
        yield c
