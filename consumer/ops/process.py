"""Process tuning for long runs: the garbage collector's young generation, and glibc's malloc arenas."""

from __future__ import annotations

import ctypes
import gc
import os

GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default is 700)."""


def tune_gc() -> None:
    """Collect garbage less often in a process that moves millions of short-lived objects.

    Every event allocates a few objects that live until its request is answered. With Python's default
    threshold, 200k events cost about 680 young and 60 older collections (0.42 s of the main process
    in ``replay``), and each full collection walks every waiting event; at 10,000 it is about 80 and
    6 (0.09 s). Collecting later keeps garbage in reference cycles a little longer: httpx leaves each
    request (with its body) in one, which costs about 8 MiB of peak RSS at this threshold (14 MiB at
    20,000). What is alive at start-up (modules, settings, schemas) is frozen out of every later
    collection.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


MALLOC_ARENAS = 2
"""glibc malloc arenas of the process, unless ``MALLOC_ARENA_MAX`` says otherwise."""
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_malloc_arenas() -> bool:
    """Hold glibc's malloc to :data:`MALLOC_ARENAS` arenas; whether it was done.

    glibc gives threads that allocate their own arenas, up to eight per core, and an arena keeps what it
    freed for reuse by its own threads. The threads that receive worker chunks, compress request bodies
    and read objects each allocate a few hundred kilobytes at a time, so every arena they touched kept
    megabytes: in the benchmark replay, 4 to 10 MiB of peak RSS. The allocations that matter are made
    while holding the GIL, so two arenas cost no contention. Left alone where ``MALLOC_ARENA_MAX`` is
    set (the operator's choice) or the C library is not glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        # The C library this process runs on (platform.libc_ver() guesses from the executable's file).
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, ValueError, AttributeError):  # no such confstr name, no mallopt
        return False
