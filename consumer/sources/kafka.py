"""The Kafka side of the daemon: building the aiokafka consumer and decoding its messages.

Contract: offsets are never auto-committed (the daemon commits the contiguous done prefix itself);
decoding turns every message into either a :class:`~consumer.events.CurrentsRecord` or a
:class:`~consumer.decode.avro.DecodeError` carrying topic/partition/offset and the raw value; a schema
registry that cannot be reached raises :class:`~consumer.decode.registry.RegistryUnavailable` so that the
caller waits instead of dead-lettering good messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.helpers import create_ssl_context

from consumer.decode.avro import DecodeError, Message, split_confluent
from consumer.decode.registry import RegistryClient, UnknownSchema
from consumer.events import Position
from consumer.settings import KafkaSettings

FETCH_PARTITION_BYTES = 256 << 10
"""Bytes a fetch asks for per partition (aiokafka's default is 1 MiB)."""
FETCH_BYTES = 1 << 20
"""Bytes a fetch asks for in all (aiokafka's default is 50 MiB)."""


def build_consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    """An aiokafka consumer configured for manual commits and the configured security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "group_id": settings.group_id,
        "client_id": settings.client_id,
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
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.reveal()
    return AIOKafkaConsumer(**options)


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

    async def ensure(self, messages: Iterable[Message]) -> None:
        """Make sure the schema of every message's value is loaded (or known unusable); raises
        :class:`~consumer.decode.registry.RegistryUnavailable` while the registry cannot be asked.

        The ids are collected without awaiting (a batch at a time, no coroutine per message); only an id
        not seen before costs a request.
        """
        registry = self.registry
        if registry is None:
            return
        missing: set[int] = set()
        for topic, partition, offset, value in messages:
            if topic in self.topic_types:
                continue
            try:
                schema_id, _ = split_confluent(value, Position(topic, partition, offset))
            except DecodeError:
                continue  # decoding reports the bad framing with the message's position
            if registry.schema_for_id(schema_id) is None and schema_id not in self.unusable:
                missing.add(schema_id)
        for schema_id in sorted(missing):
            try:
                await registry.fetch(schema_id)
            except UnknownSchema as exc:
                self.unusable[schema_id] = str(exc)
