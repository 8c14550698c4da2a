"""What a run trains: one task, or several heads on one backbone, as one :class:`TrainingPlan`.

The trainer's loop is the same for both: it asks the plan for the epoch's batches, the model,
the loss, the validation and the checkpoint header, and reads ``primary_metric`` off the
validation to pick ``best.pt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vision_tasks.config import Config
from vision_tasks.data.sampler import EpochSampler
from vision_tasks.engine.distributed import SINGLE, Dist
from vision_tasks.engine.evaluate import evaluate, make_loader
from vision_tasks.engine.multi import SCORE, JointLoader, JointLoss, evaluate_heads, head_data
from vision_tasks.models.model import build_model
from vision_tasks.models.multi import HeadView, build_multi_model, head_tasks
from vision_tasks.task_api import get_task


@dataclass
class TrainingPlan:
    """What :class:`~vision_tasks.engine.trainer.Trainer` trains.

    Attributes:
        loader: the epoch's batches (``(images, targets)``; a multi-head run's are dicts
            keyed by head); ``set_epoch(epoch)`` fixes their order before each epoch, from
            (seed, epoch) only, so a resumed run sees the same batches.
        validate: ``validate(model, device, progress) -> (metrics, evaluator)``.
        primary_metric: the metric that picks ``best.pt`` (higher is better).
        header: what describes the model in every checkpoint (task, classes, config).
        describe: the run's first log line's start (task, classes, images).
    """

    loader: Any
    set_epoch: Callable[[int], None]
    model: nn.Module
    criterion: nn.Module
    validate: Callable[[nn.Module, torch.device, bool], tuple[dict[str, Any], Any]]
    primary_metric: str
    header: dict[str, Any]
    describe: str


def training_plan(cfg: Config, load_pretrained: bool, dist: Dist = SINGLE) -> TrainingPlan:
    """The plan of ``cfg``: multi-head when it has ``heads``, else its task's; under DDP this
    process's shard of the training data (``dist``)."""
    return (multi_head_plan if cfg.heads else single_task_plan)(cfg, load_pretrained, dist)


def single_task_plan(cfg: Config, load_pretrained: bool, dist: Dist = SINGLE) -> TrainingPlan:
    task, tcfg = get_task(cfg.task), cfg.train
    train_set = task.build_dataset(cfg, "train", train=True)
    names = train_set.class_names
    val_set = task.build_dataset(cfg, "val", train=False, class_names=names)
    sampler = EpochSampler(len(train_set), tcfg.seed, shuffle=True, rank=dist.rank, world=dist.world)
    loader = make_loader(task, train_set, dist.per_process_batch(tcfg.batch_size), cfg.data.workers,
                         sampler, tcfg.seed)
    val_loader = make_loader(task, val_set, tcfg.batch_size, cfg.data.workers)

    def validate(model: nn.Module, device: torch.device, progress: bool):
        return evaluate(model, task, val_loader, names, device, progress)

    # category_ids: the original (COCO) id of each class, kept for the export's metadata.
    header = {"task": cfg.task, "class_names": list(names),
              "category_ids": train_set.category_ids, "config": cfg.to_dict()}
    return TrainingPlan(loader, sampler.set_epoch,
                        build_model(cfg, task, len(names), load_pretrained),
                        task.build_loss(cfg, len(names)), validate, task.primary_metric, header,
                        f"task {cfg.task} | {len(names)} classes | {len(train_set)} train / "
                        f"{len(val_set)} val images")


def multi_head_plan(cfg: Config, load_pretrained: bool, dist: Dist = SINGLE) -> TrainingPlan:
    """Every head's data, one model, the joint loss (each head's loss times its weight, a
    batch of every head each step); the run's score (the mean of the heads' primary
    metrics) picks ``best.pt``."""
    heads = head_data(cfg, head_tasks(cfg), None, cfg.train.batch_size, train=True,
                      seed=cfg.train.seed, dist=dist)
    model = build_multi_model(cfg, {n: len(h.class_names) for n, h in heads.items()}, load_pretrained)
    criterion = JointLoss({n: h.task.build_loss(cfg.for_head(n), len(h.class_names))
                           for n, h in heads.items()},
                          {n: cfg.heads[n].weight for n in heads})
    loader = JointLoader(heads, cfg.train.head_sampling, cfg.train.seed)

    def validate(model: nn.Module, device: torch.device, progress: bool):
        return evaluate_heads(lambda name, head: evaluate(
            HeadView(model, name), head.task, head.val, head.class_names, device, progress,
            desc=f"val {name}"), heads)

    header = {"task": cfg.task, "config": cfg.to_dict(),
              "heads": {n: {"task": h.task.name, "class_names": h.class_names,
                            "category_ids": h.category_ids} for n, h in heads.items()}}
    describe = "heads " + ", ".join(
        f"{n} ({h.task.name}, {len(h.class_names)} classes, {len(h.train.dataset)} train / "
        f"{len(h.val.dataset)} val images)" for n, h in heads.items())
    return TrainingPlan(loader, loader.set_epoch, model, criterion, validate, SCORE, header,
                        describe)
