"""The sections of what events are read from: the Kafka daemon's source, and replay/convert's input."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from pydantic import model_validator

from consumer.settings.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Instant,
    Int,
    OptionError,
    SecretText,
    Section,
    Text,
    Words,
)
from consumer.settings.fields import option as _option
from consumer.settings.partners import pairs

_kafka = partial(_option, group="kafka")
_connect = partial(_option, group="kafka_connection")  # how to reach the cluster: redrive's too
_input = partial(_option, group="input")
_follow = partial(_option, group="follow")


class KafkaSettings(Section):
    """The Kafka source of the ``run`` daemon."""

    bootstrap_servers: Text = _connect(
        "localhost:9092",
        "--bootstrap-servers",
        "KAFKA_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers (host:port, comma-separated)",
        metavar="HOST:PORT",
        common=True,
    )
    topics: Words = _kafka(
        (),
        "--topic",
        "KAFKA_TOPICS",
        "topics to consume (repeatable; env comma-separated)",
        metavar="TOPIC",
        common=True,
    )
    topic_pattern: Text = _kafka(
        "",
        "--topic-pattern",
        "KAFKA_TOPIC_PATTERN",
        "regex of topics to consume (instead of --topic)",
        metavar="REGEX",
    )
    group_id: Text = _kafka(
        "currents-consumer", "--group-id", "KAFKA_GROUP_ID", "consumer group", metavar="NAME", common=True
    )
    client_id: Text = _connect(
        "currents-consumer", "--client-id", "KAFKA_CLIENT_ID", "Kafka client id", metavar="NAME"
    )
    security_protocol: Annotated[Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], AS_TEXT] = (
        _connect(
            "PLAINTEXT",
            "--security-protocol",
            "KAFKA_SECURITY_PROTOCOL",
            "Kafka security protocol",
            common=True,
        )
    )
    sasl_mechanism: Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], AS_TEXT] = _connect(
        "PLAIN",
        "--sasl-mechanism",
        "KAFKA_SASL_MECHANISM",
        "SASL mechanism",
    )
    sasl_username: Text = _connect(
        "", "--sasl-username", "KAFKA_SASL_USERNAME", "SASL user name", metavar="NAME", common=True
    )
    sasl_password: SecretText = _connect(
        "", "--sasl-password", "KAFKA_SASL_PASSWORD", "SASL password", common=True
    )
    ssl_cafile: Text = _connect("", "--ssl-cafile", "KAFKA_SSL_CAFILE", "CA bundle for TLS", metavar="PATH")
    ssl_certfile: Text = _connect(
        "", "--ssl-certfile", "KAFKA_SSL_CERTFILE", "client certificate (mTLS)", metavar="PATH"
    )
    ssl_keyfile: Text = _connect(
        "", "--ssl-keyfile", "KAFKA_SSL_KEYFILE", "client key (mTLS)", metavar="PATH"
    )
    schema_registry_url: Text = _kafka(
        "",
        "--schema-registry-url",
        "SCHEMA_REGISTRY_URL",
        "Confluent Schema Registry for wire-format values",
        metavar="URL",
        common=True,
    )
    schema_registry_username: Text = _kafka(
        "",
        "--schema-registry-username",
        "SCHEMA_REGISTRY_USERNAME",
        "Schema Registry basic-auth user",
        metavar="NAME",
    )
    schema_registry_password: SecretText = _kafka(
        "", "--schema-registry-password", "SCHEMA_REGISTRY_PASSWORD", "Schema Registry basic-auth password"
    )
    topic_event_types: Words = _kafka(
        (),
        "--topic-event-type",
        "KAFKA_TOPIC_EVENT_TYPES",
        "TOPIC=EVENT_TYPE: values on TOPIC are plain Avro of that type (repeatable)",
        metavar="TOPIC=EVENT_TYPE",
    )
    commit_interval: Duration = _kafka(
        5.0, "--commit-interval", "CURRENTS_COMMIT_INTERVAL", "how often done offsets are committed"
    )
    shutdown_grace: Duration = _kafka(
        30.0,
        "--shutdown-grace",
        "CURRENTS_SHUTDOWN_GRACE",
        "on SIGTERM, time to finish events in flight before committing and exiting",
    )
    revoke_timeout: Duration = _kafka(
        10.0,
        "--revoke-timeout",
        "CURRENTS_REVOKE_TIMEOUT",
        "on a rebalance, time to finish revoked partitions' events before committing them",
    )
    session_timeout: Duration = _kafka(
        10.0, "--session-timeout", "KAFKA_SESSION_TIMEOUT", "consumer group session timeout"
    )
    auto_offset_reset: Annotated[Literal["earliest", "latest"], AS_TEXT] = _kafka(
        "earliest", "--auto-offset-reset", "KAFKA_AUTO_OFFSET_RESET", "where a new group starts"
    )

    def event_type_for_topic(self) -> dict[str, str]:
        """``TOPIC=EVENT_TYPE`` pairs as a dict; raises ``SettingsError`` on a malformed pair."""
        return pairs(self.topic_event_types, "--topic-event-type", "TOPIC=EVENT_TYPE")


class InputSettings(Section):
    """What replay and convert read: event types, a time window, how many files at once."""

    event_types: Words = _input(
        (),
        "--event-type",
        "CURRENTS_EVENT_TYPES",
        "only these event types (glob on the event_type= partition and on each file's type, repeatable)",
        metavar="GLOB",
        common=True,
    )
    since: Instant = _input(
        "",
        "--since",
        "CURRENTS_SINCE",
        "only events queued from this UTC time on (date= partitions; 2024-05-01-13, 2024-05-01, ISO 8601)",
        common=True,
    )
    until: Instant = _input(
        "",
        "--until",
        "CURRENTS_UNTIL",
        "only events queued before this UTC time (exclusive; same forms as --since)",
        common=True,
    )
    event_time: Bool = _input(
        False,
        "--event-time",
        "CURRENTS_EVENT_TIME",
        "apply --since/--until to each event's time field instead of the hour it was queued (a switch)",
        switch=True,
    )
    files_in_flight: Int = _input(
        4,
        "--files-in-flight",
        "CURRENTS_FILES_IN_FLIGHT",
        "files (objects) fetched and decoded at once, ahead of the one being delivered",
        ge=1,
    )
    shard: Text = _input(
        "",
        "--shard",
        "CURRENTS_SHARD",
        "take only shard I of N: a stable share of the selected objects by a hash of their key (I counts "
        "from 0 to N-1, as Kubernetes' JOB_COMPLETION_INDEX does); its own resume state",
        metavar="I/N",
    )
    shards: Int = _input(
        0,
        "--shards",
        "CURRENTS_SHARDS",
        "split the objects into N shards and take the one --shard-index names (JOB_COMPLETION_INDEX in a "
        "Kubernetes Indexed Job); 0 = not sharded",
        ge=0,
    )
    shard_index: Text = _input(
        "",
        "--shard-index",
        "JOB_COMPLETION_INDEX",
        "this process's shard with --shards, from 0 to N-1 (a Kubernetes Indexed Job sets "
        "JOB_COMPLETION_INDEX)",
        metavar="I",
    )
    workers: Int = _option(
        2,
        "--workers",
        "CURRENTS_WORKERS",
        "processes that decode and map records (files for replay, message batches for run) while the main "
        "process delivers; 0 decodes in the main process",
        group="workers",
        ge=0,
    )

    @model_validator(mode="after")
    def _window_is_not_empty(self) -> InputSettings:
        if self.since and self.until and self.since >= self.until:
            raise OptionError("until", f"{self.until!r} is out of range (after --since)")
        return self

    @model_validator(mode="after")
    def _one_shard(self) -> InputSettings:
        self.shard_of()
        return self

    def shard_of(self) -> tuple[int, int] | None:
        """``(index, count)`` of this process's shard, or ``None`` when the objects are not sharded.

        Raises :class:`OptionError` naming the option to blame: ``--shard`` and ``--shards`` together,
        an ``I/N`` that does not parse or is out of range, ``--shards`` without an index.
        """
        if self.shard and self.shards:
            raise OptionError("shards", "use --shard I/N or --shards N (with JOB_COMPLETION_INDEX), not both")
        if self.shard:
            index, _, count = self.shard.partition("/")
            if not (index.strip().isdigit() and count.strip().isdigit()):
                raise OptionError("shard", f"{self.shard!r} is not I/N (e.g. 0/3: the first of 3 shards)")
            return _in_range("shard", self.shard, int(index), int(count))
        if not self.shards:
            return None
        if not self.shard_index:
            raise OptionError(
                "shards",
                f"--shards {self.shards} needs this process's shard index: JOB_COMPLETION_INDEX (set by a "
                "Kubernetes Job with completionMode: Indexed) or --shard-index is not set",
            )
        if not self.shard_index.strip().isdigit():
            raise OptionError("shard_index", f"{self.shard_index!r} is not a whole number from 0")
        return _in_range("shard_index", self.shard_index, int(self.shard_index), self.shards)


class FollowSettings(Section):
    """``replay --follow``: keep reading what lands in the bucket, and how its listings are paced."""

    follow: Bool = _follow(
        False,
        "--follow",
        "CURRENTS_FOLLOW",
        "after what is there, deliver each object that lands in PATH; never exit for having caught up",
        switch=True,
        common=True,
    )
    poll_interval: Duration = _follow(
        30.0,
        "--poll-interval",
        "CURRENTS_POLL_INTERVAL",
        "how often the folders that can still receive files (the live hours' date= folders) are listed",
        gt=0,
    )
    sweep_interval: Duration = _follow(
        6 * 3600.0,
        "--sweep-interval",
        "CURRENTS_SWEEP_INTERVAL",
        "how often everything under PATH is listed, for files a changed layout or a very late writer put "
        "elsewhere (also at the first start)",
        gt=0,
    )
    late_window: Duration = _follow(
        3600.0,
        "--late-window",
        "CURRENTS_LATE_WINDOW",
        "how long after its hour ends a date= folder is still polled",
        ge=0,
    )
    landing_margin: Duration = _follow(
        900.0,
        "--landing-margin",
        "CURRENTS_LANDING_MARGIN",
        "how long an object may take to appear in listings after the time its store stamps it with "
        "(multipart uploads are stamped when they start; clocks differ): objects stamped within this of a "
        "sweep's start are remembered by name",
        ge=0,
    )


def _in_range(field: str, given: str, index: int, count: int) -> tuple[int, int]:
    if count < 1:
        raise OptionError(field, f"{given!r} is out of range (at least 1 shard)")
    if not 0 <= index < count:
        raise OptionError(field, f"{given!r} is out of range (the index runs from 0 to {count - 1})")
    return index, count
