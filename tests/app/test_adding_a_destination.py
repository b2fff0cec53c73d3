"""``docs/architecture.md``'s "Adding a destination", followed: a destination from outside the product.

``tests/plugins/jsonhook`` is a distribution with one module (a section, a mapper, a sink and its
registry entry) and one entry point line. With it on the path, ``currents-consumer`` delivers to it
like to the built-in ones: its options on the command line, in the environment and in ``config``, its
``--help`` group, its secret masked, its retries, dead letters and exit codes. Nothing in the product
names it. A real HTTP server (aiohttp) is the webhook; ``replay`` is a real child process.
"""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from amplitude_harness import dead_letters
from currents_devkit.synth import Synth
from follow_harness import CONNECTOR, TYPES, avro, hour_folder
from replay_harness import last_json, running

PLUGIN = Path(__file__).parents[1] / "plugins" / "jsonhook"
KEY = "hook-secret-5f0c2a"
REJECTED_TYPE = "users.behaviors.Purchase"


class Webhook:
    """Takes each POSTed JSON event; answers 503 to the very first request (so one is retried) and
    400 to every purchase (so those are dead-lettered); keeps the ids it accepted."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.requests = 0
        self.authorizations: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.authorizations.add(request.headers.get("Authorization", ""))
        event: dict[str, Any] = orjson.loads(await request.read())
        if self.requests == 1:
            return web.Response(status=503)
        if event["event_type"] == REJECTED_TYPE:
            return web.Response(status=400)
        self.accepted.append(str(event["id"]))
        return web.Response(status=200)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield hook, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def write_files(root: Path) -> dict[str, str]:
    """Three Currents files (one per type); returns every record's id with its event type."""
    ids: dict[str, str] = {}
    for seed, event_type in enumerate(TYPES, start=1):
        records = list(Synth(seed, devices=20).records(event_type, 40))
        path = root / f"event_type={event_type}" / hour_folder(1.7e9) / f"{CONNECTOR}+0+{seed}.avro"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(avro(event_type, records, seed))
        ids.update({str(r["id"]): event_type for r in records})
    return ids


def plugin_env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "hook-key"
    key_file.write_text(KEY + "\n")
    return {"PYTHONPATH": str(PLUGIN), "JSONHOOK_KEY_FILE": str(key_file)}


async def test_a_destination_from_one_module_and_one_entry_point_gets_every_event(
    tmp_path: Path, webhook: tuple[Webhook, str]
) -> None:
    hook, url = webhook
    ids = write_files(tmp_path / "in")
    args = [
        "replay", str(tmp_path / "in"), "--destination", "jsonhook", "--jsonhook-endpoint", url,
        "--jsonhook-max-backoff", "0.2s", "--dead-letter", str(tmp_path / "dead-letter"),
        "--state-dir", "", "--summary-json",
    ]  # fmt: skip
    async with running(args, plugin_env(tmp_path), tmp_path) as command:
        code, out, err = await command.finish(120)
    assert code == 3, err  # some events were dead-lettered
    rejected = {i for i, t in ids.items() if t == REJECTED_TYPE}
    assert sorted(hook.accepted) == sorted(set(ids) - rejected)  # each once, none lost
    dead = [r for r in dead_letters(tmp_path / "dead-letter") if r.get("destination") == "jsonhook"]
    assert sorted(str(r["event"]["id"]) for r in dead) == sorted(rejected)
    assert {r["reason"] for r in dead} == {"http_400"}
    assert hook.authorizations == {f"Bearer {KEY}"}
    summary = last_json(err)
    assert summary["destinations"]["jsonhook"] == {
        "delivered": len(ids) - len(rejected),
        "skipped": {},
        "dead_lettered": {"http_400": len(rejected)},
    }, summary
    assert KEY not in out + err
    for path in (tmp_path / "dead-letter").iterdir():
        assert KEY not in path.read_text()


async def test_its_options_help_and_config_come_from_its_section(tmp_path: Path) -> None:
    env = {**plugin_env(tmp_path), "JSONHOOK_CONCURRENCY": "3"}
    async with running(["replay", "--help", "--destination", "jsonhook"], env, tmp_path) as command:
        code, out, _ = await command.finish(60)
    assert code == 0
    assert "JSON webhook:" in out and "--jsonhook-endpoint URL" in out and "--jsonhook-key-file" in out
    args = ["config", "--destination", "jsonhook", "--json"]
    async with running(args, env, tmp_path) as command:
        code, out, err = await command.finish(60)
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["jsonhook.concurrency"] == {"value": 3, "source": "env JSONHOOK_CONCURRENCY"}
    assert shown["jsonhook.key"]["value"] == "***" and KEY not in out
    assert shown["jsonhook.event_types"]["value"] == ["*"]


async def test_what_it_cannot_start_without_is_named(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    args = ["replay", str(tmp_path / "in"), "--destination", "jsonhook", "--state-dir", ""]
    async with running(args, plugin_env(tmp_path), tmp_path) as command:
        code, _, err = await command.finish(60)
    assert code == 2
    assert "jsonhook needs --jsonhook-endpoint" in err


def test_the_product_never_names_it() -> None:
    product = Path(__file__).parents[2] / "consumer"
    named = [p for p in product.rglob("*.py") if _named_in_code(p, "jsonhook")]
    assert named == []


async def test_no_plugin_no_destination(tmp_path: Path) -> None:
    """Without the distribution on the path, the name is refused like any unknown destination."""
    args = ["replay", str(tmp_path), "--destination", "jsonhook", "--state-dir", ""]
    async with running(args, {}, tmp_path) as command:
        code, _, err = await command.finish(60)
    assert code == 2
    assert "jsonhook" in err and "choose among amplitude, movableink, remerge" in err


def _named_in_code(path: Path, word: str) -> bool:
    """Whether ``word`` (any case, ``_`` and blanks ignored) is in an identifier or a string of
    ``path`` that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            texts = [node.id]
        elif isinstance(node, ast.Attribute):
            texts = [node.attr]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            texts = [node.name]
        elif isinstance(node, ast.arg):
            texts = [node.arg]
        elif isinstance(node, ast.ImportFrom):
            texts = [node.module or "", *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Import):
            texts = [alias.name for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts = [node.value]
        else:
            continue
        if any(word in text.lower().replace("_", "").replace(" ", "") for text in texts):
            return True
    return False


@pytest.mark.parametrize(
    ("word", "mapper"), [("movableink", "transform/movableink.py"), ("remerge", "transform/remerge.py")]
)
def test_a_partner_is_named_only_by_its_mapper_sink_settings_and_the_registry(word: str, mapper: str) -> None:
    product = Path(__file__).parents[2] / "consumer"
    naming = sorted(
        p.relative_to(product).as_posix() for p in product.rglob("*.py") if _named_in_code(p, word)
    )
    assert naming == sorted([mapper, "sinks/webhook.py", "settings/partners.py", "settings/destinations.py"])
