"""Bad images: one never stops a training run, and none changes a metric.

Every data set that reads image files (ImageFolder, single-object and multi-object COCO)
reports each file's problems through one :class:`WarnOnce`, and handles an unreadable
file by one of two rules:

- training (the default): the next good item stands in, found by :func:`decoded_from`
  (from the item asked for, wrapping around), so an epoch keeps its batches;
- evaluation (``leave_out_unreadable``, the sets built with ``train=False``): the item is an
  :class:`Unreadable` and :func:`collate_readable` leaves it out of its batch, so every
  image is scored at most once, under its own id, and the evaluation counts what it missed.

Files listed in an annotation file but absent from disk are left out when the set is built
(:func:`split_missing`), and counted on its summary line.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vision_tasks.imaging import ImageError, load_image

Item = TypeVar("Item")


class WarnOnce:
    """A warning per file, the first time that file has a problem (later ones are silent,
    so an epoch over a broken file does not repeat itself)."""

    def __init__(self) -> None:
        self.paths: set[Path] = set()

    def __call__(self, path: Path, message: str) -> None:
        if path not in self.paths:
            self.paths.add(path)
            warnings.warn(message, stacklevel=2)


def decoded_from(items: Sequence[Item], index: int, path_of: Callable[[Item], Path],
                 warn: WarnOnce) -> Iterator[tuple[Item, np.ndarray]]:
    """``(item, image)`` for item ``index`` and the items after it, wrapping around once,
    leaving out (and reporting through ``warn``) those whose file cannot be decoded.

    ``image`` is uint8 ``[H, W, 3]`` RGB as from :func:`~vision_tasks.imaging.load_image`;
    ``path_of(item)`` names the item's file. The caller takes the first item it can use
    and raises its own error when the iterator runs out.
    """
    for attempt in range(len(items)):
        item = items[(index + attempt) % len(items)]
        path = path_of(item)
        try:
            image = load_image(path)
        except ImageError as err:
            warn(path, f"skipping bad image: {err}")
            continue
        yield item, image


@dataclass(frozen=True)
class Unreadable:
    """An evaluation item whose image cannot be used: ``path`` and the one-line ``reason``."""

    path: Path
    reason: str


def collate_readable(collate: Callable[[list[Any]], Any], batch: list[Any]) -> Any:
    """``collate`` of the items of ``batch`` that are not :class:`Unreadable`; None when
    no item is left (the batch is skipped)."""
    items = [item for item in batch if not isinstance(item, Unreadable)]
    return collate(items) if items else None


def split_missing(items: Sequence[Item], path_of: Callable[[Item], Path]
                  ) -> tuple[list[Item], list[Path]]:
    """``(items whose file exists, paths of those whose file does not)``."""
    kept: list[Item] = []
    missing: list[Path] = []
    for item in items:
        path = path_of(item)
        if os.path.isfile(path):
            kept.append(item)
        else:
            missing.append(path)
    return kept, missing


def missing_note(missing: Sequence[Path]) -> str:
    """``"2 images not found on disk (left out; first: a.jpg)"``, or ""."""
    if not missing:
        return ""
    return (f"{len(missing)} image{'s' if len(missing) != 1 else ''} not found on disk "
            f"(left out; first: {missing[0]})")
