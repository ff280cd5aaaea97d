#!/usr/bin/env bash
# Install everything napari-patchheat needs on a fresh Debian/Ubuntu machine:
# the system libraries napari's Qt + OpenGL need under Xvfb (Mesa, xcb), then a virtual
# environment .venv holding the package (editable) with its test (PyQt6 included) and docs extras.
# Idempotent: a second run installs nothing new. Set PATCHHEAT_PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libxkbcommon0 libxkbcommon-x11-0
      libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
      libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libdbus-1-3
      libfontconfig1)
python=${PATCHHEAT_PYTHON:-python3}
"$python" -c 'import venv, ensurepip' 2>/dev/null || debs+=(python3-venv python3-pip)

missing=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "ok installed" || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$python" -c 'import sys; assert sys.version_info >= (3, 11), "napari-patchheat needs Python >= 3.11"'
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing napari-patchheat and its test and docs dependencies into .venv (a few minutes)"
.venv/bin/python -m pip install -q --progress-bar off -e ".[test,docs]"
echo "setup: done"
