"""Training section: steps/s, peak GPU memory and the loss after N steps, per task, fp32
vs AMP bf16, channels_last off / on.

Each task's config (``configs/<task>.yaml`` at the plan's size) is built once
(:func:`~vision_tasks.engine.plan.training_plan`, as ``vision-tasks train`` does); every
variant starts from the same initial weights and runs the trainer's own step
(:func:`~vision_tasks.engine.trainer.train_step`: autocast, gradient scaler, clipping,
schedule, EMA) on the same few batches, held on the device so that the data loader does
not set the pace: this times the model's step, not the input pipeline.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from vision_tasks.engine.plan import training_plan
from vision_tasks.engine.trainer import StepSettings, TrainState, train_step

from .models import config, data_set
from .plan import Budget, Plan

VARIANTS = (("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True))
BATCHES_HELD = 2  # distinct batches cycled through


def to_device(x: Any, device: torch.device) -> Any:
    """Tensors of a batch (alone, or in dicts / lists / tuples, any depth) on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(to_device(v, device) for v in x)
    return x


def _channels_last(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
    if isinstance(x, dict):
        return {k: _channels_last(v) for k, v in x.items()}
    return x


def _floats(x: Any) -> Any:
    return {k: v.float() for k, v in x.items()} if isinstance(x, dict) else x.float()


def study_task(task: str, plan: Plan, root: Path, device: torch.device) -> list[dict[str, Any]]:
    """One row per variant of ``task``: steps/s, images/s, peak memory (MiB, GPU only),
    loss after the warm-up and after every timed step."""
    data = data_set(task, plan.study_size, root, plan.study_batch * BATCHES_HELD, 4)
    cfg = config(task, plan.study_size, data, plan, str(device),
                 f"train.batch_size={plan.study_batch}")
    built = training_plan(cfg, load_pretrained=False)
    held = []
    for images, targets in built.loader:
        held.append((_floats(to_device(images, device)), to_device(targets, device)))
        if len(held) == BATCHES_HELD:
            break
    initial = copy.deepcopy(built.model.state_dict())
    rows = []
    for amp, channels_last in VARIANTS:
        model = built.model.to(device)
        model.load_state_dict(initial)
        model.train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if amp == "bf16" else None
        settings = StepSettings(device, dtype, cfg.train.grad_clip)
        torch.manual_seed(0)
        state = TrainState.start(model, cfg.train, plan.study_steps + plan.study_warmup, dtype,
                                 device)
        batches = [(_channels_last(i), t) if channels_last else (i, t) for i, t in held]
        for step in range(plan.study_warmup):
            train_step(state, *batches[step % len(batches)], built.criterion, settings)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for step in range(plan.study_steps):
            loss, _ = train_step(state, *batches[step % len(batches)], built.criterion, settings)
        final = float(loss.detach())  # waits for the GPU
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        rows.append({"task": task, "size": plan.study_size, "batch": plan.study_batch,
                     "amp": amp, "channels_last": channels_last,
                     "steps": plan.study_steps, "steps_per_s": plan.study_steps / seconds,
                     "images_per_s": plan.study_steps * plan.study_batch / seconds,
                     "peak_mib": peak, "loss_after_n": final})
        model.to(memory_format=torch.contiguous_format)
    return rows


def training_section(plan: Plan, root: Path, device: torch.device, budget: Budget,
                     deadline: float) -> dict[str, Any]:
    """Every task of the plan; a task not started by ``deadline`` (seconds into the run) is
    named as skipped."""
    rows, skipped, errors = [], [], {}
    for task in plan.tasks:
        if budget.elapsed() > deadline:
            skipped.append(task)
            continue
        try:
            rows += study_task(task, plan, root, device)
        except Exception as err:  # one task's failure is reported, the others still run
            errors[task] = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    return {"rows": rows, "skipped": skipped, "errors": errors}
