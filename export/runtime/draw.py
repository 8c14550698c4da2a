"""Draw a :class:`Prediction` onto its original image (OpenCV, no torch)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vision_tasks.fileio import atomic_write_bytes
from vision_tasks.masks import MaskCrop
from vision_tasks.results import Prediction

WRITABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MIN_SIDE = 256  # drawings of smaller images are enlarged to at least this many pixels
MASK_OPACITY = 0.45  # how much of a mask's class colour covers the image under it


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per class index (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int],
           scale: float, thickness: int) -> None:
    """Text on a filled background whose top-left corner is ``(x, y)`` (kept inside)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    h, w = canvas.shape[:2]
    x = int(min(max(x, 0), max(w - tw - 2, 0)))
    y = int(min(max(y, 0), max(h - th - base - 2, 0)))
    cv2.rectangle(canvas, (x, y), (x + tw + 2, y + th + base + 2), colour, cv2.FILLED)
    text_colour = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 1, y + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, text_colour,
                thickness, cv2.LINE_AA)


def _draw_mask(canvas: np.ndarray, mask: MaskCrop, colour: tuple[int, int, int], zoom: int,
               thickness: int) -> None:
    """Tint the pixels of ``mask`` (original pixels; the canvas is ``zoom`` times larger)
    with ``colour`` and outline each of its parts and holes, working only inside the crop."""
    if not mask.mask.any():
        return
    y0, x0 = mask.y0, mask.x0
    crop = np.ascontiguousarray(mask.mask, dtype=np.uint8)
    if zoom > 1:
        crop = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    top, left = y0 * zoom, x0 * zoom
    region = canvas[top:top + crop.shape[0], left:left + crop.shape[1]]
    inside = crop.astype(bool)
    tinted = region[inside] * (1.0 - MASK_OPACITY) + np.array(colour) * MASK_OPACITY
    region[inside] = np.rint(tinted).astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(left, top))
    cv2.drawContours(canvas, contours, -1, colour, thickness, cv2.LINE_AA)


def draw_prediction(image: np.ndarray, prediction: Prediction,
                    track_ids: Sequence[int] | None = None) -> np.ndarray:
    """A copy of the uint8 RGB ``[H, W, 3]`` ``image`` with the prediction drawn on it:
    the top class and score (classify), boxes with labels (localize, detect), and for
    segment each mask tinted in its class colour with its outline, under the boxes and
    labels; a multi-head prediction draws every head's. A class has the same colour (:func:`class_colour`) in every task. Sizes of
    lines and text follow the image size; an image smaller than :data:`MIN_SIDE` is
    enlarged by a whole factor first (nearest neighbour) so text fits. ``track_ids`` (one per
    detection, ``--track``): each box is labelled ``#id`` and coloured by its id instead."""
    zoom = max(1, -(-MIN_SIDE // min(image.shape[:2])))
    canvas = image.copy() if zoom == 1 else cv2.resize(
        image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    h, w = canvas.shape[:2]
    scale = max(0.3, min(h, w) / 500)
    thickness = max(1, round(min(h, w) / 250))
    parts = list(prediction.heads.values()) if prediction.heads else [prediction]
    detections = [det for part in parts for det in (part.detections or [])]
    for det in detections:  # every mask first, so that no mask covers another's label
        if det.crop is not None:
            _draw_mask(canvas, det.crop, class_colour(det.label), zoom, thickness)
    ids: Sequence[int | None] = track_ids if track_ids is not None else [None] * len(detections)
    for det, track_id in zip(detections, ids, strict=True):
        colour = class_colour(det.label if track_id is None else track_id)
        x1, y1, x2, y2 = (round(v * zoom) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, thickness)
        text = f"{det.name} {det.score:.2f}" if track_id is None else f"#{track_id} {det.name}"
        _label(canvas, text, x1, y1, colour, scale, 1)
    line = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] * 2
    labelled = [part for part in parts if part.detections is None and part.scores is not None]
    for i, part in enumerate(labelled):  # class labels (classify heads) stacked at the top
        _label(canvas, f"{part.name} {part.score:.2f}", 0, i * line,
               class_colour(part.label or 0), scale, 1)
    return canvas


def save_drawing(image: np.ndarray, prediction: Prediction, path: Path) -> Path:
    """Draw and write atomically to ``path``; a suffix OpenCV cannot write becomes ``.png``."""
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        path = path.with_name(path.name + ".png")
    ok, encoded = cv2.imencode(path.suffix.lower(),
                               cv2.cvtColor(draw_prediction(image, prediction), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: OpenCV cannot encode this image format")
    atomic_write_bytes(path, encoded.tobytes())
    return path
