#!/usr/bin/env bash
# Smoke test of the package as a user installs it (after scripts/setup.sh; .ci/run runs it):
#   1. build the sdist and the wheel (python -m build: the wheel is built from the sdist) and
#      check what each holds (scripts/smoke_wheel.py dist);
#   2. install the wheel, not editable and without extras (no Qt: nothing here draws), into a
#      fresh virtual environment outside the repository (mktemp -d; about a minute and a half
#      here, TensorFlow and napari included);
#   3. from a folder outside the repository, so the source tree cannot be imported by accident:
#      the package comes from that environment, npe2 validate, the plugin's reader (through
#      npe2) on the real slides in ../shared/data/real/ (skipped, with the reason, where absent),
#      and patchheat demo --no-viewer with its output files.
# One line per step; the first failure prints its output and exits 1. The temporary folder
# (environment, cache, demo output) is removed at exit. About two minutes in all. Set
# PATCHHEAT_PYTHON to pick the interpreter of the new environment (default python3, as
# scripts/setup.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
checks=$repo/scripts/smoke_wheel.py
python=${PATCHHEAT_PYTHON:-python3}
real=$repo/../shared/data/real
start=$SECONDS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchheat-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
venv=$tmp/venv
mkdir "$tmp/work"

step() {  # step WHAT COMMAND...: run it, then one line: ok (and its '=> ' summary) or FAILED
  local what=$1 t=$SECONDS summary
  shift
  if "$@" >"$tmp/step.log" 2>&1; then
    summary=$(grep '^=> ' "$tmp/step.log" | tail -n 1 | cut -c4-) || true
    echo "smoke: ok      $what${summary:+: $summary} ($((SECONDS - t)) s)"
  else
    echo "smoke: FAILED  $what; its output:"
    tail -n 40 "$tmp/step.log"
    exit 1
  fi
}

# everything after the build runs in $tmp/work, with nothing from this checkout on the path
outside() { (cd "$tmp/work" && env -u PYTHONPATH -u PYTHONHOME "$@"); }

step "build the sdist and the wheel" .venv/bin/python -m build --outdir "$tmp/dist" .
step "check the sdist's and the wheel's files" .venv/bin/python "$checks" dist "$tmp/dist" "$repo"
wheel=$(ls "$tmp/dist"/*.whl)
step "create a virtual environment in $tmp" "$python" -m venv "$venv"
step "upgrade pip there" "$venv/bin/python" -m pip install -q --upgrade pip
step "install $(basename "$wheel") there (not editable)" \
  "$venv/bin/python" -m pip install -q --progress-bar off "$wheel"
step "import napari_patchheat from the new environment" \
  outside "$venv/bin/python" "$checks" installed "$venv"
step "npe2 validate napari-patchheat" outside "$venv/bin/npe2" validate napari-patchheat
if [ -d "$real" ]; then
  step "read the real slides through the plugin's npe2 reader" \
    outside "$venv/bin/python" "$checks" reader "$(cd "$real" && pwd)"
else
  echo "smoke: skipped read the real slides: $real is absent (a clone without the shared data)"
fi
step "patchheat demo --no-viewer" outside env PATCHHEAT_CACHE_DIR="$tmp/cache" \
  TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/patchheat" demo --no-viewer --out "$tmp/demo"
step "check the demo's files" outside "$venv/bin/python" "$checks" demo "$tmp/demo"
echo "smoke: all steps passed in $((SECONDS - start)) s"
