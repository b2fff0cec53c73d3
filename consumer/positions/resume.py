"""Replay resume state: which input files are finished, and how far unfinished ones got.

A local file is identified by its path, size and modification time, an object in a store by its URL
and version (S3 and Azure ETag, GCS generation), so a changed file is replayed again and an unchanged
one is never fetched twice. ``next_record[file]`` is the index of the first record not yet done (the
contiguous done prefix), so an interrupted replay resumes mid-file. The state is written atomically
(temporary file + rename) and only after the dead-letter output is synced, so it never claims more
than is safely done. A state that cannot be written is a :class:`~consumer.ops.faults.Fault` naming the
file and the OS error (the previous state stays as it was).

One state file per job: the sorted input roots (absolute paths, URLs as given without a trailing
``/``), when there is one the selection (event types, time window), and the destinations when they
are not Amplitude alone: a run that selects differently, or delivers to other destinations, must not
take another's finished files for its own.

The state names input files, which can be personal data: the directory is created ``0700`` and the
state file ``0600`` (:mod:`consumer.positions.private`), whatever mode an older version gave it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from consumer.ops.faults import io_fault
from consumer.positions.private import open_private, private_dir
from consumer.sources.store import StoredObject, is_url


def file_identity(path: str) -> str:
    """``path|size|mtime_ns`` of a local file."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def object_identity(obj: StoredObject) -> str:
    """``url|version`` of an object in a store; ``path|size|mtime_ns`` of a local file."""
    return f"{obj.url if obj.remote else os.path.abspath(obj.url)}|{obj.version}"


def _root(path: str) -> str:
    return path.rstrip("/") if is_url(path) else os.path.abspath(path)


class ResumeState:
    """Finished files and per-file progress for one replay job (keyed by its input paths)."""

    def __init__(self, path: Path | None, data: dict[str, Any] | None = None) -> None:
        self.path = path
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
    ) -> ResumeState:
        """The state of the replay of ``inputs`` (selected by ``selection``, a
        :meth:`~consumer.sources.selection.Selection.key`, delivered to ``destinations``) under ``state_dir``
        (``None`` = do not keep state)."""
        if not state_dir:
            return cls(None)
        material = "\0".join(sorted(_root(p) for p in inputs))
        if selection:
            material += "\0selection:" + selection
        if tuple(destinations) != ("amplitude",):  # Amplitude alone keeps the key it always had
            material += "\0destinations:" + ",".join(sorted(destinations))
        job = hashlib.sha256(material.encode()).hexdigest()[:16]
        path = Path(state_dir) / f"replay-{job}.json"
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            data = {}
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"cannot read resume state {path}: {exc}") from exc
        return cls(path, data if isinstance(data, dict) else {})

    def is_done(self, ident: str) -> bool:
        """Whether the file was fully processed by an earlier run."""
        return ident in self.done

    def mark_done(self, ident: str, records: int) -> None:
        """The file is finished: every record delivered, skipped or dead-lettered."""
        self.done[ident] = records
        self.next_record.pop(ident, None)

    def save(self) -> None:
        """Write the state atomically (no-op without a state directory); :class:`Fault` if it cannot be."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            private_dir(self.path.parent)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a left-over file would keep its own mode: the state must get 0600
            with open_private(tmp, append=False) as fh:
                fh.write(orjson.dumps({"done": self.done, "next_record": self.next_record}))
                fh.flush()
                os.fsync(fh.fileno())  # the rename must never expose an empty file after a power cut
            os.replace(tmp, self.path)
        except OSError as exc:
            raise io_fault(f"resume state {self.path}", exc) from None
