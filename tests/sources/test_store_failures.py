"""An object store that cannot be reached, as a new user meets it: one line naming the URL and the cause
(never the client library's logs, tracebacks or own sentence, never a credential), within a bounded
time, exit 2 — and nothing listed, read or sent."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumer.ops.logs import CLOUD_LOGGERS, setup
from consumer.sources.storage import cloud as cloudstore
from consumer.sources.storage.store import StoreError

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replay(url: str, env: dict[str, str], cwd: Path) -> tuple[int, list[str], float]:
    """``replay URL`` in a clean environment (no cloud credentials of the caller's, no metadata
    service); its exit code, the stderr lines that are not progress lines, and the seconds it took."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        "AMPLITUDE_API_KEY": "k",
        "CURRENTS_LOG_FORMAT": "json",
        "AWS_EC2_METADATA_DISABLED": "true",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "replay", url, "--state-dir", str(cwd / "state")],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if '"msg":"progress ' not in ln]
    return proc.returncode, lines, time.monotonic() - began


def test_azure_without_an_account_is_our_one_line_not_adlfs_sentence(tmp_path: Path) -> None:
    code, lines, _ = replay("az://currents/braze", {}, tmp_path)
    assert code == 2
    assert lines == [
        "currents-consumer: cannot reach az://currents/braze: no Azure storage account: set "
        "AZURE_STORAGE_ACCOUNT_NAME (the credentials then come from the environment or the workload "
        "identity) or AZURE_STORAGE_CONNECTION_STRING, or name it in the URL "
        "(abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX)"
    ]


def test_a_store_that_refuses_connections_is_one_line_naming_the_url_and_the_cause(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
        "AWS_ACCESS_KEY_ID": "AKIAFIRSTWEEK",
        "AWS_SECRET_ACCESS_KEY": "first-week-secret-8d1",
    }
    code, lines, seconds = replay("s3://currents/braze", env, tmp_path)
    assert code == 2
    assert lines == ["currents-consumer: cannot reach s3://currents/braze: Connection refused"]
    assert seconds < cloudstore.REACH_WITHIN + 15
    assert not (tmp_path / "dead-letter").exists()


def test_the_first_request_is_given_a_bounded_time_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcsfs retries a refused connection for about 30 s by itself: the store's first request is cut at
    REACH_WITHIN, whatever the client is doing."""
    pytest.importorskip("gcsfs")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(cloudstore, "REACH_WITHIN", 2.0)
    store = cloudstore.CloudStore.for_url("gs://currents/braze")
    began = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.check("gs://currents/braze")
    assert time.monotonic() - began < 5
    assert str(info.value) == "cannot reach gs://currents/braze: no answer within 2s"


def test_the_cloud_libraries_logs_are_kept_quiet() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup("json", "debug")
        for name in CLOUD_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.ERROR), name
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in CLOUD_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_a_cause_never_carries_a_credential() -> None:
    exc = RuntimeError(
        "GET https://acct.blob.core.windows.net/c?restype=container&sv=2024&sig=abcSECRETdef%3D&se=2030 "
        "failed; DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S3CRETKEY==;\n"
        "proxy http://user:hunter2@proxy:3128"
    )
    said = cloudstore.why_unreachable(exc)
    assert "SECRET" not in said and "S3CRETKEY" not in said and "hunter2" not in said
    assert "\n" not in said and "sig=***" in said and "AccountKey=***" in said
