"""The command line as a person meets it: ``--help`` of every command (built-in and the dev kit's),
usage errors (two lines, exit 2) and ``--log-level`` as a validated choice."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.commands.cli import BUILT_IN, build_parser
from consumer.commands.plugins import DEVKIT_COMMANDS

ROOT = Path(__file__).resolve().parents[2]
TITLES = (
    "input selection",
    "destinations",
    "Amplitude",
    "limits and retries",
    "mapping",
    "Movable Ink",
    "Remerge",
    "operations",
)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def cli(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``currents-consumer ARGV`` in a child, in a clean environment (no AMPLITUDE_* of the caller's);
    in ``cwd``, so that a command which wrongly ran leaves its output directories there."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        "COLUMNS": "100",
    }
    return subprocess.run(
        [sys.executable, "-m", "consumer", *argv],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_every_command_is_there() -> None:
    assert set(subcommands()) == {*BUILT_IN, *DEVKIT_COMMANDS}


@pytest.mark.parametrize("command", [*BUILT_IN, *DEVKIT_COMMANDS])
def test_every_argument_has_a_help_line_and_a_metavar_a_person_types(command: str) -> None:
    parser = subcommands()[command]
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{command} {name}: no help"
        if action.nargs == 0:  # a switch (--dry-run, --event-time, -h): no value to name
            continue
        if action.option_strings and action.choices is None:
            # argparse's fallback is the dest, a config path such as AMPLITUDE.API_KEY
            assert action.metavar, f"{command} {name}: no metavar"
        shown = parser._get_formatter()._format_args(action, action.dest.upper())
        assert "." not in shown.replace(" ...", ""), f"{command} {name}: metavar {shown!r}"
        assert not re.search(r"[A-Z]+\.[A-Z_]+", shown), f"{command} {name}: metavar {shown!r}"


def test_replay_help_lists_its_options_in_titled_groups_with_defaults_as_written() -> None:
    proc = cli("replay", "--help-all")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "usage: currents-consumer replay [options] PATH [PATH ...]"
    titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert [t for t in titles if t in TITLES] == list(TITLES), titles
    text = " ".join(proc.stdout.split())  # rich wraps long help lines
    assert "--retry-window DURATION" in text and "CURRENTS_RETRY_WINDOW; default 48h)" in text
    assert "--region {us,eu}" in text and "--api-key KEY" in text and "--gzip true|false" in text
    assert "--log-level {debug,info,warning,error}" in text
    assert "172800" not in text and "AMPLITUDE.API_KEY" not in proc.stdout
    assert "130  interrupted" in proc.stdout, "the exit-code table stays"


def test_each_command_lists_only_the_options_it_reads() -> None:
    commands = subcommands()

    def flags(command: str) -> set[str]:
        return {flag for a in commands[command]._actions for flag in a.option_strings}

    assert "--state-dir" in flags("replay") and "--state-dir" not in flags("run")
    assert "--topic" in flags("run") and "--topic" not in flags("replay")
    assert "--metrics-port" not in flags("redrive") and "--workers" not in flags("convert")
    assert "--event-type" not in flags("run")
    # redrive reaches the cluster of a dead-letter topic, but consumes no Currents topic
    assert {"--bootstrap-servers", "--security-protocol", "--sasl-password"} <= flags("redrive")
    assert not {"--topic", "--commit-interval", "--shutdown-grace"} & flags("redrive")
    sample = {"-h", "--help", "--help-all", "--config", "--events", "--seed", "--layout", "--now"}
    assert flags("sample") == sample
    assert {"--state-dir", "--topic", "--workers", "--event-type"} <= flags("config"), "config: every option"
    run_help = cli("run", "--help")
    assert run_help.returncode == 0 and "--topic TOPIC" in run_help.stdout
    assert "--state-dir" not in run_help.stdout


@pytest.mark.parametrize(
    ("argv", "prog", "wrong"),
    [
        (
            ("replay", "--region", "mars", "x"),
            "currents-consumer replay",
            "argument --region: invalid choice: 'mars'",
        ),
        (
            ("replay", "--log-level", "loud", "x"),
            "currents-consumer replay",
            "argument --log-level: invalid choice",
        ),
        (
            ("config", "--log-level", "loud"),
            "currents-consumer config",
            "argument --log-level: invalid choice",
        ),
        (("replay",), "currents-consumer replay", "the following arguments are required: PATH"),
        (("run", "--no-such-flag"), "currents-consumer run", "unrecognized arguments: --no-such-flag"),
        (
            ("replay", "x", "--api-keys", "k", "--sincee", "y"),
            "currents-consumer replay",
            "unrecognized arguments: --api-keys k --sincee y",
        ),
        ((), "currents-consumer", "the following arguments are required: COMMAND"),
    ],
)
def test_a_usage_error_is_two_lines_and_exit_2(
    argv: tuple[str, ...], prog: str, wrong: str, tmp_path: Path
) -> None:
    proc = cli(*argv, env={"AMPLITUDE_API_KEY": "k"}, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    first, second = proc.stderr.splitlines()  # never the whole usage, never a traceback
    assert first.startswith(f"{prog}: error: {wrong}"), first
    assert second == f"see '{prog} --help'"


def test_log_level_is_a_choice_in_any_case_from_every_source(tmp_path: Path) -> None:
    from consumer.settings import SettingsError, load

    parser = subcommands()["config"]
    assert load(parser.parse_args(["--log-level", "WARNING"]), {}).log_level == "warning"
    assert load(parser.parse_args([]), {"CURRENTS_LOG_LEVEL": "Debug"}).log_level == "debug"
    assert load(parser.parse_args([]), {}).log_level == "info"
    config = tmp_path / "c.toml"
    config.write_text('log_level = "ERROR"\n')
    assert load(parser.parse_args(["--config", str(config)]), {}).log_level == "error"
    with pytest.raises(
        SettingsError, match=r"--log-level \(from env CURRENTS_LOG_LEVEL\): 'loud' is not one of"
    ):
        load(parser.parse_args([]), {"CURRENTS_LOG_LEVEL": "loud"})
    proc = cli("config", env={"CURRENTS_LOG_LEVEL": "loud"}, cwd=tmp_path)
    assert proc.returncode == 2 and "configuration error: --log-level" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_each_secret_flag_warns_that_others_see_it_and_has_a_file_twin() -> None:
    from consumer.settings import OPTIONS

    secrets = [o for o in OPTIONS if o.secret]
    for name, parser in subcommands().items():
        actions = {flag: a for a in parser._actions for flag in a.option_strings}
        for opt in secrets:
            if opt.flag not in actions or name == "simulate":  # simulate's --movableink-key is its own
                continue
            assert "other users of this machine can see it" in str(actions[opt.flag].help), (name, opt.flag)
            twin = actions[opt.file_flag]
            assert twin.metavar == "PATH" and opt.file_env in str(twin.help), (name, opt.file_flag)


def test_config_shows_a_secret_read_from_a_file_by_its_file_never_its_value(tmp_path: Path) -> None:
    held = tmp_path / "amplitude-api-key"
    held.write_text("sk-from-a-mounted-file-42\n")
    proc = cli("config", "--json", env={"AMPLITUDE_API_KEY_FILE": str(held)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    described = json.loads(proc.stdout)
    assert described["amplitude.api_key"] == {
        "value": "***",
        "source": f"env AMPLITUDE_API_KEY_FILE {held}",
    }
    assert "sk-from-a-mounted" not in proc.stdout + proc.stderr


def test_simulate_on_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("simulate", "--port", str(port), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()  # never a traceback
    assert line.startswith(f"currents-consumer: simulate: cannot listen on 127.0.0.1:{port}: ")
    assert "ddress already in use" in line and "--port" in line


def test_simulate_help_and_the_docs_name_its_stats_endpoint() -> None:
    proc = cli("simulate", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "/_sim/stats" in proc.stdout
    for page in ("README.md", "devkit/README.md"):
        assert "/_sim/stats" in (ROOT / page).read_text(), page


@pytest.mark.parametrize("command", ["replay", "run"])
def test_help_fits_a_screen_and_help_all_shows_every_option(command: str, tmp_path: Path) -> None:
    short, full = cli(command, "--help"), cli(command, "--help-all")
    assert short.returncode == full.returncode == 0, short.stderr + full.stderr
    assert len(short.stdout.splitlines()) <= 65, f"{command} --help: {len(short.stdout.splitlines())} lines"
    flags = {f for a in subcommands()[command]._actions for f in a.option_strings if f.startswith("--")}
    listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", full.stdout))
    assert flags <= listed, f"--help-all misses {sorted(flags - listed)}"
    shown = set(re.findall(r"^  (--[a-z][a-z0-9-]*)", short.stdout, re.M))
    assert {"--api-key", "--api-key-file", "--destination", "--dead-letter"} <= shown
    assert not {"--retry-window", "--gzip", "--movableink-key", "--remerge-key"} & shown
    text = " ".join(short.stdout.split())
    assert "--help-all" in text and "docs/configuration.md" in text, "where the rest is"
    assert "(env AMPLITUDE_REGION; default us)" in text, "each listed option's variable and default"


def test_help_lists_the_options_of_the_enabled_destinations(tmp_path: Path) -> None:
    def shown(*argv: str, env: dict[str, str] | None = None) -> set[str]:
        proc = cli(*argv, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return set(re.findall(r"^  (--[a-z][a-z0-9-]*)", proc.stdout, re.M))

    by_flag = shown("replay", "--destination", "amplitude,movableink", "--help")
    assert {"--movableink-endpoint", "--movableink-key", "--api-key"} <= by_flag
    assert "--remerge-key" not in by_flag
    assert "--remerge-key" in shown("run", "--help", env={"CURRENTS_DESTINATIONS": "remerge"})
    config = tmp_path / "c.toml"
    config.write_text('destinations = ["amplitude", "remerge"]\n')
    assert "--remerge-key" in shown("replay", "--config", str(config), "--help")
