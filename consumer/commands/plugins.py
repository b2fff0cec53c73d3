"""Subcommands from other installed distributions (the dev kit's ``demo``, ``simulate``, ``sample``).

A distribution adds commands to ``currents-consumer`` by declaring an entry point in the group
:data:`GROUP` whose object is a :class:`Register`: called with the subcommand parsers and the function
that adds the settings' flags, it adds its parsers and returns the function behind each command.
This is how pytest finds its plugins; the product imports no plugin by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from consumer.settings import Settings

GROUP = "currents_consumer.commands"

DEVKIT_COMMANDS = ("demo", "sample", "simulate")
"""The dev kit's commands: named here only to say which distribution brings them when it is missing."""

DEVKIT_HINT = (
    "the {command!r} command comes with the dev kit: pip install 'currents-consumer[devkit]' "
    "(from a checkout: pip install -e ./devkit)"
)
IMAGE_HINT = (
    "the {command!r} command comes with the dev kit, which this installation has no pip to add (the "
    "container image runs the product only): run it from a clone instead, with Python 3.11+: "
    "pip install -e . -e ./devkit && currents-consumer {command}"
)
"""The hint where the dev kit cannot be installed into this Python (no pip: the image's venv)."""


def devkit_hint(command: str) -> str:
    """One line saying how to get the dev kit's ``command``: where this Python has pip, the extra to
    install; where it has none (the container image), how to run it from a clone."""
    from importlib.util import find_spec

    return (DEVKIT_HINT if find_spec("pip") is not None else IMAGE_HINT).format(command=command)


Command = Callable[[argparse.Namespace, "Settings"], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
AddOptions = Callable[[argparse.ArgumentParser, tuple[str, ...]], None]


class Register(Protocol):
    """An entry point's object: adds its subcommands and returns their functions by name."""

    def __call__(self, sub: SubParsers, add_arguments: AddOptions) -> dict[str, Command]: ...


def register_plugins(sub: SubParsers, add_arguments: AddOptions) -> dict[str, Command]:
    """Every installed plugin's commands, plugins taken in the order of their entry point names."""
    commands: dict[str, Command] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        register: Register = point.load()
        commands.update(register(sub, add_arguments))
    return commands
