"""The training side of a task plug-in: what the trainer, the evaluator and the exporter
need beyond the task's torch-free :class:`~vision_tasks.task_spec.TaskSpec`.

A task is one package: ``<package>/__init__.py`` declares the spec (plain Python, read by
the config, the exporter and the runtime) and names its training module, which exposes a
:class:`Task` instance. :func:`get_task` finds both through the ``vision_tasks.tasks``
entry points; nothing in the core names a task.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from vision_tasks.config import Config
from vision_tasks.models.backbones import FeatureInfo
from vision_tasks.task_spec import TaskSpec, get_spec


class TaskHead(nn.Module):
    """A task's head: the backbone's feature list -> raw outputs (what the loss reads), and
    :meth:`postprocess` of those -> the ONNX contract's named outputs.

    Whatever the post-processing needs (thresholds, the input size, strides) is the head's
    own state, set when it is built from the config, never a value riding in the outputs.
    """

    def postprocess(self, raw: Any) -> dict[str, Tensor]:
        """Raw outputs -> the spec's named outputs. Must be traceable (dynamic batch)."""
        raise NotImplementedError


class Evaluator(ABC):
    """Accumulates post-processed predictions against targets, batch by batch."""

    @abstractmethod
    def update(self, predictions: dict[str, Tensor], targets: Any) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Metrics: scalar ones (float) are logged and compared; others are reported."""

    def save_plots(self, out_dir: Path) -> list[Path]:
        """Draw the task's figures (confusion matrix, PR curves...) into ``out_dir``."""
        return []


class Task(ABC):
    """What the trainer needs from a task: data, head, loss, metric, synthetic data."""

    spec: ClassVar[TaskSpec]
    # The metric that picks best.pt (higher is better).
    primary_metric: ClassVar[str]
    # Default image side of `vision-tasks data synth <task>` (pixels).
    synth_size: ClassVar[int] = 64
    # The task's own operators and their ONNX translations, for the exporter's
    # ``custom_translation_table`` (e.g. detect's grouped NMS); empty for most tasks.
    onnx_translations: ClassVar[dict[Any, Any]] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def build_dataset(self, cfg: Config, split: str, train: bool,
                      class_names: list[str] | None = None) -> Dataset:
        """The ``data.<split>`` set (with training augmentation if ``train``). Items are
        ``(image uint8 [3, S, S] letterboxed, target)``; the set has ``class_names`` and
        ``category_ids`` (each class's id in the annotation file; None without one).
        ``class_names`` given: the model's classes, which the set must map onto."""

    def collate(self, batch: list[tuple[Tensor, Any]]) -> tuple[Tensor, Any]:
        images, targets = zip(*batch, strict=True)
        return torch.stack(images), torch.as_tensor(targets)

    @abstractmethod
    def build_head(self, cfg: Config, features: list[FeatureInfo], num_classes: int,
                   feature_shapes: list[tuple[int, int, int]]) -> TaskHead:
        """The head on the backbone's stages (``features``: channels and strides;
        ``feature_shapes``: ``[C, H, W]`` of each stage for ``data.image_size`` inputs)."""

    @abstractmethod
    def build_loss(self, cfg: Config, head: TaskHead) -> nn.Module:
        """``loss(raw_outputs, targets) -> (total, {"part": value, ...})`` of the built
        ``head`` (:meth:`build_head`'s): whatever the loss needs of the head's geometry
        (strides, anchor points, mask stride) it takes from ``head`` here, once."""

    @abstractmethod
    def make_evaluator(self, class_names: list[str],
                       category_ids: list[int | None] | None) -> Evaluator:
        """The metric over the model's ``class_names``; ``category_ids``: the evaluated
        set's id of each class (its ``category_ids``), None for sets without ids."""

    @abstractmethod
    def synthesize(self, out: Path, n_train: int, n_val: int, size: int, seed: int,
                   style: str = "default") -> dict:
        """Write a synthetic data set in this task's layout; return a summary. ``style``:
        ``default`` or ``hard`` (``vision_tasks.data.synth_hard``)."""

    def demo_overrides(self, data_dir: Path) -> list[str]:
        """``--set`` overrides that point a default config at a synthesized set."""
        return [f"data.train={data_dir / 'train'}", f"data.val={data_dir / 'val'}"]


def get_task(name: str) -> Task:
    """The training side of the task called ``name``.

    Raises:
        KeyError: no such task, or its spec's ``training`` is not a :class:`Task` of it.
    """
    spec = get_spec(name)
    task = spec.load_training()
    if not isinstance(task, Task) or task.spec is not spec:
        raise KeyError(f"task '{name}': {spec.training} is not a vision_tasks.task_api.Task "
                       f"whose spec is {name}'s")
    return task


def coco_demo_overrides(data_dir: Path) -> list[str]:
    """:meth:`Task.demo_overrides` of a task whose synthetic set is COCO json
    (``<split>/images`` + ``<split>/annotations.json``). JSON is YAML: paths with spaces or
    colons survive the ``--set`` parser."""
    return [f"data.{split}=" + json.dumps({"images": str(data_dir / split / "images"),
                                           "annotations": str(data_dir / split / "annotations.json")})
            for split in ("train", "val")]
