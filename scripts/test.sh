#!/usr/bin/env bash
# Run the whole test suite (after scripts/setup.sh). Two pytest processes, because TensorFlow and
# a drawing napari viewer (Mesa OpenGL) crash in one process (DESIGN.md):
#   1. everything but the GUI: geometry, slides, TensorFlow extraction and inference;
#   2. the GUI tests under Xvfb (pytest-xvfb), in a process that never imports TensorFlow.
# Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
py=.venv/bin/python
$py -m pytest -p no:xvfb --ignore=tests/gui "$@"; core=$?
[ $core -eq 5 ] && core=0
$py -m pytest tests/gui "$@"; gui=$?
[ $gui -eq 5 ] && gui=0
[ $core -eq 0 ] && [ $gui -eq 0 ]
