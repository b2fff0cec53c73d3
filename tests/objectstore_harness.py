"""Real object-store servers for tests, one per cloud, on free loopback ports, and buckets laid out
exactly as Braze Currents writes them:

* S3: moto's server mode (in-process), reached through ``AWS_ENDPOINT_URL`` and dummy keys;
* GCS: gcp-storage-emulator (in-process), reached through ``STORAGE_EMULATOR_HOST``;
* Azure Blob: Azurite (a Node.js process, ``.ci/node`` or ``$AZURITE_BLOB``), reached through
  ``AZURE_STORAGE_CONNECTION_STRING`` with Azurite's published development account.

Each test gets its own bucket (container), arranged through a client of its own (boto3, the JSON API
over httpx, azure-storage-blob), never through the fsspec client the product reads with. The process
environment points the product at the server the way a deployment points at a compatible store — no
code path of the product knows it is talking to an emulator.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import boto3
import httpx
import pytest
from currents_devkit.synth import Synth, write_currents_tree
from moto.server import ThreadedMotoServer

__all__ = [
    "CLOUDS",
    "GCS",
    "S3",
    "Azure",
    "ObjectBucket",
    "aws_env",
    "azurite_connection_string",
    "azurite_server",
    "currents_tree",
    "free_port",
    "gcs_server",
    "listing_order",
    "new_azure_container",
    "new_bucket",
    "new_gcs_bucket",
    "s3_server",
]

CLOUDS = ("s3", "gcs", "azure")
"""The names of the bucket fixtures of tests/conftest.py, one per cloud, for ``request.getfixturevalue``."""

# gcsfs (2025+) asks GCS's gRPC storage-control API what kind of bucket it reads; an emulator serves
# only the JSON API, so each new client would wait 60 s for that answer. Read at gcsfs's import: set
# before any test imports it (this module is imported by conftest.py). Real GCS answers it.
_GCS_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
for _name, _value in _GCS_ENV.items():
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parent.parent


def listing_order(key: str) -> list[list[tuple[int, str]]]:
    """The order a listing gives ``key`` (``/``-separated, relative to the root), worked out apart from
    the product: directories depth first, each level by name with digit runs compared as numbers, so
    ``+0+9999.avro`` comes before ``+0+10000.avro`` (Currents' current keys do not pad offsets)."""
    return [
        [(int(run), "") if run.isdigit() else (-1, run) for run in re.split(r"(\d+)", part)]
        for part in key.split("/")
    ]


def currents_tree(root: Path) -> list[Path]:
    """A small Currents tree with the side files real buckets have."""
    paths = write_currents_tree(
        root, Synth(21, devices=50), 600, integrations=2, hours=3, max_per_file=40,
        event_types=("users.messages.email.Send", "users.behaviors.CustomEvent", "users.messages.sms.Send"),
    )  # fmt: skip
    (root / "_SUCCESS").write_bytes(b"")
    (paths[0].parent / "part.avro.crc").write_bytes(b"crc")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.avro").write_bytes(paths[0].read_bytes())
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    """A server a test needs cannot be started: skipped on a developer's machine, a failure in CI (the
    ``CI`` variable set), where .ci/run installs every server and none may be silently left out."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run installs it, so this is a failure, not a skip)")
    pytest.skip(reason)


def aws_env(endpoint: str) -> dict[str, str]:
    """The environment of a process that reads this server (no real credentials, no metadata service)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


class ObjectBucket:
    """One bucket (an Azure container) on a test server: its URLs, its objects arranged apart from the
    product, and the environment of a process that reads it."""

    scheme: ClassVar[str]
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def url(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{key}".rstrip("/")

    def put(self, key: str, body: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        raise NotImplementedError

    def keys(self, prefix: str = "") -> list[str]:
        """Every key that starts with ``prefix``, sorted."""
        raise NotImplementedError

    def version(self, key: str) -> str:
        """What a listing of the product calls the object's version: S3 and Azure ETag, GCS generation."""
        raise NotImplementedError

    def upload_tree(self, root: Path, prefix: str) -> dict[str, Path]:
        """Every file under ``root`` at ``prefix/<relative path>``; returns key -> local file."""
        keys: dict[str, Path] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            self.put(key, path.read_bytes())
            keys[key] = path
        return keys


# -- S3 (moto) ---------------------------------------------------------------------------------------


@dataclass
class S3(ObjectBucket):
    """One bucket on the moto server, and a boto3 client to arrange it."""

    scheme: ClassVar[str] = "s3"
    endpoint: str
    bucket: str
    client: Any

    @property
    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(str(o["Key"]) for page in pages for o in page.get("Contents", []))

    def version(self, key: str) -> str:
        return self.etag(key)

    def etag(self, key: str) -> str:
        return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')


@contextlib.contextmanager
def s3_server(port: int | None = None) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and ``port`` (a free one by default); yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str, name: str | None = None) -> S3:
    """A fresh, empty bucket with a unique name (or ``name``)."""
    env = aws_env(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = name or f"currents-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(endpoint, bucket, client)


# -- GCS (gcp-storage-emulator) ----------------------------------------------------------------------


@dataclass
class GCS(ObjectBucket):
    """One bucket on the GCS emulator, arranged through the JSON API (httpx), as gsutil would."""

    scheme: ClassVar[str] = "gs"
    endpoint: str
    bucket: str
    client: httpx.Client = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint, **_GCS_ENV}

    def _object(self, key: str) -> str:
        return f"/storage/v1/b/{self.bucket}/o/{quote(key, safe='')}"

    def put(self, key: str, body: bytes) -> None:
        path = f"/upload/storage/v1/b/{self.bucket}/o"
        if body:
            self.client.post(
                path, params={"uploadType": "media", "name": key}, content=body
            ).raise_for_status()
            return
        # The emulator fails a media upload of no bytes; a multipart one (metadata, empty media) works.
        boundary = "currents-empty"
        parts = (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{json.dumps({'name': key})}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--{boundary}--\r\n"
        )
        headers = {"Content-Type": f"multipart/related; boundary={boundary}"}
        self.client.post(
            path, params={"uploadType": "multipart"}, content=parts, headers=headers
        ).raise_for_status()

    def delete(self, key: str) -> None:
        self.client.delete(self._object(key)).raise_for_status()

    def get(self, key: str) -> bytes:
        response = self.client.get(self._object(key), params={"alt": "media"})
        response.raise_for_status()
        return response.content

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            params = {"prefix": prefix, **({"pageToken": token} if token else {})}
            response = self.client.get(f"/storage/v1/b/{self.bucket}/o", params=params)
            response.raise_for_status()
            page = response.json()
            found += [str(item["name"]) for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(found)

    def version(self, key: str) -> str:
        response = self.client.get(self._object(key))
        response.raise_for_status()
        return str(response.json()["generation"])


def _honour_generations() -> None:
    """Make the emulator answer a read of an object's generation as GCS does.

    GCS serves ``?generation=N`` only while N is the object's live generation (or a kept noncurrent
    one, with versioning on): a rewritten object answers 404 to a read of the generation it replaced.
    The emulator ignores the parameter and serves the newest bytes, which would hide whether the
    product pins its reads. Wrapped once per process, in the emulator's own route table.
    """
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    def pinned(handler: Callable[..., Any]) -> Callable[..., Any]:
        def handle(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
            wanted = (request.query.get("generation") or [None])[0]
            if wanted is not None and "softDeleted" not in request.query:
                try:
                    live = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
                except Exception:  # the handler answers a missing object itself
                    live = None
                if live is not None and str(live["generation"]) != str(wanted):
                    response.status = HTTPStatus.NOT_FOUND
                    return None
            return handler(request, response, storage, *args, **kwargs)

        handle.pinned = True  # type: ignore[attr-defined]
        return handle

    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in (objects.download, objects.get) and not getattr(handler, "pinned", False):
                handlers[method] = pinned(handler)


def _upload_name(request: Any) -> str | None:
    """The object an emulator upload request names: ``?name=``, else its multipart metadata, else the
    JSON body that starts a resumable upload."""
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data
    meta: dict[str, Any] = {}
    if isinstance(data, dict):
        meta = data["meta"] if isinstance(data.get("meta"), dict) else data
    return str(meta["name"]) if meta.get("name") else None


def _live_generation(storage: Any, bucket: str, name: str | None) -> str:
    """The emulator's live generation of an object, ``"0"`` when there is none (as GCS counts it)."""
    try:
        live = storage.get_file_obj(bucket, name) if name else None
    except Exception:  # NotFound
        live = None
    return "0" if live is None else str(live["generation"])


def _honour_upload_preconditions() -> None:
    """Make the emulator refuse an upload whose ``ifGenerationMatch`` does not hold, as GCS does.

    GCS answers 412 Precondition Failed to a JSON API upload with ``ifGenerationMatch=0`` when the
    object exists, and with ``ifGenerationMatch=N`` unless N is the object's live generation (a missing
    object fails too). The emulator (gcp-storage-emulator 2026.7.19) ignores the parameter and
    overwrites, so a conditional write could never be seen to lose against it. This enforces the
    precondition inside the emulator's upload handler (media, multipart and the start of a resumable
    upload), in tests only; the check and the write hold one lock (the emulator serves one request at a
    time anyway). Wrapped once per process, in the emulator's own route table.
    """
    import threading

    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    lock = threading.Lock()

    def conditional(handler: Callable[..., Any]) -> Callable[..., Any]:
        def handle(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
            wanted = (request.query.get("ifGenerationMatch") or [None])[0]
            bucket = request.params["bucket_name"]
            if wanted is None or storage.get_bucket(bucket) is None:
                return handler(request, response, storage, *args, **kwargs)  # (a missing bucket: 404)
            with lock:
                if _live_generation(storage, bucket, _upload_name(request)) != str(wanted):
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json({"error": {"code": 412, "message": "conditionNotMet: ifGenerationMatch"}})
                    return None
                return handler(request, response, storage, *args, **kwargs)

        handle.conditional = True  # type: ignore[attr-defined]
        return handle

    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is objects.insert and not getattr(handler, "conditional", False):
                handlers[method] = conditional(handler)


@contextlib.contextmanager
def gcs_server(port: int | None = None) -> Iterator[str]:
    """gcp-storage-emulator (in memory) on 127.0.0.1 and ``port`` (a free one by default); yields its
    endpoint URL."""
    try:
        from gcp_storage_emulator.server import create_server
    except ImportError:
        unavailable("gcp-storage-emulator is not installed: pip install -e '.[dev]'")
        raise
    _honour_generations()
    _honour_upload_preconditions()
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_gcs_bucket(endpoint: str, name: str | None = None) -> GCS:
    """A fresh, empty bucket with a unique name (or ``name``)."""
    client = httpx.Client(base_url=endpoint, timeout=30)
    bucket = name or f"currents-{uuid.uuid4().hex[:12]}"
    client.post("/storage/v1/b", params={"project": "test"}, json={"name": bucket}).raise_for_status()
    return GCS(endpoint, bucket, client)


# -- Azure Blob (Azurite) ----------------------------------------------------------------------------

# Azurite's one built-in account and key, published in its documentation for every installation:
# not a secret, and accepted by no real Azure account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azure(ObjectBucket):
    """One container on Azurite, arranged through azure-storage-blob (not adlfs, which the product uses)."""

    scheme: ClassVar[str] = "az"
    connection_string: str = field(repr=False)
    bucket: str
    client: Any = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def put(self, key: str, body: bytes) -> None:
        self.client.upload_blob(key, body, overwrite=True)

    def delete(self, key: str) -> None:
        self.client.delete_blob(key)

    def get(self, key: str) -> bytes:
        return bytes(self.client.download_blob(key).readall())

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(str(b.name) for b in self.client.list_blobs(name_starts_with=prefix))

    def version(self, key: str) -> str:
        return str(self.client.get_blob_client(key).get_blob_properties().etag).strip('"')


def azurite_binary() -> str | None:
    """Azurite's blob server: ``$AZURITE_BLOB``, else what .ci/run installs in .ci/node, else PATH."""
    installed = REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
    return (
        os.environ.get("AZURITE_BLOB")
        or (str(installed) if installed.exists() else None)
        or shutil.which("azurite-blob")
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Azurite did not listen on {port} within {within}s: {log.read_text()[-2000:]}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def azurite_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """Azurite's blob service (in memory) on 127.0.0.1 and ``port`` (a free one by default), its log in
    ``workdir``; yields the connection string of its account. Stopped (then killed, if it must be) on
    exit."""
    binary = azurite_binary()
    if binary is None:
        unavailable("Azurite is not installed: npm install --prefix .ci/node azurite@3 (what .ci/run does)")
        raise RuntimeError("unreachable")
    port = port or free_port()
    log = workdir / "azurite.log"
    command = [
        binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
        "--skipApiVersionCheck", "--disableProductStyleUrl",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(port, proc, log, within=60)
        yield azurite_connection_string(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def azurite_connection_string(port: int) -> str:
    """The connection string of Azurite's account on ``port`` (whether it listens yet or not)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def new_azure_container(connection_string: str, name: str | None = None) -> Azure:
    """A fresh, empty container with a unique name (or ``name``)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    name = name or f"currents-{uuid.uuid4().hex[:12]}"
    return Azure(connection_string, name, service.create_container(name))
