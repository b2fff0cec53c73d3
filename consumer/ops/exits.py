"""Exit codes a Job (Kubernetes, cron, CI) can act on, the same for every command.

=====  ==============  =========================================================================
code   name            meaning
=====  ==============  =========================================================================
0      ok              every event delivered or skipped by a mapping rule
1      unreadable      finished, but some input could not be read (named in the summary)
2      usage           bad usage or configuration (including an output directory that cannot be
                       written at start-up); nothing was read
3      dead_lettered   finished, every input read, but some events were dead-lettered
4      fault           stopped early by a fault of our own I/O or processes (named on stderr):
                       what was not finished is not acknowledged; fix the cause and run again
130    interrupted     stopped by a signal; run the same command again to resume. ``run`` and
                       ``replay --follow``, which have no end of their own: by SIGINT (Ctrl-C) only;
                       on SIGTERM (Kubernetes, systemd, ``docker stop``) they drain, commit, exit 0
=====  ==============  =========================================================================

When several apply, the first of fault, interrupted, unreadable, dead_lettered wins. ``--summary-json``
carries the code and its name (``exit_code``, ``exit``).
"""

from __future__ import annotations

import enum

from consumer.ops.summary import Summary


class ExitCode(enum.IntEnum):
    """The process exit codes (see the module docstring)."""

    OK = 0
    UNREADABLE = 1
    USAGE = 2
    DEAD_LETTERED = 3
    FAULT = 4
    INTERRUPTED = 130

    @property
    def label(self) -> str:
        """The lower-case name ``--summary-json`` and the docs use."""
        return self.name.lower()


EPILOG = """exit codes:
  0    ok             every event delivered or skipped by a mapping rule
  1    unreadable     finished, but some input could not be read
  2    usage          bad usage or configuration (an output directory not writable); nothing read
  3    dead_lettered  finished, but some events were dead-lettered
  4    fault          stopped by a fault of our own I/O (named on stderr); nothing unfinished is
                      acknowledged: fix the cause and run again
  130  interrupted    stopped by a signal; run the same command again to resume (run, replay
                      --follow: SIGINT (Ctrl-C) only; on SIGTERM they drain, commit, exit 0)"""
"""The ``--help`` epilog of every command that reads input."""


def exit_code(summary: Summary, *, interrupted: bool = False, fault: bool = False) -> ExitCode:
    """The exit code of a run that ended with ``summary`` (see the module docstring for precedence)."""
    if fault:
        return ExitCode.FAULT
    if interrupted:
        return ExitCode.INTERRUPTED
    if summary.unreadable:
        return ExitCode.UNREADABLE
    if summary.dead_lettered:
        return ExitCode.DEAD_LETTERED
    return ExitCode.OK
