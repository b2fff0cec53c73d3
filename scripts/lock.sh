#!/usr/bin/env bash
# requirements.lock: what the container image installs (Dockerfile), resolved by uv from pyproject.toml's
# dependencies and the s3, gcs and azure extras the image carries: every package pinned, with the hashes
# of its files, for every platform and Python 3.11+ (--universal), so two builds install the same bytes.
#
#   scripts/lock.sh            # (re)write requirements.lock; the pins it has are kept (uv prefers them)
#   scripts/lock.sh --upgrade  # move every pin to the newest release pyproject.toml allows
#   scripts/lock.sh --check    # exit 1, showing the difference, if the lock no longer matches pyproject.toml
#
# --check resolves again with the lock's pins preferred, so it fails only when pyproject.toml asks for
# something the lock does not hold (a dependency added, removed or its range moved), not because a
# newer release came out. It needs the package index (PyPI) and uv (pip install uv; in '.[dev]').
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v uv >/dev/null || { echo "lock.sh: uv not found (pip install uv)" >&2; exit 2; }

compile() {  # compile OUTPUT [uv options...]
    local out=$1
    shift
    uv pip compile pyproject.toml --quiet --universal --python-version 3.11 --generate-hashes \
        --extra s3 --extra gcs --extra azure --custom-compile-command "scripts/lock.sh" \
        --output-file "$out" "$@"
}

case "${1:-}" in
    --check)
        work=$(mktemp -d "${TMPDIR:-/tmp}/lock-check.XXXXXX")
        trap 'rm -rf "$work"' EXIT
        cp requirements.lock "$work/requirements.lock"
        compile "$work/requirements.lock"
        if ! diff -u requirements.lock "$work/requirements.lock"; then
            echo "lock.sh: requirements.lock does not match pyproject.toml: run scripts/lock.sh and commit it" >&2
            exit 1
        fi
        echo "lock.sh: requirements.lock matches pyproject.toml"
        ;;
    --upgrade) compile requirements.lock --upgrade ;;
    "") compile requirements.lock ;;
    *) echo "usage: scripts/lock.sh [--check|--upgrade]" >&2; exit 2 ;;
esac
