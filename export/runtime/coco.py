"""``coco_results.json`` for box and mask tasks, built from ``predictions.jsonl``.

Building it from the JSONL file (not from memory) makes it complete after ``--resume``.
The COCO results format: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}`` (plus ``"segmentation"`` for segment: compressed COCO RLE, counts as text), in
original-image pixels; ``COCO.loadRes`` and ``COCOeval(..., "segm")`` read it as it is.

- ``category_id``: the model's ``category_ids[label]`` when the exporter recorded the data
  set's COCO ids in the metadata (kept on the way out), else the label index.
- ``image_id``: the file name's stem when it is a number (COCO's ``000000000139.jpg``),
  else the source path; map it through your annotation file before running COCOeval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vision_tasks.coco_results import category_id, coco_result
from vision_tasks.contract import ModelMetadata
from vision_tasks.fileio import atomic_write_text


def image_id(source: str) -> int | str:
    stem = Path(source).stem
    return int(stem) if stem.isdigit() else source


def coco_entries(line: dict[str, Any], meta: ModelMetadata) -> list[dict[str, Any]]:
    """COCO result entries of one ``predictions.jsonl`` line."""
    # boxes as precise as the line's (2 decimals); masks of older runs (after --resume) may
    # hold list counts, written compressed like the others
    return [coco_result(image_id(line["source"]), det["box"], det["score"],
                        category_id(det["label"], meta.category_ids), det.get("mask"), decimals=2)
            for det in line.get("detections", [])]


def write_coco_results(predictions_jsonl: Path, out: Path, meta: ModelMetadata,
                       head: str | None = None) -> int:
    """Write ``out`` from every complete line of ``predictions_jsonl``; returns the entries.
    ``head``: of a multi-head model, the box head whose results to take (``meta`` is that
    head's metadata; the line holds its fields under its name).

    A damaged line, or one whose fields have another shape, is skipped, as :func:`vision_tasks.export.runtime.batch.read_done` does (``--resume``
    predicts its image again, which gives it a good line).
    """
    entries: list[dict[str, Any]] = []
    with open(predictions_jsonl, encoding="utf-8") as f:
        for text in f:
            if not text.endswith("\n"):
                continue
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict) and isinstance(line.get("source"), str):
                try:
                    if head is not None:
                        line = {"source": line["source"], **line.get(head, {})}
                    entries += coco_entries(line, meta)
                except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                    continue  # a line of another shape (edited, another tool's): skipped too
    atomic_write_text(out, json.dumps(entries) + "\n")
    return len(entries)
