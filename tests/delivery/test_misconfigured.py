"""A destination configured wrong is answered, never absorbed: ``replay`` against the real simulator over
HTTP with a URL missing ``/2/httpapi`` and with a wrong API key.

The events are held (retried within their window, nothing dead-lettered while it is open), the log
says so once per change of state (naming the URL, never the key), the gauge an alert watches is set,
and when a short window runs out every dead-letter record says what the destination last answered.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import httpx
import pytest
from amplitude_harness import KEY, dead_letters, eventually, simulator
from currents_devkit.simulator.server import AmplitudeSimulator
from currents_devkit.synth import Synth, write_currents_tree
from objectstore_harness import free_port
from replay_harness import last_json, replay_argv, running

EVENTS = 600


def replay_args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    """``replay`` of ``tmp_path/in`` to ``url`` in requests of 20 events (many requests, so a line per
    request would show), with short waits."""
    return replay_argv(
        url, tmp_path,
        "--batch-events", "20", "--batch-age", "20ms", "--max-backoff", "200ms", "--log-format", "json", *extra,
        state="",
    )  # fmt: skip


def lines_with(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_currents_tree(tmp_path / "in", Synth(5, devices=300), EVENTS, codecs=("null",))
    return tmp_path / "in"


async def scrape(client: httpx.AsyncClient, port: int) -> str:
    with contextlib.suppress(httpx.HTTPError):
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return ""


def requests_with_status(metrics: str, status: int) -> float:
    prefix = f'currents_requests_total{{destination="amplitude",status="{status}"}} '
    return sum(float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix))


async def test_a_url_without_the_api_path_holds_the_events_and_says_so_once(
    tmp_path: Path, tree: Path
) -> None:
    """Many requests answered 404: no event dead-lettered while the window is open, one error line
    naming the URL (not one per request), the misconfiguration gauge set; interrupted, nothing is lost."""
    port = free_port()
    async with simulator() as sim, httpx.AsyncClient() as client:
        wrong = sim.url  # what a user types: the host, without /2/httpapi
        args = replay_args(
            tmp_path, wrong, "--retry-window", "10m", "--metrics-port", str(port), "--grace", "1"
        )
        async with running(args, {"AMPLITUDE_API_KEY": KEY}, tmp_path) as command:
            metrics = ""

            async def many_refused() -> bool:
                nonlocal metrics
                metrics = await scrape(client, port)
                return requests_with_status(metrics, 404) >= 10

            await eventually(many_refused, within=60, message="ten requests answered 404")
            gauge = 'currents_destination_misconfigured{destination="amplitude",reason="http_404"} 1.0'
            assert gauge in metrics
            command.proc.send_signal(signal.SIGTERM)
            code, _, stderr = await command.finish()
    assert code == 130, stderr
    summary = last_json(stderr)
    assert summary["delivered"] == 0
    assert summary["dead_lettered"] == {}, "events were dead-lettered for a wrong URL"
    assert dead_letters(tmp_path / "dead-letter") == []
    (error,) = lines_with(stderr, "answered http_404")
    assert '"level":"error"' in error
    assert f"amplitude endpoint {wrong} answered http_404" in error
    assert len(lines_with(stderr, "amplitude failing (")) == 1, "a warning per request"
    assert KEY not in stderr


async def _expire(tmp_path: Path, sim: AmplitudeSimulator, url: str, key: str) -> tuple[int, str]:
    args = replay_args(tmp_path, url, "--retry-window", "2s")
    async with running(args, {"AMPLITUDE_API_KEY": key}, tmp_path) as command:
        code, _, stderr = await command.finish()
    return code, stderr


@pytest.mark.parametrize(
    ("case", "answer", "status", "state_line"),
    [
        ("wrong path", "http_404", 404, "answered http_404"),
        ("wrong key", "invalid_api_key", 400, "amplitude refuses our credentials"),
    ],
)
async def test_when_a_short_window_runs_out_the_records_say_what_the_destination_answered(
    tmp_path: Path, tree: Path, case: str, answer: str, status: int, state_line: str
) -> None:
    async with simulator(api_keys=frozenset({KEY})) as sim:
        url = sim.url + "/2/http" if case == "wrong path" else sim.http_v2_url
        key = KEY if case == "wrong path" else "not-the-key-0b1c"
        code, stderr = await _expire(tmp_path, sim, url, key)
        assert sim.stats.events_ingested == 0
    assert code == 3, stderr  # finished, some events dead-lettered
    records = dead_letters(tmp_path / "dead-letter")
    summary = last_json(stderr)
    assert summary["dead_lettered"].keys() == {"retry_window_expired"}
    assert len(records) == sum(summary["dead_lettered"].values()) > 0
    assert {r["reason"] for r in records} == {"retry_window_expired"}  # what redrive --reason filters on
    assert {(r["last_answer"], r["last_status"]) for r in records} == {(answer, status)}
    assert len(lines_with(stderr, state_line)) == 1
    assert key not in stderr
