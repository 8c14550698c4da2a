"""The cell-centre rule of every grid laid over an image: feature maps, mask grids, pixels.

A grid of stride ``s`` (input pixels per cell) cuts the continuous image axis into cells
``[i * s, (i + 1) * s)``; cell ``i`` stands for its centre, ``(i + 0.5) * s``, and a cell
belongs to a box when its centre does (``x1 <= centre < x2``). The detection head's anchor
points, the segment head's box crop, the export check's mask comparison and the runtime's
mask resampling all take their cells' positions from here, so they agree on where a cell is.

Imports nothing (no numpy, no torch): the functions work by duck typing on Python numbers,
numpy arrays and torch tensors alike, so the torch-free runtime can use them and traced
graphs keep their ops.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["cell_centres", "centre_inside"]

T = TypeVar("T")


def cell_centres(index: T, stride: float) -> T:
    """Centres, in the same units as ``stride``, of the cells ``index`` of a stride-``stride`` grid.

    Args:
        index: cell indices: a number, or any array of them (``np.arange(w)``,
            ``torch.arange(w, dtype=...)``, a stacked ``[A, 2]`` grid...).
        stride: length of one cell (e.g. input pixels per feature-map pixel).

    Returns:
        ``(index + 0.5) * stride``, of ``index``'s type and shape.
    """
    return (index + 0.5) * stride


def centre_inside(centres: T, low: object, high: object) -> T:
    """Bool ``centres`` shape: whether each cell centre lies in ``[low, high)`` (a box's
    ``x1, x2`` or ``y1, y2``; ``low`` and ``high`` broadcast against ``centres``)."""
    return (centres >= low) & (centres < high)
