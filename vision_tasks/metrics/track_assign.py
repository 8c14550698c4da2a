"""Optimal one-to-one assignment (the linear assignment problem) in numpy, for the tracker
(:mod:`vision_tasks.export.runtime.track`) and the tracking metrics
(:mod:`vision_tasks.metrics.track`).

Written here rather than imported: ``scipy.optimize.linear_sum_assignment`` or ``lap`` would
add a compiled dependency to the torch-free runtime for matrices that are a few tens of rows
(the objects of one frame, the ids of one video). The solver is the shortest augmenting path
form of the Hungarian method (Kuhn-Munkres with potentials), ``O(n^2 m)``, its inner loop over
columns done with numpy: under a millisecond for 20 x 20.
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment of ``cost`` (float ``[n, m]``, finite):
    ``min(n, m)`` pairs, as ``scipy.optimize.linear_sum_assignment`` gives them (rows
    ascending; the total cost is the same, the pairs may differ between equal optima).

    Returns:
        rows, cols: int64 ``[min(n, m)]``.
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or not np.isfinite(cost).all():
        raise ValueError(f"cost must be a finite 2-D matrix, got shape {cost.shape}")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)  # owner[j]: 1-based row assigned to column j (0: none)
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        min_reduced = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < min_reduced[1:])
            min_reduced[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, min_reduced[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            min_reduced[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:])
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def match(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pairs of rows and columns of ``cost`` (float ``[n, m]``) whose total cost is least,
    where leaving a row and a column unmatched costs ``limit`` together: a pair is only made
    when its cost is below ``limit`` (what ``lap.lapjv(cost, extend_cost=True,
    cost_limit=limit)`` computes, the matcher of SORT and ByteTrack).

    Returns:
        matches: ``(row, col)`` pairs, rows ascending.
        unmatched_rows, unmatched_cols: ascending.
    """
    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    extended = np.full((n + m, n + m), limit / 2.0)
    extended[:n, :m] = np.minimum(cost, limit + 1.0)
    extended[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(extended)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
             if r < n and c < m and cost[r, c] < limit]
    matched_rows = {r for r, _ in pairs}
    matched_cols = {c for _, c in pairs}
    return (pairs, [r for r in range(n) if r not in matched_rows],
            [c for c in range(m) if c not in matched_cols])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (float ``[n, 4]``) with every box in ``b`` (``[m, 4]``),
    boxes ``(x1, y1, x2, y2)``; ``[n, m]``, 0 where a union is empty."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
