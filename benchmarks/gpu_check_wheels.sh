#!/usr/bin/env bash
# Here (with network): download into .whl/ (git-ignored) the wheels that the lent GPU machine's
# image lacks for benchmarks/gpu_check.py, for its Python 3.12 (nothing can be fetched there).
# Its image already holds torch, torchvision, onnx, onnxscript, onnxruntime (no CUDA provider),
# numpy, OpenCV, Pillow, PyYAML, tqdm, matplotlib and tensorboard
# (/work/.library/device/KINDS.md). onnxruntime-gpu (~200 MB) is over the 64 MiB a call may
# carry, so onnxruntime's CUDA and TensorRT rows can run only where the image has it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
versions() { grep -i -E "^($1)==" constraints.txt; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    $(versions 'albumentations|albucore|pydantic|pydantic_core|annotated-types|typing-inspection|stringzilla|simsimd|pycocotools|orjson')
du -sh .whl
