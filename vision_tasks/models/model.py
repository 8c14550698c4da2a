"""The whole network: normalisation -> shared backbone -> task head."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vision_tasks.config import Config
from vision_tasks.models.backbones import Backbone, build_backbone
from vision_tasks.models.weights import apply_freeze, load_backbone_weights
from vision_tasks.task_api import Task, TaskHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """[N, 3, H, W] float RGB in 0..255 -> (x / 255 - mean) / std, per channel."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class TaskModel(nn.Module):
    """``forward(images: float [N, 3, H, W], RGB, 0..255) -> the head's raw outputs``;
    :meth:`postprocess` of those -> the ONNX contract's named outputs."""

    def __init__(self, backbone: Backbone, head: TaskHead) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor) -> Any:
        return self.head(self.backbone(self.normalize(images)))

    def postprocess(self, raw: Any) -> dict[str, Tensor]:
        """The head's traceable post-processing (:meth:`TaskHead.postprocess`)."""
        return self.head.postprocess(raw)


def build_shared_backbone(cfg: Config, load_pretrained: bool = True) -> Backbone:
    """``model.backbone`` for ``data.image_size`` inputs, with its starting weights (unless
    ``load_pretrained`` is off: a checkpoint's weights come next) and its frozen stages."""
    bcfg = cfg.model.backbone
    backbone = build_backbone(bcfg, cfg.data.image_size)
    if load_pretrained and bcfg.pretrained:
        load_backbone_weights(backbone, bcfg.pretrained, bcfg.name)
    apply_freeze(backbone, bcfg.freeze)
    return backbone


def build_model(cfg: Config, task: Task, num_classes: int, load_pretrained: bool = True) -> TaskModel:
    """Backbone (with its starting weights and freezing) plus the task's head."""
    backbone = build_shared_backbone(cfg, load_pretrained)
    size = cfg.data.image_size
    head = task.build_head(cfg, backbone.feature_info, num_classes, backbone.feature_shapes(size, size))
    return TaskModel(backbone, head)
