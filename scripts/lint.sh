#!/usr/bin/env bash
# Lint (after scripts/setup.sh): ruff over the whole tree, mypy over the whole package
# (pyproject.toml's [tool.ruff] and [tool.mypy] say what each checks). Exit 0 when both are clean.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .; ruff=$?
.venv/bin/mypy; mypy=$?
[ $ruff -eq 0 ] && [ $mypy -eq 0 ]
