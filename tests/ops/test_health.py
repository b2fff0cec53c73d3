"""The probe and metrics server (consumer.ops.health) over a real socket: routes, status codes, content
types, the liveness rule, the readiness callable, the scrape hook and a clean stop."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.health import Health
from consumer.ops.metrics import EXPOSITION_CONTENT_TYPE, Metrics


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def served(clock: Clock) -> AsyncIterator[tuple[Health, httpx.AsyncClient, dict[str, int]]]:
    state = {"ready": False, "scrapes": 0}

    def on_scrape() -> None:
        state["scrapes"] += 1

    health = Health(
        Metrics(CollectorRegistry()), ready=lambda: bool(state["ready"]), clock=clock, on_scrape=on_scrape
    )
    port = await health.start(0, host="127.0.0.1")
    assert port > 0 and health.server is not None and health.server.port == port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield health, client, state
    await health.stop()


async def test_metrics_serve_the_registry_in_prometheus_text_format(
    served: tuple[Health, httpx.AsyncClient, dict[str, int]],
) -> None:
    health, client, state = served
    health.metrics.count(health.metrics.read, "users.behaviors.CustomEvent", 3)
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == EXPOSITION_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert samples[("currents_events_read_total", (("event_type", "users.behaviors.CustomEvent"),))] == 3
    assert state["scrapes"] == 1  # the hook runs before every scrape
    await client.get("/metrics")
    assert state["scrapes"] == 2


async def test_livez_fails_once_the_beat_is_stale_and_recovers_on_the_next_beat(
    served: tuple[Health, httpx.AsyncClient, dict[str, int]], clock: Clock
) -> None:
    health, client, _ = served
    r = await client.get("/livez")
    assert (r.status_code, r.json()) == (200, {"alive": True})
    assert r.headers["content-type"] == "application/json"
    clock.now += 119.0
    assert (await client.get("/livez")).status_code == 200
    clock.now += 1.0  # 120 s without a beat: stalled
    r = await client.get("/livez")
    assert (r.status_code, r.json()) == (503, {"alive": False})
    health.beat()
    assert (await client.get("/livez")).status_code == 200


async def test_readyz_follows_the_callable(served: tuple[Health, httpx.AsyncClient, dict[str, int]]) -> None:
    _, client, state = served
    r = await client.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"ready": False})
    state["ready"] = True
    r = await client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True})


async def test_any_method_on_the_probes_and_a_json_404_elsewhere(
    served: tuple[Health, httpx.AsyncClient, dict[str, int]],
) -> None:
    _, client, _ = served
    assert (await client.head("/livez")).status_code == 200
    assert (await client.post("/livez")).status_code == 200
    assert (await client.get("/livez?verbose=1")).status_code == 200
    r = await client.get("/nope")
    assert (r.status_code, r.json()) == (404, {"error": "not found"})
    assert r.headers["content-type"] == "application/json"


async def test_stop_releases_the_port_and_leaves_nothing_to_warn_about() -> None:
    health = Health(Metrics(CollectorRegistry()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aiohttp warns about runners that were never cleaned up
        port = await health.start(0, host="127.0.0.1")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/livez")).status_code == 200
            await health.stop()
            await health.stop()  # idempotent
            assert health.server is None
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/livez")
        gc.collect()
