"""``python -m consumer`` is the same as the ``currents-consumer`` command."""

from consumer.commands.cli import main

if __name__ == "__main__":
    main()
