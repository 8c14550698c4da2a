"""Deterministic synthetic shapes: one generator, four tasks, two on-disk layouts.

Every image comes from its own ``np.random.default_rng([seed, split_id, index])``
(split_id 0 = train, 1 = val), so a data set is byte-identical for the same arguments and
independent of the order in which images are generated.

Conventions: images are uint8 RGB ``[H, W, 3]``; masks are bool ``[H, W]``; boxes are
``(x1, y1, x2, y2)`` floats in pixel-edge coordinates, where pixel (row r, col c) covers
``[c, c + 1) x [r, r + 1)``, so ``x2 = max_col + 1`` and ``y2 = max_row + 1``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vision_tasks.fileio import atomic_write_text

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SPLITS: tuple[str, ...] = ("train", "val")  # index = split_id

MIN_CONTRAST = 60.0  # mean abs RGB difference between a fill and its surroundings
MIN_VISIBLE_FRACTION = 0.2
MIN_VISIBLE_PIXELS = 16
_SHIFT = 4  # cv2 fixed-point bits: vertices are rasterised with 1/16 pixel precision
_PLACEMENT_TRIES = 20
_COLOUR_TRIES = 30


@dataclass
class SynthObject:
    """One visible object of a rendered scene.

    Attributes:
        label: class index into the style's class names (``SHAPE_NAMES`` here).
        box: ``(x1, y1, x2, y2)`` in pixels, tight around ``mask``; x2/y2 exclusive.
        mask: bool ``[H, W]``, the object's visible pixels only (after occlusion).
    """

    label: int
    box: tuple[float, float, float, float]
    mask: np.ndarray


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``(x1, y1, x2, y2)`` box of a non-empty bool ``[H, W]`` mask, x2/y2 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask_to_box: mask is empty")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def visible_masks(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    """What remains of each bool ``[H, W]`` mask after all later masks are painted over it."""
    out: list[np.ndarray] = [np.empty(0, bool)] * len(full_masks)
    covered = np.zeros(full_masks[0].shape, bool) if full_masks else None
    for i in range(len(full_masks) - 1, -1, -1):
        out[i] = full_masks[i] & ~covered
        covered |= full_masks[i]
    return out


def _shape_mask(label: int, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Rasterise one shape (no anti-aliasing) inside the circle of radius ``r`` at (cx, cy).

    ``cx, cy`` follow cv2's convention (pixel centres at integer coordinates); ``angle`` is
    in radians. Returns bool ``[size, size]``.
    """
    canvas = np.zeros((size, size), np.uint8)
    scale = 1 << _SHIFT
    name = SHAPE_NAMES[label]
    if name == "circle":
        centre = (round(cx * scale), round(cy * scale))
        cv2.circle(canvas, centre, round(r * scale), 1, -1, cv2.LINE_8, _SHIFT)
        return canvas.astype(bool)
    if name == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif name == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
    else:  # cross: a plus sign whose arm tips' corners touch the unit circle
        w = 0.33
        arm = 1.0 / np.hypot(1.0, w)
        w *= arm
        quarter = np.array([(w, -arm), (w, -w), (arm, -w)])
        turn = np.array([[0.0, 1.0], [-1.0, 0.0]])  # row vectors: (x, y) -> (-y, x)
        pts = np.concatenate([quarter @ np.linalg.matrix_power(turn, k) for k in range(4)])
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]]) * r + (cx, cy)
    cv2.fillPoly(canvas, [np.round(pts * scale).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return canvas.astype(bool)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random two-colour linear gradient: (smooth float ``[S, S, 3]``, noisy uint8)."""
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(size, dtype=np.float32)
    proj = ramp[None, :] * np.cos(angle) + ramp[:, None] * np.sin(angle)
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    smooth = c0 + t[..., None] * (c1 - c0)
    noisy = smooth + 4.0 * rng.standard_normal(smooth.shape, dtype=np.float32)
    return smooth, np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _min_contrast(colours: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Smallest mean abs RGB difference of each colour ``[M, 3]`` to any pixel ``[K, 3]``."""
    return np.abs(colours[:, None, :] - pixels[None, :, :]).mean(axis=2).min(axis=1)


def _pick_colour(
    rng: np.random.Generator, local_bg: np.ndarray, others: list[np.ndarray]
) -> np.ndarray:
    """Fill colour whose mean abs RGB difference to every pixel of ``local_bg`` [K, 3]
    (and, where possible, to the earlier objects' fills) is at least ``MIN_CONTRAST``."""
    local_bg = local_bg[:: max(1, len(local_bg) // 512)]  # a smooth gradient: samples suffice
    candidates = rng.integers(0, 256, (_COLOUR_TRIES, 3)).astype(np.float32)
    bg_ok = _min_contrast(candidates, local_bg) >= MIN_CONTRAST
    if others:
        obj_contrast = _min_contrast(candidates, np.stack(others))
        both = np.flatnonzero(bg_ok & (obj_contrast >= MIN_CONTRAST))
        if both.size:
            return candidates[both[0]]
        if bg_ok.any():
            return candidates[int(np.argmax(np.where(bg_ok, obj_contrast, -1.0)))]
    elif bg_ok.any():
        return candidates[int(np.argmax(bg_ok))]
    corners = np.array([[(i >> k & 1) * 255.0 for k in range(3)] for i in range(8)], np.float32)
    return corners[int(np.argmax(_min_contrast(corners, local_bg)))]


def render_scene(
    rng: np.random.Generator, size: int, num_objects: int, occlusion: bool = True
) -> tuple[np.ndarray, list[SynthObject]]:
    """Render one scene of random shapes on a smooth gradient background.

    Objects are painted in order, later ones over earlier ones. One object spans 35-80 % of
    the image side, several 15-45 % each. Objects whose visible area is below 20 % of their
    full area or below 16 pixels are dropped and not painted. With ``occlusion=False`` no two
    objects overlap or touch; an object that cannot be placed after a few tries is dropped.

    Returns:
        image: uint8 RGB ``[size, size, 3]``.
        objects: the kept objects in paint order; each mask is bool ``[size, size]``, the
            exact pixels painted in that object's colours and still visible.
    """
    if size < 16:
        raise ValueError(f"render_scene: size must be >= 16, got {size}")
    if num_objects < 0:
        raise ValueError(f"render_scene: num_objects must be >= 0, got {num_objects}")
    smooth, image = _background(rng, size)
    lo, hi = (0.35, 0.80) if num_objects == 1 else (0.15, 0.45)
    labels, fulls, fills, outlines = [], [], [], []
    taken = np.zeros((size, size), bool)  # used by occlusion=False: placed objects + 1 px
    for _ in range(num_objects):
        label = int(rng.integers(len(SHAPE_NAMES)))
        full = None
        for _ in range(_PLACEMENT_TRIES if not occlusion else 1):
            r = rng.uniform(lo, hi) * size / 2
            cx, cy = rng.uniform(r + 1, size - 1 - r, 2)
            candidate = _shape_mask(label, size, cx, cy, r, rng.uniform(0, 2 * np.pi))
            if occlusion or not (candidate & taken).any():
                full = candidate
                break
        if full is None or not full.any():
            continue
        if not occlusion:
            taken |= cv2.dilate(full.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        fill = _pick_colour(rng, smooth[full], fills)
        outline = None
        if rng.random() < 0.5:
            inner = cv2.erode(full.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            if inner.sum() >= full.sum() // 2:
                outline = full & ~inner
        labels.append(label)
        fulls.append(full)
        fills.append(fill)
        outlines.append(outline)

    visible = visible_masks(fulls)
    keep = [
        i
        for i, (v, f) in enumerate(zip(visible, fulls, strict=True))
        if v.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * f.sum())
    ]
    # Dropping an object only uncovers others, so one recomputation suffices.
    visible = visible_masks([fulls[i] for i in keep])
    objects = []
    for i, vis in zip(keep, visible, strict=True):
        image[fulls[i]] = np.round(fills[i]).astype(np.uint8)
        if outlines[i] is not None:
            image[outlines[i]] = np.round(fills[i] * 0.5).astype(np.uint8)
        objects.append(SynthObject(label=labels[i], box=mask_to_box(vis), mask=vis))
    return image, objects


@dataclass(frozen=True)
class SynthStyle:
    """A family of synthetic scenes: its class names and its scene renderer
    ``render(rng, size, num_objects, occlusion) -> (image, objects)`` (as :func:`render_scene`).
    The writers below take one; ``vision_tasks.data.synth_hard`` has the others."""

    name: str
    class_names: tuple[str, ...]
    render: Callable[[np.random.Generator, int, int, bool], tuple[np.ndarray, list[SynthObject]]]


DEFAULT_STYLE = SynthStyle("default", SHAPE_NAMES, render_scene)


def _check_args(n_train: int, n_val: int, size: int) -> None:
    if size < 16:
        raise ValueError(f"synthetic shapes: size must be >= 16, got {size}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"synthetic shapes: counts must be >= 0, got {n_train=}, {n_val=}")


def _summary_header(layout: str, out: Path, size: int, seed: int, style: SynthStyle) -> dict:
    header = dict(layout=layout, path=str(out), size=size, seed=seed)
    if style is not DEFAULT_STYLE:
        header["style"] = style.name
    return {**header, "classes": list(style.class_names), "splits": {}}


def _ours(path: Path, folder: Path) -> bool:
    """Whether ``path`` (below ``folder``, a split) has a name this module writes:
    ``<class or images>/<6 digits>.png`` or ``annotations.json``; other files are the user's."""
    parts = path.relative_to(folder).parts
    return parts == ("annotations.json",) or (
        len(parts) == 2 and len(path.stem) == 6 and path.stem.isdigit() and path.suffix == ".png")


def _prepare_dir(folder: Path, overwrite: bool) -> None:
    """Create ``folder``; refuse to mix with an earlier generation unless ``overwrite``, and
    then delete only the files of one (``_ours``), never another file found there."""
    old = [p for p in list(folder.rglob("*.png")) + list(folder.rglob("annotations.json"))
           if _ours(p, folder)]
    if old and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {len(old)} generated file(s); "
            "choose an empty folder or pass overwrite=True"
        )
    for path in old:
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 RGB ``[H, W, 3]`` image as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


def write_imagefolder(
    out: str | Path, n_train: int, n_val: int, size: int, seed: int, overwrite: bool = False,
    style: SynthStyle = DEFAULT_STYLE,
) -> dict:
    """Write a one-object-per-image classification set as ``out/<split>/<class>/<06d>.png``.

    All of ``style``'s class folders exist in both splits, even when empty. ``overwrite``
    deletes the PNGs of an earlier generation in those splits first (otherwise they raise).

    Returns:
        ``{"layout": "imagefolder", "path", "size", "seed", "classes",
        "splits": {split: {"images": int, "per_class": {name: int}}}}``.
    """
    _check_args(n_train, n_val, size)
    out = Path(out)
    names = style.class_names
    summary = _summary_header("imagefolder", out, size, seed, style)
    for split_id, (split, n) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        _prepare_dir(out / split, overwrite)
        for name in names:
            (out / split / name).mkdir(exist_ok=True)
        per_class = dict.fromkeys(names, 0)
        for index in range(n):
            rng = np.random.default_rng([seed, split_id, index])
            for _ in range(100):
                image, objects = style.render(rng, size, 1, True)
                if objects:
                    break
            else:
                raise RuntimeError(f"could not render a visible shape at size {size}")
            name = names[objects[0].label]
            _write_png(out / split / name / f"{index:06d}.png", image)
            per_class[name] += 1
        summary["splits"][split] = {"images": n, "per_class": per_class}
    return summary


def write_coco(
    out: str | Path,
    n_train: int,
    n_val: int,
    size: int,
    seed: int,
    min_objects: int = 1,
    max_objects: int = 1,
    occlusion: bool = True,
    overwrite: bool = False,
    style: SynthStyle = DEFAULT_STYLE,
) -> dict:
    """Write a COCO-style set: ``out/<split>/images/<image id:06d>.png`` + ``annotations.json``.

    Each image holds a uniform random count in ``[min_objects, max_objects]`` before drops.
    Category id = label + 1; image ids = index + 1; bbox ``[x, y, w, h]`` and area (pixel
    count) come from the visible mask, stored as compressed RLE with ``counts`` as str.

    Returns:
        ``{"layout": "coco", "path", "size", "seed", "classes",
        "splits": {split: {"images": int, "annotations": int, "per_class": {name: int}}}}``.
    """
    _check_args(n_train, n_val, size)
    if min_objects < 0 or min_objects > max_objects:
        raise ValueError(
            f"write_coco: need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}"
        )
    out = Path(out)
    names = style.class_names
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(names)]
    summary = _summary_header("coco", out, size, seed, style)
    for split_id, (split, n) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        image_dir = out / split / "images"
        _prepare_dir(out / split, overwrite)
        image_dir.mkdir(exist_ok=True)
        images, annotations = [], []
        per_class = dict.fromkeys(names, 0)
        for index in range(n):
            rng = np.random.default_rng([seed, split_id, index])
            count = int(rng.integers(min_objects, max_objects + 1))
            image, objects = style.render(rng, size, count, occlusion)
            file_name = f"{index + 1:06d}.png"  # the stem is the image id, as in COCO
            _write_png(image_dir / file_name, image)
            images.append({"id": index + 1, "file_name": file_name, "width": size, "height": size})
            for obj in objects:
                rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                x1, y1, x2, y2 = obj.box
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index + 1,
                        "category_id": obj.label + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": int(obj.mask.sum()),
                        "iscrowd": 0,
                        "segmentation": rle,
                    }
                )
                per_class[names[obj.label]] += 1
        info = dict(generator="vision_tasks.data.synth", seed=seed, split=split, size=size)
        info.update(description="vision-tasks synthetic shapes", occlusion=occlusion)
        info.update(min_objects=min_objects, max_objects=max_objects)
        if style is not DEFAULT_STYLE:
            info["style"] = style.name
        atomic_write_text(
            out / split / "annotations.json",
            json.dumps({
                "info": info,
                "images": images,
                "categories": categories,
                "annotations": annotations,
            }),
        )
        summary["splits"][split] = {
            "images": n,
            "annotations": len(annotations),
            "per_class": per_class,
        }
    return summary
