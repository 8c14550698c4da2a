"""The environment section: GPU, driver, CPU, torch, onnxruntime and its providers."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import onnxruntime as ort
import torch
from vision_tasks.export.runtime.providers import cpu_threads, cuda_device_count


def _nvidia_smi() -> str:
    """``name, driver, memory`` of each GPU as nvidia-smi prints them ("" without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def environment() -> dict[str, Any]:
    """Everything a reader needs to place the figures (one flat dict of strings / numbers)."""
    gpu = torch.cuda.is_available()
    env: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if gpu else "none",
        "gpus_visible": torch.cuda.device_count() if gpu else cuda_device_count(),
        "nvidia_smi": _nvidia_smi() or "n/a",
        "cuda_runtime (torch)": torch.version.cuda or "n/a",
        "cudnn": str(torch.backends.cudnn.version()) if gpu else "n/a",
        "bf16_supported": bool(gpu and torch.cuda.is_bf16_supported()),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ", ".join(ort.get_available_providers()),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores_usable": cpu_threads(),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
    }
    if gpu:
        props = torch.cuda.get_device_properties(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["compute_capability"] = f"{props.major}.{props.minor}"
    return env
