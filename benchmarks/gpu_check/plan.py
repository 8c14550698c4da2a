"""What one run of the GPU check measures, per mode, and the time budget it keeps to.

Modes: ``gpu`` (a CUDA GPU is visible: the study itself, at most ~8 minutes on one
H100 / H200), ``cpu`` (no GPU: the same code paths at small sizes, under 2 minutes; every
GPU-only measurement says "skipped: no GPU"), ``smoke`` (the CPU mode at the smallest
sizes, for CI; its budget is generous so that a loaded CI machine skips nothing). The CPU
modes export with opset 17 (the TorchScript exporter: ~2 s per tiny model here against
~14 s for the default dynamo exporter); the GPU mode with the default, 18.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

NO_GPU = "skipped: no GPU"
NO_TIME = "skipped: time budget spent"


@dataclass(frozen=True)
class Plan:
    """Sizes of one mode. ``*_size``: square input side in pixels."""

    mode: str
    tasks: tuple[str, ...]  # trained, exported and checked for accuracy
    speed_tasks: tuple[str, ...]  # timed model-only
    model_size: int  # input side of the models checked for accuracy
    train_images: int  # synthetic training images of those models
    val_images: int
    epochs: int
    tiny: bool  # tiny networks (a few thousand weights) instead of the configs' own
    study_size: int  # training-speed section: input side
    study_steps: int  # timed steps per variant (after warm-up)
    study_warmup: int
    study_batch: int
    speed_sizes: tuple[int, ...]
    speed_batches: tuple[int, ...]
    speed_seconds: float  # minimum seconds per timed repeat
    speed_repeats: int
    pipeline_images: int
    budget_s: float  # the whole run; a section past it is skipped
    opset: int  # 18: the default (dynamo) exporter; 17: the TorchScript one, 8x faster on a CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ALL_TASKS = ("classify", "localize", "detect", "segment")
PLANS = {
    "gpu": Plan("gpu", ALL_TASKS, ("detect", "segment"), 128, 512, 64, 3, False,
                320, 20, 3, 16, (128, 640), (1, 32), 0.3, 3, 2048, 450.0, 18),
    "cpu": Plan("cpu", ALL_TASKS, ("detect", "segment"), 32, 16, 8, 1, True,
                32, 2, 1, 4, (32,), (1, 8), 0.1, 2, 128, 110.0, 17),
    "smoke": Plan("smoke", ("detect",), ("detect",), 32, 8, 4, 1, True,
                  32, 1, 1, 4, (32,), (1, 4), 0.05, 1, 16, 300.0, 17),
}


@dataclass
class Budget:
    """Seconds left of ``total`` since the start; ``spent()`` says when to stop starting
    new measurements (a started one finishes)."""

    total: float
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self, reserve: float = 0.0) -> bool:
        return self.elapsed() + reserve > self.total
