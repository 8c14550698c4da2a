"""Dense outputs -> at most K detections per image, fixed-size and traceable for ONNX.

The pipeline (every step batched, no Python loop over images, so the exported graph keeps a
dynamic batch axis):

1. per image, the ``pre_nms_topk`` best (point, class) pairs of ``sigmoid(cls)``: scores
   below the image's k-th best are zeroed (one point may propose several classes);
2. NMS per (image, class) group with the score threshold and at most K survivors per group:
   :func:`grouped_nms`, which the exported graph runs as ONE ONNX ``NonMaxSuppression``
   with its batch and class axes (``[N, A, 4]`` boxes, ``[N, C, A]`` scores);
3. the survivors sorted image-major, then by decreasing score; each one's rank within its
   image; a scatter of the first K of every image into ``[N, K]`` slots; rows past
   ``num_detections`` stay zero.

Why step 2 is one grouped operator and not ``torchvision.ops.nms`` over the flattened batch
(with per-image and per-class coordinate offsets): onnxruntime's ``NonMaxSuppression``
compares each candidate only with the boxes already kept IN ITS GROUP and stops a group at
``max_output_boxes_per_class``; one flattened group of a whole batch at the evaluation
threshold (0.001: ~1000 candidates per image) made every candidate meet thousands of kept
boxes of other images. Measured on this project's 128 px segment model, batch 32, 2 CPU
threads: 57 img/s flattened, see ``benchmarks/RESULTS.md`` for the grouped figure.
Capping a group at K does not change the result: a box ranked below K in its class is
ranked below K in its image too.

Exporters: :data:`ONNX_TRANSLATIONS` maps the op for the dynamo exporter
(``custom_translation_table``); importing this module also registers its symbolic for the
TorchScript exporter (opset < 18).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class PostprocessSettings:
    """What turns dense outputs into at most ``max_detections`` boxes per image."""

    score_threshold: float
    iou_threshold: float
    pre_nms_topk: int
    max_detections: int


ONNX_OPSET_MIN = 11  # NonMaxSuppression with max_output_boxes_per_class / score_threshold


@torch.library.custom_op("vision_tasks::grouped_nms", mutates_args=())
def grouped_nms(boxes: Tensor, scores: Tensor, max_per_group: int, iou_threshold: float,
                score_threshold: float) -> Tensor:
    """Class-aware NMS of every image of a batch, as ONNX ``NonMaxSuppression`` defines it.

    Args:
        boxes: float ``[N, A, 4]`` ``(x1, y1, x2, y2)``.
        scores: float ``[N, C, A]`` per-class scores of every box.
        max_per_group: at most this many survivors per (image, class).
        iou_threshold: a box is suppressed by a kept box of its group with IoU above this.
        score_threshold: only boxes scoring above this take part.

    Returns:
        int64 ``[S, 3]``: ``(image, class, box index)`` of each survivor. The order is
        unspecified (the caller sorts by score).
    """
    c = scores.shape[1]
    image, label, index = torch.nonzero(scores > score_threshold, as_tuple=True)
    s = scores[image, label, index]
    group = image * c + label
    keep = batched_nms(boxes[image, index].float(), s.float(), group, iou_threshold)
    # The first max_per_group of each group (keep is by decreasing score; a stable sort by
    # group keeps that order inside each group).
    g = group[keep]
    order = torch.argsort(g, stable=True)
    sorted_groups = g[order]
    counts = torch.bincount(sorted_groups)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts[sorted_groups]
    keep = keep[rank < max_per_group]
    return torch.stack([image[keep], label[keep], index[keep]], dim=1)


@grouped_nms.register_fake
def _grouped_nms_shape(boxes: Tensor, scores: Tensor, max_per_group: int, iou_threshold: float,
                       score_threshold: float) -> Tensor:
    survivors = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((survivors, 3), dtype=torch.int64)


def _grouped_nms_onnx(boxes, scores, max_per_group: int, iou_threshold: float,
                      score_threshold: float):
    """The dynamo exporter's translation: one ``NonMaxSuppression`` node."""
    from onnxscript import opset18 as op

    return op.NonMaxSuppression(boxes, scores, op.Constant(value_ints=[max_per_group]),
                                op.Constant(value_floats=[iou_threshold]),
                                op.Constant(value_floats=[score_threshold]))


def _grouped_nms_symbolic(g, boxes, scores, max_per_group, iou_threshold, score_threshold):
    """The TorchScript exporter's symbolic (the scalar arguments arrive as constants)."""
    from torch.onnx import symbolic_helper

    k = symbolic_helper._maybe_get_const(max_per_group, "i")
    iou = symbolic_helper._maybe_get_const(iou_threshold, "f")
    thr = symbolic_helper._maybe_get_const(score_threshold, "f")
    return g.op("NonMaxSuppression", boxes, scores,
                g.op("Constant", value_t=torch.tensor([int(k)], dtype=torch.int64)),
                g.op("Constant", value_t=torch.tensor([float(iou)], dtype=torch.float32)),
                g.op("Constant", value_t=torch.tensor([float(thr)], dtype=torch.float32)))


ONNX_TRANSLATIONS = {torch.ops.vision_tasks.grouped_nms.default: _grouped_nms_onnx}
"""For ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``."""

torch.onnx.register_custom_op_symbolic("vision_tasks::grouped_nms", _grouped_nms_symbolic,
                                       ONNX_OPSET_MIN)


def detections_fixed_k(boxes: Tensor, scores: Tensor, bounds: Tensor,
                       settings: PostprocessSettings, with_index: bool = False) -> dict[str, Tensor]:
    """Pre-NMS top-k, score threshold and class-aware NMS, padded to ``K = settings.max_detections``.

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
    boxes = torch.minimum(boxes.float().clamp(min=0), bounds)
    per_class = scores.float().transpose(1, 2)  # [N, C, A]
    flat = per_class.flatten(1)
    k_pre = min(settings.pre_nms_topk, flat.shape[1])
    if k_pre < flat.shape[1]:
        kth = flat.topk(k_pre, dim=1).values[:, -1:, None]  # [N, 1, 1]
        per_class = torch.where(per_class >= kth, per_class, torch.zeros_like(per_class))
    selected = grouped_nms(boxes, per_class.contiguous(), k_out, settings.iou_threshold,
                           settings.score_threshold)
    b, lab, pt = selected[:, 0], selected[:, 1], selected[:, 2]
    s = per_class[b, lab, pt]
    # Image-major, then decreasing score (float64: the score keeps full resolution).
    order = torch.argsort(b.double() * 2.0 - s.double())
    b, lab, pt, s = b[order], lab[order], pt[order], s[order]
    bx = boxes[b, pt]

    # Rank within the image = position - the image's first position; then [N, K] slots.
    counts = torch.zeros_like(flat[:, 0], dtype=torch.long).scatter_add(0, b, torch.ones_like(b))
    starts = counts.cumsum(0) - counts
    rank = torch.ones_like(b).cumsum(0) - 1 - starts[b]
    fits = torch.nonzero(rank < k_out).reshape(-1)
    slot = (b * k_out + rank)[fits]
    zeros = torch.zeros_like(flat[:, :1]).expand(-1, k_out).reshape(-1)  # [N*K]
    out_scores = zeros.scatter(0, slot, s[fits])
    out_labels = zeros.long().scatter(0, slot, lab[fits])
    out_boxes = zeros[:, None].repeat(1, 4).scatter(0, slot[:, None].expand(-1, 4), bx[fits])
    out = {"boxes": out_boxes.reshape(-1, k_out, 4), "scores": out_scores.reshape(-1, k_out),
           "labels": out_labels.reshape(-1, k_out), "num_detections": counts.clamp(max=k_out)}
    if with_index:
        out["point_index"] = zeros.long().scatter(0, slot, pt[fits]).reshape(-1, k_out)
    return out
