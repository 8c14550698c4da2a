"""``vision-tasks data convert``: COCO json <-> the YOLO layout (:mod:`vision_tasks.data.yolo`).

COCO side: the layout ``data synth`` writes, ``<split>/images/`` + ``<split>/annotations.json``
for each split folder that has them. YOLO side: ``data.yaml`` (``path: .``, ``train``, ``val``,
``names``), ``images/<split>/``, ``labels/<split>/*.txt``. Images are copied (hard-linked where
the file system allows). Coordinates are written with 9 decimals (normalised), so a box
survives the round trip within 1e-3 px on any image under 100 000 px.

COCO -> YOLO: classes are the categories sorted by id (class id = position); crowd regions
and boxes that :func:`vision_tasks.data.coco.read_coco` drops are left out (counted);
``segments=True`` writes each object's outline as a polygon (polygons as written, the
largest part of a multi-part object; RLE masks traced along pixel edges), else its box.
YOLO -> COCO: what :func:`vision_tasks.data.yolo.read_yolo` reads (bad labels left out and
listed), category id = class id + 1, polygons as COCO polygons.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

from vision_tasks.data.coco import CocoIndex, read_coco
from vision_tasks.data.coco_detection import decode_segmentation
from vision_tasks.data.yolo import YoloSplit, label_path, read_yolo
from vision_tasks.errors import DataError
from vision_tasks.fileio import atomic_write_text

SPLITS = ("train", "val", "test")


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if os.path.samefile(src, dst):  # OUT laid over the source: the image is already there
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def coco_to_yolo(src: str | Path, out: str | Path, segments: bool = False) -> dict:
    """Write the COCO splits under ``src`` as a YOLO set in ``out``; returns
    ``{"data_yaml", "splits": {split: {"images", "objects", "left_out"}}}``."""
    src, out = Path(src), Path(out)
    splits = [s for s in SPLITS if (src / s / "annotations.json").is_file()]
    if not src.exists():
        raise DataError(f"{src}: not found; pass a YOLO data.yaml or a folder of COCO splits")
    if not splits:
        raise DataError(f"{src}: no <split>/annotations.json (train, val, test); expected the "
                        "layout `vision-tasks data synth detect` writes")
    names: list[str] | None = None
    summary: dict = {"data_yaml": str(out / "data.yaml"), "splits": {}}
    for split in splits:
        index = read_coco(src / split / "annotations.json", src / split / "images", f"{src}/{split}")
        if names is not None and index.class_names != names:
            raise DataError(f"{src}/{split}: categories differ from the other splits' ({names})")
        names = index.class_names
        objects = left_out = 0
        for image in index.images:
            rel = Path(image.file_name.replace("\\", "/"))
            if not image.path.is_file():
                left_out += 1
                continue
            _place(image.path, out / "images" / split / rel)
            width, height = _size(image)
            lines = []
            for a in image.annotations:
                if a.iscrowd:
                    left_out += 1
                    continue
                line = _polygon_line(a, width, height) if segments else None
                lines.append(line or _box_line(a.category, a.box, width, height))
            objects += len(lines)
            label = out / label_path(f"images/{split}/{rel.as_posix()}")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{line}\n" for line in lines))
        summary["splits"][split] = {"images": len(index.images), "objects": objects,
                                    "left_out": left_out}
    data = {"path": ".", **{s: f"images/{s}" for s in splits},
            "names": dict(enumerate(names or []))}
    atomic_write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return summary


def yolo_to_coco(data_yaml: str | Path, out: str | Path) -> dict:
    """Write every split of a YOLO ``data.yaml`` as ``out/<split>/images`` +
    ``annotations.json``; returns ``{"splits": {split: {"images", "objects",
    "problems": [...]}}}`` (the bad labels left out, with file and line)."""
    data_yaml, out = Path(data_yaml), Path(out)
    try:
        loaded = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) if data_yaml.is_file() else {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{data_yaml}: not a readable YAML file ({type(err).__name__}); fix the "
                        "data.yaml") from None
    splits = [s for s in SPLITS if isinstance(loaded, dict) and loaded.get(s)]
    if not splits:
        raise DataError(f"{data_yaml}: no train, val or test entry (or no such file)")
    summary: dict = {"splits": {}}
    for split in splits:
        index = read_yolo(YoloSplit(data_yaml, split), f"{data_yaml}")
        images, annotations = [], []
        for image in index.images:
            rel = Path(image.path).relative_to(index.images_root).as_posix()
            file_name = rel.split("/", 2)[-1] if rel.startswith(f"images/{split}/") else rel
            _place(image.path, out / split / "images" / file_name)
            images.append({"id": image.id, "file_name": file_name, "width": image.width,
                           "height": image.height})
            for a in image.annotations:
                x1, y1, x2, y2 = a.box
                entry = {"id": len(annotations) + 1, "image_id": image.id,
                         "category_id": index.category_ids[a.category],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": a.area, "iscrowd": 0}
                if a.segmentation:
                    entry["segmentation"] = a.segmentation
                annotations.append(entry)
        categories = [{"id": cid, "name": name} for cid, name in
                      zip(index.category_ids, index.class_names, strict=True)]
        atomic_write_text(out / split / "annotations.json", json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
        summary["splits"][split] = {"images": len(images), "objects": len(annotations),
                                    "problems": index.problems}
    return summary


def _size(image) -> tuple[int, int]:
    if image.width and image.height:
        return image.width, image.height
    h, w = cv2.imread(str(image.path), cv2.IMREAD_UNCHANGED).shape[:2]
    return w, h


def _box_line(cls: int, box, width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{cls} " + " ".join(f"{v:.9f}" for v in values)


def _polygon_line(a, width: int, height: int) -> str | None:
    """The object's outline as a YOLO polygon line, or None (no usable segmentation)."""
    seg = a.segmentation
    if isinstance(seg, list):
        parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        points = np.asarray(max(parts, key=len), np.float64).reshape(-1, 2) if parts else None
    elif isinstance(seg, dict):
        points = _mask_outline(decode_segmentation(seg, height, width))
    else:
        points = None
    if points is None or len(points) < 3:
        return None
    points = np.clip(points / (width, height), 0.0, 1.0)
    return f"{a.category} " + " ".join(f"{v:.9f}" for v in points.ravel())


def _mask_outline(mask: np.ndarray) -> np.ndarray | None:
    """Corners ``[K, 2]`` (pixel-edge coordinates) of the outer outline of the largest part
    of a bool ``[H, W]`` mask, traced on the 2x grid: its extent is the mask's tight box;
    staircase steps may be cut diagonally."""
    big = np.kron(np.pad(mask, 1).astype(np.uint8), np.ones((2, 2), np.uint8))
    big = np.pad(big, 1)  # the 2x grid shifted by half a pixel: edges fall on integers
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    # A contour point is a 2x pixel: column 2c+3 is the left half of mask column c (its left
    # edge is c), 2c+4 the right half (its right edge is c+1); the same for rows.
    c = max(contours, key=cv2.contourArea).reshape(-1, 2)
    return ((c - 2) // 2).astype(np.float64)


def read_any(index_source: Path) -> CocoIndex:  # pragma: no cover - convenience for tools
    """A COCO ``annotations.json`` or a YOLO ``data.yaml`` (its train split) as a CocoIndex."""
    if index_source.suffix in (".yaml", ".yml"):
        return read_yolo(YoloSplit(index_source, "train"))
    return read_coco(index_source, index_source.parent / "images")
