"""The schema-registry client's start-up check: reachable or not, the cause in words, the URL's password
never shown."""

from __future__ import annotations

import httpx
import pytest

from consumer.decode.registry import RegistryClient, RegistryUnavailable, masked_url


def test_a_password_in_the_url_is_masked_and_nothing_else_changes() -> None:
    assert masked_url("https://reader:s3cret@registry:8081/base") == "https://reader:***@registry:8081/base"
    assert masked_url("http://registry:8081") == "http://registry:8081"
    assert masked_url("http://reader@registry:8081") == "http://reader@registry:8081"


def client(status: int, body: bytes = b"[]") -> RegistryClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    return RegistryClient("http://u:pw-9@registry:8081/", client=httpx.AsyncClient(transport=transport))


@pytest.mark.parametrize("status", [200, 404])
async def test_an_answer_means_reachable(status: int) -> None:
    registry = client(status)
    await registry.check()  # what it serves is judged schema id by schema id, later
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
