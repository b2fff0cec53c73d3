"""The dev kit's subcommands of ``currents-consumer``: ``demo``, ``simulate`` and ``sample``.

They reach the product's command line through the ``currents_consumer.commands`` entry point group
(``devkit/pyproject.toml``), the way pytest finds its plugins: the product never imports the dev kit.
:func:`register` adds their parsers; each command's modules load only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from consumer.commands.plugins import AddOptions, Command, SubParsers
from consumer.settings import Settings, SettingsError

SAMPLE_LAYOUTS = ("current", "2019", "2017")
"""``sample --layout`` choices: ``currents_devkit.synth.LAYOUTS`` (a test checks), spelled out here so
building the parser does not load the synthesiser."""


SIMULATE_DESCRIPTION = """\
One port serves Amplitude's HTTP V2 API (POST /2/httpapi) and Batch API (POST /batch), Movable Ink
(POST /behavioral/<key>) and Remerge (GET /event), with Amplitude's documented limits and answers.

What it received:  GET http://HOST:PORT/_sim/stats   (requests, events ingested, duplicates, refusals)
                   GET /_sim/events?offset=&limit=, /_sim/movableink/events, /_sim/remerge/events
Scripted faults:   POST /_sim/faults (see currents_devkit.simulator.faults); POST /_sim/reset"""


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.ops.logs import setup

    setup(settings.log_format, settings.log_level)
    if args.follow:
        from currents_devkit.follow_demo import run_follow_demo

        return asyncio.run(
            run_follow_demo(
                settings,
                n_events=args.events if args.events is not None else 2000,
                keep=args.keep,
                summary_json=args.summary_json,
            )
        )
    from currents_devkit.demo import run_demo

    return asyncio.run(
        run_demo(
            settings,
            n_events=args.events if args.events is not None else 20_000,
            partitions=args.partitions,
            keep=args.keep,
            summary_json=args.summary_json,
        )
    )


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.ops.logs import setup
    from currents_devkit.simulator.daemon import CannotListen
    from currents_devkit.simulator.partners import parse_credentials

    setup(settings.log_format, settings.log_level)
    try:
        credentials = parse_credentials(args.movableink_credentials or ())
    except ValueError as exc:
        raise SettingsError(f"--movableink-credentials: {exc}") from None
    try:
        _simulate(args, credentials)
    except CannotListen as exc:
        print(f"currents-consumer: simulate: {exc} (choose another --port)", file=sys.stderr)
        return 2
    return 0


def _simulate(args: argparse.Namespace, credentials: Any) -> None:
    from currents_devkit.simulator.daemon import run_simulator

    run_simulator(
        args.host,
        args.port,
        tuple(args.accept_key or ()),
        rate_window_s=args.rate_window,
        movableink_credentials=credentials,
        movableink_keys=frozenset(args.movableink_key or ()),
        movableink_max_bytes=args.movableink_max_bytes,
        remerge_keys=frozenset(args.remerge_key or ()),
    )


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from currents_devkit.synth import generate_sample

    now = time.time() if args.now else None
    files = generate_sample(args.out, args.events, args.seed, args.layout, now=now)
    hours = (
        {part for f in files for part in f.parts if part.startswith("date=")} if now is not None else set()
    )
    into = f", into {', '.join(sorted(hours))}" if hours else ""
    print(
        f"wrote {args.events} events in {len(files)} files under {args.out} ({args.layout} layout{into})",
        file=sys.stderr,
    )
    return 0


def register(sub: SubParsers, add_arguments: AddOptions) -> dict[str, Command]:
    """Add ``demo``, ``simulate`` and ``sample`` to the ``currents-consumer`` parser."""
    commands: dict[str, Command] = {}
    p = sub.add_parser(
        "demo",
        help="run everything on an embedded broker and Amplitude simulator, or with --follow a followed "
        "directory (no setup)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="follow a directory instead (replay --follow): the files there at start, then files landing "
        "while it runs, and how soon each was delivered",
    )
    p.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help="Currents events to produce (default 20000; with --follow, in the files there at start: 2000)",
    )
    p.add_argument(
        "--partitions", type=int, default=4, metavar="N", help="partitions of the demo topic (default 4)"
    )
    p.add_argument(
        "--keep",
        nargs="?",
        const="",
        metavar="DIR",
        help="keep the demo's files (broker log or followed directory and state, dead-letter output): in "
        "DIR, or without DIR in the temporary directory it would otherwise remove",
    )
    p.add_argument("--summary-json", action="store_true", help="print the final summary as JSON")
    add_arguments(
        p, ("destination", "amplitude", "limits", "movableink", "remerge", "mapping", "workers", "logs")
    )
    commands["demo"] = cmd_demo

    p = sub.add_parser(
        "simulate",
        help="run a local Amplitude, Movable Ink and Remerge simulator (demos, tests)",
        description=SIMULATE_DESCRIPTION,
    )
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="address to listen on (default 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=9000, metavar="PORT", help="port to listen on (default 9000)")
    p.add_argument(
        "--accept-key",
        action="append",
        metavar="KEY",
        help="Amplitude API keys to accept (repeatable; none = any key)",
    )
    p.add_argument(
        "--rate-window",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds over which per-device rates are averaged (default 30, as Amplitude)",
    )
    p.add_argument(
        "--movableink-credentials",
        action="append",
        metavar="USER:PASSWORD",
        help="Movable Ink Basic-auth credentials to accept (repeatable; none = any)",
    )
    p.add_argument(
        "--movableink-key",
        action="append",
        metavar="KEY",
        help="Movable Ink /behavioral/<key> keys to accept (repeatable; none = any)",
    )
    p.add_argument(
        "--movableink-max-bytes",
        type=int,
        default=32768,
        metavar="BYTES",
        help="largest Movable Ink body (larger: 413; default 32768)",
    )
    p.add_argument(
        "--remerge-key",
        action="append",
        metavar="KEY",
        help="Remerge keys to accept (repeatable)",
    )
    add_arguments(p, ("logs",))
    commands["simulate"] = cmd_simulate

    p = sub.add_parser("sample", help="write synthetic Currents Avro files in the Currents storage layout")
    p.add_argument("out", metavar="DIR", help="directory to write the files under")
    p.add_argument("--events", type=int, default=20_000, metavar="N", help="events to write (default 20000)")
    p.add_argument(
        "--seed", type=int, default=1, metavar="N", help="random seed: the same seed writes the same files"
    )
    p.add_argument(
        "--layout",
        choices=SAMPLE_LAYOUTS,
        default="current",
        help="generation of object keys: current (version=N/us-01/, offsets not padded), "
        "2019 (<schema-id>/<zone>/, 10-digit offsets) or 2017 (no cluster in the names; default current)",
    )
    p.add_argument(
        "--now",
        action="store_true",
        help="write the files Braze would be writing now: into the current UTC hour's date= folders, "
        "events queued up to now (for replay --follow; by default two hours of November 2023)",
    )
    add_arguments(p, ())
    commands["sample"] = cmd_sample
    return commands
