"""Exit codes (precedence, ``--help``), the outage log (one line per state change plus a summary) and the
schema registry's unexpected answers (a fault naming the endpoint, not a dead-letter per message)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import pytest

from consumer.commands.cli import build_parser
from consumer.decode.registry import RegistryAnswerInvalid, RegistryClient, UnknownSchema
from consumer.delivery.outage import OutageLog
from consumer.ops.exits import ExitCode, exit_code
from consumer.ops.faults import Fault, Faults
from consumer.ops.summary import Summary


def test_exit_codes_follow_their_precedence_and_the_summary_carries_them() -> None:
    s = Summary()
    assert exit_code(s) is ExitCode.OK
    s.skipped["no_identity"] += 3
    assert exit_code(s) is ExitCode.OK, "a skip by a mapping rule is success"
    s.dead_lettered["invalid_api_key"] += 1
    assert exit_code(s) is ExitCode.DEAD_LETTERED
    s.unreadable.append("a.avro: truncated")
    assert exit_code(s) is ExitCode.UNREADABLE
    assert exit_code(s, interrupted=True) is ExitCode.INTERRUPTED
    assert exit_code(s, interrupted=True, fault=True) is ExitCode.FAULT
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]
    s.exit = (3, "dead_lettered")
    assert s.as_dict()["exit_code"] == 3 and s.as_dict()["exit"] == "dead_lettered"


@pytest.mark.parametrize("command", ["replay", "run", "redrive", "convert"])
def test_every_reading_command_documents_its_exit_codes(command: str) -> None:
    parser, _ = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(choices, dict)
    text = choices[command].format_help()
    for line in (
        "0    ok",
        "1    unreadable",
        "2    usage",
        "3    dead_lettered",
        "4    fault",
        "130  interrupted",
    ):
        assert line in text


def test_faults_keep_the_first_and_tell_every_listener_once() -> None:
    faults, told = Faults(), Counter[str]()
    faults.listen(lambda f: told.update([str(f)]))
    faults.report(Fault("first"))
    faults.report(Fault("second"))
    late: list[str] = []
    faults.listen(lambda f: late.append(str(f)))
    assert told == Counter({"first": 1}) and late == ["first"]
    with pytest.raises(Fault, match="first"):
        faults.raise_first()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_long_outage_logs_state_changes_and_a_periodic_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog("amplitude", summary_every=60.0, clock=clock)
    caplog.set_level(logging.DEBUG, "currents.delivery")
    for _ in range(600):  # ten minutes of a retry per second
        outage.retrying("http_503", 100, 0.0, 5000)
        clock.now += 1.0
    outage.delivered()
    outage.delivered()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert warnings[0].startswith("amplitude failing (http_503): 100 events retry in 0.0s")
    assert len(warnings) == 10, warnings  # the first line, then one summary a minute
    assert all(
        "still failing since 2023-11-14T22:13:20Z" in w and "5000 events held" in w for w in warnings[1:]
    )
    assert infos == ["amplitude recovered after 600s failing (600 retries)"]
    assert not any("-0.0s" in r.getMessage() for r in caplog.records)


def registry(status: int, body: bytes, content_type: str = "application/json") -> RegistryClient:
    transport = httpx.MockTransport(
        lambda _: httpx.Response(status, content=body, headers={"content-type": content_type})
    )
    return RegistryClient("http://registry.test:8081", client=httpx.AsyncClient(transport=transport))


async def test_a_registry_url_answering_garbage_is_a_fault_naming_the_endpoint() -> None:
    for client in (
        registry(200, b"<html>login</html>", "text/html"),
        registry(404, b"Not Found", "text/plain"),
    ):
        with pytest.raises(RegistryAnswerInvalid, match=r"http://registry\.test:8081/schemas/ids/7"):
            await client.fetch(7)
        await client.close()
    client = registry(404, b'{"error_code": 40403, "message": "Schema not found"}')
    with pytest.raises(UnknownSchema):  # the registry's own answer: that message is dead-lettered
        await client.fetch(7)
    await client.close()


def test_a_write_check_whose_directory_vanishes_under_it_probes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards starting together check one directory at once: another's check may remove the directory it
    made for a moment while this one probes in it. The probe is made again, not a fault."""
    from consumer.ops import faults

    real, calls = tempfile.mkstemp, list[Path]()

    def vanishing_once(prefix: str, dir: Path) -> tuple[int, str]:
        calls.append(dir)
        if len(calls) == 1:
            os.rmdir(dir)  # another process's check removing what it made
            raise FileNotFoundError(2, "No such file or directory", str(dir))
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(tempfile, "mkstemp", vanishing_once)
    target = tmp_path / "state" / "shard"
    faults.check_writable(str(target), "resume state directory")
    assert len(calls) == 2 and not (tmp_path / "state").exists()


def test_a_write_check_whose_directory_keeps_vanishing_is_a_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consumer.ops import faults

    def always_gone(prefix: str, dir: Path) -> tuple[int, str]:
        raise FileNotFoundError(2, "No such file or directory", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", always_gone)
    with pytest.raises(Fault, match=r"resume state directory .*No such file or directory"):
        faults.check_writable(str(tmp_path / "state"), "resume state directory")
