"""Task ``detect``: which objects are in the image, and where?

- data: COCO json, every object of every image (``vision_tasks.data.coco_detection``):
  boxes in input pixels after letterbox and augmentation; crowd regions apart; the ground
  truth as written in the file rides along for the evaluator; synthetic shapes with 1-6
  occluding objects per image (128 px by default)
- model: the shared backbone's last three stages (strides 8, 16, 32) -> a PAN (or FPN) neck
  (``vision_tasks.models.necks``) -> an anchor-free dense head: per point, class logits and
  a distance distribution for each box side (``.head``)
- training targets: task-aligned assignment (``.assigner``); loss: IoU-aware BCE
  + CIoU + distribution focal loss (``.loss``)
- post-processing: score threshold, top-k and class-aware NMS to a fixed K per image, zero
  padded: ``boxes`` [N, K, 4], ``scores`` [N, K], ``labels`` [N, K], ``num_detections`` [N]
  (the ONNX contract; traceable, exported with NMS inside; ``.postprocess``)
- metrics: pycocotools COCOeval in original-image coordinates and category ids: ``box_map``
  (primary), ``box_map50``, ..., per-class AP, PR curves (PNG)

This module is the task's torch-free declaration (the config sections, the outputs, the
runtime's decoder); the training side is :mod:`.training` (with :mod:`.head`,
:mod:`.assigner`, :mod:`.loss` and :mod:`.postprocess`), which ``segment`` builds on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vision_tasks.contract import ModelFileError, ModelMetadata
from vision_tasks.imaging import Letterbox
from vision_tasks.masks import resample_mask
from vision_tasks.results import Detection, Prediction
from vision_tasks.task_spec import Output, TaskSpec


@dataclass
class DetectHeadConfig:
    neck: Literal["pan", "fpn"] = "pan"
    channels: int = 64  # width of the neck's maps
    hidden: int = 64  # width of the head's class and box branches
    depth: int = 2  # 3x3 conv blocks per branch
    reg_max: int = 16  # bins of each side's distance distribution (in strides)
    activation: str = "silu"
    # Post-processing (inside the exported graph too):
    score_threshold: float = 0.001
    iou_threshold: float = 0.6
    pre_nms_topk: int = 1000
    max_detections: int = 100


@dataclass
class DetectLossConfig:
    cls: float = 0.5  # weight of the IoU-aware binary cross-entropy
    box: float = 7.5  # weight of the complete-IoU loss
    dfl: float = 1.5  # weight of the distribution focal loss
    topk: int = 10  # points the assigner gives each object at most
    alpha: float = 1.0  # class-score exponent of the assigner's alignment
    beta: float = 6.0  # IoU exponent of the assigner's alignment


DETECTIONS = (Output("boxes", "float32", ("N", "K", 4)), Output("scores", "float32", ("N", "K")),
              Output("labels", "int64", ("N", "K")), Output("num_detections", "int64", ("N",)))
"""The outputs of every task that returns K detections per image (detect, segment)."""


def detection_metadata(cfg: Any) -> dict[str, Any]:
    """For the ONNX metadata: the graph's thresholds and K (the classes' original COCO ids
    come from the checkpoint)."""
    hc: DetectHeadConfig = cfg.model.head
    return {"thresholds": {"score": hc.score_threshold, "iou": hc.iou_threshold},
            "pre_nms_topk": hc.pre_nms_topk, "max_detections": hc.max_detections}


def decode_detect(outputs: dict[str, np.ndarray], i: int, lb: Letterbox, meta: ModelMetadata,
                  min_score: float = 0.0) -> Prediction:
    """``boxes [N, K, 4]``, ``scores``/``labels [N, K]``, ``num_detections [N]`` (and for
    segment ``masks [N, K, Hm, Wm]``) -> image ``i``'s first ``num_detections`` objects,
    those scoring at least ``min_score`` (rows are sorted by decreasing score).

    Masks are resampled into the original image, thresholded at the metadata's
    ``thresholds["mask"]`` (0.5 when absent), inside each object's box only: each
    :class:`Detection` keeps that crop (see :func:`vision_tasks.masks.resample_mask`).
    """
    n = int(outputs["num_detections"][i])
    if not 0 <= n <= outputs["scores"].shape[1]:
        raise ModelFileError(f"the graph returned num_detections {n} for a row of "
                             f"{outputs['scores'].shape[1]}; re-export the model")
    n = int(np.count_nonzero(outputs["scores"][i, :n] >= min_score))
    boxes = lb.boxes_to_original(outputs["boxes"][i, :n])
    scores, labels = outputs["scores"][i, :n], outputs["labels"][i, :n]
    if n and not 0 <= int(labels.min()) <= int(labels.max()) < meta.num_classes:
        raise ModelFileError(f"the graph returned label {int(labels.max())} but its metadata "
                             f"names {meta.num_classes} classes (class_names); the metadata does "
                             "not describe this graph: re-export the model")
    crops = [None] * n
    if "masks" in outputs:
        threshold = float(meta.thresholds.get("mask", 0.5))
        crops = [resample_mask(outputs["masks"][i, k], lb, threshold, boxes[k]) for k in range(n)]
    detections = [Detection(box=tuple(float(v) for v in boxes[k]), label=int(labels[k]),
                            name=meta.class_names[int(labels[k])], score=float(scores[k]),
                            crop=crops[k])
                  for k in range(n)]
    return Prediction(source="", task=meta.task, width=lb.width, height=lb.height,
                      class_names=meta.class_names, letterbox=lb, detections=detections)


SPEC = TaskSpec(
    name="detect",
    outputs=DETECTIONS,
    decoder=decode_detect,
    training="vision_tasks.tasks.detect.training:TASK",
    coco_results=True,
    head_config=DetectHeadConfig,
    loss_config=DetectLossConfig,
    metadata=detection_metadata,
)
