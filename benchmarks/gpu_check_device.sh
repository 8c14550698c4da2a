#!/usr/bin/env bash
# On the lent GPU machine: install what its image lacks (wheels carried in .whl/, made here by
# benchmarks/gpu_check_wheels.sh), install this checkout without touching the image's packages,
# run benchmarks/gpu_check.py, and copy its report to $OUT (when set). Arguments go to
# gpu_check.py. Its image's python3 holds torch (/work/.library/device/KINDS.md).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=/tmp/vision-tasks-site
rm -rf "$SITE" && mkdir -p "$SITE"
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
        || { echo "error: the carried wheels in .whl/ did not install"; exit 2; }
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . \
    || { echo "error: this checkout did not install (pip, setuptools offline)"; exit 2; }
export PYTHONPATH="$SITE" PYTHONUNBUFFERED=1
$PY -c "import torch, onnxruntime as ort; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', ort.__version__, ort.get_available_providers())"
timeout "${GPU_CHECK_TIMEOUT:-500}" $PY benchmarks/gpu_check.py "$@"
status=$?
if [ -n "${OUT:-}" ]; then cp benchmarks/RESULTS-gpu.md benchmarks/RESULTS-gpu.json "$OUT"/ 2>/dev/null; fi
exit $status
