"""Task ``detect``: which objects are in the image, and where?

- data: COCO json, every object of every image (``vision_tasks.data.coco_detection``):
  boxes in input pixels after letterbox and augmentation; crowd regions apart; the ground
  truth as written in the file rides along for the evaluator; synthetic shapes with 1-6
  occluding objects per image (128 px by default)
- model: the shared backbone's last three stages (strides 8, 16, 32) -> a PAN (or FPN) neck
  (``vision_tasks.models.necks``) -> an anchor-free dense head: per point, class logits and
  a distance distribution for each box side (``vision_tasks.tasks._detect.head``)
- training targets: task-aligned assignment (``vision_tasks.tasks._detect.assigner``); loss: IoU-aware BCE
  + CIoU + distribution focal loss (``vision_tasks.tasks._detect.loss``)
- post-processing: score threshold, top-k and class-aware NMS to a fixed K per image, zero
  padded: ``boxes`` [N, K, 4], ``scores`` [N, K], ``labels`` [N, K], ``num_detections`` [N]
  (the ONNX contract; traceable, exported with NMS inside; ``vision_tasks.tasks._detect.postprocess``)
- metrics: pycocotools COCOeval in original-image coordinates and category ids: ``box_map``
  (primary), ``box_map50``, ..., per-class AP, PR curves (PNG)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from vision_tasks.data.coco_detection import build_detection, collate_detection
from vision_tasks.data.synth import write_coco
from vision_tasks.errors import ConfigError
from vision_tasks.metrics.coco_eval import CocoEvaluator
from vision_tasks.models.layers import check_activation
from vision_tasks.models.necks import PyramidNeck
from vision_tasks.task_api import Task

from ._detect.head import DenseDetectHead, Detector, PostprocessSettings
from ._detect.loss import DetectLoss, DetectLossConfig
from ._detect.postprocess import ONNX_TRANSLATIONS, detections_fixed_k

LEVELS = 3  # pyramid levels the head uses: the backbone's last three stages


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


class DetectTask(Task):
    name = "detect"
    HeadConfig = DetectHeadConfig
    LossConfig = DetectLossConfig
    primary_metric = "box_map"
    synth_size = 128  # default image side of `vision-tasks data synth detect`
    onnx_translations = ONNX_TRANSLATIONS  # the grouped NMS operator -> ONNX NonMaxSuppression

    masks = False  # whether items carry instance masks (segment)

    def build_dataset(self, cfg, split, train, class_names=None):
        return build_detection(cfg, split, train, class_names, masks=self.masks)

    def collate(self, batch):
        return collate_detection(batch)

    def build_head(self, cfg, features, num_classes, feature_shapes):
        neck, head, _ = self.neck_and_head(cfg, features, num_classes, feature_shapes)
        return Detector(neck, head, postprocess_settings(cfg.model.head))

    def neck_and_head(self, cfg, features, num_classes, feature_shapes
                      ) -> tuple[PyramidNeck, DenseDetectHead, list[int]]:
        """The checked neck and dense head on the backbone's last three stages, and the
        strides of those stages (shared with ``segment``)."""
        hc: DetectHeadConfig = cfg.model.head
        _check_head(hc)
        if len(features) < LEVELS:
            raise ConfigError(f"model.backbone: {self.name} needs at least {LEVELS} stages "
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

    def build_loss(self, cfg, num_classes):
        return DetectLoss(cfg.loss, num_classes)

    def postprocess(self, outputs: dict[str, Any]) -> dict[str, Tensor]:
        """Raw head outputs -> ``boxes`` float32 [N, K, 4] (x1, y1, x2, y2 input pixels),
        ``scores`` float32 [N, K], ``labels`` int64 [N, K] (class index), ``num_detections``
        int64 [N]; rows past ``num_detections`` are zero. Traceable (dynamic batch)."""
        return detections_fixed_k(outputs["boxes"], outputs["cls"].sigmoid(), outputs["bounds"],
                                  outputs["postprocess"])

    def export_metadata(self, cfg) -> dict[str, Any]:
        """For the ONNX metadata: the graph's thresholds and K (the classes' original COCO ids
        come from the checkpoint, which the trainer gives them)."""
        hc: DetectHeadConfig = cfg.model.head
        meta: dict[str, Any] = {"thresholds": {"score": hc.score_threshold, "iou": hc.iou_threshold},
                                "pre_nms_topk": hc.pre_nms_topk, "max_detections": hc.max_detections}
        return meta

    def make_evaluator(self, class_names):
        return CocoEvaluator(class_names)

    def synthesize(self, out, n_train, n_val, size, seed):
        return write_coco(out, n_train, n_val, size, seed, 1, 6, occlusion=True, overwrite=True)

    def demo_overrides(self, data_dir: Path) -> list[str]:
        return [f"data.{split}=" + json.dumps({"images": str(data_dir / split / "images"),
                                               "annotations": str(data_dir / split / "annotations.json")})
                for split in ("train", "val")]


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
