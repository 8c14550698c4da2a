"""Multi-object data sets from COCO json: every object of every image, for detection.

The pipeline of an item: decode -> letterbox to the model input (as the ONNX contract) ->
map the boxes into input pixels with the same :class:`~vision_tasks.imaging.Letterbox` ->
(training) albumentations with the boxes carried through every geometric op.

Crowd regions (``iscrowd: 1``) are not objects: they travel apart (``crowd``), so training
can leave the points inside them out of the loss, and the evaluator hands them to COCOeval
as crowd. With ``masks`` (task ``segment``), each object's polygons or RLE are decoded in
the original image, letterboxed with the image, carried through the same augmentation, and
area-averaged down to the mask stride (soft edges). Images without any object are kept
(they teach the background). Each item also carries its image's ground truth as written in
the file (original pixels and category ids) and its Letterbox, so predictions can be scored
in original coordinates.
"""

from __future__ import annotations

import warnings
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from vision_tasks.contract import MASK_STRIDE
from vision_tasks.data.bad_images import (
    Unreadable,
    WarnOnce,
    decoded_from,
    missing_note,
    split_missing,
)
from vision_tasks.data.coco import CocoImage
from vision_tasks.data.single_object import coco_split, no_image_found
from vision_tasks.data.transforms import build_augment, sample_seed, to_chw_tensor
from vision_tasks.data.yolo import read_index
from vision_tasks.errors import DataError
from vision_tasks.imaging import ImageError, Letterbox, letterbox, load_image

# pycocotools 2.0.x decodes through numpy's __array__ protocol without NumPy 2's ``copy``
# keyword and warns about it on every call; the result is right, the warning is noise.
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                        category=DeprecationWarning)

MIN_BOX_SIDE = 1.0  # input pixels; smaller boxes (after letterbox / augmentation) are dropped


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE with list or string counts) -> bool ``[H, W]``."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"],
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"unsupported segmentation {type(segmentation).__name__}; expected "
                         "polygons (a list) or RLE (a dict with size and counts)")
    return mask_utils.decode(rle).astype(bool)


class DetectionDataset(Dataset):
    """Items: ``(image uint8 [3, S, S] letterboxed, target dict)`` with

    - ``boxes`` float32 ``[M, 4]`` and ``labels`` int64 ``[M]``: the objects, ``(x1, y1, x2, y2)``
      in model-input pixels (after letterbox and augmentation), class indices of the model;
    - ``crowd`` float32 ``[K, 4]``: crowd regions, same frame;
    - ``letterbox``: the image's :meth:`Letterbox.to_dict`;
    - ``coco``: ``{"image_id", "width", "height", "annotations": [{"bbox": [x, y, w, h],
      "category_id", "iscrowd", "area"}]}`` as in the file (original pixels and ids);
    - ``category_ids``: original id per model class index (None: not in this file);
    - with ``masks``: ``masks`` uint8 ``[M, S/4, S/4]`` (0..255, each object's mask
      area-averaged to the mask stride) and ``mask_valid`` bool ``[M]`` (False: the object
      has no segmentation in the file); the ``coco`` annotations then carry their
      ``segmentation`` too.

    Images listed but not on disk are left out (``missing``). A file that fails to decode is
    reported once and replaced by the next good one, or with ``leave_out_unreadable``
    (evaluation) given as an :class:`~vision_tasks.data.bad_images.Unreadable`, which the
    loader leaves out (:mod:`vision_tasks.data.bad_images`). How boxes that cannot be used as
    written were handled is on the :meth:`summary` line (rule: :mod:`vision_tasks.data.coco`).
    """

    def __init__(self, annotations: str | Path, images: str | Path, key: str, image_size: int,
                 augment: Any = None, class_names: list[str] | None = None, seed: int = 0,
                 masks: bool = False, leave_out_unreadable: bool = False) -> None:
        index = read_index(annotations, images, key)
        self.index = index
        self.leave_out_unreadable = leave_out_unreadable
        self.masks = masks
        if masks and image_size % MASK_STRIDE:
            raise DataError(f"data.image_size: {image_size} is not a multiple of {MASK_STRIDE}; "
                            "masks are learnt at a quarter of the input size")
        self.annotation_file = index.annotation_file
        self.key, self.image_size, self.augment, self.seed = key, image_size, augment, seed
        self.remap, self.class_names, self.category_ids = index.map_to_model(class_names, key)
        self.file_ids = list(index.category_ids)
        if not index.images:
            raise DataError(f"{key}: {index.annotation_file} lists no images; add images or "
                            "point the config at another file")
        self.images, self.missing = split_missing(index.images, attrgetter("path"))
        if not self.images:
            raise no_image_found(key, index)
        self.objects = sum(1 for im in self.images for a in im.annotations if not a.iscrowd)
        self.crowd = sum(1 for im in self.images for a in im.annotations if a.iscrowd)
        self.background = sum(1 for im in self.images if all(a.iscrowd for a in im.annotations))
        self._warn_once = WarnOnce()

    def summary(self) -> str:
        notes = [note for note in (missing_note(self.missing), self.index.box_notes()) if note]
        if self.background:
            notes.append(f"{self.background} image{'s' * (self.background != 1)} without "
                         "objects (kept as background)")
        return (f"{len(self.images)} images, {self.objects} objects, {self.crowd} crowd regions, "
                f"{len(self.class_names)} classes" + "".join(f"; {n}" for n in notes))

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Letterboxed ``uint8 [S, S, 3]`` image of item ``index`` (the next decodable one when
        its file is bad) and its un-augmented target (boxes as numpy arrays)."""
        for record, image in decoded_from(self.images, index, attrgetter("path"),
                                          self._warn_once):
            return self._prepare(record, image)
        raise DataError(f"{self.key}: no image of {self.annotation_file} could be decoded")

    def _prepare(self, record: CocoImage, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        height, width = image.shape[:2]
        if None not in (record.width, record.height) and (record.width, record.height) != (width, height):
            self._warn_once(record.path, f"{self.annotation_file}: {record.file_name} is {width}x"
                            f"{height} but the file says {record.width}x{record.height} (EXIF "
                            "rotation?); its boxes may be off")
        boxed, lb = letterbox(image, self.image_size)
        objects = [a for a in record.annotations if not a.iscrowd]
        crowds = [a for a in record.annotations if a.iscrowd]
        gt = [{"bbox": [a.box[0], a.box[1], a.box[2] - a.box[0], a.box[3] - a.box[1]],
               "category_id": self.file_ids[a.category], "iscrowd": int(a.iscrowd),
               "area": float(a.area)} for a in record.annotations]
        if self.masks:
            for entry, a in zip(gt, record.annotations, strict=True):
                entry["segmentation"] = (a.segmentation if _has_segmentation(a.segmentation)
                                         else _box_polygon(a.box))
        target = {
            "boxes": self._to_input(lb, [a.box for a in objects], width, height),
            "labels": np.array([self.remap[a.category] for a in objects], np.int64),
            "crowd": self._to_input(lb, [a.box for a in crowds], width, height),
            "letterbox": lb.to_dict(),
            "coco": {"image_id": record.id, "width": width, "height": height, "annotations": gt},
        }
        if self.masks:
            target["masks"], target["mask_valid"] = self._object_masks(record, objects, lb, width,
                                                                       height)
        return boxed, target

    def _object_masks(self, record: CocoImage, objects: list, lb: Letterbox, width: int,
                      height: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[M, S, S]`` letterboxed masks of ``objects`` (0/255, soft at edges the resize
        blends) and their validity."""
        size = self.image_size
        masks = np.zeros((len(objects), size, size), np.uint8)
        valid = np.zeros(len(objects), bool)
        for i, a in enumerate(objects):
            if not _has_segmentation(a.segmentation):
                continue
            try:
                full = decode_segmentation(a.segmentation, height, width)
            except (ValueError, TypeError, KeyError) as err:
                self._warn_once(record.path, f"{self.annotation_file}: a segmentation of "
                                f"{record.file_name} cannot be decoded ({err}); that object "
                                "takes no mask loss")
                continue
            if full.shape != (height, width):
                self._warn_once(record.path, f"{self.annotation_file}: an RLE of "
                                f"{record.file_name} is {full.shape[1]}x{full.shape[0]}, the "
                                f"image {width}x{height}; that object takes no mask loss")
                continue
            masks[i] = lb.paste(full.astype(np.uint8) * 255, pad_value=0)
            valid[i] = True
        return masks, valid

    def _to_input(self, lb: Letterbox, boxes: list, width: int, height: int) -> np.ndarray:
        b = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, [width, height, width, height])
        return np.clip(lb.boxes_to_input(b), 0.0, float(self.image_size)).astype(np.float32)

    def __getitem__(self, key: int | tuple[int, int]
                    ) -> tuple[torch.Tensor, dict[str, Any]] | Unreadable:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if self.leave_out_unreadable:
            record = self.images[index]
            try:
                image, target = self._prepare(record, load_image(record.path))
            except ImageError as err:
                self._warn_once(record.path, f"leaving out a bad image: {err}")
                return Unreadable(record.path, str(err))
        else:
            image, target = self.load(index)
        if self.augment is not None:
            image = self._augment(image, target, sample_seed(self.seed, epoch, index))
        keep = ((target["boxes"][:, 2:] - target["boxes"][:, :2]) >= MIN_BOX_SIDE).all(axis=1)
        target["boxes"], target["labels"] = target["boxes"][keep], target["labels"][keep]
        if self.masks:
            target["masks"] = downsample_masks(target["masks"][keep], MASK_STRIDE)
            target["mask_valid"] = target["mask_valid"][keep]
        return to_chw_tensor(image), target

    def _augment(self, image: np.ndarray, target: dict[str, Any], seed: int) -> np.ndarray:
        """Augment the image and move objects and crowd regions with it (in place)."""
        objects, crowds = target["boxes"], target["crowd"]
        boxes = np.concatenate([objects, crowds])
        keep = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(axis=1)
        ids = np.flatnonzero(keep)
        self.augment.set_random_seed(seed % 2**32)
        extra = {"masks": list(target["masks"])} if self.masks and len(objects) else {}
        out = self.augment(image=image, bboxes=boxes[keep].reshape(-1, 4), labels=ids.tolist(),
                           **extra)
        moved = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        src = np.asarray(out["labels"], np.int64)
        is_obj = src < len(objects)
        target["boxes"] = moved[is_obj]
        target["labels"] = target["labels"][src[is_obj]]
        target["crowd"] = moved[~is_obj]
        if self.masks:
            size = self.image_size
            masks = np.asarray(out["masks"], np.uint8).reshape(-1, size, size) if extra else \
                np.zeros((0, size, size), np.uint8)
            target["masks"] = masks[src[is_obj]]
            target["mask_valid"] = target["mask_valid"][src[is_obj]]
        return out["image"]


def _has_segmentation(segmentation: Any) -> bool:
    return bool(segmentation) and isinstance(segmentation, list | dict)


def _box_polygon(box: Any) -> list[list[float]]:
    """A box ``(x1, y1, x2, y2)`` as a one-polygon segmentation (for an object without one)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def downsample_masks(masks: np.ndarray, stride: int) -> np.ndarray:
    """uint8 ``[M, S, S]`` masks -> uint8 ``[M, S/stride, S/stride]`` by area averaging
    (each target pixel: the share of its ``stride x stride`` block inside the mask, 0..255)."""
    m, h, w = masks.shape
    blocks = masks.reshape(m, h // stride, stride, w // stride, stride).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, Any]]]
                      ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Items -> ``(images uint8 [N, 3, S, S], targets)``; targets pad objects to the batch's
    most: ``boxes`` float32 [N, M, 4], ``labels`` int64 [N, M] (-1 = padding), ``crowd``
    float32 [N, K, 4] (zero boxes = padding), plus the lists ``letterbox`` and ``coco``."""
    images, targets = zip(*batch, strict=True)
    n = len(targets)
    m = max((len(t["labels"]) for t in targets), default=0)
    k = max((len(t["crowd"]) for t in targets), default=0)
    boxes = torch.zeros(n, m, 4)
    labels = torch.full((n, m), -1, dtype=torch.int64)
    crowd = torch.zeros(n, k, 4)
    for i, t in enumerate(targets):
        boxes[i, : len(t["labels"])] = torch.as_tensor(t["boxes"])
        labels[i, : len(t["labels"])] = torch.as_tensor(t["labels"])
        crowd[i, : len(t["crowd"])] = torch.as_tensor(t["crowd"])
    out = {"boxes": boxes, "labels": labels, "crowd": crowd,
           "letterbox": [t["letterbox"] for t in targets], "coco": [t["coco"] for t in targets]}
    if "masks" in targets[0]:
        hm, wm = targets[0]["masks"].shape[1:]
        masks = torch.zeros(n, m, hm, wm, dtype=torch.uint8)
        valid = torch.zeros(n, m, dtype=torch.bool)
        for i, t in enumerate(targets):
            masks[i, : len(t["labels"])] = torch.from_numpy(t["masks"])
            valid[i, : len(t["labels"])] = torch.from_numpy(t["mask_valid"])
        out["masks"], out["mask_valid"] = masks, valid
    return torch.stack(images), out


def build_detection(cfg: Any, split: str, train: bool, class_names: list[str] | None = None,
                    log: Any = print, masks: bool = False) -> DetectionDataset:
    """The multi-object set of ``data.<split>`` (training augmentation if ``train``; object
    masks too if ``masks``)."""
    annotations, images = coco_split(cfg, split)
    augment = build_augment(cfg.data.augment, with_boxes=True) if train else None
    dataset = DetectionDataset(annotations, images, f"data.{split}", cfg.data.image_size,
                               augment, class_names, cfg.train.seed, masks,
                               leave_out_unreadable=not train)
    log(f"data.{split}: {annotations}: {dataset.summary()}")
    return dataset
