"""TLS in front of the embedded broker: certificates made with ``openssl`` and a TLS-terminating proxy.

Tansu 0.6 cannot serve TLS itself (its ``--cert`` and ``--key`` flags refuse to be given together),
so a test that needs Kafka over TLS runs :class:`TlsProxy` in front of a plaintext broker and makes
the broker advertise the proxy's address: every client connection, the bootstrap one and those to
the advertised broker, then goes through TLS, as it does to a managed Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "TlsProxy", "make_certificates"]


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate it signed for ``localhost`` and ``127.0.0.1``, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _self_signed_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", key, "-out", cert)  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """Create the certificates of :class:`Certificates` in ``directory`` (about a second of openssl)."""
    ca, ca_key = _self_signed_ca(directory, "test-ca")
    other_ca, _ = _self_signed_ca(directory, "other-ca")
    key, request, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", request
    )
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", extensions, "-out", cert)  # fmt: skip
    return Certificates(ca=ca, server_cert=cert, server_key=key, other_ca=other_ca)


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client TLS context trusting ``cafile`` only (what the harness's own clients use)."""
    return ssl.create_default_context(cafile=str(cafile))


class TlsProxy:
    """Accepts TLS on 127.0.0.1 and forwards the plaintext bytes to ``upstream_port``, both ways.

    Guarantees: :meth:`start` returns once the port listens; a client whose handshake fails is
    dropped (and never reaches the broker); an upstream that refuses (a broker down) closes the
    client's connection; :meth:`stop` closes the listener and every open connection.
    """

    def __init__(self, certificates: Certificates, upstream_port: int, port: int = 0) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certificates.server_cert, certificates.server_key)
        self._upstream_port = upstream_port
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        """Connections whose TLS handshake succeeded."""

    @property
    def port(self) -> int:
        """The port the proxy listens on (valid once started)."""
        assert self._server is not None, "TlsProxy is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen (TLS) on 127.0.0.1."""
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self._requested_port, ssl=self._context
        )

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
            except OSError:
                return
            try:
                await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
            finally:
                await _close(up_writer)
        finally:
            await _close(client_writer)
            self._tasks.discard(task)

    async def stop(self) -> None:
        """Stop listening and close every forwarded connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream or a connection error, then half-close ``writer``."""
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
