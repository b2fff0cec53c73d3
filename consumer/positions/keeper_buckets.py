"""A :class:`~consumer.positions.keeper_types.Keeper` under a bucket prefix: S3, GCS or Azure Blob.

Each goes through the fsspec file system of :meth:`consumer.sources.storage.cloud.CloudStore.for_url`
(so the same credential chain as the replay's reads, and no other client library), calling the
store's own conditional writes, which are atomic on the server:

* S3: ``PutObject`` with ``If-None-Match: *`` (create) or ``If-Match: <ETag>`` (replace): 412
  PreconditionFailed, or 409 ConditionalRequestConflict while another conditional write of the key
  is under way. The version is the ETag, the MD5 of the bytes for these single-part writes: writing
  the very same bytes again keeps the version.
* GCS: a JSON API upload with ``ifGenerationMatch=0`` (create) or ``=<generation>`` (replace): 412.
  The version is the generation. A read fetches the generation the metadata named (``?generation=``),
  so bytes and version always belong together.
* Azure Blob: ``upload_blob`` with ``overwrite=False`` (``If-None-Match: *``: 409 BlobAlreadyExists)
  or ``etag=, match_condition=IfNotModified`` (``If-Match``: 412 ConditionNotMet). The version is
  the ETag.

A write whose answer was lost can be retried by the client library and then lose to itself: a
:class:`Conflict` only says the name is not as the writer expected; callers read it back to see whose
bytes it holds (:mod:`consumer.positions.lock`, :mod:`consumer.positions.resume` do).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

from consumer.positions.keeper_types import Conflict, KeeperError, Stored, describe
from consumer.sources.storage.cloud import CloudStore
from consumer.sources.storage.store import StoreError

__all__ = ["AzureKeeper", "BucketKeeper", "GCSKeeper", "S3Keeper"]

T = TypeVar("T")


class BucketKeeper:
    """What the three share: the location split into bucket and key prefix, calls run to their end on
    the file system's event loop, and failures turned into :class:`Conflict` or :class:`KeeperError`."""

    def __init__(self, location: str) -> None:
        self.location = location
        try:
            self.fs: Any = CloudStore.for_url(location).fs
        except StoreError as exc:
            raise KeeperError(location, str(exc)) from None
        path = str(self.fs._strip_protocol(location)).strip("/")
        self.bucket, _, key = path.partition("/")
        self.prefix = f"{key}/" if key else ""

    def where(self, name: str) -> str:
        """The URL of ``name``."""
        return f"{self.location.rstrip('/')}/{name}"

    def _key(self, name: str) -> str:
        return posixpath.join(self.prefix, name) if self.prefix else name

    def lost(self, exc: BaseException, replacing: bool) -> bool:
        """Whether ``exc`` says a conditional write lost (or, ``replacing``, the name is gone)."""
        raise NotImplementedError

    def run(self, where: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """``fn(*args)`` on the file system's loop; a client failure is a :class:`KeeperError` naming
        ``where`` (the URL of the name or of the location)."""
        from fsspec.asyn import sync

        try:
            return sync(self.fs.loop, fn, *args)  # type: ignore[no-any-return]
        except Conflict:
            raise
        except Exception as exc:  # credentials, permissions, network after the client's own retries
            raise KeeperError(where, describe(exc)) from exc

    def read(self, name: str) -> Stored | None:
        """The object's bytes and version; ``None`` if there is none."""
        return self.run(self.where(name), self._read, self._key(name))

    def create(self, name: str, data: bytes) -> str:
        """Write ``name`` unless it exists (:class:`Conflict`); its version."""
        return self._write(name, data, None)

    def replace(self, name: str, data: bytes, version: str) -> str:
        """Write ``name`` if its version is still ``version`` (else :class:`Conflict`); its new version."""
        return self._write(name, data, version)

    def _write(self, name: str, data: bytes, version: str | None) -> str:
        async def attempt() -> str:
            try:
                return await self._put(self._key(name), data, version)
            except Exception as exc:
                if self.lost(exc, replacing=version is not None):
                    what = "exists" if version is None else f"is no longer at version {version}"
                    raise Conflict(f"{self.where(name)} {what} ({describe(exc)})") from exc
                raise

        return self.run(self.where(name), attempt)

    def names(self, prefix: str = "") -> list[str]:
        """Objects directly under the location whose names start with ``prefix``, sorted."""
        keys = self.run(self.location, self._list, self.prefix + prefix)
        return sorted(k[len(self.prefix) :] for k in keys if not k.endswith("/"))

    async def _read(self, key: str) -> Stored | None:
        raise NotImplementedError

    async def _put(self, key: str, data: bytes, version: str | None = None) -> str:
        raise NotImplementedError

    async def _list(self, prefix: str) -> list[str]:
        raise NotImplementedError


def _s3_error(exc: BaseException) -> tuple[str | None, int | None]:
    """S3's error code and HTTP status behind an exception s3fs translated (``None`` if not S3's)."""
    response = getattr(exc.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code"), response.get("ResponseMetadata", {}).get("HTTPStatusCode")


class S3Keeper(BucketKeeper):
    """Objects under an ``s3://bucket/prefix`` (s3fs's client)."""

    def lost(self, exc: BaseException, replacing: bool) -> bool:
        if isinstance(exc, FileExistsError):
            return True  # s3fs's 412 to If-None-Match
        code, status = _s3_error(exc)
        if replacing and code == "NoSuchKey":
            return True
        return code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412

    async def _read(self, key: str) -> Stored | None:
        try:
            answer = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=key)
        except FileNotFoundError as exc:
            if _s3_error(exc)[0] == "NoSuchBucket":
                raise
            return None
        async with answer["Body"] as body:
            data = await body.read()
        return Stored(bytes(data), str(answer["ETag"]).strip('"'))

    async def _put(self, key: str, data: bytes, version: str | None = None) -> str:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": f'"{version}"'}
        answer = await self.fs._call_s3("put_object", Bucket=self.bucket, Key=key, Body=data, **condition)
        return str(answer["ETag"]).strip('"')

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        more: dict[str, str] = {}
        while True:
            page = await self.fs._call_s3(
                "list_objects_v2", Bucket=self.bucket, Prefix=prefix, Delimiter="/", **more
            )
            keys += [str(item["Key"]) for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return keys
            more = {"ContinuationToken": page["NextContinuationToken"]}


class GCSKeeper(BucketKeeper):
    """Objects under a ``gs://bucket/prefix`` (gcsfs's JSON API requests)."""

    BOUNDARY = "currents-keeper"

    def lost(self, exc: BaseException, replacing: bool) -> bool:
        return isinstance(exc, FileExistsError)  # gcsfs's 412 (a replaced or missing generation too)

    async def _read(self, key: str) -> Stored | None:
        for _ in range(10):
            try:
                meta = await self.fs._call("GET", "b/{}/o/{}", self.bucket, key, json_out=True)
            except FileNotFoundError:
                return None
            generation = str(meta["generation"])
            try:
                _, data = await self.fs._call(
                    "GET", "b/{}/o/{}", self.bucket, key, alt="media", generation=generation
                )
            except FileNotFoundError:
                continue  # replaced (or deleted) between the two requests: read it again
            return Stored(bytes(data), generation)
        raise RuntimeError("rewritten during each of 10 reads")

    async def _put(self, key: str, data: bytes, version: str | None = None) -> str:
        meta = json.dumps({"name": key})
        body = (
            (
                f"--{self.BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
                f"--{self.BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{self.BOUNDARY}--\r\n".encode()
        )
        answer = await self.fs._call(
            "POST", f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket)}/o",
            uploadType="multipart", ifGenerationMatch=version or "0", data=body, json_out=True,
            headers={"Content-Type": f'multipart/related; boundary="{self.BOUNDARY}"'},
        )  # fmt: skip
        return str(answer["generation"])

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            page = await self.fs._call(
                "GET", "b/{}/o", self.bucket, prefix=prefix, delimiter="/", pageToken=token, json_out=True
            )
            keys += [str(item["name"]) for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return keys


def _azure_code(exc: BaseException) -> str:
    """The storage error code azure-storage-blob sets on its exceptions (``""`` if none)."""
    code = getattr(exc, "error_code", None)  # a StorageErrorCode (a str enum) or a str
    return str(getattr(code, "value", code) or "")


class AzureKeeper(BucketKeeper):
    """Blobs under an ``az://container/prefix`` (adlfs's azure-storage-blob service client)."""

    def lost(self, exc: BaseException, replacing: bool) -> bool:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

        if isinstance(exc, ResourceExistsError) and not replacing:
            return True  # 409 BlobAlreadyExists
        if replacing and isinstance(exc, ResourceNotFoundError) and _azure_code(exc) == "BlobNotFound":
            return True
        return isinstance(exc, HttpResponseError) and exc.status_code == 412  # ConditionNotMet

    async def _read(self, key: str) -> Stored | None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self.fs.service_client.get_container_client(self.bucket) as container:
            try:
                stream = await container.download_blob(key)
            except ResourceNotFoundError as exc:
                if _azure_code(exc) == "ContainerNotFound":
                    raise
                return None
            data = await stream.readall()  # further ranged GETs, if any, are pinned to this ETag
            return Stored(bytes(data), str(stream.properties.etag).strip('"'))

    async def _put(self, key: str, data: bytes, version: str | None = None) -> str:
        from azure.core import MatchConditions

        condition: dict[str, Any] = {"overwrite": False}  # If-None-Match: *
        if version is not None:  # If-Match: "<etag>"
            condition = {"overwrite": True, "etag": f'"{version}"'}
            condition["match_condition"] = MatchConditions.IfNotModified
        async with self.fs.service_client.get_container_client(self.bucket) as container:
            answer = await container.get_blob_client(key).upload_blob(data, **condition)
        return str(answer["etag"]).strip('"')

    async def _list(self, prefix: str) -> list[str]:
        async with self.fs.service_client.get_container_client(self.bucket) as container:
            found = container.walk_blobs(name_starts_with=prefix, delimiter="/")
            return [str(item.name) async for item in found]  # sub-prefixes end with "/"
