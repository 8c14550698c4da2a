"""Optimizers the course names (SGD, SGD with momentum, AdaGrad) plus Adam/AdamW,
and a per-step schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vision_tasks.config import TrainConfig
from vision_tasks.errors import ConfigError

ParamGroups = list[dict[str, Any]]

OPTIMIZERS: dict[str, Callable[[ParamGroups, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr),
    "momentum": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                    nesterov=True),
    "adagrad": lambda groups, cfg: torch.optim.Adagrad(groups, lr=cfg.lr),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr),
}
"""``train.optimizer`` name -> builder of the optimizer over the parameter groups."""


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The ``cfg.optimizer`` of :data:`OPTIMIZERS` over the trainable parameters; weight decay
    applies to conv/linear weights only, not to biases or norm layers."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: unknown optimizer '{cfg.optimizer}'; use one of "
                          f"{', '.join(OPTIMIZERS)}")
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("model.backbone.freeze: every parameter of the model is frozen, so there "
                          "is nothing to train; freeze fewer stages (a number, or none)")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS[cfg.optimizer](groups, cfg)


def warmup_cosine(total_steps: int, warmup_steps: int, final_factor: float) -> Callable[[int], float]:
    """lr factor of step ``i``: linear 0.01 -> 1 over the warm-up, then cosine 1 -> final."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.01 + 0.99 * step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(1.0, progress)
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` over ``cfg.epochs * steps_per_epoch`` steps (one per batch); the
    warm-up is ``cfg.warmup_epochs`` long, at most half the run."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total // 2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup, cfg.lr_final))
