"""One detection -> one entry of a COCO results file, for evaluation and for ``predict`` alike.

The COCO results format (what ``COCO.loadRes`` and ``COCOeval`` read): a list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, plus ``"segmentation"``
(compressed RLE, counts as text) for masks, in original-image pixels with the data set's
own category ids. Training-time evaluation (:mod:`vision_tasks.metrics.coco_eval`) and the
runtime's ``coco_results.json`` (:mod:`vision_tasks.export.runtime.coco`) both build their
entries here, so the two files are written the same way.

Imports :mod:`vision_tasks.masks` only (numpy, OpenCV; never torch), so the torch-free
runtime can embed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vision_tasks.masks import compress_rle

__all__ = ["category_id", "coco_result"]


def category_id(label: int, category_ids: Sequence[int | None] | None) -> int | None:
    """The data set's category id of model class ``label``: ``category_ids[label]`` when the
    ids are known (None there: a class with no id, to be left out), else ``label`` itself."""
    if not category_ids:
        return int(label)
    cid = category_ids[int(label)]
    return None if cid is None else int(cid)


def coco_result(image_id: int | str, box: Sequence[float], score: float, category: int,
                segmentation: dict[str, Any] | None = None,
                decimals: int | None = None) -> dict[str, Any]:
    """One COCO result entry.

    Args:
        image_id: the image's id in the results file.
        box: ``(x1, y1, x2, y2)`` in original-image pixels.
        score: the detection's confidence.
        category: the data set's category id (see :func:`category_id`).
        segmentation: a COCO RLE over the original image (counts a list, ``bytes`` or
            ``str``); written compressed, counts as text.
        decimals: round ``bbox`` to this many decimals (None: as computed).

    Returns:
        ``{"image_id", "category_id", "bbox": [x1, y1, x2 - x1, y2 - y1], "score"}`` (and
        ``"segmentation"``).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    bbox = [x1, y1, x2 - x1, y2 - y1]
    if decimals is not None:
        bbox = [round(v, decimals) for v in bbox]
    entry = {"image_id": image_id, "category_id": int(category), "bbox": bbox,
             "score": float(score)}
    if segmentation is not None:
        entry["segmentation"] = compress_rle(segmentation)
    return entry
