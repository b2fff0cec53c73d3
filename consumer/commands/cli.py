"""The ``currents-consumer`` command line: one subcommand per job.

Each subcommand parses its flags, builds the one :class:`~consumer.settings.Settings` object and hands
each component its slice. Exit codes (:mod:`consumer.ops.exits`, also in every ``--help``): 0 ok, 1 some
input unreadable, 2 bad usage or configuration, 3 some events dead-lettered, 4 a fault of our own I/O
stopped the run, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from consumer.commands.plugins import DEVKIT_COMMANDS, Command, devkit_hint
from consumer.ops.exits import ExitCode, exit_code
from consumer.ops.faults import Fault, check_writable
from consumer.ops.logs import register_secret
from consumer.ops.summary import Summary
from consumer.settings import Settings, SettingsError, load

if TYPE_CHECKING:
    from consumer.sources.storage.selection import Selection
    from consumer.sources.workers.file_pool import WorkerPool
    from consumer.transform.base import Mapper


def _selection(settings: Settings) -> Selection:
    from consumer.sources.storage.selection import Selection

    return Selection.of_input(settings.input)


def _cmd_convert(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.commands.convert import convert
    from consumer.sources.storage.files import Listing
    from consumer.sources.storage.store import StoreError

    listing = Listing()
    try:
        summary = convert(
            args.paths,
            settings.mapping,
            sys.stdout.buffer,
            selection=_selection(settings),
            files_in_flight=settings.input.files_in_flight,
            listing=listing,
        )
    except StoreError as exc:
        print(f"currents-consumer: {exc}", file=sys.stderr)
        return 2
    why = listing.nothing_found(args.paths)
    if why is not None and not args.summary_json:  # a summary of nothing says nothing: only why
        print(f"currents-consumer: {why}", file=sys.stderr)
        return int(exit_code(summary))
    code = _print_summary(summary, args.summary_json, exit_code(summary))
    if why is not None:  # exit code 0 all the same: nothing to do is not a failure
        print(f"currents-consumer: {why}", file=sys.stderr)
    return code


def _print_summary(summary: Summary, as_json: bool, code: ExitCode) -> int:
    """Print the final summary (with the exit code in its JSON form); returns ``code``."""
    summary.exit = (int(code), code.label)
    print("", file=sys.stderr)
    print(json.dumps(summary.as_dict()) if as_json else summary.render(), file=sys.stderr)
    return int(code)


def _check_outputs(settings: Settings, *, state: bool, topic: bool = False) -> None:
    """Prove the dead-letter directory (and with ``state`` the resume-state directory, unless it is
    ``''``: no state) can be written, before anything is read; a :class:`Fault` is a usage error.
    A dead-letter topic (``kafka://TOPIC``) is only for the commands that say ``topic``."""
    from consumer.settings.model import dead_letter_topic

    to_topic = dead_letter_topic(settings.dead_letter) is not None
    if to_topic and not topic:
        raise SettingsError(
            f"--dead-letter {settings.dead_letter}: replay writes dead letters to a directory "
            "(a topic is for run and redrive, which know the Kafka cluster)"
        )
    try:
        if not to_topic:
            check_writable(settings.dead_letter, "dead-letter output")
        if state and settings.state_dir and "://" not in settings.state_dir:  # a bucket: on first write
            check_writable(settings.state_dir, "resume state directory")
    except Fault as fault:
        raise SettingsError(str(fault)) from None


def _cmd_replay_dry_run(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.commands.replay_plan import dry_run
    from consumer.positions.resume import ResumeState
    from consumer.sources.storage.store import StoreError

    selection = _selection(settings)
    try:
        state = ResumeState.load(
            settings.state_dir, args.paths, selection.key(), settings.destinations, selection.shard
        )
        dry_run(args.paths, selection, state, sys.stdout, sys.stderr, args.summary_json)
    except (ValueError, StoreError) as exc:
        print(f"currents-consumer: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.app.destinations import build_mappers
    from consumer.sources.workers.file_pool import WorkerPool

    if args.dry_run:
        if settings.follow.follow:
            raise SettingsError("--dry-run lists what a replay would read now: run it without --follow")
        return _cmd_replay_dry_run(args, settings)
    _check_outputs(settings, state=True)
    mappers = build_mappers(settings)
    pool = None
    if settings.input.workers:
        # Started before anything else: the workers load their modules while this process loads its own.
        pool = WorkerPool(settings.input.workers, mappers, _selection(settings))
        pool.start()
    try:
        return _replay_with(args, settings, mappers, pool)
    finally:
        if pool is not None:
            pool.close()


def _replay_with(
    args: argparse.Namespace, settings: Settings, mappers: list[Mapper], pool: WorkerPool | None
) -> int:
    from consumer.app.destinations import build_destinations, close_all
    from consumer.app.lease import LockHeld
    from consumer.app.runtime import install_signals, ops_server, prepare
    from consumer.commands.replay import Replay
    from consumer.positions.keeper import KeeperError
    from consumer.sources.storage.store import StoreError

    metrics = prepare(settings)

    async def run() -> int:
        destinations = build_destinations(settings, mappers)
        try:
            replay = Replay(args.paths, settings, destinations, metrics, pool=pool)
        except ValueError as exc:  # an unreadable resume state: say so, change nothing
            await close_all(destinations)
            print(f"currents-consumer: {exc}", file=sys.stderr)
            return 2
        stop = install_signals(replay.stop)
        fault: Fault | None = None
        try:
            async with ops_server(
                settings, metrics, ready=replay.ready, on_scrape=replay.update_gauges
            ) as health:
                replay.health = health
                await replay.run(grace=args.grace)
        except (StoreError, LockHeld) as exc:  # a root that cannot be listed, the job running elsewhere
            print(f"currents-consumer: {exc}", file=sys.stderr)
            return 2
        except KeeperError as exc:  # the job's lock cannot be taken: nothing was read
            print(f"currents-consumer: cannot take the job's lock {exc}", file=sys.stderr)
            return 2
        except Fault as exc:  # logged where it happened; said again last, where a Job's log ends
            fault = exc
        finally:
            await close_all(destinations)
        code = exit_code(replay.result.summary, interrupted=replay.stopped, fault=fault is not None)
        if settings.follow.follow and stop.first == signal.SIGTERM and fault is None:
            # A follower never ends by itself: SIGTERM is its normal stop, as for run (0); what it
            # could not read or dead-lettered is in the summary, the metrics and the dead letters.
            code = ExitCode.OK
        _print_summary(replay.result.summary, args.summary_json, code)
        for line in replay.closing_lines(fault):
            print(line, file=sys.stderr)
        return code

    return asyncio.run(run())


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.app.destinations import build_destinations, close_all
    from consumer.app.runtime import install_signals, ops_server, prepare
    from consumer.commands.run import Daemon

    if not settings.kafka.topics and not settings.kafka.topic_pattern:
        raise SettingsError("no topics: give --topic (or KAFKA_TOPICS) or --topic-pattern")
    _check_outputs(settings, state=False, topic=True)
    metrics = prepare(settings)
    register_secret(settings.kafka.sasl_password.reveal())
    register_secret(settings.kafka.schema_registry_password.reveal())

    async def run() -> int:
        destinations = build_destinations(settings)
        daemon = Daemon(settings, destinations, metrics)
        stop = install_signals(daemon.stop)
        code = ExitCode.FAULT
        try:
            async with ops_server(
                settings, metrics, ready=daemon.ready, on_scrape=daemon.update_gauges
            ) as health:
                daemon.health = health
                code = ExitCode(await daemon.run())
            if code == ExitCode.OK and stop.first == signal.SIGINT:
                code = ExitCode.INTERRUPTED  # Ctrl-C; SIGTERM is the daemon's normal stop (0)
            registry = daemon.source.registry
            if registry is not None and registry.refused is not None:
                # the URL answers but is no registry: a configuration error, found before the group
                # was joined (nothing was read)
                print(f"currents-consumer: configuration error: {registry.refused}", file=sys.stderr)
                code = ExitCode.USAGE
        except Fault as fault:  # nothing more was committed; Kubernetes restarts the pod
            print(f"currents-consumer: stopped: {fault}", file=sys.stderr)
        finally:
            await close_all(destinations)
        _print_summary(daemon.pipeline.summary, True, code)
        for line in daemon.closing_lines():
            print(line, file=sys.stderr)
        return int(code)

    return asyncio.run(run())


def _cmd_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.app.destinations import build_destinations, close_all
    from consumer.app.runtime import prepare
    from consumer.commands.redrive import parse_offsets, redrive

    _check_outputs(settings, state=False, topic=True)
    ranges = parse_offsets(args.offsets or [])
    metrics = prepare(settings)
    register_secret(settings.kafka.sasl_password.reveal())

    async def run() -> int:
        destinations = build_destinations(settings)
        try:
            summary = await redrive(
                args.paths,
                destinations,
                settings,
                metrics,
                tuple(args.reason or ()),
                args.move_to,
                group=args.group,
                ranges=ranges,
            )
        finally:
            await close_all(destinations)
        return _print_summary(summary, args.summary_json, exit_code(summary))

    return asyncio.run(run())


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.commands.show_config import as_json, as_table

    # A person at a terminal reads a table; a pipe, a script or --json gets the JSON, unchanged.
    table = sys.stdout.isatty() and not args.json
    print(as_table(settings.describe()) if table else as_json(settings.describe()))
    return 0


BUILT_IN = ("convert", "replay", "run", "redrive", "config")
"""The product's own commands: running one of them does not look for plugins."""


def build_parser(
    plugins: bool = True, destinations: tuple[str, ...] = ("amplitude",)
) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The argument parser (:mod:`consumer.commands.parser`) and the function behind each subcommand
    (with the installed plugins' ones unless ``plugins`` is false: finding them reads every installed
    distribution's metadata, about 0.1 s, which a replay Job or a daemon start need not pay)."""
    from consumer.commands.parser import build

    handlers: dict[str, Command] = {
        "convert": _cmd_convert,
        "replay": _cmd_replay,
        "run": _cmd_run,
        "redrive": _cmd_redrive,
        "config": _cmd_config,
    }
    return build(handlers, plugins, destinations)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``currents-consumer`` console script."""
    words = sys.argv[1:] if argv is None else argv
    shown: tuple[str, ...] = ("amplitude",)
    if any(word in ("-h", "--help") for word in words):  # the help lists the enabled destinations' options
        from consumer.commands.parser import shown_destinations

        shown = shown_destinations(words, os.environ)
    parser, commands = build_parser(plugins=not (words and words[0] in BUILT_IN), destinations=shown)
    if words and words[0] in DEVKIT_COMMANDS and words[0] not in commands:
        print(f"currents-consumer: {devkit_hint(words[0])}", file=sys.stderr)
        raise SystemExit(2)
    args = parser.parse_args(argv)
    try:
        settings = load(args)
    except SettingsError as exc:
        print(f"currents-consumer: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        code = commands[args.command](args, settings)
    except SettingsError as exc:
        print(f"currents-consumer: configuration error: {exc}", file=sys.stderr)
        code = 2
    except FileNotFoundError as exc:
        print(f"currents-consumer: {exc}", file=sys.stderr)
        code = 2
    except Fault as exc:  # a fault before or outside a run's own reporting (the metrics port taken)
        print(f"currents-consumer: stopped: {exc}", file=sys.stderr)
        code = ExitCode.FAULT
    except BrokenPipeError as exc:
        if args.command != "convert":  # not our stdout: a pipe of ours broke (a worker died starting)
            print(f"currents-consumer: stopped: {exc}", file=sys.stderr)
            raise SystemExit(ExitCode.FAULT) from None
        # The reader went away (`convert ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
