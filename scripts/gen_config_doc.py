"""Print the option tables of ``docs/configuration.md``, generated from the code.

Two tables: every option of :data:`consumer.settings.OPTIONS` (TOML key, flag, environment variable,
default, the commands that accept it, meaning), then the flags that belong to one command only (read
from the argument parser in :mod:`consumer.commands.cli`). ``tests/test_docs.py`` fails when the generated
block
in ``docs/configuration.md`` differs from this output.

Usage: ``python scripts/gen_config_doc.py`` (print) or ``python scripts/gen_config_doc.py --write``
(replace the block between the markers in ``docs/configuration.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer.commands.cli import build_parser  # noqa: E402
from consumer.settings import OPTIONS, Option, parse_duration  # noqa: E402
from scripts.generated_block import END, begin_marker, print_or_write  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
BEGIN = begin_marker("gen_config_doc.py")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _default(opt: Option) -> str:
    if opt.secret:
        return "none (secret)"
    if opt.default in ("", ()):
        return "none"
    return f"`{opt.shown_default()}`"  # as --help shows it: 48h, true, '[Appboy] '


def _meaning(opt: Option) -> str:
    text = opt.help
    if opt.choices:
        text += "; one of " + ", ".join(f"`{c}`" for c in opt.choices)
    if opt.parse is parse_duration:
        text += " (duration)"
    if opt.repeatable:
        text += " (list)"
    if opt.secret:
        text += " (secret: masked in output and logs)"
    return text.replace("|", "\\|")


def options_table() -> str:
    """The table of every option."""
    commands = _subcommands()
    lines = [
        "| TOML key | flag | environment | default | commands | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for opt in OPTIONS:
        accepted = [name for name, p in commands.items() if any(_is(a, opt) for a in p._actions)]
        lines.append(
            f"| `{opt.key}` | `{opt.flag}` | `{opt.env}` | {_default(opt)} | {', '.join(accepted)} | "
            f"{_meaning(opt)} |"
        )
        if opt.secret:
            lines.append(
                f"| `{opt.file_key}` | `{opt.file_flag}` | `{opt.file_env}` | none | {', '.join(accepted)} | "
                f"a file holding `{opt.flag}` (trailing newlines stripped): a mounted Secret |"
            )
    return "\n".join(lines)


def _is(action: argparse.Action, opt: Option) -> bool:
    """Whether ``action`` is the flag of the setting ``opt`` (a command's own flag may be spelled alike:
    ``demo --follow`` is not ``replay --follow``)."""
    return opt.flag in action.option_strings and action.dest == opt.key


def command_flags_table() -> str:
    """The flags that belong to one command only (not settings: no environment variable or TOML key)."""
    settings = {o.key for o in OPTIONS} | {o.file_key for o in OPTIONS if o.secret}
    flags = {"--config", "-h", "--help", "--help-all"}
    lines = ["| command | flag | default | meaning |", "| --- | --- | --- | --- |"]
    for name, p in _subcommands().items():
        for action in p._actions:
            if not action.option_strings or set(action.option_strings) & flags or action.dest in settings:
                continue
            default = "none" if action.default in (None, False) else f"`{action.default}`"
            meaning = (action.help or "").replace("|", "\\|")
            lines.append(f"| {name} | `{'`, `'.join(action.option_strings)}` | {default} | {meaning} |")
    return "\n".join(lines)


def generated() -> str:
    """The whole generated block, markers included."""
    return "\n\n".join(
        (
            BEGIN,
            "### Settings\n\n" + options_table(),
            "### Flags of one command\n\n" + command_flags_table(),
            END,
        )
    )


def main() -> None:
    """Print the block, or with ``--write`` put it into docs/configuration.md."""
    print_or_write(DOC, BEGIN, generated(), sys.argv[1:])


if __name__ == "__main__":
    main()
