"""Checkpoints: one self-describing file per model, written atomically.

Contents (all plain tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads them)::

    format, version, package_version, the header (:func:`checkpoint_header`: task,
    class_names, category_ids of a single-task model, or heads of a multi-head one; config,
    resolved, as a dict), model (state dict), ema (state dict or None), optimizer,
    scheduler, epoch (last finished, 1-based), history (list of per-epoch metric rows),
    best_metric, rng (torch CPU/CUDA generator states), ema_updates

Every checkpoint is read into one kind of model (:func:`load_model`): a backbone and its
named heads.
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
from vision_tasks.models.model import VisionModel, build_vision_model
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


@dataclass(frozen=True)
class HeadInfo:
    """One head of a model: its task (training side) and classes."""

    task: Task
    class_names: list[str]
    category_ids: list[int | None] | None


@dataclass
class LoadedModel:
    """A checkpoint's model (eval mode), its config and each head's task and classes, in the
    config's head order (a single-task checkpoint: one head, named after its task)."""

    model: VisionModel
    cfg: Config
    heads: dict[str, HeadInfo]

    @property
    def first(self) -> tuple[str, HeadInfo]:
        """The first head (what the export's checks and the INT8 calibration use)."""
        return next(iter(self.heads.items()))


def checkpoint_header(cfg: Config, heads: dict[str, HeadInfo]) -> dict[str, Any]:
    """What describes a model in its checkpoints, beside the weights: a single-task model
    the layout of every release (``task``, ``class_names``, ``category_ids``), a multi-head
    one ``heads`` = ``{name: {task, class_names, category_ids}}``; both with the config."""
    if cfg.single_task:
        ((_, head),) = heads.items()
        return {"task": cfg.task, "class_names": list(head.class_names),
                "category_ids": head.category_ids, "config": cfg.to_dict()}
    return {"task": cfg.task, "config": cfg.to_dict(),
            "heads": {n: {"task": h.task.name, "class_names": list(h.class_names),
                          "category_ids": h.category_ids} for n, h in heads.items()}}


def checkpoint_heads(ckpt: dict[str, Any], cfg: Config, path: str | Path) -> dict[str, HeadInfo]:
    """Each head's task and classes, as :func:`checkpoint_header` wrote them (checked: a list
    of class names, category ids one per class)."""
    if cfg.single_task:
        if "class_names" not in ckpt:
            raise CheckpointError(f"{path}: incomplete checkpoint (no class_names); pass "
                                  "RUN/weights/best.pt or last.pt from vision-tasks train")
        return {cfg.task: _head_info(cfg.task, ckpt, path, "")}
    recorded = ckpt.get("heads")
    if not isinstance(recorded, dict) or set(recorded) != set(cfg.heads):
        raise CheckpointError(f"{path}: its heads section does not match its config's heads; "
                              "pass a checkpoint from `vision-tasks compose` or a multi-head `train`")
    return {name: _head_info(cfg.heads[name].task, recorded[name], path, f"heads.{name}.")
            for name in cfg.heads}


def _head_info(task: str, header: Any, path: str | Path, where: str) -> HeadInfo:
    names = header.get("class_names") if isinstance(header, dict) else None
    ids = header.get("category_ids") if isinstance(header, dict) else None
    if not (isinstance(names, list | tuple) and names and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: its {where}class_names is {_short(names)}, not a list of "
                              "names; pass RUN/weights/best.pt or last.pt from vision-tasks train")
    if ids is not None and not (isinstance(ids, list | tuple) and len(ids) == len(names) and all(
            i is None or isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise CheckpointError(f"{path}: its {where}category_ids is {_short(ids)}, not one id "
                              f"per class ({len(names)}); pass RUN/weights/best.pt or last.pt "
                              "from vision-tasks train")
    return HeadInfo(get_task(task), list(names), list(ids) if ids is not None else None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def load_model(path: str | Path, overrides: list[str] | None = None, use_ema: bool = True,
               state: dict[str, Any] | None = None) -> LoadedModel:
    """Rebuild the model of the checkpoint at ``path`` (its EMA weights when present), in eval
    mode, whatever its heads; ``state``: the checkpoint already read from ``path``."""
    ckpt = load_checkpoint(path) if state is None else state
    cfg = checkpoint_config(ckpt, path, overrides)
    heads = checkpoint_heads(ckpt, cfg, path)
    if "model" not in ckpt:
        raise CheckpointError(f"{path}: incomplete checkpoint (no model weights); pass "
                              "RUN/weights/best.pt or last.pt from vision-tasks train")
    model = build_vision_model(cfg, {n: len(h.class_names) for n, h in heads.items()},
                               load_pretrained=False)
    _load_weights(model, ckpt, path, use_ema)
    return LoadedModel(model.eval(), cfg, heads)


def model_from_checkpoint(path: str | Path, overrides: list[str] | None = None,
                          use_ema: bool = True) -> tuple[VisionModel, Config, Task, list[str]]:
    """:func:`load_model` of a one-head checkpoint, as ``(model, config, task, class names)``
    (what the commands that look at one head, such as ``filters``, take)."""
    loaded = load_model(path, overrides, use_ema)
    if len(loaded.heads) != 1:
        raise CheckpointError(f"{path}: a model with {len(loaded.heads)} heads "
                              f"({', '.join(loaded.heads)}); this command takes a one-head model")
    (head,) = loaded.heads.values()
    return loaded.model, loaded.cfg, head.task, head.class_names


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
