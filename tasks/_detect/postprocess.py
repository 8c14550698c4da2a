"""Dense outputs -> at most K detections per image, fixed-size and traceable for ONNX.

The pipeline (every step batched, no Python loop over images, so the exported graph keeps a
dynamic batch axis):

1. per image, the ``pre_nms_topk`` best (point, class) pairs of ``sigmoid(cls)`` [N, A*C]
   (one point may propose several classes);
2. the score threshold, on the flattened batch (one ``NonZero`` in ONNX);
3. class-aware NMS for the whole batch in ONE ``torchvision.ops.nms`` call: boxes are
   clipped to the input, then shifted by ``image * (W + 1)`` along x and ``class * (H + 1)``
   along y, so boxes of different images or classes can never overlap (shifting x and y
   separately keeps the offsets small: float32 stays exact to well under a pixel);
4. each kept detection's rank within its image (a cumulative count over a one-hot of the
   image index, in score order), then a scatter into ``[N, K]`` slots; rows past
   ``num_detections`` stay zero.

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) maps
``torchvision.ops.nms`` to ONNX ``NonMaxSuppression`` and handles the data-dependent sizes of
steps 2-4 (``NonZero``, ``ScatterElements``) without guards.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

from tasks._detect.head import PostprocessSettings


def detections_fixed_k(boxes: Tensor, scores: Tensor, bounds: Tensor,
                       settings: PostprocessSettings, with_index: bool = False) -> dict[str, Tensor]:
    """Score threshold, top-k and class-aware NMS, padded to ``K = settings.max_detections``.

    Args:
        boxes: float ``[N, A, 4]`` ``(x1, y1, x2, y2)`` input pixels.
        scores: float ``[N, A, C]`` per-class probabilities.
        bounds: float ``[4]`` = ``(W, H, W, H)`` of the input; boxes are clipped to it.
        settings: thresholds and sizes.
        with_index: also return ``point_index`` int64 ``[N, K]``, the point (index into
            ``A``) each detection came from (0 for empty rows), so a mask branch can gather
            that point's coefficients.

    Returns:
        ``boxes`` float32 ``[N, K, 4]`` (x1, y1, x2, y2 input pixels), ``scores`` float32
        ``[N, K]``, ``labels`` int64 ``[N, K]`` (class index), ``num_detections`` int64 ``[N]``;
        per image the detections come first, by decreasing score; the rest is zeros.
    """
    k_out = settings.max_detections
    num_classes = scores.shape[2]
    boxes = torch.minimum(boxes.float().clamp(min=0), bounds)
    flat = scores.float().flatten(1)  # [N, A*C]
    k_pre = min(settings.pre_nms_topk, flat.shape[1])
    top_scores, top_index = flat.topk(k_pre, dim=1)  # [N, k]
    point = torch.div(top_index, num_classes, rounding_mode="floor")
    label = top_index - point * num_classes
    top_boxes = boxes.gather(1, point[..., None].expand(-1, -1, 4))  # [N, k, 4]
    image = torch.ones_like(label).cumsum(0) - 1  # [N, k]: the image index, batch-size free

    # Flatten the batch; keep what passes the score threshold.
    s, b, lab = top_scores.reshape(-1), image.reshape(-1), label.reshape(-1)
    bx = top_boxes.reshape(-1, 4)
    keep = torch.nonzero(s > settings.score_threshold).reshape(-1)
    pt = point.reshape(-1)[keep]
    s, b, lab, bx = s[keep], b[keep], lab[keep], bx[keep]
    shift_x = b.to(bx.dtype) * (bounds[0] + 1)
    shift_y = lab.to(bx.dtype) * (bounds[1] + 1)
    shift = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
    kept = nms(bx + shift, s, settings.iou_threshold)  # indices, by decreasing score
    s, b, lab, bx, pt = s[kept], b[kept], lab[kept], bx[kept], pt[kept]

    # Rank of each detection within its image, then scatter into [N, K] slots.
    images = torch.ones_like(top_scores[:, 0], dtype=torch.long).cumsum(0) - 1  # [N]
    onehot = (b[:, None] == images[None, :]).long()  # [P, N]
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # [P]
    counts = onehot.sum(0)  # [N]
    fits = torch.nonzero(rank < k_out).reshape(-1)
    slot = (b * k_out + rank)[fits]
    zeros = torch.zeros_like(top_scores[:, :1]).expand(-1, k_out).reshape(-1)  # [N*K]
    out_scores = zeros.scatter(0, slot, s[fits])
    out_labels = zeros.long().scatter(0, slot, lab[fits])
    out_boxes = zeros[:, None].repeat(1, 4).scatter(0, slot[:, None].expand(-1, 4), bx[fits])
    out = {"boxes": out_boxes.reshape(-1, k_out, 4), "scores": out_scores.reshape(-1, k_out),
           "labels": out_labels.reshape(-1, k_out), "num_detections": counts.clamp(max=k_out)}
    if with_index:
        out["point_index"] = zeros.long().scatter(0, slot, pt[fits]).reshape(-1, k_out)
    return out
