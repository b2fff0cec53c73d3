"""One state file in a :class:`~consumer.positions.keeper.Keeper`, written only over the version this
process read or last wrote: of two processes keeping the same job's state, the second to write stops
instead of overwriting the first's (the replay's resume state, a follower's state)."""

from __future__ import annotations

from consumer.ops.faults import Fault
from consumer.positions.keeper import Conflict, Keeper, KeeperError


class KeptFile:
    """``name`` in ``keeper``, whose last version this process knows (``None``: it did not exist)."""

    def __init__(self, keeper: Keeper, name: str, version: str | None = None) -> None:
        self.keeper = keeper
        self.name = name
        self.version = version
        self.where = keeper.where(name)
        """Its path or URL, for messages."""

    @classmethod
    def read(cls, keeper: Keeper, name: str) -> tuple[KeptFile, bytes | None]:
        """The file and its bytes (``None`` when there is none yet); :class:`KeeperError` if it cannot be
        read."""
        stored = keeper.read(name)
        if stored is None:
            return cls(keeper, name), None
        return cls(keeper, name, stored.version), stored.data

    def write(self, data: bytes, what: str) -> None:
        """Write ``data`` (created if absent, else replacing the version known); a :class:`Fault` naming
        ``what`` if another process wrote or removed it since, :class:`KeeperError` if it cannot be
        written (the caller decides whether that ends the run)."""
        try:
            if self.version is None:
                self.version = self.keeper.create(self.name, data)
            else:
                self.version = self.keeper.replace(self.name, data, self.version)
        except Conflict:
            self.version = self._written_by_us(data, what)

    def _written_by_us(self, data: bytes, what: str) -> str:
        """After a lost conditional write: the version if the file holds ``data`` after all (the client
        retried a write whose answer was lost), else the :class:`Fault` of another writer."""
        stored = self.keeper.read(self.name)
        if stored is not None and stored.data == data:
            return stored.version
        raise Fault(
            f"another process wrote this job's {what} {self.where} (or removed it) since this run read it "
            "(is the same job running twice?): stopping without overwriting it"
        )


__all__ = ["KeeperError", "KeptFile"]
