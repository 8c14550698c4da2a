"""ImageFolder data sets: ``root/<class name>/<image>``, one class per folder."""

from __future__ import annotations

from operator import itemgetter
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vision_tasks.data.bad_images import Unreadable, WarnOnce, decoded_from
from vision_tasks.data.transforms import build_augment, sample_seed, to_chw_tensor
from vision_tasks.errors import DataError
from vision_tasks.imaging import IMAGE_SUFFIXES, ImageError, letterbox, load_image


def scan_imagefolder(root: Path, key: str) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (image path, class index) pairs."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"{key}: folder {root} {what}; point it at an ImageFolder "
                        "(root/<class>/<image>) or make one with `vision-tasks data synth classify DIR`")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{key}: {root} has no class folders; expected {root}/<class name>/<image>")
    items = []
    for index, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                items.append((path, index))
    if not items:
        raise DataError(f"{key}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return classes, items


class ImageFolderDataset(Dataset):
    """Items: ``(image uint8 [3, S, S] letterboxed, class index)``.

    A file that fails to decode is reported once and replaced by the next good one,
    so one bad image never stops a training run; with ``leave_out_unreadable`` (evaluation)
    its item is an :class:`~vision_tasks.data.bad_images.Unreadable` instead, left out of
    the batch (:mod:`vision_tasks.data.bad_images`).
    """

    def __init__(self, root: str | Path, key: str, image_size: int, augment=None,
                 class_names: list[str] | None = None, seed: int = 0,
                 leave_out_unreadable: bool = False) -> None:
        self.root = Path(root)
        classes, items = scan_imagefolder(self.root, key)
        if class_names is not None:
            extra = sorted(set(classes) - set(class_names))
            if extra:
                raise DataError(f"{key}: {self.root} has classes the model does not know: {extra}; "
                                f"known classes: {class_names}")
            remap = {i: class_names.index(name) for i, name in enumerate(classes)}
            items = [(path, remap[label]) for path, label in items]
            classes = list(class_names)
        self.class_names = classes
        self.category_ids: list[int | None] | None = None  # ImageFolder classes have no ids
        self.items = items
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.leave_out_unreadable = leave_out_unreadable
        self.missing: list[Path] = []  # a folder scan lists only files that exist
        self.bad = WarnOnce()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int] | Unreadable:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if self.leave_out_unreadable:
            path, label = self.items[index]
            try:
                found = (path, label), load_image(path)
            except ImageError as err:
                self.bad(path, f"leaving out a bad image: {err}")
                return Unreadable(path, str(err))
        else:
            found = next(decoded_from(self.items, index, itemgetter(0), self.bad), None)
        if found is None:
            raise DataError(f"{self.root}: no image could be decoded")
        (_, label), image = found
        image, _ = letterbox(image, self.image_size)
        if self.augment is not None:
            self.augment.set_random_seed(sample_seed(self.seed, epoch, index))
            image = self.augment(image=image)["image"]
        return to_chw_tensor(image), label


def build_imagefolder(cfg, split: str, train: bool, class_names: list[str] | None = None):
    """The ImageFolder set of ``data.<split>`` with the training augmentation if ``train``."""
    path = getattr(cfg.data, split)
    key = f"data.{split}"
    if not isinstance(path, str):
        raise DataError(f"{key}: expected an ImageFolder directory, got {path!r}")
    augment = build_augment(cfg.data.augment) if train else None
    return ImageFolderDataset(path, key, cfg.data.image_size, augment, class_names, cfg.train.seed,
                              leave_out_unreadable=not train)
