"""Pixel arrays given as images: what each dtype, range and layout means, and what is refused.

``[H, W]`` (gray), ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA, alpha dropped);
``uint8`` as it is, ``uint16`` ``/ 257`` rounded, ``bool`` ``* 255``, float in ``[0, 1]``
``* 255`` rounded, any other integer type holding levels 0..255. Anything else is an
:class:`ArrayError` with the fix, never clipped into another picture: floats beyond
``[0, 1]`` (0..255 floats), NaN or infinity, integers outside 0..255, channels-first
``[C, H, W]``, a batch ``[N, H, W, C]``. :func:`vision_tasks.imaging.load_image` names the
source in front of the message.
"""

from __future__ import annotations

import numpy as np

FLOAT_SLACK = 1e-3
"""How far beyond ``[0, 1]`` a float image may stray by rounding before it is refused."""


class ArrayError(ValueError):
    """An array that is not an image by the rules above (one line, the fix included)."""


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """An image array as a fresh uint8 ``[H, W, 3]`` RGB array, by the rules in the module
    docstring. Raises :class:`ArrayError` (one line, with the fix) for anything else."""
    if arr.size == 0 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ArrayError(_shape_problem(arr.shape))
    out = _to_uint8(arr)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.array(out[:, :, :3], dtype=np.uint8, order="C")  # always a fresh, writable copy


def _shape_problem(shape: tuple[int, ...]) -> str:
    """What is wrong with an image array of ``shape``, and the fix."""
    dims = "x".join(map(str, shape)) or "()"
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4 and shape[1] > 0:
        return (f"array of shape {dims} looks channels-first [C, H, W]; pass [H, W, C]: "
                "array.transpose(1, 2, 0)")
    if len(shape) == 4 and min(shape) > 0:
        return (f"array of shape {dims} is a batch; pass one image [H, W, C] here, or the "
                "batch to Predictor.predict (each [N, H, W, C] row is one image)")
    return (f"unsupported array shape {dims}; pass a non-empty [H, W], [H, W, 1], [H, W, 3] "
            "(RGB) or [H, W, 4] (RGBA) array")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """An image array's values as uint8 levels, by the documented rule of its dtype; values
    the rule does not cover are refused (a float image of 0..255, negative levels, NaN) rather
    than clipped into a different picture."""
    kind, itemsize = arr.dtype.kind, arr.dtype.itemsize
    if kind == "u" and itemsize == 1:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind == "u" and itemsize == 2:  # round(v / 257) in exact integer arithmetic
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if kind == "f":
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise ArrayError("float array holds NaN or infinity; pass finite values "
                             "in [0, 1] (or a uint8 image)")
        low, high = float(x.min()), float(x.max())
        if low < -FLOAT_SLACK or high > 1.0 + FLOAT_SLACK:
            hint = (" (they look like 0..255 levels: divide by 255, or pass uint8)"
                    if high <= 255.0 + FLOAT_SLACK and low >= -FLOAT_SLACK else "")
            raise ArrayError(f"float array values span {low:g}..{high:g}; float images "
                             f"must be in [0, 1]{hint}")
        return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    if kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ArrayError(f"{arr.dtype} array values span {low}..{high}; integer "
                             "images must be levels 0..255 (or uint16 0..65535)")
        return arr.astype(np.uint8)
    raise ArrayError(f"unsupported array dtype {arr.dtype}; pass uint8, uint16, bool, "
                     "integers in 0..255 or floats in [0, 1]")
