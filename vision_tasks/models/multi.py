"""One backbone, several task heads, one forward pass.

A :class:`MultiTaskModel` runs the shared backbone once and every head on its features; its
post-processing gives each head's contract outputs under the head's name
(``detect.boxes``, ``classify.scores``). In training, each head may see its own batch (its
own data set): ``forward({"classify": images_a, "detect": images_b})`` runs the backbone on
each batch and only that batch's head. :class:`HeadView` is one head of it as a
single-task model, so the evaluator, the parity check and the single-task export serve a
head as they serve a single-task model.

Checkpoint entries of a multi-head run (``task: multi``): ``heads`` = ``{name: {"task",
"class_names", "category_ids"}}`` in the config's head order, beside the usual ``config``
and ``model`` (``backbone.*`` and ``heads.<name>.*`` weights).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vision_tasks.config import Config
from vision_tasks.contract import head_output
from vision_tasks.models.backbones import Backbone
from vision_tasks.models.model import Normalize, build_shared_backbone
from vision_tasks.task_api import Task, TaskHead, get_task


class MultiTaskModel(nn.Module):
    """``forward(images float [N, 3, H, W] RGB 0..255) -> {head: raw outputs}`` (every head
    on one batch), or ``forward({head: images}) -> {head: raw}`` (each head on its own batch);
    :meth:`postprocess` -> ``{"<head>.<output>": tensor}``."""

    def __init__(self, backbone: Backbone, heads: dict[str, TaskHead]) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)

    def features(self, images: Tensor) -> list[Tensor]:
        return self.backbone(self.normalize(images))

    def forward(self, images: Tensor | dict[str, Tensor]) -> dict[str, Any]:
        if isinstance(images, dict):
            return {name: self.heads[name](self.features(batch)) for name, batch in images.items()}
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}

    def postprocess(self, raw: dict[str, Any]) -> dict[str, Tensor]:
        return {head_output(name, key): value for name, outputs in raw.items()
                for key, value in self.heads[name].postprocess(outputs).items()}


class HeadView(nn.Module):
    """Head ``name`` of a :class:`MultiTaskModel` as a single-task model (shares its weights):
    ``forward(images) -> raw``, ``postprocess(raw) -> the task's outputs``, unprefixed."""

    def __init__(self, model: MultiTaskModel, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, images: Tensor) -> Any:
        return self.model.heads[self.name](self.model.features(images))

    def postprocess(self, raw: Any) -> dict[str, Tensor]:
        return self.model.heads[self.name].postprocess(raw)


def head_tasks(cfg: Config) -> dict[str, Task]:
    """The training side of each head's task, in the config's head order."""
    return {name: get_task(section.task) for name, section in cfg.heads.items()}


def build_multi_model(cfg: Config, num_classes: dict[str, int],
                      load_pretrained: bool = True) -> MultiTaskModel:
    """The shared backbone (its starting weights and freezing as ``model.backbone`` says) and
    each head of ``cfg.heads`` with ``num_classes[name]`` classes."""
    backbone = build_shared_backbone(cfg, load_pretrained)
    size = cfg.data.image_size
    shapes = backbone.feature_shapes(size, size)
    heads = {name: task.build_head(cfg.for_head(name), backbone.feature_info, num_classes[name], shapes)
             for name, task in head_tasks(cfg).items()}
    return MultiTaskModel(backbone, heads)
