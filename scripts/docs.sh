#!/usr/bin/env bash
# Build the docs site (after scripts/setup.sh, which installs the docs extra): MkDocs with
# mkdocs.yml, strict (a warning, such as a broken link or a docstring griffe cannot read, is an
# error), into site/ (git-ignored). Open site/index.html, or serve it with
# `.venv/bin/mkdocs serve`. Extra arguments go to mkdocs build.
set -euo pipefail
cd "$(dirname "$0")/.."
# Material for MkDocs prints a banner at every build: its end of life (May 2027) and its
# successor, Zensical, which reads mkdocs.yml as it is. Noted here, not printed in every CI log.
export NO_MKDOCS_2_WARNING=${NO_MKDOCS_2_WARNING:-1}
.venv/bin/mkdocs build --strict --clean --site-dir site "$@"
echo "docs: site/index.html"
