"""The ``currents-consumer`` command line: one subcommand per job.

Each subcommand parses its flags, builds the one :class:`~consumer.settings.Settings` object and hands
each component its slice. Exit codes: 0 success, 1 some input could not be read (everything else was
processed), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from consumer import __version__
from consumer.settings import Settings, SettingsError, add_arguments, load

Command = Callable[[argparse.Namespace, Settings], int]


def _cmd_convert(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.convert import convert

    summary = convert(args.paths, settings.mapping, sys.stdout.buffer)
    if args.summary_json:
        print(json.dumps(summary.as_dict()), file=sys.stderr)
    else:
        print(summary.render(), file=sys.stderr)
    return 1 if summary.unreadable else 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.describe(), indent=2, default=str))
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The argument parser and the function behind each subcommand."""
    parser = argparse.ArgumentParser(
        prog="currents-consumer",
        description="Braze Currents (Avro) to Amplitude: Kafka daemon, file replay, dry-run convert.",
    )
    parser.add_argument("--version", action="version", version=f"currents-consumer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Command] = {}

    p = sub.add_parser("convert", help="print the Amplitude events for Currents Avro files (dry run)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Currents Avro files or directories (recursive)")
    p.add_argument("--summary-json", action="store_true", help="print the summary as JSON on stderr")
    add_arguments(p, ("mapping",))
    commands["convert"] = _cmd_convert

    p = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    add_arguments(p, ("delivery", "io", "mapping", "obs"))
    commands["config"] = _cmd_config
    return parser, commands


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``currents-consumer`` console script."""
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load(args)
    except SettingsError as exc:
        print(f"currents-consumer: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        code = commands[args.command](args, settings)
    except FileNotFoundError as exc:
        print(f"currents-consumer: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
