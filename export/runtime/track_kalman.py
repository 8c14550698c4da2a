"""The constant-velocity Kalman filter of SORT / DeepSORT / ByteTrack, batched in numpy.

State (8): box centre ``x, y``, aspect ratio ``a = w / h``, height ``h``, and their
velocities per frame. Measurement (4): ``x, y, a, h`` of a detection. Noise scales with the
box height (``POSITION_STD``, ``VELOCITY_STD`` of it), so a large and a small object are held
to the same relative uncertainty; the aspect ratio has small fixed noise.
"""

from __future__ import annotations

import numpy as np

POSITION_STD = 1.0 / 20
VELOCITY_STD = 1.0 / 160

_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame)
_OBSERVE = np.eye(4, 8)


def xyah(boxes: np.ndarray) -> np.ndarray:
    """``(x1, y1, x2, y2)`` float ``[n, 4]`` -> ``(cx, cy, w / h, h)`` ``[n, 4]``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], 1)


def xyxy(states: np.ndarray) -> np.ndarray:
    """States or measurements ``[n, >=4]`` (``cx, cy, a, h`` first) -> ``(x1, y1, x2, y2)``."""
    states = np.asarray(states, np.float64).reshape(len(states), -1)
    w = states[:, 2] * states[:, 3]
    return np.stack([states[:, 0] - w / 2, states[:, 1] - states[:, 3] / 2,
                     states[:, 0] + w / 2, states[:, 1] + states[:, 3] / 2], 1)


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from ``[n, 4]`` measurements: means ``[n, 8]`` (zero velocity) and
    covariances ``[n, 8, 8]`` (wide on the velocities, which are not yet seen)."""
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    h = z[:, 3]
    std = np.stack([2 * POSITION_STD * h, 2 * POSITION_STD * h, np.full_like(h, 1e-2),
                    2 * POSITION_STD * h, 10 * VELOCITY_STD * h, 10 * VELOCITY_STD * h,
                    np.full_like(h, 1e-5), 10 * VELOCITY_STD * h], 1)
    means = np.concatenate([z, np.zeros_like(z)], 1)
    return means, _diag(std**2)


def predict(means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: ``[n, 8]``, ``[n, 8, 8]`` -> the same, with process noise added."""
    if len(means) == 0:
        return means, covs
    h = means[:, 3]
    std = np.stack([POSITION_STD * h, POSITION_STD * h, np.full_like(h, 1e-2), POSITION_STD * h,
                    VELOCITY_STD * h, VELOCITY_STD * h, np.full_like(h, 1e-5),
                    VELOCITY_STD * h], 1)
    means = means @ _MOTION.T
    covs = _MOTION @ covs @ _MOTION.T + _diag(std**2)
    return means, covs


def update(means: np.ndarray, covs: np.ndarray, measurements: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Correct ``[n, 8]`` / ``[n, 8, 8]`` with ``[n, 4]`` measurements (one per track)."""
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    h = means[:, 3]
    std = np.stack([POSITION_STD * h, POSITION_STD * h, np.full_like(h, 1e-1),
                    POSITION_STD * h], 1)
    projected = means @ _OBSERVE.T
    system = _OBSERVE @ covs @ _OBSERVE.T + _diag(std**2)  # [n, 4, 4]
    cross = covs @ _OBSERVE.T  # [n, 8, 4]
    gain = np.linalg.solve(system, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # [n, 8, 4]
    means = means + (gain @ (z - projected)[:, :, None])[:, :, 0]
    covs = covs - gain @ system @ gain.transpose(0, 2, 1)
    return means, covs


def _diag(values: np.ndarray) -> np.ndarray:
    out = np.zeros((*values.shape, values.shape[-1]))
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out
