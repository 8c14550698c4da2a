"""Training and evaluating a model's heads: each head on its own data, one backbone.

A single-task model is the one-head case of the same code; only its names differ (its loss
parts and metrics are reported bare, as every release wrote them).

- :class:`JointLoader`: one training step's batches. ``round_robin``: one per head, every
  step (an epoch is as many steps as the longest head's loader, the shorter ones starting
  over); ``proportional``: one head's per step, drawn in proportion to the heads' batch
  counts (an epoch is every head's batches once, interleaved). The order depends only on
  (seed, epoch), so a resumed run sees the same batches.
- :class:`JointLoss`: the sum of each head's loss times its ``weight``; the parts are
  reported per head (``<head>_loss``, ``<head>_<part>``), bare for a single-task model.
- :func:`evaluate_heads`: every head on its own ``val`` set; metrics per head under the
  head's name, the scalar ones also flat as ``<head>.<metric>``, and the run's score, the
  mean of the heads' primary metrics (what picks ``best.pt``); a single-task model's are
  its head's metrics as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vision_tasks.config import Config
from vision_tasks.data.sampler import EpochSampler
from vision_tasks.engine.distributed import SINGLE, Dist
from vision_tasks.engine.evaluate import make_loader, scalar_metrics
from vision_tasks.task_api import Evaluator, Task, get_task

SCORE = "score"
"""The multi-head run's selection metric: the mean of the heads' primary metrics."""


@dataclass
class HeadData:
    """One head's task, classes and loaders (``train`` is None outside training)."""

    task: Task
    class_names: list[str]
    category_ids: list[int | None] | None
    val: DataLoader
    train: DataLoader | None = None
    sampler: EpochSampler | None = None


def head_data(cfg: Config, class_names: dict[str, list[str]] | None, batch_size: int, train: bool,
              seed: int = 0, dist: Dist = SINGLE) -> dict[str, HeadData]:
    """Each head's task and data sets (its :meth:`~vision_tasks.config.Config.head_configs`
    view's ``task``, ``data.train`` / ``data.val``).
    ``class_names`` None: taken from each head's training set (a new run). ``batch_size``
    is global: under DDP each process loads its share of every head's training set."""
    out = {}
    for i, (name, head_cfg) in enumerate(cfg.head_configs().items()):
        task = get_task(head_cfg.task)
        train_set = task.build_dataset(head_cfg, "train", train=True) if train else None
        names = class_names[name] if class_names else train_set.class_names
        val_set = task.build_dataset(head_cfg, "val", train=False, class_names=names)
        data = HeadData(task, list(names), val_set.category_ids if train_set is None
                        else train_set.category_ids,
                        make_loader(task, val_set, batch_size, cfg.data.workers))
        if train_set is not None:
            head_seed = seed + 7919 * i  # each head its own order, still only (seed, epoch)
            data.sampler = EpochSampler(len(train_set), head_seed, shuffle=True,
                                        rank=dist.rank, world=dist.world)
            data.train = make_loader(task, train_set, dist.per_process_batch(batch_size),
                                     cfg.data.workers, data.sampler, head_seed)
        out[name] = data
    return out


class JointLoader:
    """Iterates ``({head: images}, {head: targets})``: a batch of every head per step
    (``round_robin``), or of one head (``proportional``)."""

    def __init__(self, heads: dict[str, HeadData], sampling: str = "round_robin",
                 seed: int = 0) -> None:
        self.heads, self.sampling, self.seed = heads, sampling, seed
        self.epoch = 0

    def __len__(self) -> int:
        sizes = [len(h.train) for h in self.heads.values()]
        return sum(sizes) if self.sampling == "proportional" else max(sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for h in self.heads.values():
            h.sampler.set_epoch(epoch)

    def _schedule(self) -> list[list[str]]:
        """The heads of each step of this epoch."""
        names = list(self.heads)
        if self.sampling == "round_robin":
            return [names] * len(self)
        slots = torch.cat([torch.full((len(self.heads[n].train),), i) for i, n in enumerate(names)])
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 1)
        return [[names[int(i)]] for i in slots[torch.randperm(len(slots), generator=gen)]]

    def __iter__(self) -> Iterator[tuple[dict[str, Tensor], dict[str, Any]]]:
        iterators = {name: iter(h.train) for name, h in self.heads.items()}
        for step_heads in self._schedule():
            images, targets = {}, {}
            for name in step_heads:
                h = self.heads[name]
                try:
                    batch = next(iterators[name])
                except StopIteration:  # a shorter set starts over within the epoch
                    iterators[name] = iter(h.train)
                    batch = next(iterators[name])
                images[name], targets[name] = batch
            yield images, targets


class JointLoss(nn.Module):
    """``loss({head: raw}, {head: targets}) -> (sum of weight * head loss, parts)``;
    ``bare_parts``: the one head's parts under their own names (a single-task model)."""

    def __init__(self, losses: dict[str, nn.Module], weights: dict[str, float],
                 bare_parts: bool = False) -> None:
        super().__init__()
        self.losses = dict(losses)  # callables: a task's loss may be any (outputs, targets) function
        self.weights = weights
        self.bare_parts = bare_parts

    def forward(self, outputs: dict[str, Any], targets: dict[str, Any]
                ) -> tuple[Tensor, dict[str, Tensor]]:
        total, parts = None, {}
        for name in outputs:  # the heads that had a batch this step
            value, head_parts = self.losses[name](outputs[name], targets[name])
            if self.bare_parts:
                return value, head_parts
            total = self.weights[name] * value if total is None else total + self.weights[name] * value
            parts[f"{name}_loss"] = value.detach()
            parts.update({f"{name}_{key}": v for key, v in head_parts.items()})
        return total, parts


class HeadEvaluators:
    """The heads' evaluators as one: plots go to ``<out>/<head>/``."""

    def __init__(self, evaluators: dict[str, Evaluator]) -> None:
        self.evaluators = evaluators

    def save_plots(self, out_dir: Path) -> list[Path]:
        paths = []
        for name, evaluator in self.evaluators.items():
            (Path(out_dir) / name).mkdir(parents=True, exist_ok=True)
            paths += evaluator.save_plots(Path(out_dir) / name)
        return paths


RunHead = Callable[[str, HeadData], tuple[dict[str, Any], Evaluator]]
"""``run(name, head) -> (metrics, evaluator)`` of one head on its ``val`` loader."""


def evaluate_heads(run: RunHead, heads: dict[str, HeadData], single_task: bool = False
                   ) -> tuple[dict[str, Any], Any]:
    """Every head's metrics (see the module docstring) and their evaluators; with
    ``single_task``, the one head's metrics and evaluator as they are."""
    if single_task:
        ((name, head),) = heads.items()
        return run(name, head)
    metrics: dict[str, Any] = {}
    evaluators = {}
    primaries = []
    for name, head in heads.items():
        head_metrics, evaluators[name] = run(name, head)
        metrics[name] = head_metrics
        primaries.append(float(head_metrics[head.task.primary_metric]))
    flat = {f"{name}.{key}": value for name in heads
            for key, value in scalar_metrics(metrics[name]).items()}
    return {SCORE: sum(primaries) / len(primaries), **flat, **metrics}, HeadEvaluators(evaluators)


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(t, device) for t in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch

