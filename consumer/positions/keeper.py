"""Where positions are kept: a local directory or a bucket prefix, written only conditionally.

:func:`keeper_for` gives the :class:`Keeper` of a location as the user wrote it: a local directory
(:mod:`.keeper_local`), or ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``
(:mod:`.keeper_buckets`, through the same fsspec clients and credential chains as the replay's reads).
``create`` wins only if the name is absent and ``replace`` only if it still holds the version last
read or written, so of two processes writing one name at once exactly one wins and the other gets a
:class:`Conflict` (the contract: :mod:`.keeper_types`). The replay's resume state
(:mod:`.resume`) and the job lock (:mod:`.lock`) are kept through here.
"""

from __future__ import annotations

import re

from consumer.positions.keeper_buckets import AzureKeeper, GCSKeeper, S3Keeper
from consumer.positions.keeper_local import LocalKeeper
from consumer.positions.keeper_types import Conflict, Keeper, KeeperError, Stored

__all__ = ["Conflict", "Keeper", "KeeperError", "LocalKeeper", "Stored", "keeper_for"]

_BUCKETS: dict[str, type[S3Keeper | GCSKeeper | AzureKeeper]] = {
    "s3": S3Keeper,
    "gs": GCSKeeper,
    "gcs": GCSKeeper,
    "az": AzureKeeper,
    "abfs": AzureKeeper,
    "abfss": AzureKeeper,
}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def keeper_for(location: str) -> Keeper:
    """The keeper of ``location``: a local directory path, or an ``s3://``, ``gs://`` or ``az://`` URL
    (a bucket or container and an optional prefix). :class:`KeeperError` if a URL's client is not
    installed or cannot be set up."""
    scheme, sep, _ = location.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return LocalKeeper(location)
    kind = _BUCKETS.get(scheme.lower())
    if kind is None:
        raise KeeperError(location, f"positions cannot be kept at {scheme}:// (s3://, gs://, az://)")
    return kind(location)
