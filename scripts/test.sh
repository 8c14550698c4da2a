#!/usr/bin/env bash
# Install (scripts/setup.sh) and run the whole test suite: pytest, then the JavaScript package's
# tests (scripts/test-js.sh: npm ci, chromium, node:test parity and the demo page in a browser).
# Arguments go to pytest, and then only pytest runs (e.g. `bash scripts/test.sh tests/test_multi.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
if [ "$#" -eq 0 ]; then
  bash scripts/test-js.sh
fi
