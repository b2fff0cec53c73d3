"""``replay --follow``: what following a bucket adds to a replay, wired over the shared loop.

The follower's state (:mod:`consumer.positions.follow`) is kept where the replay's is (``--state-dir``: a
directory or a bucket prefix), one file per job and shard, ``follow-<job>[.shard-I-of-N].json``, beside
the job's lock. Its ledger decides what the :class:`~consumer.sources.storage.follow.Follower` hands out;
the :class:`~consumer.sources.storage.source.FileSource` reads it, dead-letters a damaged object once and
then counts it finished (a one-shot replay names it again next run instead), and dead-letters an object
rewritten after it was read (``rewritten_input``) instead of sending it again.

**Changing the number of shards.** A shard with no state of its own reads the states the job kept under
another sharding (read-only): until its first sweep completes, an object one of them finished — the one
whose shard held the object then — is done for it too. Nothing is lost; what is sent again is what the
old shards had in flight when they stopped (and what they finished after the new ones started, if both
ran at once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.events import CurrentsRecord, Stream
from consumer.ops.metrics import Metrics
from consumer.positions.follow import FollowLedger
from consumer.positions.follow_state import FollowState
from consumer.positions.keeper import Keeper, KeeperError, keeper_for
from consumer.positions.kept import KeptFile
from consumer.positions.resume import job_key, shard_suffix
from consumer.settings import Settings
from consumer.sources.storage.follow import Follower
from consumer.sources.storage.readahead import ObjectPool
from consumer.sources.storage.selection import Selection, Shard
from consumer.sources.storage.source import FileSource
from consumer.sources.storage.stores import Stores
from consumer.transform.prepare import Chunk

log = logging.getLogger("currents.follow")

_SHARDED = re.compile(r"^follow-(?P<job>[0-9a-f]+)(?:\.shard-(?P<index>\d+)-of-(?P<count>\d+))?\.json$")


@dataclass
class Following:
    """A follower of ``paths``: its ledger (and state), and where they are kept (``keeper`` ``None``:
    nowhere)."""

    paths: list[str]
    selection: Selection
    ledger: FollowLedger
    keeper: Keeper | None
    name: str

    @classmethod
    def load(
        cls,
        paths: list[str],
        settings: Settings,
        selection: Selection,
        destinations: Sequence[str],
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> Following:
        """The follower of ``paths`` with its state read (a new one the first time); ``ValueError`` if it
        cannot be read."""
        margin = settings.follow.landing_margin
        job = job_key(paths, selection.key(), tuple(destinations))
        name = f"follow-{job}{shard_suffix(selection.shard)}.json"
        if not settings.state_dir:
            log.warning("no state is kept (--state-dir ''): a restarted follower reads everything again")
            ledger = FollowLedger(FollowState(tuple(paths), margin), None, metrics, clock=clock)
            return cls(paths, selection, ledger, None, name)
        keeper: Keeper | None = None
        try:
            keeper = keeper_for(settings.state_dir)
            kept, data = KeptFile.read(keeper, name)
            state = FollowState.from_bytes(data, paths, margin)
            inherited = [] if data is not None else _other_shardings(keeper, job, name, paths, margin)
        except KeeperError as exc:
            raise ValueError(f"cannot read the follower state {exc}") from exc
        except ValueError as exc:
            where = keeper.where(name) if keeper is not None else settings.state_dir
            raise ValueError(f"cannot read the follower state {where}: {exc}") from exc
        ledger = FollowLedger(state, kept, metrics, clock=clock, inherited=inherited)
        return cls(paths, selection, ledger, keeper, name)

    @property
    def lock_name(self) -> str:
        """The job's lock, beside its state."""
        return self.name.removesuffix(".json") + ".lock"

    def source(
        self,
        settings: Settings,
        prepare: Callable[[Stream, list[CurrentsRecord]], Chunk],
        pool: ObjectPool | None,
    ) -> FileSource:
        """The file source of a follower: fed by its polls and sweeps, never ending."""
        stores = Stores()
        follow, ledger = settings.follow, self.ledger
        follower = Follower(
            self.paths,
            self.selection,
            ledger,
            ledger.metrics,
            poll_interval=follow.poll_interval,
            sweep_interval=follow.sweep_interval,
            late_window=follow.late_window,
            stores=stores,
            clock=ledger.clock,
        )
        ledger.wake = follower.wake
        return FileSource(
            follower,
            self.selection,
            ledger,
            prepare,
            in_flight=settings.input.files_in_flight,
            pool=pool,
            stores=stores,
            finish_damaged=True,
            rejected=ledger.pop_rejected,
        )


def _other_shardings(
    keeper: Keeper, job: str, name: str, paths: list[str], margin: float
) -> list[tuple[Shard | None, FollowState]]:
    """The states of ``job`` kept under another sharding, each with the shard it was kept for."""
    found = []
    for other in keeper.names(f"follow-{job}"):
        m = _SHARDED.match(other)
        if other == name or m is None or m["job"] != job:
            continue
        stored = keeper.read(other)
        if stored is None:
            continue
        shard = Shard(int(m["index"]), int(m["count"])) if m["count"] else None
        found.append((shard, FollowState.from_bytes(stored.data, paths, margin)))
        log.info(
            "inheriting what %s finished (kept %s)",
            keeper.where(other),
            shard.describe() if shard else "unsharded",
        )
    return found
