"""Checkpoints: one self-describing file per model, written atomically.

Contents (all plain tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads them)::

    format, version, package_version, task, class_names, config (resolved, as a dict),
    model (state dict), ema (state dict or None), optimizer, scheduler, epoch
    (last finished, 1-based), history (list of per-epoch metric rows), best_metric,
    rng (torch CPU/CUDA generator states), ema_updates
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vision_tasks import __version__
from vision_tasks.config import Config, apply_overrides, config_from_dict
from vision_tasks.engine.divergence import non_finite_tensors
from vision_tasks.errors import CheckpointError
from vision_tasks.fileio import atomic_path
from vision_tasks.models.model import TaskModel, build_model
from vision_tasks.models.multi import MultiTaskModel, build_multi_model
from vision_tasks.models.weights import CHECKPOINT_FORMAT, load_model_weights, read_weights_file
from vision_tasks.task_api import Task, get_task

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the format header to ``path`` atomically."""
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "package_version": __version__, **payload}
    with atomic_path(path, durable=True) as tmp:
        torch.save(data, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of this product, with one-line errors for anything else."""
    data = read_weights_file(path)
    if data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a vision-tasks checkpoint (no '{CHECKPOINT_FORMAT}' "
                              "header); pass RUN/weights/best.pt or last.pt from vision-tasks train")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data['version']} is newer than this "
                              f"package understands ({CHECKPOINT_VERSION}); upgrade vision-tasks")
    return data


def checkpoint_config(ckpt: dict[str, Any], path: str | Path, overrides: list[str] | None = None) -> Config:
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path}: checkpoint has no config; pass RUN/weights/best.pt or last.pt "
                              "from vision-tasks train")
    raw = apply_overrides(dict(ckpt["config"]), overrides or [])
    return config_from_dict(raw, f"{path} (config inside the checkpoint)")


def model_from_checkpoint(path: str | Path, overrides: list[str] | None = None,
                          use_ema: bool = True) -> tuple[TaskModel, Config, Task, list[str]]:
    """Rebuild the model of a checkpoint (EMA weights when present), in eval mode."""
    return model_from_state(load_checkpoint(path), path, overrides, use_ema)


def model_from_state(ckpt: dict[str, Any], path: str | Path, overrides: list[str] | None = None,
                     use_ema: bool = True) -> tuple[TaskModel, Config, Task, list[str]]:
    """:func:`model_from_checkpoint` of a checkpoint already loaded from ``path``."""
    cfg = checkpoint_config(ckpt, path, overrides)
    if cfg.heads:
        raise CheckpointError(f"{path}: a multi-head checkpoint ({', '.join(cfg.heads)}); this "
                              "command takes a single-task one")
    task = get_task(cfg.task)
    if "class_names" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: incomplete checkpoint (no class_names or model weights); "
                              "pass RUN/weights/best.pt or last.pt from vision-tasks train")
    names = list(ckpt["class_names"])
    model = build_model(cfg, task, len(names), load_pretrained=False)
    _load_weights(model, ckpt, path, use_ema)
    return model.eval(), cfg, task, names


@dataclass(frozen=True)
class HeadInfo:
    """One head of a multi-head checkpoint: its task (training side) and classes."""

    task: Task
    class_names: list[str]
    category_ids: list[int | None] | None


def multi_model_from_state(ckpt: dict[str, Any], path: str | Path,
                           overrides: list[str] | None = None, use_ema: bool = True
                           ) -> tuple[MultiTaskModel, Config, dict[str, HeadInfo]]:
    """The model of a multi-head checkpoint (EMA weights when present), in eval mode, its
    config and each head's task and classes, in the config's head order."""
    cfg = checkpoint_config(ckpt, path, overrides)
    recorded = ckpt.get("heads")
    if not cfg.heads or not isinstance(recorded, dict) or set(recorded) != set(cfg.heads):
        raise CheckpointError(f"{path}: not a multi-head checkpoint (no heads section that "
                              "matches its config); pass one from `vision-tasks compose` or a "
                              "multi-head `train`")
    heads = {name: HeadInfo(get_task(cfg.heads[name].task), list(recorded[name]["class_names"]),
                            recorded[name].get("category_ids"))
             for name in cfg.heads}
    model = build_multi_model(cfg, {n: len(h.class_names) for n, h in heads.items()},
                              load_pretrained=False)
    _load_weights(model, ckpt, path, use_ema)
    return model.eval(), cfg, heads


def _load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: str | Path,
                  use_ema: bool) -> None:
    weights = ckpt.get("ema") if use_ema and ckpt.get("ema") else ckpt["model"]
    bad = non_finite_tensors(weights) if isinstance(weights, dict) else []
    if bad:  # a diverged run: its outputs would be NaN, its metrics and exports meaningless
        raise CheckpointError(f"{path}: {len(bad)} weight tensors hold NaN or infinity (e.g. "
                              f"{bad[0]}): the run diverged; use a checkpoint of an earlier "
                              "epoch or run, or train again with a lower train.lr")
    # Names or shapes that differ: the config no longer builds this model (a --set of model.*
    # keys, a checkpoint whose config was edited, another task's weights).
    load_model_weights(model, weights, path, "the model its config builds",
                       "drop --set overrides of model.* keys, or pass the checkpoint its run wrote")
