"""The small interface every task plug-in implements, and the lookup by name.

A task lives in ``tasks/<name>.py`` and exposes ``TASK``, an instance of a
:class:`Task` subclass. The core finds it by the config's ``task`` value, so
adding a task means adding one module and one config: nothing in the core names
a task.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vision_tasks.registry import unknown_name_message

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from vision_tasks.config import Config
    from vision_tasks.models.backbones import FeatureInfo


@dataclass
class EmptySection:
    """A task section with no keys."""


class Evaluator(ABC):
    """Accumulates post-processed predictions against targets, batch by batch."""

    @abstractmethod
    def update(self, predictions: dict[str, torch.Tensor], targets: Any) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Metrics: scalar ones (float) are logged and compared; others are reported."""

    def save_plots(self, out_dir: Path) -> list[Path]:
        """Draw the task's figures (confusion matrix, PR curves...) into ``out_dir``."""
        return []


class Task(ABC):
    """What the core needs from a task: data, head, loss, post-processing, metric."""

    name: ClassVar[str]
    HeadConfig: ClassVar[type] = EmptySection
    LossConfig: ClassVar[type] = EmptySection
    # The config's ``task_options`` section (task-owned data options).
    OptionsConfig: ClassVar[type] = EmptySection
    # The metric that picks best.pt (higher is better).
    primary_metric: ClassVar[str]
    # Default image side of `vision-tasks data synth <task>` (pixels).
    synth_size: ClassVar[int] = 64

    @abstractmethod
    def build_dataset(self, cfg: Config, split: str, train: bool,
                      class_names: list[str] | None = None) -> Dataset:
        """The ``data.<split>`` set (with training augmentation if ``train``). Items are
        ``(image uint8 [3, S, S] letterboxed, target)``; the set has ``class_names``.
        ``class_names`` given: the model's classes, which the set must map onto."""

    def collate(self, batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
        import torch

        images, targets = zip(*batch, strict=True)
        return torch.stack(images), torch.as_tensor(targets)

    @abstractmethod
    def build_head(self, cfg: Config, features: list[FeatureInfo], num_classes: int,
                   feature_shapes: list[tuple[int, int, int]]) -> nn.Module:
        """A head that takes the backbone's feature list and returns raw outputs."""

    @abstractmethod
    def build_loss(self, cfg: Config, num_classes: int) -> nn.Module:
        """``loss(outputs, targets) -> (total, {"part": value, ...})``."""

    @abstractmethod
    def postprocess(self, outputs: Any) -> dict[str, torch.Tensor]:
        """Raw head outputs -> the ONNX contract's named outputs. Must be traceable."""

    @abstractmethod
    def make_evaluator(self, class_names: list[str]) -> Evaluator: ...

    @abstractmethod
    def synthesize(self, out: Path, n_train: int, n_val: int, size: int, seed: int) -> dict:
        """Write a synthetic data set in this task's layout; return a summary."""

    def demo_overrides(self, data_dir: Path) -> list[str]:
        """``--set`` overrides that point a default config at a synthesized set."""
        return [f"data.train={data_dir / 'train'}", f"data.val={data_dir / 'val'}"]


def available_tasks() -> list[str]:
    from vision_tasks import tasks

    return sorted(m.name for m in pkgutil.iter_modules(tasks.__path__) if not m.name.startswith("_"))


def get_task(name: str) -> Task:
    """The plug-in of the task called ``name`` (``tasks/<name>.py``)."""
    names = available_tasks()
    if name not in names:
        raise KeyError(unknown_name_message("task", name, names))
    module = importlib.import_module(f"vision_tasks.tasks.{name}")
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise KeyError(f"tasks/{name}.py defines no TASK (an instance of vision_tasks.task_api.Task)")
    return task
