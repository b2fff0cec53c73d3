"""The ``currents-consumer`` argument parser: its subcommands, their flags, help and usage errors.

Help is laid out by rich-argparse (colour on a terminal, plain text in a pipe), each command's
settings grouped under the titles of :data:`consumer.settings.fields.GROUPS`; a command lists only
the option groups it reads. A usage error prints two lines (what is wrong, where help is) and exits
2, as git and pip do, instead of argparse's whole usage block first.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from rich_argparse import RawDescriptionRichHelpFormatter

from consumer import __version__
from consumer.commands.plugins import Command, register_plugins
from consumer.ops.exits import EPILOG
from consumer.settings import OPTIONS, Option, add_arguments, names, parse_duration
from consumer.settings.fields import parse_list
from consumer.settings.model import GROUPS


class HelpFormatter(RawDescriptionRichHelpFormatter):
    """rich-argparse's layout; group titles as declared (not Title Cased), epilogs as written."""

    group_name_formatter = str


_OPTION_OF_DEST: dict[str, Option] = {
    **{o.key: o for o in OPTIONS},
    **{o.file_key: o for o in OPTIONS if o.secret},
}
"""The option behind each settings flag, by its argparse ``dest`` (a secret's ``-file`` twin too)."""

CONFIGURATION_DOC = "docs/configuration.md"


class _HelpAll(argparse.Action):
    """``--help-all``: the help with every option, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        if isinstance(parser, CommandLineParser):
            parser.full_help = True
        parser.print_help()
        parser.exit()


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are two lines, whose usage line is short and whose help uses
    :class:`HelpFormatter`; ``add_parser`` makes subcommands of this class too, plugins' included.

    ``--help`` lists the common options (declared ``common``) and those of the enabled destinations
    (:attr:`destinations`); ``--help-all`` lists every one."""

    destinations: tuple[str, ...] = ("amplitude",)
    """The destinations whose options ``--help`` lists (set by :func:`build`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.full_help = False
        if self.add_help:
            self.add_argument("--help-all", action=_HelpAll, help="show every option")

    def error(self, message: str) -> NoReturn:
        """``PROG: error: MESSAGE`` and where to find help, on stderr; exit 2 (bad usage)."""
        self.exit(2, f"{self.prog}: error: {message}\nsee '{self.prog} --help'\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """argparse's parse, except that words no parser took are an error of the subcommand they were
        given to (``currents-consumer run: error: ...``, its help named), not of the top level."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._subcommand(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _subcommand(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, argparse.ArgumentParser):
                    return chosen
        return self

    def format_usage(self) -> str:
        """The usage line, with ``[options]`` in place of every option: help lists them below."""
        self._shorten_usage()
        return super().format_usage()

    def format_help(self) -> str:
        """The whole help: usage, positional arguments, the option groups, the epilog; without
        :attr:`full_help`, only the common options and those of the enabled destinations."""
        self._shorten_usage()
        hidden = [] if self.full_help else self._hidden()
        saved = [(action, action.help) for action in self._actions]
        for action in hidden:
            action.help = argparse.SUPPRESS
        for action in self._actions:
            if isinstance(action, _HelpAll):
                action.help = (
                    f"show all options: {len(hidden)} more (tuning, limits, destinations not enabled); "
                    f"every one's variable and default: {CONFIGURATION_DOC}"
                    if hidden
                    else f"show every option (see also {CONFIGURATION_DOC})"
                )
        try:
            return super().format_help()
        finally:
            for action, text in saved:
                action.help = text

    def _hidden(self) -> list[argparse.Action]:
        """The settings flags ``--help`` leaves to ``--help-all``."""
        hidden = []
        for action in self._actions:
            opt = _OPTION_OF_DEST.get(action.dest)
            if opt is None:
                continue
            enabled = opt.group not in names() or opt.group in self.destinations
            if not (opt.common and enabled):
                hidden.append(action)
        return hidden

    def _shorten_usage(self) -> None:
        if self.usage is not None:
            return
        words = ["%(prog)s", "[options]"]
        for action in self._actions:
            if not action.option_strings:
                words.append(_positional(action))
        self.usage = " ".join(words)


def _positional(action: argparse.Action) -> str:
    if isinstance(action, argparse._SubParsersAction):
        return f"{action.metavar or 'COMMAND'} ..."
    name = str(action.metavar or action.dest)
    forms = {"+": f"{name} [{name} ...]", "*": f"[{name} ...]", "?": f"[{name}]"}
    return forms.get(str(action.nargs), name)


ROOTS = "Currents Avro files or directories (recursive), or s3://, gs://, az:// bucket prefixes"
SUMMARY_JSON = "print the final summary as JSON on stderr"
DELIVERY = ("destination", *names(), "limits", "mapping")
"""The option groups of every command that delivers events."""


def shown_destinations(words: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The destinations a command given ``words`` and ``env`` would deliver to, as far as ``--help``
    needs to know (whose options it lists): ``--destination``, else ``CURRENTS_DESTINATIONS``, else the
    config files' ``destinations``, else Amplitude. Nothing here is an error: the command says that."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--destination", action="append")
    pre.add_argument("--config", action="append")
    known, _ = pre.parse_known_args(list(words))
    if known.destination:
        return tuple(d for item in known.destination for d in parse_list(item))
    if env.get("CURRENTS_DESTINATIONS"):
        return parse_list(env["CURRENTS_DESTINATIONS"])
    chosen: tuple[str, ...] = ("amplitude",)
    for path in known.config or ([env["CURRENTS_CONFIG"]] if env.get("CURRENTS_CONFIG") else []):
        try:
            with open(path, "rb") as fh:
                value = tomllib.load(fh).get("destinations")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if items:
            chosen = tuple(d for item in items for d in parse_list(str(item)))
    return chosen


def build(
    handlers: Mapping[str, Command], plugins: bool, destinations: tuple[str, ...] = ("amplitude",)
) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser of every built-in command (``handlers`` maps each name to its function) and, with
    ``plugins``, of the installed plugins' commands; returns it with the function behind each.
    ``--help`` lists the options of ``destinations`` (and the common ones)."""
    # typed as the base class: the plugin interface takes subparsers of ArgumentParser (at run time
    # add_parser makes them of this parser's class)
    parser: argparse.ArgumentParser = CommandLineParser(
        prog="currents-consumer",
        description="Braze Currents (Avro) to Amplitude: Kafka daemon, file replay, dry-run convert.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"currents-consumer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "convert", epilog=EPILOG, help="print the Amplitude events for Currents Avro files (dry run)"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=ROOTS)
    p.add_argument("--summary-json", action="store_true", help=SUMMARY_JSON)
    add_arguments(p, ("input", "mapping"))

    p = sub.add_parser(
        "replay", epilog=EPILOG, help="deliver Currents Avro files to Amplitude (backfill, resumable)"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=ROOTS)
    p.add_argument("--summary-json", action="store_true", help=SUMMARY_JSON)
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=30.0,
        metavar="DURATION",
        help="time to finish in-flight events on SIGINT/SIGTERM (default 30s)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the objects a replay would read (state, bytes, URL) and totals; read and send nothing",
    )
    add_arguments(p, ("input", "follow", "workers", *DELIVERY, "metrics", "logs", "dead_letter", "state"))

    p = sub.add_parser(
        "run", epilog=EPILOG, help="the Kafka daemon: consume Currents events and deliver them to Amplitude"
    )
    add_arguments(p, ("kafka_connection", "kafka", "workers", *DELIVERY, "metrics", "logs", "dead_letter"))

    p = sub.add_parser(
        "redrive", epilog=EPILOG, help="re-send dead-lettered events (same insert_id: no double counting)"
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="dead-letter files or directories, or one kafka://TOPIC (of --bootstrap-servers)",
    )
    p.add_argument(
        "--reason",
        action="append",
        metavar="GLOB",
        help="only records whose reason matches (glob, repeatable)",
    )
    p.add_argument(
        "--move-to",
        metavar="DIR",
        help="move each dead-letter file whose records were all re-sent to DIR once they are settled "
        "(failures again are in the new dead-letter output), so a second redrive does not repeat it",
    )
    p.add_argument(
        "--group",
        metavar="NAME",
        help="from a topic: redrive's own consumer group; starts at its committed offsets and commits "
        "what was read once every event settled (never the daemon's --group-id)",
    )
    p.add_argument(
        "--offsets",
        action="append",
        metavar="P:FROM-TO",
        help="from a topic: only partition P's offsets FROM to TO, both included (TO may be left "
        "out: to the end; repeatable)",
    )
    p.add_argument("--summary-json", action="store_true", help=SUMMARY_JSON)
    add_arguments(p, ("kafka_connection", *DELIVERY, "logs", "dead_letter"))

    p = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON (key: value and source), as it is printed when stdout is not a terminal",
    )
    add_arguments(p, tuple(GROUPS))  # it shows every setting, so it takes every one
    commands = dict(handlers)
    if plugins:
        commands.update(register_plugins(sub, add_arguments))
    for command in sub.choices.values():
        if isinstance(command, CommandLineParser):
            command.destinations = destinations
    return parser, commands
