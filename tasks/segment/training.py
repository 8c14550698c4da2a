"""The training side of ``segment`` (torch): the detector's plus the mask branch, its loss
and the box + mask COCO metric."""

from __future__ import annotations

from vision_tasks.data.coco_detection import build_detection
from vision_tasks.errors import ConfigError
from vision_tasks.metrics.coco_eval import CocoEvaluator

from ..detect.training import DetectTask, neck_and_head, postprocess_settings
from . import MASK_THRESHOLD, SPEC, SegmentHeadConfig
from .head import Segmenter
from .loss import SegmentLoss


class SegmentTask(DetectTask):
    spec = SPEC
    primary_metric = "mask_map"

    def build_dataset(self, cfg, split, train, class_names=None):
        return build_detection(cfg, split, train, class_names, masks=True)

    def build_head(self, cfg, features, num_classes, feature_shapes):
        hc: SegmentHeadConfig = cfg.model.head
        for key in ("num_protos", "proto_channels", "coef_hidden"):
            if getattr(hc, key) < 1:
                raise ConfigError(f"model.head.{key}: must be at least 1, got {getattr(hc, key)}")
        neck, head, strides = neck_and_head(cfg, features, num_classes, feature_shapes)
        return Segmenter(neck, head, postprocess_settings(hc), strides, hc.channels, hc.num_protos,
                         hc.proto_channels, hc.coef_hidden, hc.depth, hc.activation)

    def build_loss(self, cfg, head):
        return SegmentLoss(cfg.loss, head.head, head.mask_stride)

    def make_evaluator(self, class_names, category_ids):
        return CocoEvaluator(class_names, category_ids, masks=True, mask_threshold=MASK_THRESHOLD)


TASK = SegmentTask()
