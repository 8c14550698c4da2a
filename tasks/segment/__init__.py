"""Task ``segment``: which objects are in the image, where, and which pixels are theirs?

Built on ``detect`` (same backbone stages, neck, dense head, assigner and NMS) plus a mask
branch (:mod:`.head`, :mod:`.loss`, :mod:`.postprocess`):

- data: COCO json with polygons or RLE per object (``vision_tasks.data.coco_detection``
  with masks): each object's mask is decoded in the original image, letterboxed and
  augmented together with the image and boxes, then area-averaged to the prototypes'
  stride (4); synthetic shapes whose masks are the visible part only (occluders cut out)
- model: detector + prototype net on the finest neck map + per-point coefficients
  (``.head``); loss: detection loss + box-cropped mask BCE on the detector's
  own assignment (``.loss``)
- post-processing: the detector's fixed-K NMS, then the kept detections' masks assembled
  in the graph: ``masks`` [N, K, H/4, W/4] probabilities in the input frame, zero outside
  each box and for empty rows (the ONNX contract; ``.postprocess``)
- metrics: pycocotools COCOeval ``bbox`` and ``segm`` in original-image coordinates:
  ``mask_map`` (primary), ``mask_map50``, ``box_map``, ``box_map50``, ...

This module is the task's torch-free declaration; the training side is :mod:`.training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vision_tasks.task_spec import Output, TaskSpec

from ..detect import (
    DETECTIONS,
    DetectHeadConfig,
    DetectLossConfig,
    decode_detect,
    detection_metadata,
)

MASK_THRESHOLD = 0.5  # mask probability above which a pixel is the object's (metrics, runtime)


@dataclass
class SegmentHeadConfig(DetectHeadConfig):
    num_protos: int = 32  # prototype masks (and coefficients per point)
    proto_channels: int = 48  # width of the prototype net
    coef_hidden: int = 32  # width of the coefficient branches


@dataclass
class SegmentLossConfig(DetectLossConfig):
    mask: float = 6.0  # weight of the mask loss


def segment_metadata(cfg: Any) -> dict[str, Any]:
    """The detector's metadata plus the mask threshold (``thresholds.mask``)."""
    meta = detection_metadata(cfg)
    meta["thresholds"]["mask"] = MASK_THRESHOLD
    return meta


SPEC = TaskSpec(
    name="segment",
    outputs=(*DETECTIONS, Output("masks", "float32", ("N", "K", "Hm", "Wm"))),
    decoder=decode_detect,  # masks are resampled into each detection's box
    training="vision_tasks.tasks.segment.training:TASK",
    coco_results=True,
    head_config=SegmentHeadConfig,
    loss_config=SegmentLossConfig,
    metadata=segment_metadata,
)
