"""The models the check measures, made here from nothing (the lent machine has no data
and no runs): a synthetic data set per task and input size (``Task.synthesize``, as
``vision-tasks data synth``), a short training run of the task's own config
(``configs/<task>.yaml`` through :class:`~vision_tasks.engine.trainer.Trainer`, as
``vision-tasks train``), then ``vision-tasks export`` of its ``best.pt`` in fp32 and fp16
(:mod:`vision_tasks.export.fp16`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vision_tasks.export.fp16 import convert_file
from vision_tasks.export.onnx_export import export_checkpoint

from vision_tasks.config import Config, load_config
from vision_tasks.engine.trainer import Trainer
from vision_tasks.task_api import get_task

from .plan import Plan

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_BACKBONE = ["model.backbone.name=simple_cnn", "model.backbone.width=8",
                 "model.backbone.depths=[1, 1, 1, 1, 1]"]
TINY_HEAD = {"detect": ["model.head.channels=16", "model.head.hidden=16", "model.head.depth=1"],
             "segment": ["model.head.channels=16", "model.head.hidden=16", "model.head.depth=1",
                         "model.head.num_protos=8", "model.head.proto_channels=16",
                         "model.head.coef_hidden=16"]}
"""Networks of a few thousand weights (the test suite's), for the CPU and smoke modes."""


@dataclass
class Made:
    """One trained and exported model."""

    task: str
    size: int
    checkpoint: Path
    fp32: Path
    fp16: Path
    train_seconds: float
    export_seconds: float


def data_set(task: str, size: int, root: Path, train: int, val: int) -> Path:
    """A synthetic set of ``task`` at ``size`` px under ``root`` (made once, then reused)."""
    out = root / f"data-{task}-{size}-{train}-{val}"
    if not (out / ".done").is_file():
        get_task(task).synthesize(out, train, val, size, seed=0)
        (out / ".done").write_text("ok\n")
    return out


def config(task: str, size: int, data: Path, plan: Plan, device: str, *extra: str,
           train_images: int | None = None) -> Config:
    """``configs/<task>.yaml`` on ``data`` at ``size`` px (tiny networks when ``plan.tiny``)."""
    tiny = [*TINY_BACKBONE, *TINY_HEAD.get(task, [])] if plan.tiny else []
    workers = 0 if plan.mode != "gpu" else 2
    return load_config(CONFIGS / f"{task}.yaml", [
        *get_task(task).demo_overrides(data), *tiny, f"data.image_size={size}",
        f"data.workers={workers}", f"train.epochs={plan.epochs}", "train.warmup_epochs=0",
        f"train.batch_size={min(16, train_images or plan.train_images)}",
        f"train.device={device}", *extra])


def make(task: str, size: int, root: Path, plan: Plan, device: str, train_images: int | None = None,
         val_images: int | None = None, epochs: int | None = None) -> Made:
    """Train ``task`` at ``size`` px for the plan's epochs (or ``epochs``), export both
    precisions beside its ``best.pt``; reuses a finished run of the same name."""
    n_train, n_val = train_images or plan.train_images, val_images or plan.val_images
    data = data_set(task, size, root, n_train, n_val)
    extra = [] if epochs is None else [f"train.epochs={epochs}"]
    run = root / f"run-{task}-{size}-{n_train}-{epochs or plan.epochs}"
    t0 = time.perf_counter()
    best = run / "weights" / "best.pt"
    if not best.is_file():
        cfg = config(task, size, data, plan, device, *extra, train_images=n_train)
        best = Trainer(cfg, run, progress=False, log=lambda _: None, overwrite=True).fit().best
    t1 = time.perf_counter()
    fp32 = best.with_suffix(".onnx")
    fp16 = best.with_suffix(".fp16.onnx")
    if not fp32.is_file():
        export_checkpoint(best, fp32, opset=plan.opset)
    if not fp16.is_file():
        convert_file(fp32, fp16)
    return Made(task, size, best, fp32, fp16, t1 - t0, time.perf_counter() - t1)
