"""The segmentation loss: the detection loss plus a mask loss on the same assignment.

Each foreground point (as the detector's task-aligned assigner chose them) predicts its
object's mask from its coefficients and its image's prototypes; the loss is the binary
cross-entropy against the object's visible-part mask (area-averaged to the prototypes'
stride, so edges are soft targets), summed inside the object's box and divided by the
box's area in prototype pixels (small objects count as much as large ones), then averaged
over the foreground points. Objects without a mask in the annotations take no mask loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..detect.head import DenseDetectHead
from ..detect.loss import DetectLoss
from . import SegmentLossConfig
from .postprocess import box_crop


class SegmentLoss(nn.Module):
    """``loss(outputs, targets) -> (total, {"cls", "box", "dfl", "mask"})``.

    ``outputs``: the :class:`~vision_tasks.tasks.segment.head.Segmenter` dict; ``head`` and
    ``mask_stride``: the built segmenter's dense head and prototype stride. ``targets``: those of
    :class:`~vision_tasks.tasks.detect.loss.DetectLoss` plus ``masks`` uint8 ``[N, M, Hm, Wm]`` (0..255,
    the visible part of each object at the prototypes' resolution) and ``mask_valid`` bool
    ``[N, M]`` (False: the object has no mask annotation).
    """

    def __init__(self, cfg: SegmentLossConfig, head: DenseDetectHead, mask_stride: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.detect = DetectLoss(cfg, head)
        self.mask_stride = mask_stride

    def forward(self, outputs: dict, targets: dict) -> tuple[Tensor, dict[str, Tensor]]:
        assign = self.detect.assign(outputs, targets)
        total, parts = self.detect.assigned_loss(outputs, targets, assign)
        coef, protos = outputs["coef"], outputs["protos"]
        fg = assign.foreground
        if "masks" in targets and bool(fg.any()):
            image, point = fg.nonzero(as_tuple=True)  # [P]
            obj = assign.object_index[image, point]
            valid = targets["mask_valid"][image, obj]
            image, point, obj = image[valid], point[valid], obj[valid]
        else:
            image = point = obj = fg.new_zeros(0, dtype=torch.long)
        if image.numel() == 0:
            loss_mask = coef.sum() * 0.0 + protos.sum() * 0.0
        else:
            hm, wm = protos.shape[2:]
            picked = coef[image, point]  # [P, K]
            flat = protos.flatten(2)  # [N, K, Hm*Wm]
            # One product per image (``image`` is sorted: nonzero() is row-major); gathering
            # the prototypes per point instead would copy them P times.
            logits = torch.cat([picked[image == i] @ flat[i] for i in range(protos.shape[0])])
            logits = logits.view(-1, hm, wm)
            target = targets["masks"][image, obj].float() / 255.0  # [P, Hm, Wm]
            crop = box_crop(assign.boxes[image, point], hm, wm, float(self.mask_stride))
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            area = crop.sum(dim=(1, 2)).clamp(min=1.0)
            loss_mask = ((bce * crop).sum(dim=(1, 2)) / area).mean()
        total = total + self.cfg.mask * loss_mask
        return total, {**parts, "mask": loss_mask.detach()}
