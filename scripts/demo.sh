#!/usr/bin/env bash
# Install (scripts/setup.sh) and run `vision-tasks demo` on built-in synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/vision-tasks demo "$@"
