"""The Kafka side of the daemon: building the aiokafka consumer and decoding its messages.

Contract: offsets are never auto-committed (the daemon commits the contiguous done prefix itself);
decoding turns every message into either a :class:`~consumer.events.CurrentsRecord` or a
:class:`~consumer.decode.avro.DecodeError` carrying topic/partition/offset and the raw value; a schema
registry that cannot be reached raises :class:`~consumer.decode.registry.RegistryUnavailable` so that the
caller waits instead of dead-lettering good messages. :func:`probe` says in words why a broker cannot
be reached (refused, no answer, a certificate not trusted), which aiokafka's own errors do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context

from consumer.decode.avro import FRAMING, MessageRun, schema_id_of
from consumer.decode.registry import RegistryClient, UnknownSchema
from consumer.settings import KafkaSettings

FETCH_PARTITION_BYTES = 256 << 10
"""Bytes a fetch asks for per partition (aiokafka's default is 1 MiB)."""
FETCH_BYTES = 1 << 20
"""Bytes a fetch asks for in all (aiokafka's default is 50 MiB)."""


def build_consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    """An aiokafka consumer configured for manual commits and the configured security."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": settings.auto_offset_reset,
        "session_timeout_ms": int(settings.session_timeout * 1000),
        "heartbeat_interval_ms": max(100, int(settings.session_timeout * 1000 / 6)),
        "max_poll_interval_ms": 300_000,
        "fetch_max_wait_ms": 200,
        # A fetch response is held whole until its last record is taken, so its size is memory that the
        # engine's --max-pending does not bound; a quarter MiB per partition is still about a thousand
        # Currents events, and a record batch bigger than the limit still comes whole.
        "max_partition_fetch_bytes": FETCH_PARTITION_BYTES,
        "fetch_max_bytes": FETCH_BYTES,
    }
    return AIOKafkaConsumer(**options)


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """The options every aiokafka client of the cluster takes (the daemon's consumer, the dead-letter
    producer and reader): servers, client id, the configured security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    context = tls_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.reveal()
    return options


def tls_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of the configured protocol (``None`` without TLS): the system's trust store, or
    only ``--ssl-cafile`` when given; a client certificate when ``--ssl-certfile`` is given."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_cafile or None,
        certfile=settings.ssl_certfile or None,
        keyfile=settings.ssl_keyfile or None,
    )
    return context


PROBE_TIMEOUT = 5.0
"""Seconds :func:`probe` waits for a connection and its TLS handshake."""


async def probe(settings: KafkaSettings) -> str:
    """Why the first bootstrap server cannot be reached with the configured transport, in words for
    the operator; ``""`` when a connection (and its TLS handshake, if configured) succeeds.

    Only connects and closes: no Kafka request, no credentials sent.
    """
    first = settings.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        return f"{first!r} is not host:port"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=tls_context(settings)), PROBE_TIMEOUT
        )
    except ssl.SSLCertVerificationError as exc:
        return f"its TLS certificate is not trusted: {exc.verify_message} (check --ssl-cafile)"
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT:.0f}s"
    except OSError as exc:
        # asyncio's strerror is "Connect call failed (addr)"; the errno's own text says why.
        return os.strerror(exc.errno) if exc.errno else str(exc)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return ""


SCRAM_REFUSALS: tuple[type[Exception], ...] = (KeyError, ValueError)
"""What aiokafka's SCRAM client raises instead of a Kafka error when a broker refuses the exchange
with an ``e=`` message (Tansu does, for an unknown user): a ``KeyError`` for the missing ``v=``
signature, a ``ValueError`` for a wrong nonce or signature."""


def refused_login(settings: KafkaSettings, exc: BaseException) -> bool:
    """Whether ``exc``, raised while connecting, is the broker refusing the SASL login."""
    if isinstance(exc, SaslAuthenticationFailed):
        return True
    return settings.security_protocol.startswith("SASL") and isinstance(exc, SCRAM_REFUSALS)


async def explain_start_failure(settings: KafkaSettings, exc: Exception) -> str:
    """Why connecting to Kafka failed, for the operator: the refused login, the transport problem
    :func:`probe` finds, or aiokafka's own error. Never contains the SASL password."""
    if refused_login(settings, exc):
        return (
            f"the broker refused the SASL {settings.sasl_mechanism} login of user "
            f"{settings.sasl_username!r} (check --sasl-username, --sasl-password, --sasl-mechanism)"
        )
    reason = await probe(settings)
    if reason:
        return reason
    if settings.security_protocol.startswith("SASL"):
        return (
            f"connected, but the broker closed the connection during SASL {settings.sasl_mechanism} "
            "(is it a mechanism the broker offers?)"
        )
    return str(exc) if isinstance(exc, KafkaError) and str(exc) else type(exc).__name__


def subscribe(
    consumer: AIOKafkaConsumer, settings: KafkaSettings, listener: ConsumerRebalanceListener
) -> None:
    """Subscribe to the configured topics or pattern with ``listener`` observing rebalances."""
    if settings.topic_pattern:
        re.compile(settings.topic_pattern)
        consumer.subscribe(pattern=settings.topic_pattern, listener=listener)
    elif settings.topics:
        consumer.subscribe(topics=list(settings.topics), listener=listener)
    else:
        raise ValueError("no topics: give --topic (or KAFKA_TOPICS) or --topic-pattern")


class MessageDecoder:
    """Decodes Kafka values: plain Avro for topics mapped to an event type, Confluent framing otherwise.

    Decoding itself is synchronous (:func:`decode_message`, also what a worker process runs); the
    asynchronous part is :meth:`ensure`, which asks the registry about a value's schema id before its
    message is decoded. An id the registry does not know (or cannot give as an Avro record) is
    remembered as unusable with the reason, so its messages are dead-lettered without asking again.
    """

    def __init__(self, registry: RegistryClient | None, topic_types: dict[str, str]) -> None:
        self.registry = registry
        self.topic_types = topic_types
        self.unusable: dict[int, str] = {}

    async def ensure(self, runs: Iterable[MessageRun]) -> None:
        """Make sure the schema of every message's value is loaded (or known unusable); raises
        :class:`~consumer.decode.registry.RegistryUnavailable` while the registry cannot be asked.

        The ids are collected without awaiting (a batch at a time, no coroutine per message) and with no
        Python code per message: the distinct 5-byte heads of the values are gathered in C, and the id is
        read from each distinct head. Only an id not seen before costs a request.
        """
        registry = self.registry
        if registry is None:
            return
        topic_types = self.topic_types
        heads: set[bytes] = set()
        for run in runs:
            if run.topic not in topic_types:
                heads.update(map(FRAMING, filter(None, run.values)))  # empty values have no id
        # Bad framing (no id) is reported by decoding, with the message's position.
        ids = {schema_id_of(head) for head in heads}
        unusable = self.unusable
        known = registry.schema_for_id
        missing = {i for i in ids if i is not None and i not in unusable and known(i) is None}
        for schema_id in sorted(missing):
            try:
                await registry.fetch(schema_id)
            except UnknownSchema as exc:
                self.unusable[schema_id] = str(exc)
