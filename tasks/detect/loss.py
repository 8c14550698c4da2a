"""The detection loss: IoU-aware BCE + CIoU + distribution focal loss, over assigned points.

- class: binary cross-entropy of every point's logits against the assigner's soft targets
  (the object's class gets the normalised alignment, an IoU estimate; the rest 0), summed
  and divided by the sum of the targets; points inside crowd regions that learn no object
  are left out (neither positive nor negative);
- box: complete-IoU loss of each foreground point's box, weighted by its class target;
- dfl: distribution focal loss: cross-entropy of each side's distance distribution with the
  two bins around the true distance, weighted by their closeness (GFL, Li et al., 2020).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import complete_box_iou_loss

from . import DetectLossConfig
from .assigner import Assignment, points_in_boxes, task_aligned_assign
from .head import DenseDetectHead, encode_distances


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``logits`` ``[P, 4, R]``, ``target`` distances ``[P, 4]`` in bins (``0 <= t < R - 1``)
    -> loss ``[P]`` (mean over the 4 sides)."""
    left = target.floor().long()
    right = left + 1
    w_left = right.float() - target
    w_right = 1.0 - w_left
    flat = logits.reshape(-1, logits.shape[-1])
    loss = (F.cross_entropy(flat, left.reshape(-1), reduction="none") * w_left.reshape(-1)
            + F.cross_entropy(flat, right.reshape(-1), reduction="none") * w_right.reshape(-1))
    return loss.view(target.shape).mean(dim=-1)


class DetectLoss(nn.Module):
    """``loss(outputs, targets) -> (total, {"cls", "box", "dfl"})``.

    ``outputs``: the head's dict (``cls`` [N, A, C], ``dist`` [N, A, 4, R], ``boxes``
    [N, A, 4]). ``targets``: ``labels`` int64 [N, M] (-1 = padding), ``boxes`` float
    [N, M, 4] and ``crowd`` float [N, K, 4] (x1, y1, x2, y2 input pixels; zero boxes are
    padding). ``head``: the dense head the loss trains; its anchor points and their strides
    are where the targets are encoded.
    """

    def __init__(self, cfg: DetectLossConfig, head: DenseDetectHead) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = [head]  # a reference, not a submodule: the model owns the head

    @property
    def points(self) -> Tensor:
        """Anchor points ``[A, 2]`` (x, y) input pixels."""
        return self.head[0].points

    @property
    def point_strides(self) -> Tensor:
        """Each point's stride ``[A]``."""
        return self.head[0].point_strides

    def assign(self, outputs: dict, targets: dict) -> Assignment:
        """Which points learn which object (task-aligned, on the detached predictions)."""
        return task_aligned_assign(outputs["cls"].detach().sigmoid(), outputs["boxes"].detach(),
                                   self.points, self.point_strides, targets["labels"],
                                   targets["boxes"].to(outputs["boxes"].dtype), self.cfg.topk,
                                   self.cfg.alpha, self.cfg.beta)

    def forward(self, outputs: dict, targets: dict) -> tuple[Tensor, dict[str, Tensor]]:
        return self.assigned_loss(outputs, targets, self.assign(outputs, targets))

    def assigned_loss(self, outputs: dict, targets: dict, assign: Assignment
                      ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss for a given assignment (a mask branch built on top shares it)."""
        cls_logits, dist, boxes = outputs["cls"], outputs["dist"], outputs["boxes"]
        points, strides = self.points, self.point_strides
        fg = assign.foreground
        norm = assign.scores.sum().clamp(min=1.0)
        bce = F.binary_cross_entropy_with_logits(cls_logits, assign.scores, reduction="none")
        crowd = targets.get("crowd")
        if crowd is not None and crowd.shape[1] > 0:
            ignored = points_in_boxes(points, crowd.to(boxes.dtype)).any(dim=1) & ~fg  # [N, A]
            bce = bce * (~ignored)[..., None]
        loss_cls = bce.sum() / norm

        if bool(fg.any()):
            weight = assign.scores.sum(dim=-1)[fg]  # [P]
            loss_box = (complete_box_iou_loss(boxes[fg], assign.boxes[fg], reduction="none")
                        * weight).sum() / norm
            reg_max = dist.shape[-1]
            target = encode_distances(assign.boxes, points, strides)[fg].clamp(0, reg_max - 1.01)
            loss_dfl = (distribution_focal_loss(dist[fg], target) * weight).sum() / norm
        else:
            loss_box = loss_dfl = boxes.sum() * 0.0
        total = self.cfg.cls * loss_cls + self.cfg.box * loss_box + self.cfg.dfl * loss_dfl
        return total, {"cls": loss_cls.detach(), "box": loss_box.detach(), "dfl": loss_dfl.detach()}
