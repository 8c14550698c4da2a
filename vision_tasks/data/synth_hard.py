"""The ``hard`` synthetic style: shapes the default recipes were not tuned on.

What makes it harder than the default style (``vision_tasks.data.synth.render_scene``):

- classes that look alike: ``ellipse`` (aspect 0.5-0.85), ``rectangle`` (aspect 0.45-0.9),
  ``triangle`` (jittered vertices), ``pentagon``, ``star`` (5 points, inner radius 0.4-0.6:
  the fat ones are near pentagons);
- every shape a random colour (no link between colour and class), no outline, random
  rotation, and shapes may be cut by the image border;
- a smooth two-colour gradient background, Gaussian noise of sigma 2-14 over the whole
  image (shapes included), and 30 % of the images slightly blurred (Gaussian, sigma 0.5-1.0).

Sizes: one object per image: radius 22-38 % of the side (the shape fills 44-76 %); several:
radius 8-20 % each, occluding one another, masks of the visible part. Conventions as in
``vision_tasks.data.synth`` (uint8 RGB ``[H, W, 3]``, bool masks, exclusive ``x2``/``y2``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vision_tasks.data.synth import (
    DEFAULT_STYLE,
    MIN_VISIBLE_PIXELS,
    SynthObject,
    SynthStyle,
    mask_to_box,
    visible_masks,
)

HARD_SHAPE_NAMES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "pentagon", "star")

NOISE_SIGMA = (2.0, 14.0)
BLUR_FRACTION = 0.3
BLUR_SIGMA = (0.5, 1.0)
MIN_CONTRAST = 45.0  # mean abs RGB difference between a fill and the background under it
SINGLE_RADIUS = (0.22, 0.38)  # fraction of the side
MULTI_RADIUS = (0.08, 0.20)
MIN_IN_FRAME = 0.6  # a single object keeps at least this share of its area inside the image
MIN_VISIBLE_FRACTION = 0.25  # several objects: visible share of the full (unclipped) area
_SHIFT = 4
_TRIES = 20


def shape_outline(label: int, rng: np.random.Generator) -> np.ndarray:
    """Polygon ``[K, 2]`` (x, y) of class ``label`` inside the unit circle, not yet rotated."""
    name = HARD_SHAPE_NAMES[label]
    if name == "ellipse":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), rng.uniform(0.5, 0.85) * np.sin(t)], 1)
    if name == "rectangle":
        a = rng.uniform(0.45, 0.9)
        return np.array([(1, a), (-1, a), (-1, -a), (1, -a)]) / math.hypot(1, a)
    if name == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "pentagon":
        t = -np.pi / 2 + np.arange(5) * 2 * np.pi / 5
        return np.stack([np.cos(t), np.sin(t)], 1)
    t = -np.pi / 2 + np.arange(10) * np.pi / 5  # star
    radius = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.6))
    return np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]


def _rasterise(points: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, int]:
    """Fill the polygon ``[K, 2]`` (image coordinates) on a canvas padded by ``pad`` on every
    side; return (bool ``[size, size]`` in-frame part, pixel count of the whole shape)."""
    canvas = np.zeros((size + 2 * pad, size + 2 * pad), np.uint8)
    pts = np.round((points + pad) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, cv2.LINE_8, _SHIFT)
    return canvas[pad:pad + size, pad:pad + size].astype(bool), int(canvas.sum())


def _place(rng: np.random.Generator, label: int, size: int, single: bool
           ) -> tuple[np.ndarray, int] | None:
    """Draw size, rotation and position of one shape; None when no try keeps enough of it
    inside the image. Returns (in-frame bool mask, full pixel count)."""
    lo, hi = SINGLE_RADIUS if single else MULTI_RADIUS
    outline = shape_outline(label, rng)
    for _ in range(_TRIES):
        r = rng.uniform(lo, hi) * size
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        margin = 0.5 * r if single else 0.0
        centre = rng.uniform(margin, size - margin, 2)
        points = outline @ np.array([[c, s], [-s, c]]) * r + centre
        mask, full = _rasterise(points, size, pad=math.ceil(r) + 2)
        if full and mask.sum() >= (MIN_IN_FRAME if single else 0.5) * full:
            return mask, full
    return None


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random fill whose mean abs RGB difference to every background pixel ``under``
    ``[K, 3]`` is at least ``MIN_CONTRAST`` (the best of 30 draws otherwise)."""
    under = under[:: max(1, len(under) // 256)]
    candidates = rng.uniform(0, 255, (30, 3)).astype(np.float32)
    contrast = np.abs(candidates[:, None] - under[None]).mean(axis=2).min(axis=1)
    ok = np.flatnonzero(contrast >= MIN_CONTRAST)
    return candidates[ok[0] if ok.size else int(np.argmax(contrast))]


def render_hard_scene(rng: np.random.Generator, size: int, num_objects: int,
                      occlusion: bool = True) -> tuple[np.ndarray, list[SynthObject]]:
    """Render one hard-style scene (module docstring). Objects are painted in order; an
    object whose visible part is under 25 % of its full area (or 16 pixels) is dropped and
    not painted. ``occlusion=False``: objects that would overlap are dropped.

    Returns:
        image: uint8 RGB ``[size, size, 3]``.
        objects: kept objects in paint order; masks bool ``[size, size]`` of the pixels
            painted in that object's colour and still visible (blur and noise aside).
    """
    if size < 16:
        raise ValueError(f"render_hard_scene: size must be >= 16, got {size}")
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(size, dtype=np.float32)
    proj = ramp[None, :] * np.cos(angle) + ramp[:, None] * np.sin(angle)
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    image = c0 + t[..., None] * (c1 - c0)  # float [S, S, 3]
    single = num_objects == 1
    labels, fulls, areas, fills = [], [], [], []
    taken = np.zeros((size, size), bool)
    for _ in range(num_objects):
        label = int(rng.integers(len(HARD_SHAPE_NAMES)))
        placed = _place(rng, label, size, single)
        if placed is None or (not occlusion and (placed[0] & taken).any()):
            continue
        mask, area = placed
        taken |= mask
        labels.append(label)
        fulls.append(mask)
        areas.append(area)
        fills.append(_pick_colour(rng, image[mask]))
    visible = visible_masks(fulls)
    keep = [i for i, v in enumerate(visible)
            if v.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * areas[i])]
    visible = visible_masks([fulls[i] for i in keep])
    objects = []
    for i, vis in zip(keep, visible, strict=True):
        image[fulls[i]] = fills[i]
        objects.append(SynthObject(label=labels[i], box=mask_to_box(vis), mask=vis))
    image = image + rng.uniform(*NOISE_SIGMA) * rng.standard_normal(image.shape, np.float32)
    if rng.random() < BLUR_FRACTION:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*BLUR_SIGMA))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


HARD_STYLE = SynthStyle("hard", HARD_SHAPE_NAMES, render_hard_scene)
STYLES: dict[str, SynthStyle] = {s.name: s for s in (DEFAULT_STYLE, HARD_STYLE)}


def synth_style(name: str) -> SynthStyle:
    """The synthetic style called ``name`` (``default`` or ``hard``)."""
    if name not in STYLES:
        raise ValueError(f"unknown synthetic style {name!r}; choose one of {', '.join(STYLES)}")
    return STYLES[name]
