"""``vision-tasks compose``: single-task checkpoints that share one backbone -> one multi-head
checkpoint.

Heads trained on one frozen backbone (the course's transfer learning:
``model.backbone.pretrained=SOURCE --set model.backbone.freeze=all``) leave that backbone's
tensors bit-identical in every checkpoint; composing them keeps the backbone once and each
head as trained, so every head's metric from the composed model is its source's, exactly.
The composed config is the first source's backbone, image size and training settings, and
each source's task, sections and data as one head (``heads.<name>``). Each source gives the
weights its metric was computed with (its EMA weights when it has them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vision_tasks.config import MULTI, Config, HeadData, HeadSection
from vision_tasks.engine.checkpoint import (
    HeadInfo,
    checkpoint_config,
    checkpoint_header,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from vision_tasks.errors import CheckpointError, ConfigError
from vision_tasks.models.model import SINGLE_HEAD_PREFIX
from vision_tasks.task_api import get_task

BACKBONE_PREFIX = "backbone."


@dataclass
class ComposeResult:
    path: Path
    heads: dict[str, str]  # head name -> task

    def summary(self) -> str:
        heads = ", ".join(f"{name} ({task})" for name, task in self.heads.items())
        return f"composed {self.path}: one backbone, {len(self.heads)} heads: {heads}"


def compose_checkpoints(sources: list[str | Path], out: str | Path,
                        names: list[str] | None = None) -> ComposeResult:
    """Join the single-task checkpoints ``sources`` into the multi-head checkpoint ``out``.

    ``names``: the heads' names (default: each source's task; give names when two sources
    have one task).

    Raises:
        CheckpointError: a source is not a single-task checkpoint, or the backbones differ
            (the message names the first differing tensor).
        ConfigError: names missing, repeated or not identifiers.
    """
    if not sources:
        raise ConfigError("compose: give at least one checkpoint")
    paths = [Path(s) for s in sources]
    states = [load_checkpoint(p) for p in paths]
    configs = [checkpoint_config(s, p) for s, p in zip(states, paths, strict=True)]
    for cfg, path in zip(configs, paths, strict=True):
        if not cfg.single_task:
            raise CheckpointError(f"{path}: already a multi-head checkpoint; compose single-task ones")
    names = list(names) if names else [cfg.task for cfg in configs]
    if len(names) != len(paths):
        raise ConfigError(f"compose --names: {len(names)} names for {len(paths)} checkpoints; give one per checkpoint")
    if len(set(names)) != len(names):
        raise ConfigError(f"compose: head names repeat ({', '.join(names)}); two sources of one "
                          "task need --names, e.g. --names shapes,digits")
    weights = [s["ema"] if s.get("ema") else s["model"] for s in states]
    _check_same_backbone(configs, weights, paths)

    first = configs[0]
    heads = {name: HeadSection(task=cfg.task, data=HeadData(cfg.data.train, cfg.data.val),
                               head=cfg.model.head, loss=cfg.loss, task_options=cfg.task_options)
             for name, cfg in zip(names, configs, strict=True)}
    cfg = Config(task=MULTI, model=first.model, data=first.data, train=first.train, heads=heads)
    cfg.model.head = {}
    model: dict[str, torch.Tensor] = {k: v for k, v in weights[0].items()
                                      if k.startswith(BACKBONE_PREFIX)}
    for name, state in zip(names, weights, strict=True):
        model.update({f"heads.{name}.{k.removeprefix(SINGLE_HEAD_PREFIX)}": v
                      for k, v in state.items() if k.startswith(SINGLE_HEAD_PREFIX)})
    infos = {name: HeadInfo(get_task(c.task), list(s["class_names"]), s.get("category_ids"))
             for name, c, s in zip(names, configs, states, strict=True)}
    payload: dict[str, Any] = {**checkpoint_header(cfg, infos), "model": model, "ema": None,
                               "composed_from": [str(p) for p in paths]}
    load_model(out, state=payload)  # builds and loads: the result is a valid model
    save_checkpoint(out, payload)
    return ComposeResult(Path(out), {name: c.task for name, c in zip(names, configs, strict=True)})


def _check_same_backbone(configs: list[Config], weights: list[dict[str, torch.Tensor]],
                         paths: list[Path]) -> None:
    first, reference = configs[0], weights[0]
    for cfg, state, path in zip(configs[1:], weights[1:], paths[1:], strict=True):
        want, got = _architecture(first), _architecture(cfg)
        for key in want:
            if want[key] != got[key]:
                raise CheckpointError(f"{path}: {key} is {got[key]!r}, {paths[0]}'s is "
                                      f"{want[key]!r}; composed heads need one backbone and one "
                                      "input size")
        keys = sorted(k for k in reference if k.startswith(BACKBONE_PREFIX))
        for key in keys:
            if key not in state or not torch.equal(state[key], reference[key]):
                raise CheckpointError(
                    f"{path}: backbone tensor '{key}' differs from {paths[0]}'s; compose needs "
                    "bit-identical backbones (train each head with model.backbone.freeze=all on "
                    "the same pretrained weights)")


def _architecture(cfg: Config) -> dict[str, Any]:
    """What decides the backbone's shape: its settings (not where its weights came from or
    what was frozen) and the input size."""
    b = cfg.model.backbone
    out = {f"model.backbone.{key}": getattr(b, key)
           for key in ("name", "width", "depths", "activation", "pool", "batch_norm", "stages")}
    return {**out, "data.image_size": cfg.data.image_size}
