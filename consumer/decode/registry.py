"""Confluent Schema Registry: a cached client.

:class:`RegistryClient` resolves a schema id with ``GET /schemas/ids/{id}`` (basic auth optional) and
caches the parsed schema forever (ids are immutable in a registry). It distinguishes an id the registry
does not know (:class:`UnknownSchema`: the message is dead-lettered) from a registry that cannot be
reached (:class:`RegistryUnavailable`: the caller waits and retries, nothing is dead-lettered for it).
An answer that is not a registry's at all — a 200 whose body is not a JSON object with a ``schema``
string, a 404 without the registry's ``error_code`` body (a URL pointing at some other server) — is
:class:`RegistryAnswerInvalid`, a :class:`~consumer.ops.faults.Fault`: dead-lettering every message
for it would empty the topic into the dead-letters, and waiting would never end, so the run stops and
names the endpoint.

:meth:`RegistryClient.check` asks once (``GET /subjects``) whether the registry can be reached and is
one, so that a daemon says at start-up, before it joins the consumer group, that the URL does not
resolve, is refused, or answers something else (a 404, an HTML page: the URL of another server),
instead of only when the first Confluent-framed message arrives. Every message about the
registry names its URL with the password of any ``user:password@`` part masked, and the cause in words
(the name does not resolve, connection refused, no answer within N s, HTTP status).

The dev kit's ``currents_devkit.registry.LocalRegistry`` serves the shipped schemas over the same API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fastavro
import httpx
import orjson

from consumer.ops.faults import Fault
from consumer.ops.waits import wait_set

log = logging.getLogger("currents.daemon")


class UnknownSchema(Exception):
    """The registry answered that this schema id does not exist (or is not an Avro record)."""


class RegistryUnavailable(Exception):
    """The registry could not be asked (network, 5xx, auth): retry later."""


class RegistryAnswerInvalid(Fault):
    """The registry's URL answers something that is not a schema registry's answer (see the module)."""


def _answer(content: bytes) -> dict[str, Any] | None:
    """The JSON object of a body, or ``None`` when it is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


TIMEOUT = 10.0
"""Seconds a registry request may take, from connecting to the last byte of the answer."""


def masked_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def unreachable_reason(url: str, exc: httpx.HTTPError) -> str:
    """Why ``url`` could not be asked, in words: the name does not resolve, the OS error of the
    connection (refused, unreachable), no answer in time, or the exception's type."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:.0f}s"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"the name {urlsplit(url).hostname} does not resolve"
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


class RegistryClient:
    """Resolves Confluent schema ids to parsed Avro schemas, with a permanent cache.

    Implements :class:`consumer.decode.avro.SchemaResolver` (``schema_for_id`` answers from the cache).
    """

    def __init__(
        self, url: str, username: str = "", password: str = "", client: httpx.AsyncClient | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.shown_url = masked_url(self.url)
        """The URL as messages show it (no password)."""
        auth = httpx.BasicAuth(username, password) if username else None
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT, auth=auth)
        self._cache: dict[int, Any] = {}
        self.refused: RegistryAnswerInvalid | None = None
        """Set by :meth:`wait_reachable` when the URL answered but is not a registry."""

    def schema_for_id(self, schema_id: int) -> Any | None:
        """The cached parsed schema, or ``None`` until :meth:`fetch` has loaded it."""
        return self._cache.get(schema_id)

    def schemas(self) -> dict[int, Any]:
        """Every schema loaded so far, by id (the cache itself: do not change it)."""
        return self._cache

    async def check(self) -> None:
        """Ask the registry once whether it can be reached and is one (``GET /subjects``, which a
        registry answers with a JSON array of subject names). Raise :class:`RegistryUnavailable` naming
        the URL and the cause when it cannot be reached or answers with a status worth waiting out
        (5xx, 401, 403, 408, 429); :class:`RegistryAnswerInvalid` when it answers anything else (a 404,
        an HTML page): the URL names some other server, which waiting will not change."""
        try:
            response = await self._client.get(f"{self.url}/subjects")
        except httpx.HTTPError as exc:
            raise self._unavailable(unreachable_reason(self.url, exc)) from None
        status = response.status_code
        if status >= 500 or status in (401, 403, 408, 429):
            raise self._unavailable(f"HTTP {status}")
        try:
            subjects = orjson.loads(response.content) if status == 200 else None
        except orjson.JSONDecodeError:
            subjects = None
        if not isinstance(subjects, list):
            kind = response.headers.get("content-type", "no content type").split(";")[0].strip()
            raise RegistryAnswerInvalid(
                f"schema registry {self.shown_url}/subjects answered HTTP {status} ({kind}): not a schema "
                "registry's answer; is --schema-registry-url the registry's base URL?"
            )

    async def wait_reachable(self, stopping: asyncio.Event, beat: Callable[[], None]) -> bool:
        """:meth:`check` until it passes: while the registry cannot be reached, log why (its URL and
        the cause) and ask again after 1 s, 2 s ... 30 s, calling ``beat`` between attempts; ``False``
        if ``stopping`` is set first, or at once when the URL answers but is not a registry (the
        answer is kept in :attr:`refused` for the command to report; nothing is logged)."""
        wait = 1.0
        while not stopping.is_set():
            try:
                await self.check()
                return True
            except RegistryUnavailable as exc:
                log.error("%s; retrying in %.0fs", exc, wait)
            except RegistryAnswerInvalid as exc:
                self.refused = exc
                return False
            beat()
            await wait_set(stopping, wait)
            wait = min(30.0, wait * 2)
        return False

    def _unavailable(self, reason: str) -> RegistryUnavailable:
        return RegistryUnavailable(f"schema registry unreachable at {self.shown_url}: {reason}")

    async def fetch(self, schema_id: int) -> Any:
        """Load (once) and return the parsed schema of ``schema_id``."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        try:
            response = await self._client.get(f"{self.url}/schemas/ids/{schema_id}")
        except httpx.HTTPError as exc:
            raise self._unavailable(unreachable_reason(self.url, exc)) from None
        where = f"{self.shown_url}/schemas/ids/{schema_id}"
        status, body = response.status_code, _answer(response.content)
        if status == 404:
            if body is None or "error_code" not in body:
                raise RegistryAnswerInvalid(f"schema registry {where}: HTTP 404 that is not a registry's")
            raise UnknownSchema(f"schema id {schema_id} not found in the registry")
        if status != 200:
            raise self._unavailable(f"HTTP {status}")
        if body is None or not isinstance(body.get("schema"), str):
            kind = response.headers.get("content-type", "no content type")
            raise RegistryAnswerInvalid(
                f"schema registry {where}: HTTP 200 without a schema ({kind}): is the URL a schema registry?"
            )
        try:
            schema = fastavro.parse_schema(orjson.loads(body["schema"]))
        except Exception as exc:  # the registry's answer is input like any other
            raise UnknownSchema(f"schema id {schema_id}: unusable schema ({type(exc).__name__})") from None
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise UnknownSchema(f"schema id {schema_id} is not an Avro record")
        self._cache[schema_id] = schema
        return schema

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
