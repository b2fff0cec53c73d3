"""Faults injected for real in tests: a small tmpfs (full or read-only), the worker processes of a
command, and a child process denied the file-permission overrides root normally has."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str = "64k", full: bool = False, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (filled to the last byte with ``full``, remounted read-only
    with ``read_only``), unmounted at the end; the test is skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        if full:
            with contextlib.suppress(OSError), open(path / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def worker_children(pid: int) -> list[int]:
    """The worker processes (``spawn_main``) among ``pid``'s children (not the resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    found.append(int(child))
    return found


_PR_CAPBSET_DROP = 24
_FILE_OVERRIDES = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3}
"""The capabilities that let root ignore a file's owner and mode (linux/capability.h)."""


def without_file_overrides() -> None:
    """``preexec_fn`` of a child that must meet permissions like any user: the capabilities that let
    root ignore them leave the bounding set, so the program the child executes never has them.

    Why not ``user=65534``: the interpreter lives under ``/root`` (mode 0700 here), which another user
    cannot even reach. A uid-0 process without these capabilities gets the kernel's own EACCES from a
    directory it does not own, which is the error an unprivileged pod meets."""
    libc = ctypes.CDLL(None, use_errno=True)
    for name, cap in _FILE_OVERRIDES.items():
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot drop {name}: {os.strerror(errno)}")


def as_root() -> None:
    """Skip the test unless it runs as root (only root has overrides to lose and can mount)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: an unprivileged user meets permissions anyway")
