"""Which precision the forward pass trains in (``train.amp``), on a GPU and on a CPU.

==========  ==========================================  =============================
``amp``     CUDA GPU                                    CPU
==========  ==========================================  =============================
``auto``    bf16 where supported, else fp16             bf16 where the CPU has bf16
                                                        units (AMX-BF16, AVX512-BF16),
                                                        else full precision (fp32)
``bf16``    bf16                                        bf16 (emulated, slow, without
                                                        bf16 units)
``fp16``    fp16 (with a gradient scaler)               full precision
``off``     full precision                              full precision
==========  ==========================================  =============================

Mixed precision covers the forward pass only (``torch.autocast``): the weights, the
optimizer, the loss (the trainer casts the outputs to float32 first) and the validation
metrics stay in float32. The CPU default is measured in ``benchmarks/RESULTS.md`` ("bf16
training on the CPU").
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of the x86 units that compute in bf16 natively (oneDNN uses
them for bf16 convolutions and matrix products); without them bf16 is emulated."""


@cache
def cpu_bf16_units(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The bf16 flags of :data:`CPU_BF16_FLAGS` this CPU reports (empty where it has none,
    or where ``/proc/cpuinfo`` cannot be read: not Linux, a sandbox)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp = mode`` on ``device`` (see the module docstring);
    None: full precision."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if mode == "bf16" else torch.float16
    # auto on the CPU: bf16 where it has bf16 units: 1.3-1.8x the fp32 step rate of the four
    # default configs, metrics within seed noise (RESULTS, "bf16 training on the CPU"; a
    # slower figure taken with 2 threads under foreign load was OpenMP contention).
    if device.type == "cpu" and (mode == "bf16" or mode == "auto" and cpu_bf16_units()):
        return torch.bfloat16
    return None


def amp_note(mode: str, device: torch.device) -> str:
    """One phrase for the run's first log line: the precision and why, e.g.
    ``bf16 autocast (CPU with amx_bf16, avx512_bf16)``."""
    dtype = amp_dtype(mode, device)
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    if device.type != "cpu":
        return f"{name} autocast" if dtype else f"fp32 (train.amp={mode})"
    units = cpu_bf16_units()
    if dtype is None:
        why = f"train.amp={mode}" if mode != "auto" else "train.amp=auto; bf16 units: none"
        return f"fp32 ({why})"
    return f"bf16 autocast ({'CPU with ' + ', '.join(units) if units else 'no bf16 units: emulated, slow'})"
