"""One bad image never stops a training run: it is reported once and the next good one is used.

Every data set that reads image files (ImageFolder, single-object and multi-object COCO)
walks its items from the one asked for, wrapping around, through :func:`decoded_from`,
and reports each file's problems through one :class:`WarnOnce`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

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
