"""Process-wide set-up shared by the long-running commands."""

from __future__ import annotations

import json
import subprocess
import sys


def test_tune_gc_collects_less_often_and_freezes_startup_objects() -> None:
    # In a child: the garbage collector's settings are process-wide and must not leak into the tests.
    code = (
        "import gc, json\n"
        "from consumer.runtime import GC_YOUNG_THRESHOLD, tune_gc\n"
        "before = gc.get_threshold()\n"
        "tune_gc()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count(), GC_YOUNG_THRESHOLD]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after, frozen, young = json.loads(out)
    assert after[0] == young > before[0]
    assert after[1:] == before[1:]  # the older generations keep Python's pace
    assert frozen > 1000  # the imported modules' objects are out of every later collection
