"""The daemon (a child process) against Kafka faults: a broker crash and restart, TLS, a wrong CA.

The broker is the real Tansu; for the restart its storage is S3 on a local moto server, so topics,
records and committed offsets survive a SIGKILL. Each test prints what it measured (``-s`` shows it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from currents_devkit.broker import EmbeddedBroker
from currents_devkit.simulator.server import AmplitudeSimulator
from daemon_harness import (
    PARTITIONS,
    TOPIC,
    all_committed,
    daemon_env,
    delivered_ids,
    kill_started_daemons,
    make_events,
    produce_bulk,
    start_daemon_process,
)
from kafka_harness import committed_offsets, eventually
from objectstore_harness import S3, free_port
from tls_harness import Certificates, TlsProxy, client_context, make_certificates

GROUP = "it-group"


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_started_daemons()


def tansu_s3_env(endpoint: str) -> dict[str, str]:
    """What Tansu's S3 storage engine needs to use the moto server (plain HTTP, dummy keys)."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
async def durable_broker(s3: S3, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A Tansu broker on a fixed port whose data lives in the test's S3 bucket."""
    broker = EmbeddedBroker(
        log_path=tmp_path / "tansu.log",
        port=free_port(),
        storage_engine=f"s3://{s3.bucket}/",
        environment=tansu_s3_env(s3.endpoint),
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def test_broker_killed_and_restarted_mid_stream_delivers_everything_once(
    durable_broker: EmbeddedBroker, sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    broker = durable_broker
    await broker.create_topic(TOPIC, PARTITIONS)
    messages, expected = make_events(3000, seed=21)
    ends = await produce_bulk(broker.bootstrap_servers, messages)
    bootstrap = broker.bootstrap_servers
    # A low per-device rate keeps the stream going across the outage; a small pending bound keeps
    # most of the topic unfetched when the broker dies.
    env = {
        **daemon_env(broker, sim, registry_url, tmp_path),
        "CURRENTS_DEVICE_RATE": "3",
        "CURRENTS_MAX_PENDING": "300",
    }
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(env, log)
    await eventually(lambda: len(sim.events) >= 300, within=60, message="the daemon delivering")
    await broker.kill()
    at_kill = len(delivered_ids(sim))
    assert at_kill < len(expected), "the kill must happen mid-stream"
    await asyncio.sleep(4)  # the outage itself: the broker stays down for 5 s, as the fault asks
    late_in_outage = len(sim.events)
    await asyncio.sleep(1)
    await broker.start()
    restarted = time.monotonic()
    at_restart = len(sim.events)
    committed_at_restart = await committed_offsets(bootstrap, GROUP, ends)
    await eventually(lambda: len(sim.events) > at_restart, within=60, message="a delivery after the restart")
    first_delivery = time.monotonic() - restarted

    async def commit_moved() -> bool:
        now = await committed_offsets(bootstrap, GROUP, ends)
        return any(now.get(tp, -1) > committed_at_restart.get(tp, -1) for tp in ends)

    await eventually(commit_moved, within=60, message="a commit after the restart")
    first_commit = time.monotonic() - restarted
    await eventually(lambda: delivered_ids(sim) >= expected, within=120, message="every event delivered")
    await eventually(
        lambda: all_committed(bootstrap, GROUP, ends), within=60, message="offsets committed to the end"
    )
    last_commit = time.monotonic() - restarted
    assert daemon.returncode is None, "the daemon must ride out the outage, not exit"
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 60) == 0
    duplicates = [e.event["insert_id"] for e in sim.duplicates]
    text = log.read_text()
    aiokafka_lines = [line for line in text.splitlines() if '"logger":"aiokafka' in line]
    print(
        f"\nbroker restart: delivered at kill {at_kill}, 1 s before the restart {late_in_outage}, "
        f"at the restart {at_restart}; after the restart: first delivery {first_delivery:.1f}s, "
        f"first commit {first_commit:.1f}s, last commit {last_commit:.1f}s; "
        f"delivered {len(delivered_ids(sim))}/{len(expected)}, duplicated {len(duplicates)}, "
        f"lost {len(expected - delivered_ids(sim))}; aiokafka log lines {len(aiokafka_lines)}"
    )
    assert delivered_ids(sim) == expected
    assert not duplicates, f"{len(duplicates)} events delivered twice"
    assert not list((tmp_path / "dead-letter").glob("*.jsonl"))
    assert "Traceback" not in text and "it-secret-key-123" not in text
    # One line per distinct failure while the broker is away, not one per 100 ms retry (~200 lines).
    assert len(aiokafka_lines) <= 30, "\n".join(aiokafka_lines)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    directory = tmp_path / "tls"
    directory.mkdir()
    return make_certificates(directory)


@pytest.fixture
async def tls_broker(certificates: Certificates, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A Tansu broker reachable only through a TLS proxy: it advertises the proxy's address."""
    broker_port = free_port()
    proxy = TlsProxy(certificates, upstream_port=broker_port)
    await proxy.start()
    broker = EmbeddedBroker(
        log_path=tmp_path / "tansu.log",
        port=broker_port,
        advertised_url=f"tcp://localhost:{proxy.port}",
        client_options={"security_protocol": "SSL", "ssl_context": client_context(certificates.ca)},
    )
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()
        await proxy.stop()


def tls_env(certificates: Certificates, cafile: Path | None = None) -> dict[str, str]:
    return {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(cafile or certificates.ca)}


async def test_the_daemon_consumes_over_tls(
    tls_broker: EmbeddedBroker,
    certificates: Certificates,
    sim: AmplitudeSimulator,
    registry_url: str,
    tmp_path: Path,
) -> None:
    client = {"security_protocol": "SSL", "ssl_context": client_context(certificates.ca)}
    await tls_broker.create_topic(TOPIC, PARTITIONS)
    messages, expected = make_events(600, seed=22)
    bootstrap = tls_broker.bootstrap_servers
    ends = await produce_bulk(bootstrap, messages, client)
    env = {**daemon_env(tls_broker, sim, registry_url, tmp_path), **tls_env(certificates)}
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    daemon = await start_daemon_process(env, log)
    await eventually(lambda: delivered_ids(sim) >= expected, within=60, message="every event delivered")
    await eventually(
        lambda: all_committed(bootstrap, GROUP, ends, client), within=30, message="offsets committed"
    )
    print(
        f"\nTLS: {len(expected)} events delivered and committed {time.monotonic() - started:.1f}s after start"
    )
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 60) == 0
    assert delivered_ids(sim) == expected and not sim.duplicates
    assert "Traceback" not in log.read_text()


def attempt_times(log: Path) -> list[float]:
    """When the daemon logged each failed attempt to reach Kafka (seconds, from its JSON log)."""
    times = []
    for line in log.read_text().splitlines():
        if "cannot reach Kafka" in line:
            entry = json.loads(line)
            stamp = datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            times.append(stamp.timestamp())
    return times


async def test_a_wrong_ca_is_named_and_retried_with_backoff(
    tls_broker: EmbeddedBroker,
    certificates: Certificates,
    sim: AmplitudeSimulator,
    registry_url: str,
    tmp_path: Path,
) -> None:
    await tls_broker.create_topic(TOPIC, PARTITIONS)
    env = {
        **daemon_env(tls_broker, sim, registry_url, tmp_path),
        **tls_env(certificates, certificates.other_ca),
    }
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(env, log)
    await eventually(
        lambda: len(attempt_times(log)) >= 4 or daemon.returncode is not None,
        within=60,
        message="four attempts",
    )
    assert daemon.returncode is None, "a wrong CA is retried (it may be a rotation under way), not fatal"
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 30) == 0
    text = log.read_text()
    ours = [json.loads(line)["msg"] for line in text.splitlines() if "cannot reach Kafka" in line]
    times = attempt_times(log)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    print(f"\nwrong CA: {len(times)} attempts, gaps {[round(g, 1) for g in gaps]} s; {ours[0]}")
    assert all(
        f"cannot reach Kafka at {tls_broker.bootstrap_servers}: its TLS certificate is not trusted" in m
        and "unable to get local issuer certificate" in m
        and "--ssl-cafile" in m
        for m in ours
    ), ours
    # Back-off, not a storm: each wait at least doubles (1 s, 2 s, 4 s ... up to 30 s), so at most
    # about 8 attempts in the first minute; the daemon waits, it does not exit or spin.
    assert gaps[0] >= 0.9 and all(b >= 1.8 * a for a, b in itertools.pairwise(gaps)), gaps
    assert "Traceback" not in text
    assert not sim.events and sim.stats.requests_by_status == {}


async def test_a_refused_sasl_login_is_named_retried_and_keeps_the_password_secret(
    sim: AmplitudeSimulator, registry_url: str, tmp_path: Path
) -> None:
    """Tansu 0.6 with ``--authentication`` negotiates SCRAM but knows no user (it refuses to create
    one while authentication is on): the daemon gets as far as a real broker's refusal."""
    password = "hunter2-kafka-password"
    async with EmbeddedBroker(log_path=tmp_path / "tansu.log", authentication=True) as broker:
        env = {
            **daemon_env(broker, sim, registry_url, tmp_path),
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "currents-reader",
            "KAFKA_SASL_PASSWORD": password,
        }
        log = tmp_path / "daemon.log"
        daemon = await start_daemon_process(env, log)
        await eventually(
            lambda: len(attempt_times(log)) >= 2 or daemon.returncode is not None,
            within=60,
            message="two attempts",
        )
        assert daemon.returncode is None, "a refused login is retried (a secret may be rotating), not fatal"
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 30) == 0
    text = log.read_text()
    ours = [json.loads(line)["msg"] for line in text.splitlines() if "cannot reach Kafka" in line]
    print(f"\nSASL refused: {ours[0]}")
    assert all(
        "the broker refused the SASL SCRAM-SHA-512 login of user 'currents-reader'" in m for m in ours
    ), ours
    assert password not in text and "Traceback" not in text
