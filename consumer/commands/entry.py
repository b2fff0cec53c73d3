"""The ``currents-consumer`` console script's entry point, kept free of imports.

Worker processes are started with ``spawn``, which runs the parent's main script again in every
child, imports included: a script importing :mod:`consumer.commands.cli` directly made each worker
load the command line, the settings and pydantic-settings before its first record.
"""

from __future__ import annotations


def main() -> None:
    """Run ``currents-consumer`` (:func:`consumer.commands.cli.main`)."""
    from consumer.commands.cli import main as cli_main

    cli_main()
