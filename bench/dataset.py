"""The benchmark data set: a Currents storage tree from ``currents_devkit.synth``, cached by (seed, events).

Recipe (one place, so every row and every scale reads the same kind of data):

- every shipped event type at ``currents_devkit.synth.DEFAULT_WEIGHTS`` (e-mail/push sends and deliveries,
  sessions and custom events dominate; types Braze's connector does not export get
  ``OTHER_WEIGHT`` each, about 3% of events in all, and are skipped as ``unmapped_type``);
- 20,000 devices whatever the size, 3 of them hot with 8% of all events between them, and synth's
  default identity edge cases (5% anonymous, placeholder/short/unicode external ids);
- two hours, one integration, files of at most 15,000 records, codecs null/deflate/snappy in turn.

The tree is written under ``<out>/data/seed<S>-n<N>/currents`` and reused while its manifest says
it was made with the same recipe and the same ``consumer/synth*.py``; the manifest is written last,
so an interrupted generation is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    """How a data set is generated, apart from (seed, events); part of the cache key."""

    devices: int = 20_000
    hot_devices: int = 3
    hot_share: float = 0.08
    hours: int = 2
    max_per_file: int = 15_000
    codecs: tuple[str, ...] = ("null", "deflate", "snappy")
    version: int = 1

    def as_json(self) -> dict[str, object]:
        """The recipe as it reads back from the manifest (tuples become lists)."""
        loaded: dict[str, object] = json.loads(json.dumps(asdict(self)))
        return loaded


RECIPE = Recipe()


@dataclass(frozen=True)
class Dataset:
    """A generated tree: where it is and what it holds."""

    root: Path
    seed: int
    events: int
    files: int
    bytes: int
    generated_in_s: float
    synth_sha: str


def _synth_sha() -> str:
    """Hash of the generator's source (every ``consumer/synth*.py``), part of the cache key."""
    import currents_devkit.synth

    digest = hashlib.sha256()
    for path in sorted(Path(currents_devkit.synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure(out: Path, seed: int, events: int) -> Dataset:
    """The data set for ``(seed, events)``, generated unless a matching one is cached.

    Runs in a child process (this file as a script), so the harness never imports the product nor
    holds generated records: its own RSS stays below every measured child's (see measure.py).
    """
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(out), str(seed), str(events)],
        stdout=subprocess.PIPE,
        check=True,
    )
    meta = json.loads(done.stdout)
    return Dataset(**{**meta, "root": Path(meta["root"])})


def _ensure_here(out: Path, seed: int, events: int) -> dict[str, object]:
    from currents_devkit.synth import Synth, write_currents_tree

    home = out / "data" / f"seed{seed}-n{events}"
    manifest = home / "manifest.json"
    sha = _synth_sha()
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        if meta.get("recipe") == RECIPE.as_json() and meta.get("synth_sha") == sha:
            cached: dict[str, object] = meta["dataset"]
            return cached
    shutil.rmtree(home, ignore_errors=True)
    root = home / "currents"
    started = time.perf_counter()
    synth = Synth(seed, devices=RECIPE.devices, hot_devices=RECIPE.hot_devices, hot_share=RECIPE.hot_share)
    paths = write_currents_tree(
        root, synth, events, codecs=RECIPE.codecs, hours=RECIPE.hours, max_per_file=RECIPE.max_per_file
    )
    ds = Dataset(
        root=root,
        seed=seed,
        events=events,
        files=len(paths),
        bytes=sum(p.stat().st_size for p in paths),
        generated_in_s=round(time.perf_counter() - started, 2),
        synth_sha=sha,
    )
    found: dict[str, object] = asdict(ds) | {"root": str(root)}
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"recipe": RECIPE.as_json(), "synth_sha": sha, "dataset": found}, indent=2))
    tmp.replace(manifest)
    return found


def warm(ds: Dataset) -> None:
    """Read every file once so that no measured row pays for cold disk reads."""
    for path in sorted(ds.root.rglob("*.avro")):
        path.read_bytes()


if __name__ == "__main__":
    print(json.dumps(_ensure_here(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
