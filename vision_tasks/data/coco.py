"""COCO json annotation files, read into plain records that any box task can use.

:func:`read_coco` validates an ``annotations.json`` against its images folder and returns a
:class:`CocoIndex`. It is the shared reader of the COCO json tasks (localize today; detect
and segment can build on it): it checks structure and types once, with one-line errors
that name the annotation file, the entry and the fix, e.g.::

    data/train.json: images[3].file_name '../etc/passwd' leaves the images folder; file
    names must be relative paths inside data/images

Conventions:
- categories are sorted by their COCO ``id``; the contiguous class index of a category is
  its position in that order, and ``CocoIndex.category_ids[index]`` is its original id, so
  non-contiguous ids (COCO's 1..90 with gaps) survive the round trip;
- a box is ``(x1, y1, x2, y2)`` in original-image pixels (COCO's ``[x, y, w, h]`` converted);
- boxes that cannot be right are dropped or mended by one rule, and counted
  (:meth:`CocoIndex.box_notes`): a box of zero or negative width or height is dropped; where
  the image's ``width`` and ``height`` are given, a box with no part inside the image is
  dropped and a box partly outside is clipped to it;
- crowd regions (``iscrowd: 1``) are kept, flagged, for the task to ignore or use;
- ``segmentation`` is kept as written (polygons or RLE), unparsed.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vision_tasks.errors import DataError

__all__ = ["CocoAnnotation", "CocoImage", "CocoIndex", "read_coco", "safe_image_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class CocoAnnotation:
    """One annotation of an image.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in original-image pixels, ``x2 > x1`` and ``y2 > y1``.
        category: contiguous class index (see :attr:`CocoIndex.category_ids`).
        iscrowd: True for a crowd region (``iscrowd: 1``), which is not an object instance.
        area: the file's ``area`` (mask area in pixels), or the box area when absent.
        id: the annotation's ``id`` in the file (``-1`` when absent).
        segmentation: polygons or RLE as written, or None.
    """

    box: tuple[float, float, float, float]
    category: int
    iscrowd: bool = False
    area: float = 0.0
    id: int = -1
    segmentation: Any = None

    @property
    def box_area(self) -> float:
        """``(x2 - x1) * (y2 - y1)`` in square pixels."""
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


@dataclass
class CocoImage:
    """One entry of ``images`` with its annotations (in file order)."""

    id: int
    path: Path  # images root / file_name, checked to stay inside the root
    file_name: str
    width: int | None  # as written in the file (None when absent)
    height: int | None
    annotations: list[CocoAnnotation] = field(default_factory=list)


@dataclass
class CocoIndex:
    """A validated COCO annotation file.

    Attributes:
        annotation_file: the json file read.
        images_root: the folder ``file_name`` values are relative to.
        class_names: category names, contiguous index order (categories sorted by id).
        category_ids: original COCO id of each class index (same order as ``class_names``).
        images: every entry of ``images``, in file order.
        degenerate: annotations dropped because their box has no area (``w <= 0`` or ``h <= 0``).
        negative: of those, the ones with a negative width or height.
        outside: annotations dropped because their box lies wholly outside its image.
        clipped: annotations whose box reached outside its image, clipped to it.
        annotations: the entries of the file's ``annotations`` (kept or not).
    """

    annotation_file: Path
    images_root: Path
    class_names: list[str]
    category_ids: list[int]
    images: list[CocoImage]
    degenerate: int = 0
    negative: int = 0
    outside: int = 0
    clipped: int = 0
    annotations: int = 0

    def box_notes(self, sizes: bool = True) -> str:
        """What happened to boxes that could not be used as written, e.g. ``"3 boxes dropped
        (2 of zero size and 1 of negative size), 1 box wholly outside the image dropped, 3
        boxes clipped to the image"`` (without the first part unless ``sizes``); "" when
        nothing did. A file without any annotation says so."""
        if not self.annotations:
            return "the file has no annotations"
        notes = []
        zero = self.degenerate - self.negative
        if sizes and (zero or self.negative):
            sizes = [f"{n} of {kind} size" for n, kind in ((zero, "zero"), (self.negative, "negative"))
                     if n]
            notes.append(f"{_boxes(self.degenerate)} dropped ({' and '.join(sizes)})")
        if self.outside:
            notes.append(f"{_boxes(self.outside)} wholly outside the image dropped")
        if self.clipped:
            notes.append(f"{_boxes(self.clipped)} clipped to the image")
        return ", ".join(notes)

    def category_index(self, category_id: int) -> int:
        """Contiguous class index of an original COCO category id."""
        return self.category_ids.index(category_id)

    def map_to_model(self, class_names: list[str] | None,
                     key: str) -> tuple[list[int], list[str], list[int | None]]:
        """How this file's classes map onto a model's ``class_names`` (None: the file's own).

        Returns ``(remap, class_names, category_ids)``: ``remap[i]`` is the model index of the
        file's class ``i``; ``category_ids[j]`` is the original id of model class ``j`` (None
        for a model class this file lacks). A file class the model does not know is an error.
        """
        if class_names is None:
            return list(range(len(self.class_names))), list(self.class_names), list(self.category_ids)
        extra = sorted(set(self.class_names) - set(class_names))
        if extra:
            raise DataError(f"{key}: {self.annotation_file} has categories the model does "
                            f"not know: {extra}; known classes: {class_names}")
        ids = dict(zip(self.class_names, self.category_ids, strict=True))
        return ([class_names.index(name) for name in self.class_names], list(class_names),
                [ids.get(name) for name in class_names])


def safe_image_path(root: Path, file_name: Any, where: str) -> Path:
    """``root / file_name`` after checking that ``file_name`` cannot leave ``root``.

    Rejects non-strings, empty names, absolute paths, drive letters and ``..`` that climb
    above ``root`` (backslashes count as separators, as in files written on Windows).
    The check is lexical, so a symlinked images folder still works.
    """
    if not isinstance(file_name, str) or not file_name.strip():
        raise DataError(f"{where}: expected a non-empty string, got {file_name!r}")
    name = file_name.replace("\\", "/")
    norm = posixpath.normpath(name)
    if posixpath.isabs(name) or _DRIVE.match(name) or norm == ".." or norm.startswith("../") \
            or norm == ".":
        raise DataError(f"{where} {file_name!r} leaves the images folder; file names must be "
                        f"relative paths inside {root}")
    return root / norm


def read_coco(annotation_file: str | Path, images_root: str | Path, key: str = "data") -> CocoIndex:
    """Read and validate a COCO annotation file.

    Args:
        annotation_file: path of the ``.json`` file.
        images_root: folder that the images' ``file_name`` values are relative to.
        key: the config key that named the file, used in error messages (``data.train``).

    Raises:
        DataError: the file or folder is missing, the JSON is malformed, or an entry is
            invalid (one line naming the file, the entry and the fix).
    """
    path, root = Path(annotation_file), Path(images_root)
    data = _load_json(path, key)
    if not root.is_dir():
        raise DataError(f"{key}.images: folder {root} not found; point it at the folder that "
                        f"the file names in {path} are relative to")
    names, ids = _read_categories(data, path)
    images, by_id = _read_images(data, path, root)
    raw = data.get("annotations", [])
    if not isinstance(raw, list):
        raise DataError(f"{path}: 'annotations' must be a list, got {type(raw).__name__}")
    index_of = {cid: i for i, cid in enumerate(ids)}
    counts = {"degenerate": 0, "negative": 0, "outside": 0, "clipped": 0}
    for i, ann in enumerate(raw):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(f"{where}: expected an object, got {type(ann).__name__}")
        image = by_id.get(_require_int(ann, "image_id", where))
        if image is None:
            raise DataError(f"{where}: image_id {ann['image_id']} is not an id in 'images'")
        category = index_of.get(_require_int(ann, "category_id", where))
        if category is None:
            raise DataError(f"{where}: category_id {ann['category_id']} is not an id in 'categories'")
        box = _read_bbox(ann.get("bbox"), where)
        if box[2] <= box[0] or box[3] <= box[1]:
            counts["degenerate"] += 1
            counts["negative"] += box[2] < box[0] or box[3] < box[1]
            continue
        box, fate = _fit_to_image(box, image.width, image.height)
        if fate == "outside":
            counts["outside"] += 1
            continue
        counts["clipped"] += fate == "clipped"
        area = ann.get("area")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1, True, False):
            raise DataError(f"{where}.iscrowd: expected 0 or 1, got {crowd!r}")
        image.annotations.append(CocoAnnotation(
            box=box, category=category, iscrowd=bool(crowd),
            area=float(area) if _is_number(area) else (box[2] - box[0]) * (box[3] - box[1]),
            id=ann["id"] if isinstance(ann.get("id"), int) else -1,
            segmentation=ann.get("segmentation")))
    return CocoIndex(path, root, names, ids, images, **counts, annotations=len(raw))


def _load_json(path: Path, key: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found; check {key}.annotations (make a "
                        "synthetic set with `vision-tasks data synth localize DIR`)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno} column {err.colno} "
                        f"({err.msg}); fix or re-export the annotation file") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise DataError(f"{path}: cannot read annotation file ({reason}); check that it is a "
                        "readable UTF-8 COCO json file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO object with 'images', 'annotations' and "
                        f"'categories', got a JSON {type(data).__name__}")
    for name in ("images", "categories"):
        if not isinstance(data.get(name), list):
            raise DataError(f"{path}: no '{name}' list; is this a COCO instances file?")
    return data


def _read_categories(data: dict[str, Any], path: Path) -> tuple[list[str], list[int]]:
    seen_names: set[str] = set()
    pairs: list[tuple[int, str]] = []
    for i, cat in enumerate(data["categories"]):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict):
            raise DataError(f"{where}: expected an object, got {type(cat).__name__}")
        cid = _require_int(cat, "id", where)
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}.name: expected a non-empty string, got {name!r}")
        if name in seen_names:
            raise DataError(f"{where}: category name '{name}' appears twice; names must be unique")
        if any(cid == other for other, _ in pairs):
            raise DataError(f"{where}: category id {cid} appears twice; ids must be unique")
        seen_names.add(name)
        pairs.append((cid, name))
    if not pairs:
        raise DataError(f"{path}: 'categories' is empty; a COCO file needs at least one category")
    pairs.sort()
    return [name for _, name in pairs], [cid for cid, _ in pairs]


def _read_images(data: dict[str, Any], path: Path,
                 root: Path) -> tuple[list[CocoImage], dict[int, CocoImage]]:
    images: list[CocoImage] = []
    by_id: dict[int, CocoImage] = {}
    for i, entry in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
        image_id = _require_int(entry, "id", where)
        if image_id in by_id:
            raise DataError(f"{where}: image id {image_id} appears twice; ids must be unique")
        file_path = safe_image_path(root, entry.get("file_name"), f"{where}.file_name")
        size = [entry.get(k) for k in ("width", "height")]
        width, height = (int(v) if isinstance(v, int) and v > 0 else None for v in size)
        image = CocoImage(image_id, file_path, str(entry["file_name"]), width, height)
        images.append(image)
        by_id[image_id] = image
    return images, by_id


def _read_bbox(bbox: Any, where: str) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` -> ``(x1, y1, x2, y2)`` (``x2 <= x1`` when ``w`` is not positive)."""
    if not (isinstance(bbox, list | tuple) and len(bbox) == 4 and all(map(_is_number, bbox))):
        raise DataError(f"{where}.bbox: expected [x, y, width, height] (4 finite numbers), "
                        f"got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def _fit_to_image(box: tuple[float, float, float, float], width: int | None,
                  height: int | None) -> tuple[tuple[float, float, float, float], str]:
    """``box`` clipped to a ``width x height`` image, and its fate: ``"inside"``,
    ``"clipped"`` or ``"outside"`` (no area left). An image of unknown size keeps the box."""
    if width is None or height is None:
        return box, "inside"
    x1, y1, x2, y2 = box
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
               min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return box, "outside"
    return clipped, "inside" if clipped == box else "clipped"


def _boxes(n: int) -> str:
    return f"{n} box{'es' if n != 1 else ''}"


def _require_int(entry: dict[str, Any], name: str, where: str) -> int:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}.{name}: expected an integer, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
