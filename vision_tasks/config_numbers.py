"""Ranges of a config's numbers that have no meaning outside them (issue 28, "input whose
meaning is guessed"): a negative warm-up, a momentum or an EMA decay of 1 or more, a
dropout of 2, a negative size or loss weight in a task's head or loss section. Each is a
one-line :class:`~vision_tasks.errors.ConfigError` naming the key, before anything is
built; :func:`vision_tasks.config.config_from_dict` calls :func:`check_numbers`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NoReturn

# Task-section fields that are fractions: [0, 1).
FRACTIONS = ("dropout", "label_smoothing")

Fail = Callable[[str, str, str], NoReturn]  # (source, key, message)


def check_numbers(cfg: Any, source: str, fail: Fail) -> None:
    """The training numbers, the backbone's depths and every number of the task-owned
    sections (``model.head`` / ``loss``, or each ``heads.<name>``'s) of a validated config."""
    train = cfg.train
    for key, value in (("warmup_epochs", train.warmup_epochs), ("lr_final", train.lr_final),
                       ("weight_decay", train.weight_decay), ("grad_clip", train.grad_clip)):
        if not value >= 0:
            fail(source, f"train.{key}", f"must be 0 or more, got {value}")
    for key, value in (("momentum", train.momentum), ("ema_decay", train.ema_decay)):
        if not 0 <= value < 1:
            fail(source, f"train.{key}", f"must be in [0, 1), got {value}")
    depths = cfg.model.backbone.depths
    if any(not isinstance(d, int) or d < 0 for d in depths):
        fail(source, "model.backbone.depths", f"expected numbers of layers, 0 or more, got {depths}")
    if cfg.heads:
        for name, section in cfg.heads.items():
            _section(section.head, f"heads.{name}.head", source, fail)
            _section(section.loss, f"heads.{name}.loss", source, fail)
    else:
        _section(cfg.model.head, "model.head", source, fail)
        _section(cfg.loss, "loss", source, fail)


def _section(section: Any, key: str, source: str, fail: Fail) -> None:
    """Every number of a task's section is a size, a count, a weight, a threshold or a
    fraction: none is negative or not finite; fractions are below 1, thresholds at most 1."""
    if not dataclasses.is_dataclass(section):
        return
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        for number in value if isinstance(value, list | tuple) else [value]:
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            where = f"{key}.{f.name}"
            if not (math.isfinite(number) and number >= 0):
                fail(source, where, f"must be 0 or more, got {value}")
            if f.name in FRACTIONS and number >= 1:
                fail(source, where, f"must be in [0, 1), got {value}")
            if f.name.endswith("threshold") and number > 1:
                fail(source, where, f"must be in [0, 1], got {value}")
