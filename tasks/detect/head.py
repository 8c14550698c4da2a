"""The dense, anchor-free detection head: one prediction per feature-map point.

Every point of every pyramid level predicts class logits and, for each side of its box
(left, top, right, bottom), a distribution over ``reg_max`` distances in units of the
level's stride (Generalized Focal Loss, Li et al., 2020); the box is the distribution's
mean. Points are cell centres, so a box is decoded as ``(cx - l*s, cy - t*s, cx + r*s,
cy + b*s)`` in input pixels. Nothing here depends on the batch size, and the decoding is
a softmax, a product, a sum and additions, all of which export cleanly to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vision_tasks.grid import cell_centres
from vision_tasks.models.layers import ConvBlock
from vision_tasks.models.necks import PyramidNeck
from vision_tasks.task_api import TaskHead

from .postprocess import PostprocessSettings, detections_fixed_k


def make_anchor_points(shapes: list[tuple[int, int]], strides: list[int]) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, finest first.

    Args:
        shapes: ``(height, width)`` of each level's map.
        strides: input pixels per map pixel of each level.

    Returns:
        ``points`` float32 ``[A, 2]`` (x, y) in input pixels and ``point_strides`` float32
        ``[A]``, with ``A = sum(h * w)``, row-major within a level.
    """
    points, point_strides = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing="ij")
        points.append(cell_centres(torch.stack([xs, ys], dim=-1).reshape(-1, 2), s))
        point_strides.append(torch.full((h * w,), float(s)))
    return torch.cat(points), torch.cat(point_strides)


def decode_distances(distances: Tensor, points: Tensor, point_strides: Tensor) -> Tensor:
    """``(l, t, r, b)`` distances ``[..., A, 4]`` in strides -> boxes ``[..., A, 4]``
    ``(x1, y1, x2, y2)`` in input pixels, around ``points`` ``[A, 2]``."""
    scaled = distances * point_strides[:, None]
    return torch.cat([points - scaled[..., :2], points + scaled[..., 2:]], dim=-1)


def encode_distances(boxes: Tensor, points: Tensor, point_strides: Tensor) -> Tensor:
    """The inverse of :func:`decode_distances`: boxes ``[..., A, 4]`` -> ``(l, t, r, b)`` in
    strides (negative where a point lies outside its box)."""
    lt = (points - boxes[..., :2]) / point_strides[:, None]
    rb = (boxes[..., 2:] - points) / point_strides[:, None]
    return torch.cat([lt, rb], dim=-1)


class _Branch(nn.Sequential):
    """Two 3x3 conv blocks and a 1x1 prediction conv: [N, c_in, H, W] -> [N, c_out, H, W]."""

    def __init__(self, c_in: int, hidden: int, c_out: int, depth: int, act: str) -> None:
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(ConvBlock(c_in if i == 0 else hidden, hidden, 3, p=1, act=act))
        layers.append(nn.Conv2d(hidden if depth else c_in, c_out, 1))
        super().__init__(*layers)


class DenseDetectHead(nn.Module):
    """Neck maps -> dense raw outputs (decoupled class and box branches per level).

    ``forward(maps: list[Tensor[N, channels, H_i, W_i]]) -> dict`` with

    - ``cls``: float ``[N, A, C]`` class logits (sigmoid gives per-class scores);
    - ``dist``: float ``[N, A, 4, reg_max]`` logits of each side's distance distribution;
    - ``boxes``: float ``[N, A, 4]`` decoded ``(x1, y1, x2, y2)`` in input pixels, unclipped.

    Its buffers ``points`` ``[A, 2]`` and ``point_strides`` ``[A]`` say where each point is
    (the loss, built with the head, encodes its targets around them); ``bounds`` ``[4]`` =
    (W, H, W, H) of the input, which the post-processing clips to.
    """

    def __init__(self, channels: int, shapes: list[tuple[int, int]], strides: list[int],
                 num_classes: int, input_size: tuple[int, int], hidden: int, depth: int = 2,
                 reg_max: int = 16, act: str = "silu", prior: float = 0.01) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.cls_branches = nn.ModuleList(_Branch(channels, hidden, num_classes, depth, act)
                                          for _ in strides)
        self.box_branches = nn.ModuleList(_Branch(channels, hidden, 4 * reg_max, depth, act)
                                          for _ in strides)
        for branch in self.cls_branches:
            nn.init.constant_(branch[-1].bias, -math.log((1 - prior) / prior))
        for branch in self.box_branches:
            nn.init.zeros_(branch[-1].bias)
        points, point_strides = make_anchor_points(shapes, strides)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("point_strides", point_strides, persistent=False)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        h, w = input_size
        self.register_buffer("bounds", torch.tensor([w, h, w, h], dtype=torch.float32),
                             persistent=False)

    def forward(self, maps: list[Tensor]) -> dict[str, Tensor | list[Tensor]]:
        cls, dist = [], []
        for x, cls_branch, box_branch in zip(maps, self.cls_branches, self.box_branches, strict=True):
            cls.append(cls_branch(x).flatten(2))  # [N, C, h*w]
            dist.append(box_branch(x).flatten(2))  # [N, 4*R, h*w]
        cls_logits = torch.cat(cls, dim=2).transpose(1, 2)  # [N, A, C]
        dist_logits = torch.cat(dist, dim=2).transpose(1, 2)  # [N, A, 4*R]
        dist_logits = dist_logits.reshape(dist_logits.shape[0], -1, 4, self.reg_max)
        # The expectation over the bins as a product and a sum, not a matmul with a vector:
        # onnxruntime runs that matmul as one tiny product per row (a sixth of an INT8 detect
        # file's time, benchmarks/RESULTS.md "INT8 export"), WebGPU has no 1-D MatMul, and
        # under bf16 autocast the softmax and the sum run in float32 (.float() is no node in
        # an exported float32 graph).
        distances = (dist_logits.float().softmax(dim=-1) * self.bins).sum(dim=-1)  # [N, A, 4]
        boxes = decode_distances(distances, self.points, self.point_strides)
        return {"cls": cls_logits, "dist": dist_logits, "boxes": boxes}


class Detector(TaskHead):
    """The task's head as the core sees it: neck + dense head, and the post-processing
    settings (thresholds, K) it applies in :meth:`postprocess`.

    ``forward(features: list[Tensor]) -> dict``: the backbone's stage list in, the dense
    head's raw outputs out (see :class:`DenseDetectHead`).
    """

    def __init__(self, neck: PyramidNeck, head: DenseDetectHead, settings: PostprocessSettings) -> None:
        super().__init__()
        self.neck = neck
        self.head = head
        self.settings = settings

    def forward(self, features: list[Tensor]) -> dict:
        return self.head(self.neck(features))

    def postprocess(self, raw: dict) -> dict[str, Tensor]:
        """Raw outputs -> ``boxes`` float32 [N, K, 4] (x1, y1, x2, y2 input pixels),
        ``scores`` float32 [N, K], ``labels`` int64 [N, K] (class index), ``num_detections``
        int64 [N]; rows past ``num_detections`` are zero. Traceable (dynamic batch)."""
        return detections_fixed_k(raw["boxes"], raw["cls"].sigmoid(), self.head.bounds,
                                  self.settings)
