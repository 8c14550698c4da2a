"""Typed prediction results: one uniform object for every task, the Python API and the CLI.

Coordinates are original-image pixels (continuous: the whole image is ``(0, 0, W, H)``),
boxes are ``(x1, y1, x2, y2)``. What a task fills in:

====================  ==========================  =========================================
task                  ``Prediction.scores``       ``Prediction.detections``
====================  ==========================  =========================================
classify              ``[C]`` probabilities       ``None`` (the task has no boxes)
localize              ``[C]`` probabilities       one :class:`Detection` (the top class)
detect                ``None``                    up to K :class:`Detection` s
segment               ``None``                    up to K, each with a ``mask``
====================  ==========================  =========================================

A plug-in task with other outputs puts them in ``Prediction.values``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from vision_tasks.imaging import Letterbox
from vision_tasks.masks import MaskCrop

SCORE_DECIMALS = 6
BOX_DECIMALS = 2


def json_line(record: dict[str, Any]) -> bytes:
    """One line of a JSONL file: compact UTF-8 JSON and a newline. orjson writes it about
    10x faster than ``json.dumps`` (a classify line: 1.2 vs 11 us), which counts in a
    pipeline whose consumer thread competes for the GIL with the decoders; it also writes
    NaN as ``null`` (valid JSON) and accepts numpy scalars."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


def _ranked(values: list[float], k: int) -> list[int]:
    """Indices of the ``k`` largest ``values``, largest first, ties in index order."""
    if len(values) > 64:
        return np.argsort(-np.asarray(values), kind="stable")[:k].tolist()
    return sorted(range(len(values)), key=values.__getitem__, reverse=True)[:k]


@dataclass(frozen=True)
class ClassScore:
    """One class and its probability."""

    label: int
    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "name": self.name, "score": round(self.score, SCORE_DECIMALS)}


@dataclass
class Detection:
    """One object: a box in original-image pixels, its class and score, maybe a mask.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float, original-image pixels, clipped to the image.
        label: class index into the model's ``class_names``.
        name: ``class_names[label]``.
        score: confidence in ``[0, 1]``.
        crop: the mask (segment only, else None) as computed: a
            :class:`~vision_tasks.masks.MaskCrop`, the object's pixels inside its box of the
            original image; :attr:`mask` and :meth:`rle` are built from it.
    """

    box: tuple[float, float, float, float]
    label: int
    name: str
    score: float
    crop: MaskCrop | None = field(default=None, repr=False)

    @cached_property
    def mask(self) -> np.ndarray | None:
        """Bool ``[H, W]`` over the original image (segment only), else None; built on first
        use (the RLE and the drawings do not need it)."""
        return None if self.crop is None else self.crop.full()

    def rle(self) -> dict[str, Any] | None:
        """The mask as compressed COCO RLE ``{"size": [H, W], "counts": str}`` (what
        ``pycocotools.mask.encode`` gives, counts decoded to text), None without a mask.
        Encoded from the crop, without building the ``[H, W]`` mask.

        Read it back with :func:`vision_tasks.masks.decode_rle` or ``pycocotools``.
        """
        return None if self.crop is None else self.crop.rle()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``box``, ``label``, ``name``, ``score`` and, for segment, ``mask``
        as compressed COCO RLE (:meth:`rle`)."""
        out: dict[str, Any] = {"box": [round(float(v), BOX_DECIMALS) for v in self.box],
                               "label": self.label, "name": self.name,
                               "score": round(self.score, SCORE_DECIMALS)}
        if self.crop is not None:
            out["mask"] = self.rle()
        return out


@dataclass
class Prediction:
    """The result of one image.

    Attributes:
        source: the file path as given, or ``<array>`` / ``<bytes>`` / ``<PIL image>``.
        task: the model's task.
        width, height: original image size in pixels (after EXIF rotation).
        class_names: the model's classes (shared, not copied).
        scores: float32 ``[C]`` class probabilities (classify, localize), else None.
        detections: objects found (localize, detect, segment); None for tasks without boxes.
        letterbox: how the image was fitted into the model input.
        values: any other per-image outputs a task returns, JSON-able (e.g. a plug-in task's
            ``{"count": 3.2}``); None for the built-in tasks.
        heads: a multi-head model's result per head (each a task's :class:`Prediction` of this
            image), in the model's head order; None for a single-task model.
    """

    source: str
    task: str
    width: int
    height: int
    class_names: tuple[str, ...] = field(repr=False)
    scores: np.ndarray | None = field(default=None, repr=False)
    detections: list[Detection] | None = None
    letterbox: Letterbox | None = field(default=None, repr=False)
    values: dict[str, Any] | None = None
    heads: dict[str, Prediction] | None = None

    def __repr__(self) -> str:
        parts = [repr(self.source), self.task, f"{self.width}x{self.height}"]
        if self.scores is not None:
            parts.append(f"top={self.name} {self.score:.3f}")
        if self.detections is not None:
            parts.append(f"detections={len(self.detections)}")
        if self.values:
            parts += [f"{key}={value!r}" for key, value in self.values.items()]
        if self.heads:
            parts += [f"{name}: {head.summary()}" for name, head in self.heads.items()]
        return f"Prediction({', '.join(parts)})"

    def summary(self) -> str:
        """One human line: ``circle 0.97``, ``circle 0.97 at (12, 3, 40, 33)`` or
        ``2 objects: circle 0.91 at (...), star 0.80 at (...)``."""
        def at(d: Detection) -> str:
            return f"{d.name} {d.score:.2f} at ({', '.join(f'{v:.0f}' for v in d.box)})"

        if self.heads:
            return "; ".join(f"{name}: {head.summary()}" for name, head in self.heads.items())
        if self.values and self.scores is None and self.detections is None:
            return ", ".join(f"{key} {value}" for key, value in self.values.items())
        if self.scores is not None and self.detections is None:
            return f"{self.name} {self.score:.2f}"
        if self.scores is not None and self.detections:
            return at(self.detections[0])
        found = self.detections or []
        return f"{len(found)} object{'s' * (len(found) != 1)}" + (
            f": {', '.join(at(d) for d in found[:5])}" if found else "")

    def top(self, k: int = 5) -> list[ClassScore]:
        """The ``k`` most probable classes, best first (empty without class scores)."""
        if self.scores is None:
            return []
        values = self.scores.tolist()
        return [ClassScore(i, self.class_names[i], values[i]) for i in _ranked(values, k)]

    @property
    def label(self) -> int | None:
        """Index of the most probable class (classify, localize), else None."""
        return None if self.scores is None else int(np.argmax(self.scores))

    @property
    def name(self) -> str | None:
        """Name of the most probable class (classify, localize), else None."""
        return None if self.label is None else self.class_names[self.label]

    @property
    def score(self) -> float | None:
        """Probability of the most probable class (classify, localize), else None."""
        return None if self.scores is None else float(np.max(self.scores))

    def to_dict(self, top_k: int = 5) -> dict[str, Any]:
        """One JSON line of ``predictions.jsonl``: source, size, top classes, detections."""
        out: dict[str, Any] = {"source": self.source, "task": self.task,
                               "width": self.width, "height": self.height}
        if self.scores is not None:  # as top() gives, without the objects (a line per image)
            values, names = self.scores.tolist(), self.class_names
            top = [{"label": i, "name": names[i], "score": round(values[i], SCORE_DECIMALS)}
                   for i in _ranked(values, max(1, top_k))]
            out.update(top[0], top=top[:top_k])
        if self.detections is not None:
            out["detections"] = [d.to_dict() for d in self.detections]
        if self.values:
            out.update({k: v for k, v in self.values.items() if k not in out})
        for name, head in (self.heads or {}).items():  # each head's fields under its name
            fields = head.to_dict(top_k)
            out[name] = {k: v for k, v in fields.items() if k not in ("source", "width", "height")}
        return out

