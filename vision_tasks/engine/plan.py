"""What a run trains, as one :class:`TrainingPlan`: the config's heads (one for a single-task
config) on one backbone, each with its data, its loss and its validation.

The trainer's loop asks the plan for the epoch's batches, the model, the loss, the validation
and the checkpoint header, and reads ``primary_metric`` off the validation to pick
``best.pt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vision_tasks.config import Config
from vision_tasks.engine.checkpoint import HeadInfo, checkpoint_header
from vision_tasks.engine.distributed import SINGLE, Dist
from vision_tasks.engine.evaluate import evaluate
from vision_tasks.engine.heads import SCORE, JointLoader, JointLoss, evaluate_heads, head_data
from vision_tasks.models.model import VisionModel, build_vision_model


@dataclass
class TrainingPlan:
    """What :class:`~vision_tasks.engine.trainer.Trainer` trains.

    Attributes:
        loader: the epoch's batches (``({head: images}, {head: targets})``);
            ``set_epoch(epoch)`` fixes their order before each epoch, from (seed, epoch)
            only, so a resumed run sees the same batches.
        validate: ``validate(model, device, progress) -> (metrics, evaluator)``.
        primary_metric: the metric that picks ``best.pt`` (higher is better).
        header: what describes the model in every checkpoint (its heads' tasks and classes,
            the config).
        describe: the run's first log line's start (task, classes, images).
    """

    loader: Any
    set_epoch: Callable[[int], None]
    model: VisionModel
    criterion: nn.Module
    validate: Callable[[nn.Module, torch.device, bool], tuple[dict[str, Any], Any]]
    primary_metric: str
    header: dict[str, Any]
    describe: str


def training_plan(cfg: Config, load_pretrained: bool, dist: Dist = SINGLE) -> TrainingPlan:
    """Every head's data, one model, the joint loss (each head's loss times its weight, a
    batch of every head each step) and every head's validation; the run's score (the mean
    of the heads' primary metrics; a single-task run's primary metric) picks ``best.pt``.
    Under DDP, this process's shard of the training data (``dist``)."""
    heads = head_data(cfg, None, cfg.train.batch_size, train=True,
                      seed=cfg.train.seed, dist=dist)
    model = build_vision_model(cfg, {n: len(h.class_names) for n, h in heads.items()}, load_pretrained)
    head_cfgs = cfg.head_configs()
    weights = {n: cfg.heads[n].weight if n in cfg.heads else 1.0 for n in heads}
    criterion = JointLoss({n: h.task.build_loss(head_cfgs[n], model.heads[n]) for n, h in heads.items()},
                          weights, bare_parts=cfg.single_task)
    loader = JointLoader(heads, cfg.train.head_sampling, cfg.train.seed)

    def validate(model: nn.Module, device: torch.device, progress: bool):
        return evaluate_heads(lambda name, head: evaluate(
            model.view(name), head.task, head.val, head.class_names, device, progress,
            desc="val" if cfg.single_task else f"val {name}"), heads, cfg.single_task)

    infos = {n: HeadInfo(h.task, h.class_names, h.category_ids) for n, h in heads.items()}
    primary = next(iter(heads.values())).task.primary_metric if cfg.single_task else SCORE
    describe = "heads " + ", ".join(
        f"{n} ({h.task.name}, {len(h.class_names)} classes, {len(h.train.dataset)} train / "
        f"{len(h.val.dataset)} val images)" for n, h in heads.items())
    if cfg.single_task:
        ((name, h),) = heads.items()
        describe = (f"task {name} | {len(h.class_names)} classes | {len(h.train.dataset)} train / "
                    f"{len(h.val.dataset)} val images")
    return TrainingPlan(loader, loader.set_epoch, model, criterion, validate, primary,
                        checkpoint_header(cfg, infos), describe)
