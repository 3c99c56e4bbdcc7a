#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything senone needs.
# Idempotent: a second run only checks that the installed packages still match pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"senone needs Python 3.11, found {sys.version.split()[0]}"'
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.senone-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: pip takes the local CPU wheel; anything else would pull GBs of CUDA packages
  .venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
  # constraints.txt: the exact releases the benchmarks were measured with (reproducible error rates)
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
  touch "$stamp"
fi
echo "senone environment ready in .venv"
