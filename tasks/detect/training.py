"""The training side of ``detect`` (torch): data, the neck and dense head on the backbone's
last three stages, the loss, the COCO metric, synthetic data. ``segment`` builds on it."""

from __future__ import annotations

from pathlib import Path

from vision_tasks.data.coco_detection import build_detection, collate_detection
from vision_tasks.data.synth import write_coco
from vision_tasks.data.synth_hard import synth_style
from vision_tasks.errors import ConfigError
from vision_tasks.metrics.coco_eval import CocoEvaluator
from vision_tasks.models.layers import check_activation
from vision_tasks.models.necks import PyramidNeck
from vision_tasks.task_api import Task, coco_demo_overrides

from . import SPEC, DetectHeadConfig
from .head import DenseDetectHead, Detector
from .loss import DetectLoss
from .postprocess import ONNX_TRANSLATIONS, PostprocessSettings

LEVELS = 3  # pyramid levels the head uses: the backbone's last three stages


class DetectTask(Task):
    spec = SPEC
    primary_metric = "box_map"
    synth_size = 128  # default image side of `vision-tasks data synth detect`
    onnx_translations = ONNX_TRANSLATIONS  # the grouped NMS operator -> ONNX NonMaxSuppression

    def build_dataset(self, cfg, split, train, class_names=None):
        return build_detection(cfg, split, train, class_names, masks=False)

    def collate(self, batch):
        return collate_detection(batch)

    def build_head(self, cfg, features, num_classes, feature_shapes):
        neck, head, _ = neck_and_head(cfg, features, num_classes, feature_shapes)
        return Detector(neck, head, postprocess_settings(cfg.model.head))

    def build_loss(self, cfg, head):
        return DetectLoss(cfg.loss, head.head)

    def make_evaluator(self, class_names, category_ids):
        return CocoEvaluator(class_names, category_ids)

    def synthesize(self, out, n_train, n_val, size, seed, style="default"):
        return write_coco(out, n_train, n_val, size, seed, 1, 6, occlusion=True, overwrite=True,
                          style=synth_style(style))

    def demo_overrides(self, data_dir: Path) -> list[str]:
        return coco_demo_overrides(data_dir)


def neck_and_head(cfg, features, num_classes, feature_shapes
                  ) -> tuple[PyramidNeck, DenseDetectHead, list[int]]:
    """The checked neck and dense head on the backbone's last three stages, and the strides
    of those stages (shared with ``segment``)."""
    hc: DetectHeadConfig = cfg.model.head
    _check_head(hc)
    if len(features) < LEVELS:
        raise ConfigError(f"model.backbone: {cfg.task} needs at least {LEVELS} stages "
                          f"(strides 8, 16, 32), {cfg.model.backbone.name} has "
                          f"{len(features)}; give simple_cnn 5 depths, e.g. depths: "
                          "[1, 1, 2, 2, 2]")
    used = features[-LEVELS:]
    shapes = [(h, w) for _, h, w in feature_shapes[-LEVELS:]]
    strides = [f.stride for f in used]
    size = cfg.data.image_size
    neck = PyramidNeck([f.channels for f in used], hc.channels, hc.neck, hc.activation)
    head = DenseDetectHead(hc.channels, shapes, strides, num_classes, (size, size), hc.hidden,
                           hc.depth, hc.reg_max, hc.activation)
    return neck, head, strides


def postprocess_settings(hc: DetectHeadConfig) -> PostprocessSettings:
    return PostprocessSettings(hc.score_threshold, hc.iou_threshold, hc.pre_nms_topk,
                               hc.max_detections)


def _check_head(hc: DetectHeadConfig) -> None:
    check_activation(hc.activation, "model.head.activation")
    for key in ("channels", "hidden", "reg_max", "pre_nms_topk", "max_detections"):
        if getattr(hc, key) < 1:
            raise ConfigError(f"model.head.{key}: must be at least 1, got {getattr(hc, key)}")
    for key in ("score_threshold", "iou_threshold"):
        if not 0.0 <= getattr(hc, key) <= 1.0:
            raise ConfigError(f"model.head.{key}: must be in [0, 1], got {getattr(hc, key)}")


TASK = DetectTask()
