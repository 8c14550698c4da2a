"""Single-object data sets from COCO json: one class label and one box per image.

The pipeline of an item: decode -> letterbox to the model input (as the ONNX contract) ->
map the annotation box into input pixels with the same :class:`~vision_tasks.imaging.Letterbox`
-> (training) albumentations with the box carried through every geometric op.

Which annotation is "the object" of an image: crowd regions (``iscrowd: 1``) never are.
Of the rest, an image with exactly one is used as is; an image with none is skipped; an
image with several follows the multi-object policy: ``skip`` drops the image, ``largest``
keeps its largest box (by box area; the first in file order on a tie). Every decision is
counted in a :class:`SelectionReport`, printed when the set is built, with the boxes that
could not be used as written (dropped or clipped by :mod:`vision_tasks.data.coco`'s rule)
and the images not found on disk (left out).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vision_tasks.data.bad_images import (
    Unreadable,
    WarnOnce,
    decoded_from,
    missing_note,
    split_missing,
)
from vision_tasks.data.coco import CocoAnnotation, CocoImage, CocoIndex
from vision_tasks.data.transforms import build_augment, sample_seed, to_chw_tensor
from vision_tasks.data.yolo import YoloSplit, read_index, yolo_source
from vision_tasks.errors import DataError
from vision_tasks.imaging import ImageError, letterbox, load_image

MultiObjectPolicy = Literal["skip", "largest"]
AUGMENT_TRIES = 3  # augmentations tried before an item falls back to its un-augmented form


@dataclass(frozen=True)
class SelectionReport:
    """How the images of an annotation file became single-object samples."""

    policy: str  # the multi-object policy applied
    images: int  # entries in the file's 'images'
    used: int  # samples in the data set (= single + multi_object_largest)
    single: int  # images with exactly one non-crowd object
    multi_object_skipped: int  # images with several objects, dropped (policy 'skip')
    multi_object_largest: int  # images with several objects, largest kept (policy 'largest')
    no_object: int  # images without any non-crowd object, dropped
    crowd_ignored: int  # crowd annotations, never taken as the object
    degenerate_ignored: int  # annotations whose box has no area
    box_notes: str = ""  # other boxes dropped or clipped (CocoIndex.box_notes)
    missing: tuple[Path, ...] = ()  # images not found on disk, left out

    def line(self) -> str:
        multi = (f"{self.multi_object_skipped} multi-object skipped" if self.policy == "skip"
                 else f"{self.multi_object_largest} multi-object -> largest")
        extra = "".join(f"; {note}" for note in (missing_note(self.missing), self.box_notes)
                        if note)
        return (f"{self.used} of {self.images} images used ({self.single} single-object, {multi}, "
                f"{self.no_object} without object skipped; {self.crowd_ignored} crowd and "
                f"{self.degenerate_ignored} zero-area annotations ignored; "
                f"multi_object: {self.policy}){extra}")


def no_image_found(key: str, index: CocoIndex) -> DataError:
    """The error for an annotation file none of whose images is on disk."""
    first = index.images[0]
    return DataError(f"{key}: none of the {len(index.images)} images that {index.annotation_file} "
                     f"lists is in {index.images_root} (the first: {first.file_name}); point "
                     f"{key}.images at the folder the file names are relative to")


def select_objects(index: CocoIndex, policy: MultiObjectPolicy,
                   missing: tuple[Path, ...] = ()
                   ) -> tuple[list[tuple[CocoImage, CocoAnnotation]], SelectionReport]:
    """The (image, object) pairs of ``index`` under ``policy``, and the counts; images whose
    path is in ``missing`` (not on disk) are left out."""
    if policy not in ("skip", "largest"):
        raise ValueError(f"multi_object policy must be 'skip' or 'largest', got {policy!r}")
    pairs: list[tuple[CocoImage, CocoAnnotation]] = []
    single = multi_skipped = multi_largest = empty = crowd = 0
    absent = set(missing)
    for image in index.images:
        if image.path in absent:
            continue
        objects = [a for a in image.annotations if not a.iscrowd]
        crowd += len(image.annotations) - len(objects)
        if not objects:
            empty += 1
        elif len(objects) == 1:
            single += 1
            pairs.append((image, objects[0]))
        elif policy == "skip":
            multi_skipped += 1
        else:
            multi_largest += 1
            pairs.append((image, max(objects, key=lambda a: a.box_area)))  # max keeps the first
    report = SelectionReport(policy, len(index.images), len(pairs), single, multi_skipped,
                             multi_largest, empty, crowd, index.degenerate,
                             index.box_notes(sizes=False), tuple(missing))
    return pairs, report


class SingleObjectDataset(Dataset):
    """Items: ``(image uint8 [3, S, S] letterboxed, {"label": int, "box": float32 [4]})``.

    ``box`` is ``(x1, y1, x2, y2)`` in model-input pixels (after letterbox and augmentation).
    Attributes: ``class_names``, ``category_ids`` (original COCO id per class index; None for
    a model class absent from this file), ``report`` (:class:`SelectionReport`),
    ``multi_object_policy`` and ``missing`` (images not on disk, left out). A file that fails
    to decode (or whose box lies outside the decoded image) is reported once and replaced by
    the next good one, or with ``leave_out_unreadable`` (evaluation) given as an
    :class:`~vision_tasks.data.bad_images.Unreadable`, which the loader leaves out; an
    augmentation that loses the box is retried with the next seeds and, after
    :data:`AUGMENT_TRIES`, replaced by the un-augmented sample.
    """

    def __init__(self, annotations: str | Path, images: str | Path, key: str, image_size: int,
                 policy: MultiObjectPolicy = "skip", augment: Any = None,
                 class_names: list[str] | None = None, seed: int = 0,
                 leave_out_unreadable: bool = False) -> None:
        index = read_index(annotations, images, key)
        present, self.missing = split_missing(index.images, lambda image: image.path)
        if index.images and not present:
            raise no_image_found(key, index)
        pairs, self.report = select_objects(index, policy, tuple(self.missing))
        self.leave_out_unreadable = leave_out_unreadable
        self.annotation_file = index.annotation_file
        self.multi_object_policy = policy
        if not pairs:
            raise DataError(f"{key}: {index.annotation_file} has no usable single-object image "
                            f"({self.report.line()}); try task_options.multi_object: largest")
        remap, self.class_names, self.category_ids = index.map_to_model(class_names, key)
        self.items = [(image, remap[obj.category], obj.box) for image, obj in pairs]
        self.key = key
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.augment_fallbacks = 0  # counted in this process (a loader worker has its own)
        self._warn_once = WarnOnce()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Letterboxed ``uint8 [S, S, 3]`` image, class index and ``float32 [4]`` input-pixel
        box of item ``index`` (the next decodable item when its file is bad), no augmentation."""
        found = decoded_from(self.items, index, _image_path, self._warn_once)
        for (image_rec, label, box), image in found:
            loaded = self._fit(image_rec, box, image)
            if loaded is not None:
                return loaded[0], label, loaded[1]
        raise DataError(f"{self.key}: no image of {self.annotation_file} could be used")

    def _fit(self, image_rec: CocoImage, box: Any, image: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray] | None:
        """The letterboxed image and its input-pixel box; None (reported) when the box lies
        outside the decoded image."""
        height, width = image.shape[:2]
        declared = (image_rec.width, image_rec.height)
        if None not in declared and declared != (width, height):
            self._warn_once(image_rec.path, f"{self.annotation_file}: {image_rec.file_name} is "
                            f"{width}x{height} but the file says {image_rec.width}x"
                            f"{image_rec.height} (EXIF rotation?); its box may be off")
        clipped = np.clip(np.asarray(box, np.float64), 0, [width, height, width, height])
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            self._warn_once(image_rec.path, f"{self.annotation_file}: the box of "
                            f"{image_rec.file_name} lies outside the image; skipping it")
            return None
        boxed, lb = letterbox(image, self.image_size)
        s = float(self.image_size)
        return boxed, np.clip(lb.boxes_to_input(clipped[None])[0], 0.0, s)

    def _load_or_leave_out(self, index: int) -> tuple[np.ndarray, int, np.ndarray] | Unreadable:
        """:meth:`load` of evaluation: item ``index`` itself, or why it cannot be used."""
        image_rec, label, box = self.items[index]
        try:
            image = load_image(image_rec.path)
        except ImageError as err:
            self._warn_once(image_rec.path, f"leaving out a bad image: {err}")
            return Unreadable(image_rec.path, str(err))
        loaded = self._fit(image_rec, box, image)
        if loaded is None:
            return Unreadable(image_rec.path, "its box lies outside the image")
        return loaded[0], label, loaded[1]

    def __getitem__(self, key: int | tuple[int, int]
                    ) -> tuple[torch.Tensor, dict[str, Any]] | Unreadable:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        loaded = self._load_or_leave_out(index) if self.leave_out_unreadable else self.load(index)
        if isinstance(loaded, Unreadable):
            return loaded
        image, label, box = loaded
        if self.augment is not None:
            image, box = self._augment(image, box, sample_seed(self.seed, epoch, index))
        return to_chw_tensor(image), {"label": label, "box": torch.from_numpy(box)}

    def _augment(self, image: np.ndarray, box: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        for attempt in range(AUGMENT_TRIES):
            self.augment.set_random_seed((seed + attempt) % 2**32)
            out = self.augment(image=image, bboxes=box[None], labels=[0])
            if len(out["bboxes"]) == 1:
                return out["image"], np.asarray(out["bboxes"][0], dtype=np.float32)
        self.augment_fallbacks += 1
        return image, box


def _image_path(item: tuple[CocoImage, int, np.ndarray]) -> Path:
    return item[0].path


def collate_single_object(batch: list[tuple[torch.Tensor, dict[str, Any]]]
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Items -> ``(images uint8 [N, 3, S, S], {"labels": int64 [N], "boxes": float32 [N, 4]})``."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), {
        "labels": torch.as_tensor([t["label"] for t in targets], dtype=torch.int64),
        "boxes": torch.stack([torch.as_tensor(t["box"], dtype=torch.float32) for t in targets]),
    }


def coco_split(cfg: Any, split: str) -> tuple[str | YoloSplit, str]:
    """``(annotations file, images folder)`` of ``data.<split>`` in a config; for a YOLO
    set (``data.yolo`` or ``data.<split>: {yolo: FILE}``), ``(YoloSplit, data.yaml)``."""
    value = getattr(cfg.data, split)
    key = f"data.{split}"
    yolo = yolo_source(value, getattr(cfg.data, "yolo", None), split)
    if yolo is not None:
        return yolo, str(yolo.data_yaml)
    if not isinstance(value, dict) or set(value) != {"images", "annotations"}:
        raise DataError(f"{key}: expected {{images: DIR, annotations: FILE}} for a COCO json task, "
                        f"got {value!r}; e.g. --set {key}='{{images: DIR/images, annotations: "
                        "DIR/annotations.json}'")
    return value["annotations"], value["images"]


def build_single_object(cfg: Any, split: str, train: bool, policy: MultiObjectPolicy,
                        class_names: list[str] | None = None, log: Any = print) -> SingleObjectDataset:
    """The single-object set of ``data.<split>`` (training augmentation if ``train``);
    prints its :class:`SelectionReport` through ``log``."""
    annotations, images = coco_split(cfg, split)
    augment = build_augment(cfg.data.augment, with_boxes=True) if train else None
    if augment is not None and cfg.data.augment.rotate > 0:
        warnings.warn("data.augment.rotate > 0: a rotated box becomes the box around the rotated "
                      "box, looser than the object; set data.augment.rotate: 0 for tight boxes",
                      stacklevel=2)
    dataset = SingleObjectDataset(annotations, images, f"data.{split}", cfg.data.image_size,
                                  policy, augment, class_names, cfg.train.seed,
                                  leave_out_unreadable=not train)
    log(f"data.{split}: {annotations}: {dataset.report.line()}")
    return dataset
