"""A replay's progress, shown the way its reader can use it: a bar on a terminal, log lines otherwise.

:func:`progress_view` picks the view once per run. On an interactive terminal (stderr is a tty and the
log format is not forced to JSON) it is a ``rich`` progress bar — files and events done, the event
rate and an ETA from the bytes of the files finished against the bytes the listing found; everywhere
else it is today's ``progress ...`` log line (a JSON line when logs are JSON). ``rich`` is imported
only when the bar is chosen, so worker processes and non-interactive runs never load it.

Both views are updated from the command's existing progress tick (a few times a second at most), never
per event: :meth:`ProgressView.update` costs one render.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger("currents.replay")


@dataclass(frozen=True)
class Snapshot:
    """The figures of one progress tick. ``files_total`` and ``bytes_total`` are what the listing found
    still to read (``None``: not listed ahead); ``line`` is the log line's text."""

    files_done: int
    events: int
    rate: float
    line: str
    files_total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None


class ProgressView(Protocol):
    """Where a run's progress goes; :meth:`close` ends it (the bar's last state stays on screen)."""

    listing_ahead: bool
    """Whether this view needs the totals listed before reading starts (the bar's ETA does)."""

    def update(self, snap: Snapshot) -> None:
        """Show ``snap``."""

    def close(self, last: Snapshot | None) -> None:
        """Stop showing progress, ``last`` being the run's final figures (``None``: it never started);
        idempotent."""


class LogView:
    """Today's progress log line, ``progress <line>``, through the configured log format."""

    listing_ahead = False

    def update(self, snap: Snapshot) -> None:
        """Log ``snap``'s line at INFO."""
        log.info("progress %s", snap.line)

    def close(self, last: Snapshot | None) -> None:
        """Nothing to stop: the summary follows."""


class BarView:
    """A ``rich`` progress bar on ``stream``; log records printed meanwhile appear above it."""

    listing_ahead = True

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress: Progress = Progress(
            TextColumn("replay"),
            BarColumn(),
            TextColumn("files {task.fields[files]}"),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]} ev/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            auto_refresh=False,  # no thread of its own: it renders when the progress tick updates it
            redirect_stderr=True,
            redirect_stdout=False,  # convert-like output on stdout is never ours to move
        )
        self._task = self._progress.add_task("replay", total=None, files="0", events="0", rate="0")
        self._moved: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._started = self._closed = False

    def _start(self) -> None:
        # Started by the first update, not on creation: a run that fails before it starts reading (a
        # listing error) leaves the terminal as it found it.
        self._started = True
        original = sys.stderr
        self._progress.start()  # replaces sys.stderr by a proxy that prints above the bar
        # Log handlers keep the stream they were given: point those on stderr at rich's proxy while
        # the bar is shown, so a warning prints above the bar instead of through it.
        self._moved = _move_handlers(original, sys.stderr) if sys.stderr is not original else []

    def update(self, snap: Snapshot) -> None:
        """Render ``snap``: the bar follows bytes (files when no sizes are known)."""
        if not self._started:
            self._start()
        files = str(snap.files_done) if snap.files_total is None else f"{snap.files_done}/{snap.files_total}"
        by_bytes = bool(snap.bytes_total)
        fields: dict[str, Any] = {"files": files, "events": f"{snap.events:,}", "rate": f"{snap.rate:,.0f}"}
        self._progress.update(
            self._task,
            total=snap.bytes_total if by_bytes else snap.files_total,
            completed=snap.bytes_done if by_bytes else snap.files_done,
            **fields,
        )
        self._progress.refresh()

    def close(self, last: Snapshot | None) -> None:
        """Leave ``last`` on screen (drawn even if no tick came first) and give the log handlers their
        stream back; with ``last`` ``None`` and nothing drawn yet, the terminal is left untouched."""
        if self._closed:
            return
        self._closed = True
        if last is not None:
            self.update(last)
        if not self._started:
            return
        for handler, stream in self._moved:
            handler.setStream(stream)
        self._progress.stop()


def _move_handlers(old: TextIO, new: TextIO) -> list[tuple[logging.StreamHandler[TextIO], TextIO]]:
    moved = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            moved.append((handler, old))
            handler.setStream(new)
    return moved


def progress_view(log_format: str, stream: TextIO | None = None, *, bar: bool = True) -> ProgressView:
    """The bar when ``bar`` is allowed (a job with an end), ``stream`` (stderr by default) is a terminal
    and ``log_format`` is not ``json``; the log line otherwise."""
    out = stream if stream is not None else sys.stderr
    if bar and out.isatty() and log_format != "json":
        return BarView(out)
    return LogView()
