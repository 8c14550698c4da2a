"""Task ``segment``: which objects are in the image, where, and which pixels are theirs?

Built on ``detect`` (same backbone stages, neck, dense head, assigner and NMS) plus a mask
branch (``vision_tasks.tasks._segment``):

- data: COCO json with polygons or RLE per object (``vision_tasks.data.coco_detection``
  with masks): each object's mask is decoded in the original image, letterboxed and
  augmented together with the image and boxes, then area-averaged to the prototypes'
  stride (4); synthetic shapes whose masks are the visible part only (occluders cut out)
- model: detector + prototype net on the finest neck map + per-point coefficients
  (``vision_tasks.tasks._segment.head``); loss: detection loss + box-cropped mask BCE on the detector's
  own assignment (``vision_tasks.tasks._segment.loss``)
- post-processing: the detector's fixed-K NMS, then the kept detections' masks assembled
  in the graph: ``masks`` [N, K, H/4, W/4] probabilities in the input frame, zero outside
  each box and for empty rows (the ONNX contract; ``vision_tasks.tasks._segment.postprocess``)
- metrics: pycocotools COCOeval ``bbox`` and ``segm`` in original-image coordinates:
  ``mask_map`` (primary), ``mask_map50``, ``box_map``, ``box_map50``, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vision_tasks.errors import ConfigError
from vision_tasks.metrics.coco_eval import CocoEvaluator

from ._detect.postprocess import detections_fixed_k
from ._segment.head import Segmenter
from ._segment.loss import SegmentLoss, SegmentLossConfig
from ._segment.postprocess import assemble_masks
from .detect import DetectHeadConfig, DetectTask, postprocess_settings

MASK_THRESHOLD = 0.5  # mask probability above which a pixel is the object's (metrics, runtime)


@dataclass
class SegmentHeadConfig(DetectHeadConfig):
    num_protos: int = 32  # prototype masks (and coefficients per point)
    proto_channels: int = 48  # width of the prototype net
    coef_hidden: int = 32  # width of the coefficient branches


class SegmentTask(DetectTask):
    name = "segment"
    HeadConfig = SegmentHeadConfig
    LossConfig = SegmentLossConfig
    primary_metric = "mask_map"

    masks = True

    def build_head(self, cfg, features, num_classes, feature_shapes):
        hc: SegmentHeadConfig = cfg.model.head
        for key in ("num_protos", "proto_channels", "coef_hidden"):
            if getattr(hc, key) < 1:
                raise ConfigError(f"model.head.{key}: must be at least 1, got {getattr(hc, key)}")
        neck, head, strides = self.neck_and_head(cfg, features, num_classes, feature_shapes)
        if strides[0] % 2:
            raise ConfigError(f"model.backbone: the finest stage segment uses has stride "
                              f"{strides[0]}; prototypes need an even stride (8 gives masks at H/4)")
        return Segmenter(neck, head, postprocess_settings(hc), strides, hc.channels, hc.num_protos,
                         hc.proto_channels, hc.coef_hidden, hc.depth, hc.activation)

    def build_loss(self, cfg, num_classes):
        return SegmentLoss(cfg.loss, num_classes)

    def postprocess(self, outputs: dict[str, Any]) -> dict[str, Tensor]:
        """Raw outputs -> the detect outputs plus ``masks`` float32 [N, K, Hm, Wm] (mask
        probabilities in the input frame, zero outside each box and for empty rows)."""
        out = detections_fixed_k(outputs["boxes"], outputs["cls"].sigmoid(), outputs["bounds"],
                                 outputs["postprocess"], with_index=True)
        index = out.pop("point_index")
        out["masks"] = assemble_masks(outputs["coef"], outputs["protos"], index, out["boxes"],
                                      outputs["mask_stride"])
        return out

    def export_metadata(self, cfg) -> dict[str, Any]:
        meta = super().export_metadata(cfg)
        meta["thresholds"]["mask"] = MASK_THRESHOLD
        return meta

    def make_evaluator(self, class_names):
        return CocoEvaluator(class_names, masks=True, mask_threshold=MASK_THRESHOLD)


TASK = SegmentTask()
