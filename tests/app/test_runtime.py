"""Process-wide set-up shared by the long-running commands."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

import pytest

from consumer.ops.process import MALLOC_ARENAS


def test_tune_gc_collects_less_often_and_freezes_startup_objects() -> None:
    # In a child: the garbage collector's settings are process-wide and must not leak into the tests.
    code = (
        "import gc, json\n"
        "from consumer.ops.process import GC_YOUNG_THRESHOLD, tune_gc\n"
        "before = gc.get_threshold()\n"
        "tune_gc()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count(), GC_YOUNG_THRESHOLD]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after, frozen, young = json.loads(out)
    assert after[0] == young > before[0]
    assert after[1:] == before[1:]  # the older generations keep Python's pace
    assert frozen > 1000  # the imported modules' objects are out of every later collection


ARENAS_CHILD = """
import ctypes, json, os, pathlib, re, sys, tempfile, threading
from consumer.ops.process import limit_malloc_arenas
applied = limit_malloc_arenas() if sys.argv[1] == "limit" else False
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
go = threading.Barrier(8)
kept = []
def work():
    go.wait()  # all eight allocate at once: without a limit, glibc gives them arenas of their own
    kept.append([bytearray(300_000) for _ in range(4)])
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
path = tempfile.mktemp()
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
heaps = len(re.findall(r'<heap nr="', pathlib.Path(path).read_text()))
os.unlink(path)
print(json.dumps([applied, heaps]))
"""


def arenas(mode: str, env: dict[str, str] | None = None) -> list[Any]:
    run = subprocess.run(
        [sys.executable, "-c", ARENAS_CHILD, mode], capture_output=True, text=True, check=True, env=env
    )
    result: list[Any] = json.loads(run.stdout)
    return result


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_malloc_is_held_to_two_arenas_unless_the_operator_set_malloc_arena_max() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    applied, limited = arenas("limit", env)
    assert applied and limited <= MALLOC_ARENAS
    _, free = arenas("none", env)
    assert free > MALLOC_ARENAS  # what the limit prevents: the threads took arenas of their own
    applied, chosen = arenas("limit", env | {"MALLOC_ARENA_MAX": "4"})
    assert not applied and chosen > MALLOC_ARENAS  # the operator's value is left alone
