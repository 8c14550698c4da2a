#!/usr/bin/env bash
# Create .venv (if missing) and install vision-tasks with the training and Ray extras and the dev tools
# (pytest, ruff), at the pinned versions of constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[train,dev,ray,serve]'
# The editable build leaves vision_tasks.egg-info in the checkout; the installed metadata is in
# .venv. A stale copy would shadow it for programs run from here (its entry points: the tasks,
# backbones and verbs), so it does not stay.
rm -rf vision_tasks.egg-info
