"""Evaluation: run a model over a data set and let the task's evaluator score it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vision_tasks.fileio import atomic_write_text
from vision_tasks.models.model import TaskModel
from vision_tasks.task_api import Task


def make_loader(task: Task, dataset: Dataset, batch_size: int, workers: int, sampler=None,
                seed: int = 0) -> DataLoader:
    """A loader whose worker seeds come from its own generator, not the global RNG."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=task.collate, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))


def score_batches(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], task: Task,
                  loader: DataLoader, class_names: list[str], progress: bool = True,
                  desc: str = "val") -> tuple[dict[str, Any], Any]:
    """Feed every batch (uint8 images [N, 3, S, S]) to ``predict`` and score its contract
    outputs (CPU tensors) with the task's evaluator; returns (metrics, evaluator)."""
    evaluator = task.make_evaluator(class_names, loader.dataset.category_ids)
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        evaluator.update(predict(images), targets)
    return evaluator.compute(), evaluator


@torch.no_grad()
def evaluate(model: TaskModel, task: Task, loader: DataLoader, class_names: list[str],
             device: torch.device, progress: bool = True, desc: str = "val") -> tuple[dict[str, Any], Any]:
    """Metrics of the PyTorch ``model`` on ``loader``; returns (metrics, evaluator)."""
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
    return "  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items())
