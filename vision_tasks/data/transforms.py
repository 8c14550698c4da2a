"""Image pipelines: decode -> letterbox (as the ONNX contract) -> albumentations.

The letterbox is the same function the runtime uses, so a model sees the same
pixels in training, in evaluation and behind the ONNX file. Geometric
augmentation runs after the letterbox, in model-input pixels, and carries boxes
(x1, y1, x2, y2 pixels) and masks along when the task has them.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from vision_tasks.config import AugmentConfig
from vision_tasks.imaging import PAD_VALUE

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
import albumentations as A  # noqa: E402


def build_augment(cfg: AugmentConfig, with_boxes: bool = False) -> A.Compose | None:
    """The training augmentation, or None when it is off.

    Call with ``image=uint8 [H, W, 3]`` (and ``bboxes=[K, 4] pascal_voc``,
    ``labels=[K]``, ``masks=[...]`` when ``with_boxes``).
    """
    if not cfg.enabled:
        return None
    ops: list[A.BasicTransform] = []
    if cfg.hflip > 0:
        ops.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.vflip > 0:
        ops.append(A.VerticalFlip(p=cfg.vflip))
    lo, hi = cfg.scale
    if (lo, hi) != (1.0, 1.0) or cfg.translate > 0 or cfg.rotate > 0:
        ops.append(A.Affine(scale=(lo, hi), translate_percent=(-cfg.translate, cfg.translate),
                            rotate=(-cfg.rotate, cfg.rotate), border_mode=cv2.BORDER_CONSTANT,
                            fill=PAD_VALUE, fill_mask=0, p=1.0))
    if max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) > 0:
        ops.append(A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast,
                                 saturation=cfg.saturation, hue=cfg.hue, p=0.8))
    bbox_params = None
    if with_boxes:
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.2,
                                   min_area=4.0)
    return A.Compose(ops, bbox_params=bbox_params, seed=0)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed, so augmentation depends only on (seed, epoch, index):
    the same after a resume and whatever the number of loader workers."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
