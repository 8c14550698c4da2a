"""Synthetic videos for tracking: the shapes of :mod:`vision_tasks.data.synth` moving,
crossing and hiding each other, with ground-truth ids.

``vision-tasks data synth track DIR`` writes, for each split (``train``, ``val``)::

    DIR/videos/<split>/<seq>.avi           the frames (MJPEG, near-lossless, FPS frames/s)
    DIR/mot/<split>/<seq>/gt/gt.txt         MOTChallenge ground truth
    DIR/mot/<split>/<seq>/seqinfo.ini       name, frame rate, length, size
    DIR/<split>/images/*.png + annotations.json   every frame as a COCO detect/segment set

so a detector trained on ``DIR/train`` comes from the same generator as the videos it is
tracked on (``vision-tasks predict MODEL DIR/videos/val --track``, then
``vision-tasks track-eval DIR/mot/val OUT/mot``).

Each sequence comes from ``np.random.default_rng([seed, split_id, seq])``. Its objects enter
from alternate sides and move across at constant velocity (bouncing off the top and
bottom), turning as they go, each painted in a fixed depth order, so that paths cross and
one object hides another for a few frames. A ground-truth line is the object's visible box
(the same box a still image of :mod:`~vision_tasks.data.synth` annotates) while at least
``MIN_VISIBLE_FRACTION`` of it is visible, with that fraction as the visibility field:
``frame,id,x,y,w,h,1,class,visibility`` (frames and ids from 1, class = label + 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vision_tasks.fileio import atomic_write_text

from .synth import (
    MIN_VISIBLE_FRACTION,
    MIN_VISIBLE_PIXELS,
    SHAPE_NAMES,
    SPLITS,
    _background,
    _pick_colour,
    _shape_mask,
    mask_to_box,
    visible_masks,
)

FPS = 25.0
DEFAULT_FRAMES = 48
DEFAULT_SIZE = 128
MIN_OBJECTS, MAX_OBJECTS = 2, 4


@dataclass
class Mover:
    """One object of a sequence: class, radius, start, velocity (pixels per frame), angle."""

    label: int
    radius: float
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    spin: float
    colour: np.ndarray


def _movers(rng: np.random.Generator, size: int, frames: int, smooth: np.ndarray) -> list[Mover]:
    count = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    movers: list[Mover] = []
    colours: list[np.ndarray] = []
    for k in range(count):
        label = int(rng.integers(len(SHAPE_NAMES)))
        r = rng.uniform(0.10, 0.18) * size
        left = k % 2 == 0
        x = rng.uniform(r, 0.3 * size) if left else rng.uniform(0.7 * size, size - r)
        span = size - 2 * r - abs(x - size / 2) * 0.2
        speed = rng.uniform(0.6, 1.0) * span / frames * 1.6
        y = rng.uniform(r + 1, size - 1 - r)
        colour = _pick_colour(rng, smooth.reshape(-1, 3), colours)
        colours.append(colour)
        movers.append(Mover(label, r, x, y, speed if left else -speed,
                            rng.uniform(-0.6, 0.6) * speed, rng.uniform(0, 2 * np.pi),
                            rng.uniform(-0.05, 0.05), colour))
    return movers


def render_sequence(rng: np.random.Generator, size: int, frames: int
                    ) -> tuple[list[np.ndarray], list[list[tuple[int, int, np.ndarray, float]]]]:
    """Frames (uint8 RGB ``[size, size, 3]``) and per frame the visible objects as
    ``(track id, label, visible mask [size, size] bool, visible fraction)``."""
    smooth, background = _background(rng, size)
    movers = _movers(rng, size, frames, smooth)
    images, truth = [], []
    for _ in range(frames):
        fulls = [_shape_mask(m.label, size, m.x, m.y, m.radius, m.angle) for m in movers]
        image = background.copy()
        for m, full in zip(movers, fulls, strict=True):
            image[full] = np.round(m.colour).astype(np.uint8)
        objects = []
        for k, (vis, full) in enumerate(zip(visible_masks(fulls), fulls, strict=True)):
            area = int(full.sum())
            fraction = float(vis.sum()) / area if area else 0.0
            if vis.sum() >= MIN_VISIBLE_PIXELS and fraction >= MIN_VISIBLE_FRACTION:
                objects.append((k + 1, movers[k].label, vis, round(fraction, 3)))
        images.append(image)
        truth.append(objects)
        for m in movers:
            m.x += m.vx
            m.y += m.vy
            m.angle += m.spin
            if not m.radius <= m.y <= size - m.radius:
                m.vy = -m.vy
    return images, truth


def write_track(out: str | Path, n_train: int, n_val: int, size: int = DEFAULT_SIZE,
                seed: int = 0, frames: int = DEFAULT_FRAMES) -> dict:
    """Write ``n_train`` and ``n_val`` sequences of ``frames`` frames (see the module
    docstring). Returns ``{"layout": "mot", "path", "size", "seed", "frames", "classes",
    "splits": {split: {"sequences", "frames", "boxes"}}}``."""
    if size < 32 or frames < 2 or n_train < 0 or n_val < 0:
        raise ValueError(f"synth track: need size >= 32, frames >= 2, counts >= 0; got "
                         f"{size}, {frames}, {n_train}, {n_val}")
    out = Path(out)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_NAMES)]
    summary: dict = {"layout": "mot", "path": str(out), "size": size, "seed": seed,
                     "frames": frames, "classes": list(SHAPE_NAMES), "splits": {}}
    for split_id, (split, count) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        images, annotations, boxes = [], [], 0
        for seq in range(count):
            name = f"seq{seq:03d}"
            rng = np.random.default_rng([seed, split_id, seq])
            video, truth = render_sequence(rng, size, frames)
            _write_video(out / "videos" / split / f"{name}.avi", video)
            rows = []
            for t, (image, objects) in enumerate(zip(video, truth, strict=True)):
                image_id = len(images) + 1
                file_name = f"{name}_{t + 1:06d}.png"
                cv2.imwrite(str(out / split / "images" / file_name),
                            cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                images.append({"id": image_id, "file_name": file_name, "width": size,
                               "height": size})
                for track_id, label, mask, fraction in objects:
                    x1, y1, x2, y2 = mask_to_box(mask)
                    rows.append(f"{t + 1},{track_id},{x1:g},{y1:g},{x2 - x1:g},{y2 - y1:g},"
                                f"1,{label + 1},{fraction:g}\n")
                    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                        "category_id": label + 1,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "area": int(mask.sum()), "iscrowd": 0,
                                        "segmentation": {"size": rle["size"],
                                                         "counts": rle["counts"].decode("ascii")}})
            seq_dir = out / "mot" / split / name
            (seq_dir / "gt").mkdir(parents=True, exist_ok=True)
            atomic_write_text(seq_dir / "gt" / "gt.txt", "".join(rows))
            atomic_write_text(seq_dir / "seqinfo.ini",
                              f"[Sequence]\nname={name}\nimDir=img1\nframeRate={FPS:g}\n"
                              f"seqLength={frames}\nimWidth={size}\nimHeight={size}\nimExt=.png\n")
            boxes += len(rows)
        info = {"description": "vision-tasks synthetic tracking shapes (frames of the videos)",
                "generator": "vision_tasks.data.synth_track", "seed": seed, "split": split}
        atomic_write_text(out / split / "annotations.json",
                          json.dumps({"info": info, "images": images, "categories": categories,
                                      "annotations": annotations}))
        summary["splits"][split] = {"sequences": count, "frames": count * frames, "boxes": boxes}
    return summary


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write the video")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 98)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
