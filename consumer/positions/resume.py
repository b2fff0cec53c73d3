"""Replay resume state: which input files are finished, and how far unfinished ones got.

A local file is identified by its path, size and modification time, an object in a store by its URL
and version (S3 and Azure ETag, GCS generation), so a changed file is replayed again and an unchanged
one is never fetched twice. ``next_record[file]`` is the index of the first record not yet done (the
contiguous done prefix), so an interrupted replay resumes mid-file. The state is written atomically
and only after the dead-letter output is synced, so it never claims more than is safely done. A state
that cannot be written is a :class:`~consumer.ops.faults.Fault` naming the file (or URL) and the cause
(the previous state stays as it was).

The state directory is a local directory or a bucket prefix (``s3://``, ``gs://``, ``az://``), read
and written through its :class:`~consumer.positions.keeper.Keeper`. Every write is conditional on the
version this run read or last wrote (a create when there was none), so two processes running one job
cannot both write its state: the one that finds it changed stops with a ``Fault`` saying so instead of
overwriting the other's progress. :meth:`ResumeState.lock_name` names the job's
:class:`~consumer.positions.lock.JobLock`, which keeps a second process from starting at all.

One state file per job: the sorted input roots (absolute paths, URLs as given without a trailing
``/``), when there is one the selection (event types, time window), and the destinations when they
are not Amplitude alone: a run that selects differently, or delivers to other destinations, must not
take another's finished files for its own.

A shard (``--shard I/N``) is part of the identity too: shard ``I`` of ``N`` keeps
``replay-<job>.shard-I-of-N.json`` beside its siblings, so the shards of one job never share or
overwrite a state. A run sharded differently from the states already kept for the same job (another
N, or sharded where an earlier run was not, or the reverse) is refused with a ``ValueError``
naming them: its shards would take other objects than the finished ones, and a silent fresh start
would send the whole job again. Run it with the same sharding, or move the job's states away.

The state names input files, which can be personal data: a local directory is created ``0700`` and the
state file ``0600`` (:mod:`consumer.positions.private`), whatever mode an older version gave it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import orjson

from consumer.ops.faults import Fault
from consumer.positions.keeper import Keeper, KeeperError, LocalKeeper, keeper_for
from consumer.positions.kept import KeptFile
from consumer.sources.storage.selection import Shard
from consumer.sources.storage.store import StoredObject, is_url


def object_identity(obj: StoredObject) -> str:
    """``url|version`` of an object in a store; ``path|size|mtime_ns`` of a local file."""
    return f"{obj.url if obj.remote else os.path.abspath(obj.url)}|{obj.version}"


def _root(path: str) -> str:
    return path.rstrip("/") if is_url(path) else os.path.abspath(path)


def shard_suffix(shard: Shard | None) -> str:
    """What a shard adds to the name of a job's state and lock (``.shard-I-of-N``; nothing unsharded)."""
    return f".shard-{shard.index}-of-{shard.count}" if shard is not None else ""


def job_key(inputs: list[str], selection: str, destinations: tuple[str, ...]) -> str:
    """The key of a job in its state's name: its sorted input roots (absolute paths, URLs without a
    trailing ``/``), its selection (a :meth:`~consumer.sources.storage.selection.Selection.key`) and its
    destinations when they are not Amplitude alone."""
    material = "\0".join(sorted(_root(p) for p in inputs))
    if selection:
        material += "\0selection:" + selection
    if tuple(destinations) != ("amplitude",):  # Amplitude alone keeps the key it always had
        material += "\0destinations:" + ",".join(sorted(destinations))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _refuse_other_sharding(keeper: Keeper, job: str, shard: Shard | None) -> None:
    """``ValueError`` if a state of ``job`` kept under another shard count is in ``keeper``'s location."""
    count = shard.count if shard is not None else 1
    pattern = re.compile(rf"^replay-{job}(?:\.shard-(\d+)-of-(\d+))?\.json$")
    try:
        names = keeper.names(f"replay-{job}")
    except KeeperError as exc:
        raise ValueError(f"cannot read resume state directory {exc}") from exc
    for name in names:
        m = pattern.match(name)
        if m is None or int(m.group(2) or 1) == count:
            continue
        theirs = f"as shard {m.group(1)}/{m.group(2)}" if m.group(2) else "by an unsharded run"
        mine = shard.describe() if shard is not None else "unsharded"
        raise ValueError(
            f"resume state {keeper.where(name)} of this replay was kept {theirs}; this run is {mine}. "
            f"A different sharding takes other objects than the finished ones: run with the same "
            f"sharding, or move replay-{job}*.json out of {keeper.location} to start this job afresh"
        )


class ResumeState:
    """Finished files and per-file progress for one replay job (keyed by its input paths)."""

    def __init__(
        self,
        keeper: Keeper | None,
        name: str = "",
        data: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> None:
        self.keeper = keeper
        """Where the state is kept; ``None``: no state is kept."""
        self.name = name
        """The state's name in the keeper: ``replay-<job>[.shard-I-of-N].json``."""
        self.version = version
        """The version of the state read or last written (``None``: there was none yet)."""
        self.where: str | None = keeper.where(name) if keeper is not None else None
        """The state's path or URL, for messages (``None``: no state is kept)."""
        self.path: Path | None = keeper.directory / name if isinstance(keeper, LocalKeeper) else None
        """The local state file (``None``: no state is kept, or it is kept in a bucket: see ``where``)."""
        data = data or {}
        self.done: dict[str, int] = dict(data.get("done", {}))
        self.next_record: dict[str, int] = dict(data.get("next_record", {}))

    @classmethod
    def load(
        cls,
        state_dir: str | None,
        inputs: list[str],
        selection: str = "",
        destinations: tuple[str, ...] = ("amplitude",),
        shard: Shard | None = None,
    ) -> ResumeState:
        """The state of the replay of ``inputs`` (selected by ``selection``, a
        :meth:`~consumer.sources.storage.selection.Selection.key`, delivered to ``destinations``,
        ``shard`` of its objects) under ``state_dir`` (a directory or an ``s3://``, ``gs://``, ``az://``
        prefix; ``None`` = do not keep state). ``ValueError`` if the state cannot be read, or states of
        this job were kept with another sharding."""
        if not state_dir:
            return cls(None)
        job = job_key(inputs, selection, destinations)
        name = f"replay-{job}{shard_suffix(shard)}.json"
        try:
            keeper = keeper_for(state_dir)
        except KeeperError as exc:
            raise ValueError(f"cannot read resume state directory {exc}") from exc
        _refuse_other_sharding(keeper, job, shard)
        try:
            stored = keeper.read(name)
            data = orjson.loads(stored.data) if stored is not None else {}
        except KeeperError as exc:
            raise ValueError(f"cannot read resume state {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"cannot read resume state {keeper.where(name)}: {exc}") from exc
        version = stored.version if stored is not None else None
        return cls(keeper, name, data if isinstance(data, dict) else {}, version)

    def lock_name(self) -> str:
        """The name of this job's lock beside its state (``replay-<job>[.shard-I-of-N].lock``), for a
        :class:`~consumer.positions.lock.JobLock` on :attr:`keeper`; ``ValueError`` if no state is kept."""
        if self.keeper is None:
            raise ValueError("no resume state is kept, so there is no job lock")
        return self.name.removesuffix(".json") + ".lock"

    def is_done(self, ident: str) -> bool:
        """Whether the file was fully processed by an earlier run."""
        return ident in self.done

    def mark_done(self, ident: str, records: int) -> None:
        """The file is finished: every record delivered, skipped or dead-lettered."""
        self.done[ident] = records
        self.next_record.pop(ident, None)

    def save(self) -> None:
        """Write the state, atomically and only if no other process wrote it since this one read or
        last wrote it (no-op without a state directory); :class:`Fault` if it cannot be written or
        another process wrote it."""
        if self.keeper is None:
            return
        kept = KeptFile(self.keeper, self.name, self.version)
        try:
            kept.write(orjson.dumps({"done": self.done, "next_record": self.next_record}), "resume state")
        except KeeperError as exc:
            raise Fault(f"cannot write the resume state {exc}") from None
        self.version = kept.version


class ResumeLedger:
    """A replay's resume state as the :class:`~consumer.sources.storage.source.Ledger` of its file source:
    objects by identity (URL and version), finished ones passed over, unfinished ones resumed at their
    done prefix."""

    def __init__(self, state: ResumeState) -> None:
        self.state = state
        self.resumed = 0
        """Objects passed over because an earlier run finished them."""

    def admit(self, obj: StoredObject) -> int | None:
        """Records to skip in ``obj``, or ``None`` when an earlier run finished it (not fetched again)."""
        ident = object_identity(obj)
        if self.state.is_done(ident):
            self.resumed += 1
            return None
        return self.state.next_record.get(ident, 0)

    def progress(self, obj: StoredObject, next_record: int) -> None:
        """``obj`` is done up to ``next_record``."""
        self.state.next_record[object_identity(obj)] = next_record

    def finished(self, obj: StoredObject, records: int) -> None:
        """``obj`` is finished."""
        self.state.mark_done(object_identity(obj), records)

    def abandoned(self, obj: StoredObject) -> None:
        """Left unfinished: the next run reads it from its done prefix."""

    def save(self) -> None:
        """Write the state (a :class:`~consumer.ops.faults.Fault` if it cannot be)."""
        self.state.save()
