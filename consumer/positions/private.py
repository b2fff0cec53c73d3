"""Files that hold personal data: created owner-only, ``0600``, in owner-only directories, ``0700``.

Dead-letter records and the replay resume state carry email addresses, phone numbers and external
ids, so both are created through here. The modes are given to ``mkdir(2)`` and ``open(2)``, never set
afterwards with ``chmod``: the process umask still applies and can only narrow them (``077`` and
``022`` leave them as they are; a stricter one is the operator's to choose). A directory or file that
already exists keeps its mode: an operator who made the directory group-readable meant it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
"""Mode of a file created here (before the umask)."""

DIR_MODE = 0o700
"""Mode of a directory created here, missing parents included (before the umask)."""


def private_dir(path: Path) -> None:
    """Make sure ``path`` is a directory, creating it and any missing parents with :data:`DIR_MODE`."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        # Path.mkdir(parents=True) gives the parents it creates the default mode: one at a time instead.
        directory.mkdir(mode=DIR_MODE, exist_ok=True)


def open_private(path: Path, *, append: bool) -> IO[bytes]:
    """``path`` opened for binary writing (appending, or truncated), created with :data:`FILE_MODE`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise
