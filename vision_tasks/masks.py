"""Instance-mask geometry: model-frame mask probabilities -> original-image masks -> COCO RLE.

The one place that turns the segment contract's ``masks [K, Hm, Wm]`` (probabilities over
the letterboxed model input at ``Hm = H / 4``, each already cropped to its box) into what
users and COCOeval see: bool masks over the original image and COCO run-length encodings.
Training-time evaluation and the ONNX runtime both call it, so their masks are the same.

Imports numpy, OpenCV, :mod:`vision_tasks.grid` and :mod:`vision_tasks.imaging` only; ``pycocotools`` is imported lazily
when an RLE is compressed (never torch), so the torch-free runtime can embed this module.

Conventions (those of :mod:`vision_tasks.imaging`):

- pixel column ``c`` covers ``[c, c + 1)``; its centre is ``c + 0.5``; the same holds for
  rows, for mask pixels (in mask-pixel units) and for original-image pixels;
- ``x_input = x_original * scale + pad_x`` (the :class:`~vision_tasks.imaging.Letterbox`);
  the mask covers the whole input, so ``x_mask = x_input * Wm / W`` (``W`` the input width);
- a box is ``(x1, y1, x2, y2)`` float in continuous pixel coordinates;
- a mask is a bool ``[H, W]`` array over the original image, C-contiguous;
- COCO RLE: ``{"size": [H, W], "counts": ...}``, runs in column-major (Fortran) order,
  starting with a run of zeros; "compressed" means COCO's string encoding of the counts
  (here always a ``str``), "uncompressed" a list of ints.

Typical use, one image of a batch (``boxes`` in input pixels as the graph returns them)::

    n = int(num_detections[i])
    boxes_original = letterbox.boxes_to_original(boxes[i, :n])
    rles = masks_to_rles(masks[i, :n], boxes_original, letterbox, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vision_tasks.grid import cell_centres
from vision_tasks.imaging import Letterbox

__all__ = ["MaskCrop", "compress_rle", "decode_rle", "encode_rle", "mask_to_original",
           "masks_to_original", "masks_to_rles", "resample_mask"]

Box = Sequence[float] | np.ndarray
RLE = dict[str, Any]


@dataclass(frozen=True)
class MaskCrop:
    """A bool mask of a ``height x width`` image that is False outside one rectangle.

    Attributes:
        mask: bool ``[y1 - y0, x1 - x0]``, the inside of the rectangle.
        x0, y0: the rectangle's top-left pixel (column, row) in the image.
        height, width: the whole image's size in pixels.
    """

    mask: np.ndarray
    x0: int
    y0: int
    height: int
    width: int

    def full(self) -> np.ndarray:
        """Bool ``[height, width]`` mask of the whole image (C-contiguous, a new array)."""
        # calloc: rows the crop does not touch stay unallocated
        return self.paste(np.zeros((self.height, self.width), dtype=bool))

    def paste(self, out: np.ndarray) -> np.ndarray:
        """Write the crop into ``out`` (a ``[height, width]`` array, False outside) and return it."""
        h, w = self.mask.shape
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = self.mask
        return out

    def rle(self) -> RLE:
        """Compressed COCO RLE of :meth:`full`, computed from the crop alone."""
        return _compress(self.height, self.width, _crop_counts(self))


def resample_mask(mask: np.ndarray, lb: Letterbox, threshold: float = 0.5,
                  box: Box | None = None) -> MaskCrop:
    """Float ``[Hm, Wm]`` mask probabilities over the model input -> the thresholded mask of
    the original image, computed only around ``box``.

    One bilinear resampling maps the letterboxed content straight to original pixels (never
    a resize of the input frame followed by a second resize): original pixel centre
    ``(x + 0.5, y + 0.5)`` sits at ``((x + 0.5) * scale + pad_x) * Wm / W - 0.5`` in mask
    index units (likewise for y), and samples outside the mask repeat its border. A pixel is
    in the mask when the interpolated probability is ``> threshold``. OpenCV's
    ``warpAffine`` interpolates, placing samples on a grid of 1/32 mask pixel, i.e.
    ``1 / (8 * scale)`` original pixels with the contract's stride 4: under one pixel
    unless the letterbox shrinks the image more than 8 times.

    Args:
        mask: float ``[Hm, Wm]`` probabilities in the input frame (any ``Hm, Wm``).
        lb: the image's letterbox (original size and the mapping to the input).
        threshold: probability above which a pixel is in the mask.
        box: ``(x1, y1, x2, y2)`` in original pixels, or None for the whole image. Only the
            box, grown by one mask pixel (in original pixels) plus one pixel on each side,
            is computed; the rest is False. Contract masks are zero at mask pixels whose
            centre lies outside their box, so with ``threshold >= 0.5`` nothing is lost:
            the result is the whole-image resampling's (up to the interpolation's rounding,
            which can flip a few pixels lying exactly on the threshold's edge). An empty
            box gives an empty mask.

    Returns:
        A :class:`MaskCrop` (``.full()`` gives bool ``[H, W]``, ``.rle()`` COCO RLE).
    """
    if not isinstance(lb, Letterbox):
        raise TypeError(f"lb must be the image's vision_tasks.imaging.Letterbox, got "
                        f"{type(lb).__name__}")
    probs = np.asarray(mask, dtype=np.float32)
    if probs.ndim != 2 or probs.size == 0:
        raise ValueError(f"mask must be a non-empty [Hm, Wm] array, got shape {probs.shape}")
    (in_h, in_w), (hm, wm) = lb.size, probs.shape
    sx, sy = wm / in_w, hm / in_h  # mask pixels per input pixel
    if box is None:
        x0, y0, x1, y1 = 0, 0, lb.width, lb.height
    else:
        bx1, by1, bx2, by2 = (float(v) for v in box)
        if not (bx2 > bx1 and by2 > by1):
            return MaskCrop(np.zeros((0, 0), bool), 0, 0, lb.height, lb.width)
        mx, my = 1.0 / (lb.scale * sx) + 1.0, 1.0 / (lb.scale * sy) + 1.0  # margin, original px
        x0, x1 = max(0, math.floor(bx1 - mx)), min(lb.width, math.ceil(bx2 + mx))
        y0, y1 = max(0, math.floor(by1 - my)), min(lb.height, math.ceil(by2 + my))
    if x1 <= x0 or y1 <= y0:
        return MaskCrop(np.zeros((0, 0), bool), 0, 0, lb.height, lb.width)
    # Inverse map, crop pixel (i, j) -> mask index coordinates (u, v); see the docstring.
    ax, ay = lb.scale * sx, lb.scale * sy
    # An original pixel is a cell of lb.scale input pixels; a mask index is a cell centre - 0.5.
    matrix = np.array([[ax, 0.0, (cell_centres(x0, lb.scale) + lb.pad_x) * sx - 0.5],
                       [0.0, ay, (cell_centres(y0, lb.scale) + lb.pad_y) * sy - 0.5]])
    values = cv2.warpAffine(np.ascontiguousarray(probs), matrix, (x1 - x0, y1 - y0),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    inside = values > threshold
    return MaskCrop(inside, x0, y0, lb.height, lb.width)


def mask_to_original(mask: np.ndarray, lb: Letterbox, threshold: float = 0.5,
                     box: Box | None = None) -> np.ndarray:
    """Float ``[Hm, Wm]`` mask probabilities over the model input -> bool ``[H, W]`` over the
    original image (see :func:`resample_mask` for the geometry and ``box``)."""
    return resample_mask(mask, lb, threshold, box).full()


def _check_batch(masks: np.ndarray, boxes: np.ndarray | None) -> np.ndarray | None:
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [K, Hm, Wm], got {masks.shape}")
    if boxes is None:
        return None
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(boxes)} boxes; pass one box per mask")
    return boxes


def masks_to_original(masks: np.ndarray, boxes: np.ndarray | None, lb: Letterbox,
                      threshold: float = 0.5) -> np.ndarray:
    """All masks of one image: float ``[K, Hm, Wm]`` -> bool ``[K, H, W]`` (original image).

    ``boxes``: float ``[K, 4]`` ``(x1, y1, x2, y2)`` in original pixels
    (``lb.boxes_to_original(graph_boxes)``), so each mask is computed inside its box only
    (see :func:`resample_mask`); None computes every mask over the whole image.
    """
    masks = np.asarray(masks)
    boxes = _check_batch(masks, boxes)
    out = np.zeros((len(masks), lb.height, lb.width), dtype=bool)
    for k in range(len(masks)):
        resample_mask(masks[k], lb, threshold, None if boxes is None else boxes[k]).paste(out[k])
    return out


def masks_to_rles(masks: np.ndarray, boxes: np.ndarray | None, lb: Letterbox,
                  threshold: float = 0.5) -> list[RLE]:
    """All masks of one image: float ``[K, Hm, Wm]`` -> ``K`` compressed COCO RLEs over the
    original image, ready for COCOeval ``"segm"`` results.

    The fast path for evaluation: each mask is resampled inside its box only and encoded
    from that crop, so no ``[H, W]`` array is ever built. ``boxes`` as in
    :func:`masks_to_original` (original pixels, or None for whole-image masks).
    """
    masks = np.asarray(masks)
    boxes = _check_batch(masks, boxes)
    return [resample_mask(masks[k], lb, threshold, None if boxes is None else boxes[k]).rle()
            for k in range(len(masks))]


def encode_rle(mask: np.ndarray) -> RLE:
    """Bool ``[H, W]`` mask -> compressed COCO RLE ``{"size": [H, W], "counts": str}``.

    Equal to ``pycocotools.mask.encode(np.asfortranarray(mask, dtype=np.uint8))`` with the
    counts decoded to ``str`` (JSON-able), but computed from the mask's bounding rectangle,
    so a small object in a large photograph costs little.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a bool [H, W] array, got shape {mask.shape}")
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        crop = MaskCrop(np.zeros((0, 0), bool), 0, 0, height, width)
    else:
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(mask[y0:y1].any(axis=0))
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        crop = MaskCrop(mask[y0:y1, x0:x1], x0, y0, height, width)
    return crop.rle()


def _crop_counts(crop: MaskCrop) -> np.ndarray:
    """Uncompressed COCO counts (column-major runs, zeros first) of a crop's full mask."""
    height, total = crop.height, crop.height * crop.width
    h, w = crop.mask.shape
    if crop.mask.size == 0 or not crop.mask.any():
        return np.array([total], dtype=np.int64)
    # The crop's columns as rows, each with one False before and after: every change of
    # value inside a padded row is the start of a run in the image's column-major order.
    padded = np.zeros((w, h + 2), dtype=bool)
    padded[:, 1:-1] = crop.mask.T
    flat = padded.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    col, row = np.divmod(change, h + 2)
    starts = (crop.x0 + col) * height + (crop.y0 + row - 1)
    # A run that reaches the bottom of one image column and goes on at the top of the next
    # gives an end and a start at the same place: they cancel.
    same = np.flatnonzero(starts[1:] == starts[:-1])
    if same.size:
        keep = np.ones(starts.size, dtype=bool)
        keep[same] = keep[same + 1] = False
        starts = starts[keep]
    counts = np.diff(np.concatenate(([0], starts, [total])))
    return counts[:-1] if counts[-1] == 0 else counts


def _compress(height: int, width: int, counts: np.ndarray) -> RLE:
    from pycocotools import mask as mask_api

    rle = mask_api.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def compress_rle(rle: RLE) -> RLE:
    """Any COCO RLE (counts a list, ``bytes`` or ``str``) -> compressed, counts as ``str``."""
    height, width = _size(rle)
    counts = rle["counts"]
    if isinstance(counts, list | tuple | np.ndarray):
        return _compress(height, width, _checked_counts(counts, height, width))
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts must be a list, bytes or str, got {type(counts).__name__}")
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """COCO RLE -> bool ``[H, W]`` mask (C-contiguous).

    Accepts compressed counts (``str`` or ``bytes``, COCO's string encoding) and
    uncompressed counts (a list of ints). The string is parsed here rather than by
    ``pycocotools.mask.decode``, which warns under numpy 2 and returns Fortran order.

    Raises:
        ValueError: the RLE is malformed (bad size, counts not summing to ``H * W``...).
    """
    height, width = _size(rle)
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        counts = _parse_counts(counts.encode("ascii") if isinstance(counts, str) else counts)
    values = np.asarray(_checked_counts(counts, height, width), dtype=np.int64)
    runs = np.arange(values.size) % 2 == 1  # zeros first, then ones, alternating
    column_major = np.repeat(runs, values)
    return np.ascontiguousarray(column_major.reshape(width, height).T)


def _size(rle: RLE) -> tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' [H, W] and 'counts'")
    size = rle["size"]
    if len(size) != 2 or any(int(v) != v or v < 0 for v in size):
        raise ValueError(f"RLE size must be [height, width] in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def _checked_counts(counts: Any, height: int, width: int) -> np.ndarray:
    values = np.asarray(counts)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu") or (values < 0).any():
        raise ValueError("RLE counts must be non-negative integers")
    if int(values.sum()) != height * width:
        raise ValueError(f"RLE counts sum to {int(values.sum())}, but size {height}x{width} "
                         f"has {height * width} pixels")
    return values.astype(np.int64)


def _parse_counts(text: bytes) -> list[int]:
    """COCO's string form of RLE counts -> the counts.

    Each count is written in 5-bit groups, low first, one character (``48 + group``) per
    group; bit 0x20 says another group follows; the last group's bit 0x10 is the sign.
    From the fourth count on, the value stored is the difference to the count two before.
    """
    counts: list[int] = []
    value, shift = 0, 0
    for char in text:
        group = char - 48
        if not 0 <= group < 64:
            raise ValueError(f"RLE counts string has a character outside COCO's alphabet: "
                             f"{chr(char)!r}")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError("RLE counts string ends inside a number")
    return counts
