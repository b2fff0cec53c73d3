"""Connecting to Kafka: the consumer gets the configured security, the reasons a connection fails are
said in words (refused, certificate not trusted, SASL refused), and aiokafka's retry noise is bounded."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from tls_harness import Certificates, TlsProxy, make_certificates

from consumer.settings import KafkaSettings, load
from consumer.sources.kafka.client import build_consumer, explain_start_failure, probe
from consumer.sources.kafka.logs import RepeatSuppressor

PASSWORD = "kafka-pw-8c1f0e77"


def kafka(**env: str) -> KafkaSettings:
    return load(None, env={"AMPLITUDE_API_KEY": "k", "KAFKA_TOPICS": "currents", **env}).kafka


def sasl(**env: str) -> KafkaSettings:
    return kafka(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        KAFKA_SASL_USERNAME="reader",
        KAFKA_SASL_PASSWORD=PASSWORD,
        **env,
    )


async def test_the_consumer_gets_the_sasl_mechanism_and_user_and_the_password_stays_hidden() -> None:
    settings = sasl()
    consumer = build_consumer(settings)
    client = consumer._client
    assert (client._security_protocol, client._sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert (client._sasl_plain_username, client._sasl_plain_password) == ("reader", PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    await consumer.stop()


async def test_the_consumer_gets_a_tls_context_trusting_only_the_given_ca(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    consumer = build_consumer(kafka(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(certificates.ca)))
    context = consumer._client._ssl_context
    assert context is not None and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    await consumer.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
async def tls_port(certificates: Certificates) -> AsyncIterator[int]:
    """A TLS server with the test CA's certificate (forwarding to a closed port: only TLS matters)."""
    proxy = TlsProxy(certificates, upstream_port=closed_port())
    await proxy.start()
    try:
        yield proxy.port
    finally:
        await proxy.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_probe_names_a_refused_connection() -> None:
    assert "refused" in (await probe(kafka(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}"))).lower()


async def test_probe_names_an_untrusted_certificate_and_accepts_a_trusted_one(
    certificates: Certificates, tls_port: int
) -> None:
    wrong = kafka(
        KAFKA_BOOTSTRAP_SERVERS=f"localhost:{tls_port}",
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(certificates.other_ca),
    )
    assert await probe(wrong) == (
        "its TLS certificate is not trusted: unable to get local issuer certificate (check --ssl-cafile)"
    )
    right = kafka(
        KAFKA_BOOTSTRAP_SERVERS=f"localhost:{tls_port}",
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(certificates.ca),
    )
    assert await probe(right) == ""


async def test_probe_names_a_bootstrap_address_without_a_port() -> None:
    assert await probe(kafka(KAFKA_BOOTSTRAP_SERVERS="kafka.internal")) == "'kafka.internal' is not host:port"


async def test_a_refused_login_is_named_without_the_password() -> None:
    for exc in (SaslAuthenticationFailed("bad"), KeyError("v")):
        reason = await explain_start_failure(sasl(), exc)
        assert reason.startswith("the broker refused the SASL SCRAM-SHA-256 login of user 'reader'")
        assert PASSWORD not in reason


async def test_a_sasl_connection_closed_by_the_broker_points_at_the_mechanism(tls_port: int) -> None:
    # The port accepts TCP (here a TLS server that the plaintext client cannot talk to, as a broker
    # that does not offer the mechanism closes the connection).
    settings = sasl(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{tls_port}")
    reason = await explain_start_failure(settings, KafkaConnectionError("Unable to bootstrap"))
    assert "closed the connection during SASL SCRAM-SHA-256" in reason


def record(message: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, None)


def test_repeats_are_dropped_for_the_interval_then_counted() -> None:
    now = [0.0]
    quiet = RepeatSuppressor(30.0, clock=lambda: now[0])
    down = ("Unable connect to node with id %s: %s", 1, "refused")
    assert quiet.filter(record(*down))
    for step in range(1, 200):  # a retry every 100 ms for 20 s
        now[0] = step / 10
        assert not quiet.filter(record(*down))
    assert quiet.filter(record("Unable to update metadata from %s", [1])), "another message passes"
    assert quiet.filter(record(*down, name="aiokafka.conn")), "another logger passes"
    now[0] = 30.0
    again = record(*down)
    assert quiet.filter(again)
    assert (
        again.getMessage() == "Unable connect to node with id 1: refused [199 more like this in the last 30s]"
    )
    now[0] = 61.0
    single = record(*down)
    assert quiet.filter(single) and single.getMessage() == "Unable connect to node with id 1: refused"


def test_the_memory_of_messages_is_bounded() -> None:
    quiet = RepeatSuppressor(30.0, clock=lambda: 0.0)
    for offset in range(5000):
        quiet.filter(record("fetch offset %d out of range", offset))
    assert len(quiet._seen) <= 1000
