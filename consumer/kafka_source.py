"""The Kafka side of the daemon: building the aiokafka consumer and decoding its messages.

Contract: offsets are never auto-committed (the daemon commits the contiguous done prefix itself);
decoding turns every message into either a :class:`~consumer.events.CurrentsRecord` or a
:class:`~consumer.decode.DecodeError` carrying topic/partition/offset and the raw value; a schema
registry that cannot be reached raises :class:`~consumer.registry.RegistryUnavailable` so that the
caller waits instead of dead-lettering good messages.
"""

from __future__ import annotations

import re
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.helpers import create_ssl_context

from consumer.decode import DecodeError, decode_confluent, decode_plain, split_confluent
from consumer.events import CurrentsRecord, Position
from consumer.registry import RegistryClient, UnknownSchema
from consumer.settings import KafkaSettings


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
    """Decodes Kafka values: plain Avro for topics mapped to an event type, Confluent framing otherwise."""

    def __init__(self, registry: RegistryClient | None, topic_types: dict[str, str]) -> None:
        self.registry = registry
        self.topic_types = topic_types

    async def decode(self, topic: str, partition: int, offset: int, value: bytes | None) -> CurrentsRecord:
        """One message to one record; :class:`DecodeError` for bad input."""
        position = Position(topic, partition, offset)
        event_type = self.topic_types.get(topic)
        if event_type is not None:
            return decode_plain(value, event_type, position)
        schema_id, _ = split_confluent(value, position)
        if self.registry is None:
            raise DecodeError(position, "Confluent-framed value but no --schema-registry-url", value)
        if self.registry.schema_for_id(schema_id) is None:
            try:
                await self.registry.fetch(schema_id)
            except UnknownSchema as exc:
                raise DecodeError(position, str(exc), value) from None
        return decode_confluent(value, self.registry, position)
