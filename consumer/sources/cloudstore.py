"""S3, GCS and Azure Blob storage through fsspec: the :class:`~consumer.sources.store.Store` for URLs.

``s3://bucket/prefix`` uses s3fs (extra ``[s3]``), ``gs://bucket/prefix`` gcsfs (``[gcs]``),
``az://container/prefix`` (or ``abfs[s]://container@account.dfs.core.windows.net/prefix``) adlfs
(``[azure]``). Credentials always come from each cloud's standard provider chain, never from a flag:

* S3: environment (``AWS_ACCESS_KEY_ID``...), shared profile (``AWS_PROFILE``), web identity (EKS
  IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, EKS Pod Identity), container and instance
  roles. ``AWS_REGION`` and ``AWS_ENDPOINT_URL`` (an S3-compatible server) are honoured by botocore.
* GCS: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, the metadata
  server of GKE Workload Identity).
* Azure: ``AZURE_STORAGE_ACCOUNT_NAME`` names the account (unless the URL does); then the
  account's key, SAS or connection string from the environment if set, else ``DefaultAzureCredential``
  (AKS workload identity, managed identity, environment service principal, Azure CLI).

Listing walks directory by directory (one ``ls`` per directory, so ``keep_dir`` prunes partitions
before they are listed), then lists each ``date=`` partition flat in one go: a partition holds one
event type and one hour, so each listing stays small however large the bucket. The client's listing
cache is off, so memory does not grow with the number of objects seen.

Reading streams: :meth:`CloudStore.open` returns an fsspec file with a read-ahead cache of
:data:`READ_BLOCK` bytes, so at most that much of an object is held per open object, whatever its
size, and a typical Currents object is fetched in one ranged GET. S3 reads are pinned to the ETag the
object had when opened (``If-Match``): an object rewritten mid-read fails instead of mixing contents.
"""

from __future__ import annotations

import importlib
import posixpath
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar, cast

from consumer.sources.store import (
    KeepDir,
    StoredObject,
    StoreError,
    is_candidate,
    is_visible_dir,
    listing_key,
    path_listing_key,
)

READ_BLOCK = 8 << 20
"""Bytes fetched per ranged GET and held in an open object's read-ahead cache."""

# scheme -> (fsspec protocol, module that implements it, the pip extra that installs it)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "s3": ("s3", "s3fs", "s3"),
    "gs": ("gs", "gcsfs", "gcs"),
    "gcs": ("gs", "gcsfs", "gcs"),
    "az": ("az", "adlfs", "azure"),
    "abfs": ("abfs", "adlfs", "azure"),
    "abfss": ("abfss", "adlfs", "azure"),
}
# The first of these an object's listing entry carries is its version: GCS generation, S3 and Azure ETag.
_VERSION_KEYS = ("generation", "ETag", "etag", "VersionId", "version_id")
_MTIME_KEYS = ("LastModified", "last_modified", "updated", "mtime")

T = TypeVar("T")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


class CloudStore:
    """Objects of one bucket or container, through one fsspec file system (thread-safe to share)."""

    def __init__(self, fs: Any, scheme: str, bucket: str) -> None:
        self.fs = fs
        self.scheme = scheme
        self.home = f"{scheme}://{bucket}"
        """What the URLs of its objects start with."""

    @classmethod
    def for_url(cls, url: str) -> CloudStore:
        """The store for ``url``; :class:`StoreError` if its extra is not installed or it is malformed."""
        scheme = url.partition("://")[0].lower()
        protocol, module, extra = _BACKENDS[scheme]
        try:
            importlib.import_module(module)
            import fsspec
        except ImportError:
            raise StoreError(
                f"{url}: reading {scheme}:// needs the optional dependency {module}: "
                f"pip install 'currents-consumer[{extra}]'"
            ) from None
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        try:
            fs, path = fsspec.core.url_to_fs(f"{protocol}://{url.partition('://')[2]}", **options)
        except Exception as exc:  # a backend's own configuration error (e.g. no Azure account name)
            raise StoreError(f"{url}: cannot set up the {module} client: {_describe(exc)}") from exc
        return cls(fs, scheme, str(path).split("/", 1)[0])

    # -- paths ---------------------------------------------------------------------------------------
    def _path(self, url: str) -> str:
        """``bucket/key`` of a URL (what fsspec calls a path)."""
        return cast(str, self.fs._strip_protocol(url)).rstrip("/")

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as exc:
            raise StoreError(f"no such object or prefix: {what}") from exc
        except Exception as exc:  # credentials, permissions, network after the client's own retries
            raise StoreError(f"cannot list {what}: {_describe(exc)}") from exc

    # -- the Store interface -------------------------------------------------------------------------
    def check(self, root: str) -> None:
        """``StoreError`` unless ``root`` is an object or a non-empty prefix that can be listed."""
        self._call(root, self.fs.info, self._path(root))

    def walk(self, root: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        """Objects under ``root`` in :func:`~consumer.sources.store.listing_key` order, pruned by
        ``keep_dir``, side files passed over."""
        path = self._path(root)
        info = self._call(root, self.fs.info, path)
        if info.get("type") == "file":
            yield self._object(info)
            return
        yield from self._walk(path, keep_dir)

    def _walk(self, path: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        entries = self._call(self._url(path), self.fs.ls, path, detail=True)
        entries = sorted(entries, key=lambda e: listing_key(str(e["name"]).rstrip("/")))
        subdirs: list[str] = []
        for entry in entries:
            name = str(entry["name"]).rstrip("/")
            if name == path:
                continue  # a "directory marker" object, or the prefix itself
            base = posixpath.basename(name)
            if entry.get("type") == "directory":
                if is_visible_dir(base) and keep_dir(base):
                    subdirs.append(name)
            elif is_candidate(base):
                yield self._object(entry)
        for sub in subdirs:
            if posixpath.basename(sub).startswith("date="):
                yield from self._flat(sub, keep_dir)  # one hour of one type: a small flat listing
            else:
                yield from self._walk(sub, keep_dir)

    def _flat(self, path: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        found = self._call(self._url(path), self.fs.find, path, detail=True)
        for name in sorted(found, key=lambda n: path_listing_key(n[len(path) + 1 :])):
            parts = name[len(path) + 1 :].split("/")
            if not is_candidate(parts[-1]):
                continue
            if all(is_visible_dir(p) and keep_dir(p) for p in parts[:-1]):
                yield self._object(found[name])

    def _object(self, info: dict[str, Any]) -> StoredObject:
        version = next((str(info[k]).strip('"') for k in _VERSION_KEYS if info.get(k)), "")
        if not version:
            mtime = next((str(info[k]) for k in _MTIME_KEYS if info.get(k)), "")
            version = f"{info.get('size')}|{mtime}"
        return StoredObject(self._url(str(info["name"])), int(info.get("size") or 0), version, remote=True)

    def open(self, obj: StoredObject) -> IO[bytes]:
        """A streaming reader with a :data:`READ_BLOCK` read-ahead cache (S3: pinned to the ETag)."""
        return cast(
            IO[bytes], self.fs.open(self._path(obj.url), "rb", block_size=READ_BLOCK, cache_type="readahead")
        )
