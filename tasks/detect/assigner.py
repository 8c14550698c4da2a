"""Task-aligned assignment: which points learn which object (TOOD, Feng et al., 2021).

For an object and a candidate point, the alignment ``t = s**alpha * iou**beta`` rewards
points whose current class score ``s`` for the object's class AND whose current box (its
IoU with the object) are both good. Each object takes the ``topk`` best-aligned candidates;
a point claimed by several objects keeps the one its box overlaps most. Class targets are
IoU-aware: the alignment normalised per object so that its best point gets the best IoU.

Candidates are the points inside the object's box; an object too small to contain any
point takes the points within one stride of its centre instead, so no object goes
unlearned at low resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-9


@dataclass
class Assignment:
    """Training targets for every point of a batch (N images, A points, C classes).

    Attributes:
        foreground: bool ``[N, A]``, points that learn an object.
        boxes: float ``[N, A, 4]`` ``(x1, y1, x2, y2)`` input pixels of each point's object
            (meaningful where ``foreground``).
        labels: int64 ``[N, A]`` class index of each point's object (0 elsewhere).
        scores: float ``[N, A, C]`` soft class targets (IoU-aware; 0 for background).
        object_index: int64 ``[N, A]`` which ground-truth slot each point learns (a mask
            branch gathers its targets with it).
    """

    foreground: Tensor
    boxes: Tensor
    labels: Tensor
    scores: Tensor
    object_index: Tensor


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``a [N, M, 4]`` and ``b [N, A, 4]`` (x1, y1, x2, y2) -> ``[N, M, A]``."""
    a, b = a[:, :, None], b[:, None]
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    return inter / (area_a + area_b - inter + EPS)


def points_in_boxes(points: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:
    """bool ``[N, M, A]``: point ``[A, 2]`` strictly inside box ``[N, M, 4]`` (by ``margin``)."""
    x, y = points[:, 0], points[:, 1]
    b = boxes[..., None]  # [N, M, 4, 1]
    inside = torch.stack([x - b[:, :, 0], y - b[:, :, 1], b[:, :, 2] - x, b[:, :, 3] - y], dim=-1)
    return inside.amin(dim=-1) > margin


@torch.no_grad()
def task_aligned_assign(scores: Tensor, pred_boxes: Tensor, points: Tensor, point_strides: Tensor,
                        gt_labels: Tensor, gt_boxes: Tensor, topk: int = 10, alpha: float = 1.0,
                        beta: float = 6.0) -> Assignment:
    """Assign points to objects.

    Args:
        scores: float ``[N, A, C]`` predicted class probabilities (sigmoid), detached.
        pred_boxes: float ``[N, A, 4]`` predicted ``(x1, y1, x2, y2)`` input pixels, detached.
        points: float ``[A, 2]`` point centres (x, y) in input pixels.
        point_strides: float ``[A]`` stride of each point's level.
        gt_labels: int64 ``[N, M]`` class index per object slot, ``-1`` for padding.
        gt_boxes: float ``[N, M, 4]`` ``(x1, y1, x2, y2)`` input pixels (padding: anything).
        topk: points each object takes at most.
        alpha, beta: exponents of the class score and of the IoU in the alignment.
    """
    n, a, c = scores.shape
    m = gt_labels.shape[1]
    device = scores.device
    if m == 0:
        zeros = torch.zeros(n, a, dtype=torch.long, device=device)
        return Assignment(zeros.bool(), pred_boxes.new_zeros(n, a, 4), zeros,
                          scores.new_zeros(n, a, c), zeros)
    valid = gt_labels >= 0  # [N, M]
    inside = points_in_boxes(points, gt_boxes)  # [N, M, A]
    centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [N, M, 2]
    near = (points[None, None] - centres[:, :, None]).abs().amax(dim=-1) < point_strides
    candidate = torch.where(inside.any(dim=-1, keepdim=True), inside, near) & valid[..., None]

    iou = pairwise_iou(gt_boxes, pred_boxes)  # [N, M, A]
    labels = gt_labels.clamp(min=0)
    cls_score = scores.transpose(1, 2).gather(1, labels[..., None].expand(n, m, a))  # [N, M, A]
    align = cls_score.pow(alpha) * iou.pow(beta) * candidate
    # Each object's topk best-aligned candidates (ties at zero alignment are cut below).
    k = min(topk, a)
    top = align.topk(k, dim=-1).indices
    chosen = torch.zeros_like(candidate).scatter_(-1, top, True) & candidate
    # A point claimed twice keeps the object with the highest IoU.
    claims = chosen.sum(dim=1)  # [N, A]
    if bool((claims > 1).any()):
        best = torch.where(chosen, iou, torch.full_like(iou, -1.0)).argmax(dim=1)  # [N, A]
        resolved = torch.zeros_like(chosen).scatter_(1, best[:, None], True)
        chosen = torch.where((claims > 1)[:, None], resolved & chosen, chosen)
    foreground = chosen.any(dim=1)  # [N, A]
    object_index = chosen.float().argmax(dim=1)  # [N, A]

    # IoU-aware class targets: alignment scaled so each object's best point gets its best IoU.
    align = align * chosen
    norm = align / (align.amax(dim=-1, keepdim=True) + EPS) * (iou * chosen).amax(dim=-1, keepdim=True)
    quality = norm.amax(dim=1)  # [N, A] (one object per point)
    target_labels = labels.gather(1, object_index)  # [N, A]
    target_scores = torch.zeros_like(scores).scatter_(2, target_labels[..., None], quality[..., None])
    target_scores = target_scores * foreground[..., None]
    target_boxes = gt_boxes.gather(1, object_index[..., None].expand(n, a, 4))
    return Assignment(foreground, target_boxes, target_labels * foreground, target_scores,
                      object_index)
