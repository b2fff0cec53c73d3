"""S3, GCS and Azure Blob storage through fsspec: the :class:`~consumer.sources.storage.store.Store` for URLs.

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
size, and a typical Currents object is fetched in one ranged GET. Every ranged GET is pinned, so an object
rewritten mid-read fails (a :class:`~consumer.sources.storage.files.ReadError`) instead of mixing contents: S3
to the ETag the object had when opened (s3fs sends ``If-Match``), GCS to the generation it was listed
with (``?generation=``: a replaced generation answers 404), Azure to the ETag it was listed with
(``If-Match``: a rewritten blob answers 412). gcsfs and adlfs pin nothing themselves.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import posixpath
import re
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any, TypeVar, cast

from consumer.sources.storage.store import (
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
# When this content of the object was written: GCS's timeCreated (of the generation: a metadata update
# moves ``updated`` only), S3's LastModified, Azure's last_modified (an overwrite may keep a blob's
# creation_time; a metadata update moves last_modified too, which at worst reads the blob again).
_LANDED_KEYS = ("timeCreated", "LastModified", "last_modified", "mtime")

T = TypeVar("T")


REACH_WITHIN = 60.0
"""Seconds :meth:`CloudStore.check` gives the first request to a store, the client library's own retries
included (gcsfs retries a refused connection for about 30 s): then the root is given up, one line."""

_CREDENTIALS = re.compile(
    r"(?i)\b(sig|se|AccountKey|SharedAccessSignature|password|token|secret)=[^&;\s'\"]+"
)
_USERINFO = re.compile(r"(//[^/@\s:]+):[^/@\s]+@")
_NO_CREDENTIALS = ("Credential", "NoCredentials", "RefreshError", "ClientAuthenticationError")


def _clean(text: str) -> str:
    """``text`` with credentials masked (SAS signatures, account keys, passwords in URLs), on one line."""
    text = _USERINFO.sub(r"\1:***@", _CREDENTIALS.sub(r"\1=***", text))
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return _clean(f"{type(exc).__name__}: {text[:300]}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def why_unreachable(exc: BaseException) -> str:
    """The cause of a failed request to a store, in words: a name that does not resolve, the OS's error
    of the connection, no answer in time, no credentials; else the exception's type and text (with any
    credential masked)."""
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return "the store's host name does not resolve (no network, or no DNS?)"
        if isinstance(cause, TimeoutError | asyncio.TimeoutError) or type(cause).__name__ == "FSTimeoutError":
            return f"no answer within {REACH_WITHIN:.0f}s"
        if isinstance(cause, OSError) and cause.errno and not isinstance(cause, FileNotFoundError):
            return os.strerror(cause.errno)
        if any(word in type(cause).__name__ for word in _NO_CREDENTIALS):
            return f"no usable credentials ({_describe(cause)})"
    return _describe(exc)


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
        if protocol == "gs":
            options["version_aware"] = True  # reads name a generation: bucket/key#generation
        try:
            fs, path = fsspec.core.url_to_fs(f"{protocol}://{url.partition('://')[2]}", **options)
        except Exception as exc:  # a backend's own configuration error (e.g. no Azure account name)
            if module == "adlfs" and isinstance(exc, ValueError) and "account_name" in str(exc):
                raise StoreError(
                    f"cannot reach {url}: no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME (the "
                    "credentials then come from the environment or the workload identity) or "
                    "AZURE_STORAGE_CONNECTION_STRING, or name it in the URL "
                    "(abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX)"
                ) from None
            raise StoreError(f"{url}: cannot set up the {module} client: {why_unreachable(exc)}") from None
        return cls(fs, scheme, str(path).split("/", 1)[0])

    # -- paths ---------------------------------------------------------------------------------------
    def _path(self, url: str) -> str:
        """``bucket/key`` of a URL (what fsspec calls a path)."""
        return cast(str, self.fs._strip_protocol(url)).rstrip("/")

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def _call(
        self, what: str, fn: Callable[..., T], *args: Any, within: float | None = None, **kwargs: Any
    ) -> T:
        """``fn(*args, **kwargs)``, an fsspec call given ``within`` seconds at most (its client's retries
        included); every failure a :class:`StoreError` naming ``what``."""
        if within is not None:
            kwargs["timeout"] = within  # fsspec's sync wrapper stops waiting then
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as exc:
            raise StoreError(f"no such object or prefix: {what}") from exc
        except Exception as exc:  # credentials, permissions, network after the client's own retries
            if within is not None and type(exc).__name__ in ("FSTimeoutError", "TimeoutError"):
                raise StoreError(f"cannot list {what}: no answer within {within:.0f}s") from exc
            raise StoreError(f"cannot list {what}: {_describe(exc)}") from exc

    # -- the Store interface -------------------------------------------------------------------------
    def check(self, root: str) -> None:
        """``StoreError`` unless ``root`` is an object or a non-empty prefix that can be listed: the first
        request to the store, given :data:`REACH_WITHIN` seconds (the client's own retries included),
        after which one line names the root and the cause."""
        try:
            self.fs.info(self._path(root), timeout=REACH_WITHIN)
        except FileNotFoundError as exc:
            raise StoreError(f"no such object or prefix: {root}") from exc
        except Exception as exc:  # no network, refused, no credentials, denied: in our words
            raise StoreError(f"cannot reach {root}: {why_unreachable(exc)}") from None

    def walk(self, root: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        """Objects under ``root`` in :func:`~consumer.sources.storage.store.listing_key` order, pruned by
        ``keep_dir``, side files passed over."""
        path = self._path(root)
        info = self._call(root, self.fs.info, path)
        if info.get("type") == "file":
            yield self._object(info)
            return
        yield from self._walk(path, keep_dir)

    def _ls(self, path: str, within: float | None = None) -> list[dict[str, Any]]:
        """The entries one level under the directory ``path``."""
        url = self._url(path)
        entries: list[dict[str, Any]] = self._call(url, self.fs.ls, path, detail=True, within=within)
        if _BACKENDS[self.scheme][1] == "adlfs" and [str(e["name"]).rstrip("/") for e in entries] == [path]:
            # adlfs lists a directory that holds a "directory marker" blob (``prefix/``, as tools
            # create) as that one empty file, hiding everything in it: list the level through the SDK.
            entries = self._call(url, _on_loop, self.fs, _azure_level, self.fs, path, within=within)
        return entries

    def _walk(self, path: str, keep_dir: KeepDir) -> Iterator[StoredObject]:
        subdirs, objects = self.list_level(self._url(path))
        yield from objects
        for sub in subdirs:
            base = posixpath.basename(sub)
            if not keep_dir(base):
                continue
            if base.startswith("date="):
                yield from self._flat(self._path(sub), keep_dir)  # one hour of one type: a small flat listing
            else:
                yield from self._walk(self._path(sub), keep_dir)

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
        landed = next((_seconds(info[k]) for k in _LANDED_KEYS if info.get(k)), 0.0)
        size = int(info.get("size") or 0)
        return StoredObject(self._url(str(info["name"])), size, version, remote=True, landed=landed)

    def list_level(self, path: str, within: float | None = None) -> tuple[list[str], list[StoredObject]]:
        """One delimiter listing of the directory ``path`` (a URL): its sub-directories and objects."""
        base = self._path(path)
        try:
            entries = self._ls(base, within)
        except StoreError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return [], []
            raise
        dirs: list[str] = []
        objects: list[StoredObject] = []
        for entry in sorted(entries, key=lambda e: listing_key(str(e["name"]).rstrip("/"))):
            name = str(entry["name"]).rstrip("/")
            if name == base:
                continue  # a "directory marker" object, or the prefix itself
            leaf = posixpath.basename(name)
            if entry.get("type") == "directory":
                if is_visible_dir(leaf):
                    dirs.append(self._url(name))
            elif is_candidate(leaf):
                objects.append(self._object(entry))
        return dirs, objects

    def list_flat(self, path: str, within: float | None = None) -> list[StoredObject]:
        """One recursive listing (no delimiter) of everything under the directory ``path`` (a URL)."""
        base = self._path(path)
        found = self._call(path, self.fs.find, base, detail=True, within=within)
        objects = []
        for name, info in found.items():
            parts = name[len(base) + 1 :].split("/")
            if is_candidate(parts[-1]) and all(is_visible_dir(p) for p in parts[:-1]):
                objects.append(self._object(info))
        return objects

    def open(self, obj: StoredObject) -> IO[bytes]:
        """A streaming reader with a :data:`READ_BLOCK` read-ahead cache whose reads all fetch the
        version listed (S3: the version when opened); a rewritten object fails the read."""
        path = self._path(obj.url)
        module = _BACKENDS[self.scheme][1]
        if module == "gcsfs" and obj.version.isdigit():
            path = f"{path}#{obj.version}"  # gcsfs then sends ?generation= with every ranged GET
        elif module == "adlfs" and obj.version and "|" not in obj.version:  # "size|mtime": no ETag listed
            blob_file = _pinned_blob_file()
            return cast(IO[bytes], blob_file(self.fs, path, obj.version, block_size=READ_BLOCK))
        return cast(IO[bytes], self.fs.open(path, "rb", block_size=READ_BLOCK, cache_type="readahead"))


def _seconds(value: Any) -> float:
    """A listing's time (a datetime, or an RFC 3339 text as GCS gives it) as UNIX seconds (0 if not one)."""
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _on_loop(fs: Any, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """``fn(*args)``, a coroutine function, run on the loop of the async file system ``fs`` to its end
    (or ``timeout`` seconds)."""
    from fsspec.asyn import sync

    return sync(fs.loop, fn, *args, timeout=timeout)


async def _azure_level(fs: Any, path: str) -> list[dict[str, Any]]:
    """adlfs's entries (one per blob and per sub-prefix) one level under the prefix ``path``."""
    container, _, key = path.partition("/")
    async with fs.service_client.get_container_client(container=container) as client:
        found = [item async for item in client.walk_blobs(name_starts_with=f"{key}/", include=["metadata"])]
    return cast(list[dict[str, Any]], await fs._details(found))


@functools.cache
def _pinned_blob_file() -> Any:
    """adlfs's reader with every ranged GET sent ``If-Match: <ETag>`` (adlfs sends none); made on the
    first Azure read, since adlfs is an optional dependency."""
    from adlfs.spec import AzureBlobFile
    from azure.core import MatchConditions
    from fsspec.asyn import sync_wrapper

    class PinnedBlobFile(AzureBlobFile):  # type: ignore[misc]
        """The ranged GET of adlfs's AzureBlobFile, with the ETag as a precondition."""

        def __init__(self, fs: Any, path: str, etag: str, block_size: int) -> None:
            self.etag = etag  # before the base class, which may fetch the first block
            super().__init__(fs, path, "rb", block_size=block_size, cache_type="readahead")

        async def _async_fetch_range(self, start: int, end: int | None = None, **kwargs: Any) -> bytes:
            length = None if end is None else min(end, self.size) - start
            async with self.container_client:
                stream = await self.container_client.download_blob(
                    blob=self.blob, offset=start, length=length, version_id=self.version_id,
                    max_concurrency=self.fs.max_concurrency or 1,
                    etag=f'"{self.etag}"', match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
                return cast(bytes, await stream.readall())

        _fetch_range = sync_wrapper(_async_fetch_range)

    return PinnedBlobFile
