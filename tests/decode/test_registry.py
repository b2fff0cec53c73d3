"""The schema-registry client's start-up check: reachable or not, the cause in words, the URL's password
never shown."""

from __future__ import annotations

import asyncio
from array import array

import httpx
import pytest

from consumer.decode.avro import MessageRun
from consumer.decode.registry import RegistryClient, RegistryUnavailable, masked_url
from consumer.sources.kafka.client import MessageDecoder


def test_a_password_in_the_url_is_masked_and_nothing_else_changes() -> None:
    assert masked_url("https://reader:s3cret@registry:8081/base") == "https://reader:***@registry:8081/base"
    assert masked_url("http://registry:8081") == "http://registry:8081"
    assert masked_url("http://reader@registry:8081") == "http://reader@registry:8081"


def client(status: int, body: bytes = b"[]") -> RegistryClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    return RegistryClient("http://u:pw-9@registry:8081/", client=httpx.AsyncClient(transport=transport))


async def test_a_registrys_answer_means_reachable() -> None:
    registry = client(200, b'["braze-currents-value"]')
    await registry.check()
    await registry.close()


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (404, b"<html>Not Found</html>", "HTTP 404"),
        (200, b"<!doctype html>", "HTTP 200"),
        (200, b"{}", "HTTP 200"),
    ],
)
async def test_an_answer_that_is_not_a_registrys_is_refused_at_once(
    status: int, body: bytes, said: str
) -> None:
    from consumer.decode.registry import RegistryAnswerInvalid

    registry = client(status, body)
    with pytest.raises(
        RegistryAnswerInvalid,
        match=rf"^schema registry http://u:\*\*\*@registry:8081/subjects answered {said} ",
    ):
        await registry.check()
    stopping = asyncio.Event()
    assert await registry.wait_reachable(stopping, lambda: None) is False, "not waited for"
    assert registry.refused is not None and "pw-9" not in str(registry.refused)
    await registry.close()


@pytest.mark.parametrize("status", [401, 503])
async def test_an_error_status_is_unavailable_and_named(status: int) -> None:
    registry = client(status)
    with pytest.raises(RegistryUnavailable) as info:
        await registry.check()
    assert str(info.value) == f"schema registry unreachable at http://u:***@registry:8081: HTTP {status}"
    await registry.close()


async def test_a_name_that_does_not_resolve_is_said_so() -> None:
    registry = RegistryClient("http://u:pw-9@no-such-host.invalid:8081")
    with pytest.raises(RegistryUnavailable) as info:
        await registry.check()
    assert str(info.value) == (
        "schema registry unreachable at http://u:***@no-such-host.invalid:8081:"
        " the name no-such-host.invalid does not resolve"
    )
    await registry.close()


async def test_the_registry_is_asked_once_per_new_schema_id_of_a_batch_whatever_the_values() -> None:
    """Values with no id (none, empty, a wrong magic byte, too short) ask nothing; each id is asked once
    however many values carry it; a topic mapped to an event type is plain Avro and asks nothing; an id
    the registry does not know is remembered as unusable."""
    asked: list[str] = []
    record = b'{"schema": "{\\"type\\": \\"record\\", \\"name\\": \\"E\\", \\"fields\\": []}"}'

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/7"):
            return httpx.Response(200, content=record)
        return httpx.Response(404, content=b'{"error_code": 40403, "message": "Schema not found"}')

    registry = RegistryClient(
        "http://registry:8081", client=httpx.AsyncClient(transport=httpx.MockTransport(answer))
    )
    decoder = MessageDecoder(registry, {"plain": "users.behaviors.CustomEvent"})
    framed = [
        None,
        b"",
        b"\x01\x00\x00\x00\x07body",
        b"\x00\x00\x00",
        b"\x00\x00\x00\x00\x07a",
        b"\x00\x00\x00\x00\x07b",
    ]
    runs = [
        MessageRun("currents", 0, array("q", range(len(framed))), framed),
        MessageRun("currents", 1, array("q", [0, 1]), [b"\x00\x00\x00\x00\x09c", b"\x00\x00\x00\x00\x07d"]),
        MessageRun("plain", 0, array("q", [0]), [b"\x00\x00\x00\x00\x0bplain avro"]),
    ]
    await decoder.ensure(runs)
    assert sorted(asked) == ["/schemas/ids/7", "/schemas/ids/9"]
    assert registry.schema_for_id(7) is not None and set(decoder.unusable) == {9}
    await decoder.ensure(runs)  # known now, or known unusable: nothing is asked again
    assert len(asked) == 2
    await registry.close()
