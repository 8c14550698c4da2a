"""The Ultralytics (YOLO) data layout, read into the same :class:`CocoIndex` as COCO json.

A set is a ``data.yaml``::

    path: .                  # the data root, relative to the yaml's folder (default: that folder)
    train: images/train      # a folder of images, a .txt list of image paths, or a list of them
    val: images/val
    names: {0: person, 1: bicycle}   # or a list

and, for every image ``.../images/.../x.jpg``, a label file ``.../labels/.../x.txt`` (no file:
no objects) with one object per line, normalised to the image's width and height:
``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 ...`` (a polygon, at least 3 points).

The config names it as ``data: {yolo: path/to/data.yaml}`` (both splits) or
``data.<split>: {yolo: path/to/data.yaml}`` (that split). Bad labels never stop a run: a line
with a value outside 0..1, an odd number of polygon coordinates, a class id past ``names``
or text that is not numbers is skipped, a label file without its image and a listed image
that is missing or leaves the data root are left out; each is counted and kept as
``file:line: problem`` in :attr:`YoloIndex.problems`, and the data set's summary line
names the count and the first few. File names never leave the data root (checked as COCO
file names are, :func:`vision_tasks.data.coco.safe_image_path`).

Conventions as :mod:`vision_tasks.data.coco`: class index = YOLO class id, category id =
class id + 1 (what :mod:`vision_tasks.data.yolo_convert` writes to COCO json); boxes
``(x1, y1, x2, y2)`` in image pixels (a polygon's box is its extent); polygons become one
COCO polygon ``[[x1, y1, ...]]`` in pixels; image ids are the file stems when all are
distinct integers (as COCO's own file names), else 1.. in path order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError

from vision_tasks.data.coco import CocoAnnotation, CocoImage, CocoIndex, read_coco, safe_image_path
from vision_tasks.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SHOWN_PROBLEMS = 3  # problems named on the summary line (all are in YoloIndex.problems)


@dataclass(frozen=True)
class YoloSplit:
    """One split (``train`` or ``val``) of a ``data.yaml``; where a COCO task would take an
    annotation file."""

    data_yaml: Path
    split: str

    def __str__(self) -> str:
        return f"{self.data_yaml} ({self.split})"


@dataclass
class YoloIndex(CocoIndex):
    """A :class:`CocoIndex` read from a YOLO set, with the problems met on the way
    (``"labels/train/a.txt:3: class 7 past names (5 classes)"``), each counted once."""

    problems: list[str] = field(default_factory=list)

    def box_notes(self, sizes: bool = True) -> str:
        notes = [super().box_notes(sizes)] if self.annotations or not self.problems else []
        if self.problems:
            shown = "; ".join(self.problems[:SHOWN_PROBLEMS])
            more = len(self.problems) - SHOWN_PROBLEMS
            notes.append(f"{len(self.problems)} bad label{'s' * (len(self.problems) != 1)} "
                         f"left out ({shown}{f'; and {more} more' if more > 0 else ''})")
        return ", ".join(n for n in notes if n)


def yolo_source(value: Any, yolo: Any, split: str) -> YoloSplit | None:
    """The YOLO split a config names for ``data.<split>`` (``value``) given ``data.yolo``
    (``yolo``), or None when it names none."""
    if isinstance(value, dict) and set(value) == {"yolo"}:
        yolo = value["yolo"]
    elif not yolo:
        return None
    if not isinstance(yolo, str | Path) or not str(yolo):
        raise DataError(f"data.{split}: yolo: expected the path of a data.yaml, got {yolo!r}")
    return YoloSplit(Path(yolo), split)


def read_index(annotations: str | Path | YoloSplit, images: str | Path, key: str) -> CocoIndex:
    """:func:`read_yolo` for a :class:`YoloSplit`, else :func:`read_coco`."""
    if isinstance(annotations, YoloSplit):
        return read_yolo(annotations, key)
    return read_coco(annotations, images, key)


def load_data_yaml(path: Path, key: str = "data.yolo") -> tuple[dict[str, Any], Path, list[str]]:
    """``(the yaml's mapping, the data root, class names)``; DataError on a bad file."""
    if not path.is_file():
        raise DataError(f"{key}: {path} not found; point it at a YOLO data.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable YAML file ({type(err).__name__}); fix the "
                        "data.yaml") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with path, train, val and names")
    names = data.get("names")
    if isinstance(names, dict) and all(isinstance(k, int) for k in names) and names:
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{path}: names: class ids must be 0..{len(names) - 1}, got "
                            f"{sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: names: expected a list of class names or {{0: name, ...}}, "
                        f"got {names!r}")
    root = data.get("path") or "."
    if not isinstance(root, str):
        raise DataError(f"{path}: path: expected a folder, got {root!r}")
    root = Path(root) if Path(root).is_absolute() else path.parent / root
    if not root.is_dir():
        raise DataError(f"{path}: path: folder {root} not found")
    return data, root, [str(n) for n in names]


def label_path(image_rel: str) -> str:
    """The label file of an image, both relative to the data root: the last ``images``
    folder of the path becomes ``labels`` and the suffix ``.txt`` (beside the image when the
    path has no ``images`` folder)."""
    parts = image_rel.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return str(Path("/".join(parts)).with_suffix(".txt"))


def read_yolo(source: YoloSplit, key: str = "data") -> YoloIndex:
    """Read one split of a YOLO set (module docstring) into a :class:`YoloIndex`.

    Raises:
        DataError: the yaml is missing or malformed, or names no such split (one line).
    """
    data, root, names = load_data_yaml(source.data_yaml, f"{key}.yolo")
    entries = data.get(source.split)
    if not entries:
        raise DataError(f"{source.data_yaml}: no '{source.split}' entry; add {source.split}: "
                        "a folder of images (relative to path)")
    problems: list[str] = []
    rels, label_dirs = _list_images(source, root, entries, problems)
    ids = _image_ids(rels)
    counts = {"degenerate": 0, "clipped": 0, "annotations": 0}
    images = []
    for rel, image_id in zip(rels, ids, strict=True):
        path = root / rel
        size = _image_size(path)
        if size is None:
            problems.append(f"{path}: cannot read the image's size; image left out")
            continue
        record = CocoImage(image_id, path, rel, *size)
        label = root / label_path(rel)
        if label.is_file():
            record.annotations = _read_labels(label, size, len(names), problems, counts)
        images.append(record)
    stems = {str(Path(label_path(rel)).with_suffix("")) for rel in rels}
    for folder in label_dirs:
        for txt in sorted((root / folder).rglob("*.txt")) if (root / folder).is_dir() else []:
            if str(txt.relative_to(root).with_suffix("")) not in stems:
                problems.append(f"{txt}: label file without its image; left out")
    return YoloIndex(source.data_yaml, root, names, [i + 1 for i in range(len(names))], images,
                     **counts, problems=problems)


def _list_images(source: YoloSplit, root: Path, entries: Any, problems: list[str]
                 ) -> tuple[list[str], list[str]]:
    """Image paths relative to ``root`` (sorted, de-duplicated) and the label folders of the
    image folders listed."""
    where = f"{source.data_yaml}: {source.split}"
    rels: set[str] = set()
    label_dirs = []
    for entry in entries if isinstance(entries, list) else [entries]:
        path = safe_image_path(root, entry, where)
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            rels.update(p.relative_to(root).as_posix() for p in path.rglob("*")
                        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            label_dirs.append(str(Path(label_path(rel + "/x")).parent))
        elif path.is_file() and path.suffix == ".txt":
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            for n, line in enumerate(lines, 1):
                name = line.strip()
                if not name:
                    continue
                name = name[2:] if name.startswith("./") else name
                try:
                    image = safe_image_path(root, name, f"{path}:{n}: image")
                except DataError as err:
                    problems.append(f"{err}; left out")
                    continue
                if image.is_file():
                    rels.add(image.relative_to(root).as_posix())
                else:
                    problems.append(f"{path}:{n}: image {name} not found; left out")
        else:
            raise DataError(f"{where}: {entry!r} is neither a folder of images nor a .txt list "
                            f"of them (under {root})")
    return sorted(rels), label_dirs


def _image_ids(rels: list[str]) -> list[int]:
    stems = [Path(r).stem for r in rels]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(rels) + 1))


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` as the image is shown (EXIF orientation applied), from its header."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _read_labels(label: Path, size: tuple[int, int], num_classes: int, problems: list[str],
                 counts: dict[str, int]) -> list[CocoAnnotation]:
    width, height = size
    try:
        lines = label.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        problems.append(f"{label}: cannot read ({err.strerror}); no objects taken")
        return []
    out = []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        counts["annotations"] += 1
        problem, cls, values = _parse_line(fields, num_classes)
        if problem:
            problems.append(f"{label}:{n}: {problem}; line left out")
            continue
        if len(values) == 4:
            cx, cy, w, h = values
            box = ((cx - w / 2) * width, (cy - h / 2) * height,
                   (cx + w / 2) * width, (cy + h / 2) * height)
            polygon = None
            area = w * width * h * height
        else:
            xs = [v * width for v in values[0::2]]
            ys = [v * height for v in values[1::2]]
            box = (min(xs), min(ys), max(xs), max(ys))
            polygon = [[c for xy in zip(xs, ys, strict=True) for c in xy]]
            area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
        clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], width), min(box[3], height))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            counts["degenerate"] += 1
            continue
        counts["clipped"] += clipped != box
        out.append(CocoAnnotation(box=clipped, category=cls, area=area, id=counts["annotations"],
                                  segmentation=polygon))
    return out


def _parse_line(fields: list[str], num_classes: int) -> tuple[str, int, list[float]]:
    """``(problem or "", class, values)`` of one label line's fields."""
    try:
        cls = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return f"not numbers: {' '.join(fields)[:60]!r}", 0, []
    if not 0 <= cls < num_classes:
        return f"class {cls} past names ({num_classes} classes)", 0, []
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        what = "an odd number of polygon coordinates" if len(values) % 2 else "too few values"
        return f"{what} ({len(values)}); expected cx cy w h or x1 y1 x2 y2 x3 y3 ...", 0, []
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        return f"value {bad[0]:g} outside 0..1 (coordinates are normalised)", 0, []
    return "", cls, values
