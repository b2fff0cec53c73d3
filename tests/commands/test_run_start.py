"""``run`` starting against inputs a new user gets wrong: a broker that is not there (one line per
attempt, with its cause; no aiokafka echo), a broker that never answers (a stop still ends it at once),
a run that ends before Kafka is reached (no unclosed consumer), and a schema registry URL that does not
resolve or is refused (named at start-up, password masked, retried like Kafka, the group not joined).
The daemon is a child process with ResourceWarnings as errors, so an unclosed consumer is a Traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from daemon_harness import TOPIC, daemon_env, kill_started_daemons, start_daemon_process
from kafka_harness import eventually

from consumer.sources.kafka.logs import RepeatSuppressor

UNCLEAN = ("Unclosed", "Exception ignored", "Traceback", "Task was destroyed")


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def messages(log: Path, containing: str) -> list[str]:
    """The ``msg`` of every JSON log line of ``log`` whose text contains ``containing``."""
    return [json.loads(line)["msg"] for line in log.read_text().splitlines() if containing in line]


def no_broker_env(sim: AmplitudeSimulator, tmp_path: Path, bootstrap: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPICS": TOPIC,
        "AMPLITUDE_API_KEY": "it-secret-key-123",
        "AMPLITUDE_URL": sim.http_v2_url,
        "CURRENTS_DEAD_LETTER": str(tmp_path / "dead-letter"),
        "CURRENTS_LOG_FORMAT": "json",
        "CURRENTS_METRICS_PORT": "0",
    }


async def stopped(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, then the exit code (a daemon that does not exit within 20 s hangs: the test fails)."""
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 20)


async def test_an_unreachable_broker_is_one_line_per_attempt_and_closes_cleanly(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    log = tmp_path / "daemon.log"
    proc = await start_daemon_process(no_broker_env(sim, tmp_path, bootstrap), log)
    await eventually(lambda: len(messages(log, "cannot reach Kafka")) >= 3, within=30, message="3 attempts")
    assert await stopped(proc) == 0
    ours = messages(log, "cannot reach Kafka")
    assert ours[:3] == [
        f"cannot reach Kafka at {bootstrap}: Connection refused; retrying in {wait}s" for wait in (1, 2, 4)
    ]
    assert messages(log, "Unable connect to") == [], "aiokafka's line repeats ours"
    text = log.read_text()
    assert not [word for word in UNCLEAN if word in text], text


async def test_a_stop_while_the_broker_accepts_and_never_answers_ends_the_attempt(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answers; aiokafka waits for its request timeout (40 s)
        accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        log = tmp_path / "daemon.log"
        proc = await start_daemon_process(no_broker_env(sim, tmp_path, f"127.0.0.1:{port}"), log)
        await asyncio.wait_for(accepted.wait(), 30)
        assert await stopped(proc) == 0
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    text = log.read_text()
    assert not [word for word in UNCLEAN if word in text], text
    assert "cannot reach Kafka" not in text, "a stop is not a failure to connect"


async def test_a_run_that_ends_before_kafka_leaves_no_unclosed_consumer(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = {
            **no_broker_env(sim, tmp_path, f"127.0.0.1:{closed_port()}"),
            "CURRENTS_METRICS_PORT": str(taken.getsockname()[1]),
        }
        log = tmp_path / "daemon.log"
        proc = await start_daemon_process(env, log)
        assert await asyncio.wait_for(proc.wait(), 30) == 4
    text = log.read_text()
    assert "stopped: cannot serve metrics and probes on port" in text
    assert not [word for word in UNCLEAN if word in text], text


@pytest.mark.parametrize("where", ["unresolvable", "refused"])
async def test_a_registry_that_cannot_be_reached_is_named_at_start_and_the_group_is_not_joined(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path, where: str
) -> None:
    await broker.create_topic(TOPIC, 1)
    host, reason = (
        ("no-such-host.invalid:8081", "the name no-such-host.invalid does not resolve")
        if where == "unresolvable"
        else (f"127.0.0.1:{closed_port()}", "Connection refused")
    )
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "SCHEMA_REGISTRY_URL": f"http://reader:registry-pw-5e1@{host}",
        "CURRENTS_METRICS_PORT": "0",
    }
    log = tmp_path / "daemon.log"
    proc = await start_daemon_process(env, log)
    await eventually(lambda: len(messages(log, "schema registry")) >= 2, within=30, message="2 attempts")
    assert proc.returncode is None, "an unreachable registry is waited for, as Kafka is"
    assert await stopped(proc) == 0
    assert messages(log, "schema registry")[:2] == [
        f"schema registry unreachable at http://reader:***@{host}: {reason}; retrying in {wait}s"
        for wait in (1, 2)
    ]
    text = log.read_text()
    assert "registry-pw-5e1" not in text
    assert "assigned" not in text, "a member waiting for the registry must not hold partitions"
    assert not [word for word in UNCLEAN if word in text], text


def test_while_connecting_aiokafkas_bootstrap_lines_are_dropped_and_nothing_else() -> None:
    quiet = RepeatSuppressor(interval=30.0, clock=lambda: 0.0)

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, None)

    bootstrap = record('Unable connect to "%s:%s": %s', "127.0.0.1", 1, "refused")
    metadata = record('Unable to request metadata from "%s:%s": %s', "127.0.0.1", 1, "timeout")
    other = record("Topic %s is not authorized for this client", "currents")
    with quiet.connecting():
        assert [quiet.filter(r) for r in (bootstrap, metadata, other)] == [False, False, True]
    assert quiet.filter(bootstrap), "once connected, a lost broker is aiokafka's to report"


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (404, "text/html", b"<html><body><h1>404 Not Found</h1></body></html>"),
        (200, "text/html; charset=utf-8", b"<!doctype html><title>Kafka UI</title>"),
        (404, "application/json", b'{"message": "no route"}'),
    ],
)
async def test_a_url_that_answers_but_is_no_registry_stops_the_daemon_before_it_joins(
    broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path,
    status: int, content_type: str, body: bytes,
) -> None:  # fmt: skip
    """Named at once, in one line (its URL, the password masked, and what it answered), exit 2 (a
    configuration error: nothing was read): not a crash at the first message after joining the group,
    which in Kubernetes is a restart loop rebalancing the whole group each time."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await broker.create_topic(TOPIC, 1)
        env = {
            **daemon_env(broker, sim, registry_url, tmp_path),
            "SCHEMA_REGISTRY_URL": f"http://reader:registry-pw-5e1@127.0.0.1:{port}/",
            "CURRENTS_METRICS_PORT": "0",
        }
        log = tmp_path / "daemon.log"
        proc = await start_daemon_process(env, log)
        assert await asyncio.wait_for(proc.wait(), 30) == 2
    finally:
        await runner.cleanup()
    text = log.read_text()
    kind = content_type.split(";")[0]
    line = (
        f"schema registry http://reader:***@127.0.0.1:{port}/subjects answered HTTP {status} ({kind}): "
        "not a schema registry's answer; is --schema-registry-url the registry's base URL?"
    )
    said = [ln for ln in text.splitlines() if "schema registry" in ln]
    assert said == [f"currents-consumer: configuration error: {line}"], text
    assert "registry-pw-5e1" not in text
    assert "assigned" not in text and "joined" not in text, "the group must not be joined"
    assert not [word for word in UNCLEAN if word in text], text


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
async def test_sigterm_is_the_daemons_normal_stop_and_ctrl_c_says_interrupted(
    sim: AmplitudeSimulator, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """As the help's exit codes say: a drained daemon exits 0 on SIGTERM (Kubernetes, systemd, docker
    stop), and 130 on SIGINT (Ctrl-C), so a script running it knows it was interrupted."""
    log = tmp_path / "daemon.log"
    proc = await start_daemon_process(no_broker_env(sim, tmp_path, f"127.0.0.1:{closed_port()}"), log)
    await eventually(lambda: len(messages(log, "cannot reach Kafka")) >= 1, within=30, message="started")
    proc.send_signal(sig)
    assert await asyncio.wait_for(proc.wait(), 20) == code, log.read_text()
    summary = next(json.loads(ln) for ln in log.read_text().splitlines() if '"exit_code"' in ln)
    assert summary["exit_code"] == code and summary["exit"] == ("ok" if code == 0 else "interrupted")


def test_the_help_says_what_each_signal_makes_run_exit_with() -> None:
    from consumer.ops.exits import EPILOG

    text = " ".join(EPILOG.split())
    assert "130 interrupted stopped by a signal" in text
    assert "run, replay --follow: SIGINT (Ctrl-C) only; on SIGTERM they drain, commit, exit 0" in text
