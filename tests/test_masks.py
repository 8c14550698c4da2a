"""vision_tasks.masks: model-frame masks back to the original image for any letterbox, and
COCO RLE that pycocotools reads and writes the same way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision_tasks.imaging import Letterbox, letterbox
from vision_tasks.masks import (
    compress_rle,
    decode_rle,
    encode_rle,
    mask_to_original,
    masks_to_original,
    masks_to_rles,
    resample_mask,
)

# pycocotools' decode warns about numpy 2's copy keyword; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STRIDE = 4  # input pixels per mask pixel (the contract's Hm = H / 4)


def _letterbox(width: int, height: int, size: tuple[int, int]) -> Letterbox:
    return letterbox(np.zeros((height, width, 3), np.uint8), size)[1]


def _pixel_centres(lb: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Original-pixel centres ``[1, W]`` and ``[H, 1]``."""
    return (np.arange(lb.width) + 0.5)[None, :], (np.arange(lb.height) + 0.5)[:, None]


def _mask_centres_in_original(lb: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the ``[Hm, Wm]`` mask pixels, in original-image pixels."""
    hm, wm = lb.size[0] // STRIDE, lb.size[1] // STRIDE
    x = ((np.arange(wm) + 0.5) * STRIDE - lb.pad_x) / lb.scale
    y = ((np.arange(hm) + 0.5) * STRIDE - lb.pad_y) / lb.scale
    return x[None, :], y[:, None]


def _rectangle(x1, y1, x2, y2):
    """Signed distance (original pixels, > 0 inside) to a rectangle, and its corners."""
    def distance(x, y):
        inside = np.minimum(np.minimum(x - x1, x2 - x), np.minimum(y - y1, y2 - y))
        dx = np.maximum(np.maximum(x1 - x, x - x2), 0)
        dy = np.maximum(np.maximum(y1 - y, y - y2), 0)
        return np.where(inside > 0, inside, -np.hypot(dx, dy))
    return distance, [(x1, y1), (x2, y1), (x1, y2), (x2, y2)]


def _circle(cx, cy, r):
    return (lambda x, y: r - np.hypot(x - cx, y - cy)), []


def _ramp_mask(lb: Letterbox, distance) -> np.ndarray:
    """The mask a perfect model would give: probability 0.5 on the shape's edge, rising
    linearly inward over two mask pixels (so bilinear interpolation reproduces the edge)."""
    x, y = _mask_centres_in_original(lb)
    in_mask_pixels = distance(x, y) * lb.scale / STRIDE
    return np.clip(0.5 + in_mask_pixels / 4, 0, 1).astype(np.float32)


SHAPES = {
    "rectangle": lambda w, h: _rectangle(0.213 * w, 0.31 * h, 0.706 * w, 0.83 * h),
    "circle": lambda w, h: _circle(0.55 * w, 0.45 * h, 0.3 * min(w, h)),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("width", "height", "size"), [
    (300, 500, (128, 128)),  # portrait: padded left and right
    (517, 203, (128, 128)),  # landscape: padded top and bottom
    (333, 517, (96, 160)),  # portrait into a landscape input
    (45, 30, (96, 128)),  # a small image, enlarged
])
def test_masks_map_back_to_the_shape_in_the_original_image(shape, width, height, size):
    lb = _letterbox(width, height, size)
    distance, corners = SHAPES[shape](width, height)
    probs = _ramp_mask(lb, distance)
    assert probs.shape == (size[0] // STRIDE, size[1] // STRIDE)
    mapped = mask_to_original(probs, lb, 0.5)
    x, y = _pixel_centres(lb)
    d = distance(x, y)
    expected = d > 0
    assert mapped.shape == (height, width) and mapped.dtype == bool
    # A mask pixel cannot hold a sharp corner: its rounding is allowed within one mask pixel.
    mask_pixel = STRIDE / lb.scale
    near_corner = np.zeros_like(expected)
    for cx, cy in corners:
        near_corner |= (np.abs(x - cx) < mask_pixel) & (np.abs(y - cy) < mask_pixel)
    wrong = mapped != expected
    assert not wrong[(np.abs(d) >= 1) & ~near_corner].any(), "exact beyond one pixel of the edge"
    assert wrong.sum() <= 0.02 * expected.sum()


def test_computing_inside_the_box_gives_the_whole_image_result():
    rng = np.random.default_rng(0)
    for width, height, size in [(640, 480, (64, 64)), (700, 1900, (96, 128)), (90, 60, (64, 96))]:
        lb = _letterbox(width, height, size)
        hm, wm = size[0] // STRIDE, size[1] // STRIDE
        for _ in range(5):
            x1, x2 = np.sort(rng.uniform(0, size[1], 2))
            y1, y2 = np.sort(rng.uniform(0, size[0], 2))
            cx, cy = (np.arange(wm) + 0.5) * STRIDE, (np.arange(hm) + 0.5) * STRIDE
            in_box = ((cy >= y1) & (cy < y2))[:, None] & ((cx >= x1) & (cx < x2))[None, :]
            probs = (rng.random((hm, wm)) * in_box).astype(np.float32)  # cropped as the contract
            box = lb.boxes_to_original(np.array([x1, y1, x2, y2]))
            whole, inside = mask_to_original(probs, lb, 0.5), mask_to_original(probs, lb, 0.5, box)
            # equal up to the interpolation's rounding (weights in 1/32 steps): a pixel at most
            assert (whole != inside).sum() <= 1


def test_batched_masks_and_rles_agree_with_single_masks():
    rng = np.random.default_rng(1)
    lb = _letterbox(333, 250, (64, 96))
    probs = rng.random((3, 16, 24)).astype(np.float32)
    boxes = np.array([[0, 0, 333, 250], [50, 20, 120, 200], [300, 240, 333, 250]], np.float32)
    batch = masks_to_original(probs, boxes, lb, 0.5)
    assert batch.shape == (3, 250, 333)
    for k in range(3):
        np.testing.assert_array_equal(batch[k], mask_to_original(probs[k], lb, 0.5, boxes[k]))
    rles = masks_to_rles(probs, boxes, lb, 0.5)
    assert rles == [encode_rle(m) for m in batch]
    assert masks_to_original(probs[:0], boxes[:0], lb, 0.5).shape == (0, 250, 333)
    empty = resample_mask(probs[0], lb, 0.5, (100.0, 100.0, 100.0, 100.0))
    assert not empty.full().any() and empty.rle() == encode_rle(np.zeros((250, 333), bool))


def _uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (list counts) of a bool mask, written out plainly."""
    flat = mask.T.ravel()
    starts = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate(([0], starts, [flat.size]))).tolist()
    return {"size": list(mask.shape), "counts": [0, *counts] if flat[0] else counts}


def _test_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    masks = [rng.random((7, 5)) > 0.5, np.ones((4, 6), bool), np.zeros((3, 3), bool),
             rng.random((1, 9)) > 0.5, rng.random((9, 1)) > 0.5]
    columns = np.zeros((6, 5), bool)
    columns[:, 1:3] = True  # runs that go on from the bottom of a column to the next top
    corners = np.zeros((5, 6), bool)
    corners[0, 0] = corners[-1, -1] = True
    blob = np.zeros((60, 80), bool)
    cv2.circle(blob.view(np.uint8), (50, 25), 17, 1, -1)
    return [*masks, columns, corners, blob]


def test_rle_round_trips_through_pycocotools():
    from pycocotools import mask as mask_api

    for mask in _test_masks():
        rle = encode_rle(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
        reference = mask_api.encode(np.asfortranarray(mask, dtype=np.uint8))
        assert rle["counts"] == reference["counts"].decode("ascii")
        np.testing.assert_array_equal(mask_api.decode({**rle, "counts": rle["counts"].encode()}),
                                      mask.astype(np.uint8))
        assert float(mask_api.area(rle)) == mask.sum()
        for form in (rle, reference, _uncompressed(mask)):
            decoded = decode_rle(form)
            assert decoded.dtype == bool and decoded.flags.c_contiguous
            np.testing.assert_array_equal(decoded, mask)
        assert compress_rle(_uncompressed(mask)) == rle == compress_rle(reference)


def test_malformed_rles_are_clear_errors():
    with pytest.raises(ValueError, match="sum to 5, but size 2x3 has 6 pixels"):
        decode_rle({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(ValueError, match="outside COCO's alphabet"):
        decode_rle({"size": [2, 3], "counts": "6 "})
    with pytest.raises(ValueError, match="'size' \\[H, W\\] and 'counts'"):
        decode_rle({"counts": [6]})
