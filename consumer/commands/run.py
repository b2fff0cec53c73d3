"""``currents-consumer run``: the Kafka daemon (consumer group, at-least-once).

Wiring only: the daemon is the shared :class:`~consumer.app.loop.RunLoop` driving a
:class:`~consumer.sources.kafka.source.KafkaSource` (fetch, hand batches to the worker processes, take
their prepared records, rebalance). Guarantees:

* **At-least-once.** An offset is committed only when it and every offset before it on its partition
  is done (delivered, skipped or dead-lettered, the dead-letter record synced to disk or
  acknowledged by the broker of ``--dead-letter kafka://TOPIC`` first). A SIGKILL
  at any instant re-reads from the last commit; Amplitude deduplicates on ``insert_id``.
* **Bounded memory, Kafka is the buffer.** Fetched messages wait in a backlog of at most one fetch;
  when the delivery engine is full (an Amplitude outage, hot devices) every assigned partition is
  paused and the loop keeps polling (so the group membership stays alive) without fetching more.
* **Rebalances.** On revoke, revoked partitions stop being fed, their in-flight events get
  ``revoke_timeout`` to finish, what is done is committed, and the partitions are forgotten: nothing
  is ever committed for a partition no longer owned.
* **Shutdown.** :meth:`Daemon.stop` (SIGTERM/SIGINT): stop fetching, finish events in flight within
  ``shutdown_grace``, commit, leave the group.
* **A fault ends it.** A fault of its own I/O (see :mod:`consumer.ops.faults`) turns readiness off at
  once; nothing more is read, started or committed, the requests already sent get ``shutdown_grace``
  for their answers, and :meth:`run` raises the fault (``run`` exits 4).
* **Garbage never stalls a partition.** Undecodable values are dead-lettered with topic/partition/
  offset and raw bytes, and acknowledged; an unreachable schema registry is waited for instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consumer.app.loop import RunLoop
from consumer.app.pipeline import Pipeline
from consumer.delivery.destination import Destination
from consumer.ops.health import Health
from consumer.ops.metrics import Metrics
from consumer.positions.deadletter import DeadLetterOutput, open_dead_letters
from consumer.settings import Settings
from consumer.sources.base import Stream
from consumer.sources.kafka.client import build_consumer
from consumer.sources.kafka.group import ConsumerFactory, GroupConsumer
from consumer.sources.kafka.source import KafkaSource
from consumer.sources.workers.batch_worker import MessageWorker

log = logging.getLogger("currents.daemon")


class Daemon:
    """One consumer-group member delivering its partitions to every destination."""

    def __init__(
        self,
        settings: Settings,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        consumer_factory: ConsumerFactory = build_consumer,
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        dead = open_dead_letters(settings.dead_letter, settings.kafka)  # a directory, or kafka://TOPIC
        self.loop = RunLoop(destinations, dead, metrics)
        self.source = KafkaSource(
            settings.kafka,
            [d.mapper for d in destinations],
            metrics,
            workers=settings.input.workers,
            consumer_factory=consumer_factory,
        )
        self.health: Health | None = None
        self.progress_interval = 10.0

    # -- what tests, the demo and the command look at --------------------------------------------
    @property
    def pipeline(self) -> Pipeline:
        """The run's pipeline."""
        return self.loop.pipeline

    @property
    def dead(self) -> DeadLetterOutput:
        """The run's dead-letter output."""
        return self.loop.dead

    @property
    def committed(self) -> dict[Stream, int]:
        """Per owned partition, the group's committed offset."""
        return self.source.committed

    @property
    def consumer(self) -> GroupConsumer:
        """The consumer-group member."""
        return self.source.group

    @property
    def workers(self) -> list[MessageWorker]:
        """The message worker processes."""
        return self.source.workers

    # -- the command -----------------------------------------------------------------------------
    def ready(self) -> bool:
        """Readiness: this member owns partitions and is not shutting down (a spare replica is not ready)."""
        return self.loop.ready()

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        self.loop.stop()

    def update_gauges(self) -> None:
        """Refresh point-in-time gauges (before a scrape and with each progress line)."""
        self.loop.update_gauges()
        self.source.update_gauges()

    async def commit(self) -> None:
        """Commit the done prefix of the partitions owned now (dead-letters synced first)."""
        await self.loop.checkpoint()

    async def wait_commit(self) -> None:
        """Wait until the next commit that moved an offset."""
        await self.loop.wait_commit()

    async def run(self) -> int:
        """Consume until :meth:`stop`; returns the exit code (0 after a clean shutdown), raises the run's
        first fault."""
        self.loop.beat = self._beat
        await self.loop.drive(
            self.source,
            grace=self.kafka.shutdown_grace,
            commit_interval=self.kafka.commit_interval,
            periodic=[(self.progress_interval, self._report)],
        )
        return 0

    def closing_lines(self) -> list[str]:
        """After a stop, for people: how many fetched events were neither delivered nor dead-lettered
        (their offsets are not committed: the group reads them again), or nothing when every one was."""
        left = self.loop.unfinished + self.loop.unstarted
        if not left:
            return []
        within = "" if self.loop.faults.failed else f" within --shutdown-grace {self.kafka.shutdown_grace:g}s"
        return [
            f"currents-consumer: {left} fetched events were neither delivered nor dead-lettered{within}:"
            " their offsets were not committed, so the consumer group reads them again when a member next"
            " starts (Amplitude drops the events it already has by insert_id, within 7 days)"
        ]

    def _beat(self) -> None:
        if self.health is not None:
            self.health.beat()

    def _report(self) -> None:
        self.update_gauges()
        log.info("progress %s", self.loop.counts())
