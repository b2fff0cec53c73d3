"""A real S3-compatible server for tests (moto's server mode on a free loopback port) and buckets laid
out exactly as Braze Currents writes them.

The server is started once per test session; each test gets its own bucket. The process environment
points botocore (and so s3fs) at it with ``AWS_ENDPOINT_URL`` and dummy keys, the way a deployment
points at an S3-compatible store — no code path of the product knows it is talking to moto.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

__all__ = ["S3", "aws_env", "listing_order", "s3_server"]


def listing_order(key: str) -> list[list[tuple[int, str]]]:
    """The order a listing gives ``key`` (``/``-separated, relative to the root), worked out apart from
    the product: directories depth first, each level by name with digit runs compared as numbers, so
    ``+0+9999.avro`` comes before ``+0+10000.avro`` (Currents' current keys do not pad offsets)."""
    return [
        [(int(run), "") if run.isdigit() else (-1, run) for run in re.split(r"(\d+)", part)]
        for part in key.split("/")
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass
class S3:
    """One bucket on the test server, and a boto3 client to arrange it."""

    endpoint: str
    bucket: str
    client: Any

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}".rstrip("/")

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def upload_tree(self, root: Path, prefix: str) -> dict[str, Path]:
        """Every file under ``root`` at ``prefix/<relative path>``; returns key -> local file."""
        keys: dict[str, Path] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            self.put(key, path.read_bytes())
            keys[key] = path
        return keys

    def etag(self, key: str) -> str:
        return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> S3:
    """A fresh, empty bucket with a unique name."""
    env = aws_env(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = f"currents-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(endpoint, bucket, client)
