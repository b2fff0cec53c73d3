"""The dead-letter output: every event or input that could not be delivered, with why and from where.

JSON lines under one directory, one file per writer per UTC hour
(``dead-letter-<YYYYMMDDTHH>-<host>-<pid>.jsonl``), so replicas sharing a volume never interleave.
Each line has ``reason``, ``time`` (ISO 8601 UTC), ``position`` (topic/partition/offset or
file/record), and either ``event`` (the payload as the ``destination`` would have received it: an
Amplitude event with its ``insert_id``, a Movable Ink event, Remerge's query parameters without the
key) with ``destination``, or ``raw`` (undecodable input, base64) — plus ``event_type`` and ``detail``
when known, and ``last_answer`` with ``last_status`` when the destination had answered the event (why a
retry window ran out: ``invalid_api_key`` and 400, ``http_404`` and 404, ``timeout`` and 0). Records
without ``destination`` (written before fan-out existed) are Amplitude's.
:meth:`DeadLetterWriter.sync` makes everything written so far durable; sources call it before they
commit positions, so a dead-lettered event is never committed before it is on disk. The records are
personal data: the directory is created ``0700`` and each file ``0600`` (:mod:`.private`).

An output that cannot be written (not a directory, no space left, read-only, no permission) is a
:class:`~consumer.ops.faults.Fault` naming the directory and the OS error, raised by the call that met it
and by every later ``write``/``sync``: the event whose record failed is never reported done, and
nothing written before it counts as durable.

``--dead-letter kafka://TOPIC`` writes the same records to a topic of the ``--bootstrap-servers``
cluster instead (:class:`DeadLetterTopic`, for many replicas with no shared disk): each record is one
message, keyed by the event's ``device_id`` (else ``user_id``) so a redrive keeps per-device order, and
:meth:`DeadLetterOutput.settle` returns once the broker acknowledged every record (a refused record is
the same kind of fault). The loop settles either output before it commits. A record too large for a
message (:data:`~consumer.sources.kafka.deadletter.RECORD_LIMIT`: an event dead-lettered as
``payload_too_large`` can be) goes without its ``event`` and ``raw``, with ``omitted`` saying how large
they were: its ``position`` says where to read the event again, and an error line names it. Refused,
it would stop every daemon that reads the event again.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from consumer.events import AmplitudeEvent, Position
from consumer.ops.faults import Fault, io_fault
from consumer.positions.private import open_private, private_dir
from consumer.settings import KafkaSettings, SettingsError
from consumer.settings.model import dead_letter_topic
from consumer.sources.kafka.deadletter import RECORD_LIMIT, TopicProducer

log = logging.getLogger("currents.deadletter")


def open_dead_letters(target: str, kafka: KafkaSettings | None) -> DeadLetterOutput:
    """The output ``--dead-letter`` names: a topic of the ``kafka`` cluster, or a directory.
    A topic without Kafka settings (a command that reads no Kafka) is a :class:`SettingsError`."""
    topic = dead_letter_topic(target)
    if topic is None:
        return DeadLetterWriter(target)
    if kafka is None:
        raise SettingsError(f"--dead-letter {target}: this command writes dead letters to a directory")
    return DeadLetterTopic(kafka, topic)


class DeadLetterOutput:
    """What every dead-letter output does: build the records (see the module docstring), count them,
    keep the first fault. Subclasses say where a record goes and what makes it durable."""

    def __init__(self) -> None:
        self.count = 0
        self.fault: Fault | None = None
        """Set once the output could not be written; every later write or sync raises it."""

    def _append(self, record: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    async def settle(self) -> None:
        """Make everything written so far durable (:class:`Fault` if it cannot be)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Settle and release the output; released even when the settle raises its fault."""
        raise NotImplementedError

    def write(
        self,
        reason: str,
        position: Position,
        *,
        destination: str | None = None,
        event: AmplitudeEvent | None = None,
        event_type: str | None = None,
        raw: bytes | None = None,
        detail: str = "",
        first_attempt: float | None = None,
        last_answer: tuple[str, int] | None = None,
    ) -> None:
        """Append one record (buffered; durable after :meth:`sync`).

        ``last_answer`` is the last answer a destination gave the event, as (reason, HTTP status, 0 for
        none): written as ``last_answer`` and ``last_status``, it says why a retry window ran out."""
        now = time.time()
        record: dict[str, Any] = {
            "reason": reason,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "position": position.as_dict(),
        }
        if destination:
            record["destination"] = destination
        if event_type:
            record["event_type"] = event_type
        if detail:
            record["detail"] = detail
        if first_attempt is not None:
            record["first_attempt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first_attempt))
        if last_answer is not None:
            record["last_answer"], record["last_status"] = last_answer
        if event is not None:
            record["event"] = event
        if raw is not None:
            record["raw"] = base64.b64encode(raw).decode("ascii")
        if self.fault is not None:
            raise self.fault
        self._append(record, now)
        self.count += 1


class DeadLetterWriter(DeadLetterOutput):
    """Appends dead-letter records to hourly files; :meth:`sync` flushes and fsyncs."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = Path(directory)
        self._fh: IO[bytes] | None = None
        self._hour = ""
        self._tag = f"{socket.gethostname()}-{os.getpid()}"
        self._dirty = False

    def _failed(self, exc: OSError) -> Fault:
        if self.fault is None:
            self.fault = io_fault(f"dead-letter output {self.directory}", exc)
        return self.fault

    def _file(self, now: float) -> IO[bytes]:
        hour = time.strftime("%Y%m%dT%H", time.gmtime(now))
        if self._fh is None or hour != self._hour:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
            private_dir(self.directory)
            self._fh = open_private(self.directory / f"dead-letter-{hour}-{self._tag}.jsonl", append=True)
            self._hour = hour
        return self._fh

    def _append(self, record: dict[str, Any], now: float) -> None:
        try:
            self._file(now).write(orjson.dumps(record) + b"\n")
        except OSError as exc:
            raise self._failed(exc) from None
        self._dirty = True

    async def settle(self) -> None:
        """:meth:`sync`."""
        self.sync()

    async def aclose(self) -> None:
        """:meth:`close`."""
        self.close()

    def sync(self) -> None:
        """Flush and fsync what has been written (:class:`Fault` if it cannot be)."""
        if self.fault is not None:
            raise self.fault
        if self._fh is not None and self._dirty:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise self._failed(exc) from None
            self._dirty = False

    def close(self) -> None:
        """Sync and close the current file; the file is closed even when the sync raises its fault."""
        try:
            self.sync()
        finally:
            fh, self._fh = self._fh, None
            if fh is not None:
                # The buffer could not be flushed: already the writer's fault (the descriptor is closed).
                with contextlib.suppress(OSError):
                    fh.close()


class DeadLetterTopic(DeadLetterOutput):
    """Writes each dead-letter record as one message of a Kafka topic, keyed by device; :meth:`settle`
    waits for the broker's acknowledgements (a refusal is a :class:`Fault` naming the topic)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        super().__init__()
        self.topic = topic
        self._producer = TopicProducer(kafka, topic)

    def _append(self, record: dict[str, Any], now: float) -> None:
        key = device_key(record)
        value = orjson.dumps(record)
        if (size := len(value)) > RECORD_LIMIT:
            value = orjson.dumps(slimmed(record, size))
            log.error(
                "dead-letter record of %s (%s) is %d bytes, over the %d-byte limit of a message of %s: "
                "written without its event, read the event again from that position",
                record["position"], record["reason"], size, RECORD_LIMIT, self.topic,
            )  # fmt: skip
        self._producer.send(key, value)

    async def settle(self) -> None:
        """Wait until the broker acknowledged every record written so far."""
        if self.fault is not None:
            raise self.fault
        try:
            await self._producer.settle()
        except Fault as fault:
            self.fault = fault
            raise

    async def aclose(self) -> None:
        """Settle, then stop the producer (stopped even when the settle raises)."""
        try:
            await self.settle()
        finally:
            await self._producer.close()


def slimmed(record: dict[str, Any], size: int) -> dict[str, Any]:
    """``record`` without its ``event`` and ``raw`` (the rest stays: reason, position, destination,
    key), and ``omitted`` saying what was left out and why."""
    slim = {k: v for k, v in record.items() if k not in ("event", "raw")}
    left = " and ".join(k for k in ("event", "raw") if k in record)
    slim["omitted"] = f"{left}: the record was {size} bytes, over the {RECORD_LIMIT}-byte message limit"
    return slim


def device_key(record: dict[str, Any]) -> bytes | None:
    """The message key of a dead-letter record: its event's ``device_id``, else ``user_id`` (``None``
    for input that never became an event), so one device's records share a partition."""
    event = record.get("event")
    if not isinstance(event, dict):
        return None
    key = event.get("device_id") or event.get("user_id")
    return str(key).encode() if key else None


def read_dead_letters(paths: list[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every record of the dead-letter files under ``paths``: ``(file, line number, record)``.

    Lines that are not JSON objects are yielded as ``{"unparseable": <text>}`` so callers can report them.
    """
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(p.rglob("*.jsonl")))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    for path in files:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    record = {"unparseable": line.decode("utf-8", "replace")[:500]}
                yield str(path), n, record
