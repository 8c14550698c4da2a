"""Evaluation: run a model over a data set and let the task's evaluator score it.

Only the images that were read are scored, each once under its own id: an evaluation set
leaves out what it cannot use (:mod:`vision_tasks.data.bad_images`), and the metrics then say
how many images were left out and why (``images_left_out``, also on the
:func:`format_metrics` line).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm import tqdm

from vision_tasks.data.bad_images import collate_readable
from vision_tasks.fileio import atomic_write_text
from vision_tasks.task_api import Task


def make_loader(task: Task, dataset: Dataset, batch_size: int, workers: int, sampler=None,
                seed: int = 0) -> DataLoader:
    """A loader whose worker seeds come from its own generator, not the global RNG. Items a
    set could not read (evaluation sets) are left out of their batch; a batch of none of
    them is None."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=partial(collate_readable, task.collate),
                      persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))


def score_batches(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], task: Task,
                  loader: DataLoader, class_names: list[str], progress: bool = True,
                  desc: str = "val") -> tuple[dict[str, Any], Any]:
    """Feed every batch (uint8 images [N, 3, S, S]) to ``predict`` and score its contract
    outputs (CPU tensors) with the task's evaluator; returns (metrics, evaluator). Images the
    set left out (not found when it was built, or unreadable now) are counted in
    ``metrics["images_left_out"]``."""
    dataset = loader.dataset
    evaluator = task.make_evaluator(class_names, dataset.category_ids)
    seen = 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        if batch is None:  # every image of the batch was left out
            continue
        images, targets = batch
        evaluator.update(predict(images), targets)
        seen += len(images)
    metrics = evaluator.compute()
    missing = len(getattr(dataset, "missing", ()))
    # Read once in order, every image not scored was left out (another sampler may skip
    # or repeat images on purpose).
    unreadable = len(dataset) - seen if isinstance(loader.sampler, SequentialSampler) else 0
    if missing or unreadable:
        metrics["images_left_out"] = {"listed": len(dataset) + missing, "not_found": missing,
                                      "unreadable": unreadable}
    return metrics, evaluator


def left_out_note(metrics: dict[str, Any]) -> str:
    """``"2 of 22 images left out of the metric: 1 not found, 1 unreadable (named in the
    warnings)"``, or "" when every image was scored."""
    left = metrics.get("images_left_out")
    if not isinstance(left, dict):
        return ""
    parts = [f"{left[k]} {what}" for k, what in (("not_found", "not found on disk"),
                                               ("unreadable", "unreadable")) if left.get(k)]
    total = left.get("not_found", 0) + left.get("unreadable", 0)
    return (f"{total} of {left['listed']} images left out of the metric: {', '.join(parts)} "
            "(named in the warnings and the data set's line)")


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, loader: DataLoader, class_names: list[str],
             device: torch.device, progress: bool = True, desc: str = "val") -> tuple[dict[str, Any], Any]:
    """Metrics of the PyTorch ``model`` (one head: ``model(images) -> raw``,
    ``model.postprocess(raw) -> the task's outputs``, e.g. :meth:`VisionModel.view
    <vision_tasks.models.model.VisionModel.view>`) on ``loader``; returns (metrics, evaluator)."""
    model.eval()

    def predict(images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = model.postprocess(model(images.to(device, non_blocking=True).float()))
        return {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in outputs.items()}

    return score_batches(predict, task, loader, class_names, progress, desc)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The float metrics (counts, tables and matrices are left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def write_metrics_json(metrics: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=False) + "\n")


def format_metrics(metrics: dict[str, Any]) -> str:
    """The float metrics on one line, then what was left out of them (a multi-head model's
    metrics: each head's, under its name)."""
    text = "  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items())
    notes = [note for note in [left_out_note(metrics)] if note]
    notes += [f"{name}: {note}" for name, head in metrics.items() if isinstance(head, dict)
              for note in [left_out_note(head)] if note]
    return text + "".join(f"  ({note})" for note in notes)
