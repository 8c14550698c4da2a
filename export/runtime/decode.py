"""Graph outputs of one batch -> :class:`Prediction` objects in original-image coordinates.

One decoder per task (see :data:`DECODERS`); each takes the batch's outputs (named as in
:data:`vision_tasks.export.runtime.contract.TASK_OUTPUTS`), the row index, the image's
:class:`~vision_tasks.imaging.Letterbox`, the model metadata and the lowest score a
detection must have to be kept (box tasks; the graph's own threshold is a floor below it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vision_tasks.imaging import Letterbox
from vision_tasks.masks import resample_mask

from .contract import ModelMetadata
from .results import Detection, Prediction

Outputs = dict[str, np.ndarray]
Decoder = Callable[[Outputs, int, Letterbox, ModelMetadata, float], Prediction]


def _prediction(meta: ModelMetadata, lb: Letterbox, **fields) -> Prediction:
    return Prediction(source="", task=meta.task, width=lb.width, height=lb.height,
                      class_names=meta.class_names, letterbox=lb, **fields)


def decode_classify(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata,
                    min_score: float = 0.0) -> Prediction:
    """``scores [N, C]`` -> class probabilities."""
    return _prediction(meta, lb, scores=outputs["scores"][i])


def decode_localize(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata,
                    min_score: float = 0.0) -> Prediction:
    """``scores [N, C]`` and ``boxes [N, 4]`` (input pixels) -> probabilities and one object
    of the top class, its box mapped back to the original image."""
    scores = outputs["scores"][i]
    label = int(np.argmax(scores))
    box = lb.boxes_to_original(outputs["boxes"][i])
    detection = Detection(box=tuple(float(v) for v in box), label=label,
                          name=meta.class_names[label], score=float(scores[label]))
    return _prediction(meta, lb, scores=scores, detections=[detection])


def decode_detect(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata,
                  min_score: float = 0.0) -> Prediction:
    """``boxes [N, K, 4]``, ``scores``/``labels [N, K]``, ``num_detections [N]`` (and for
    segment ``masks [N, K, Hm, Wm]``) -> the first ``num_detections`` objects, those scoring
    at least ``min_score`` (rows are sorted by decreasing score).

    Segment masks are resampled into the original image, thresholded at the metadata's
    ``thresholds["mask"]`` (0.5 when absent), inside each object's box only: each
    :class:`Detection` keeps that crop (see :func:`vision_tasks.masks.resample_mask`).
    """
    n = int(outputs["num_detections"][i])
    n = int(np.count_nonzero(outputs["scores"][i, :n] >= min_score))
    boxes = lb.boxes_to_original(outputs["boxes"][i, :n])
    scores, labels = outputs["scores"][i, :n], outputs["labels"][i, :n]
    crops = [None] * n
    if "masks" in outputs:
        threshold = float(meta.thresholds.get("mask", 0.5))
        crops = [resample_mask(outputs["masks"][i, k], lb, threshold, boxes[k]) for k in range(n)]
    return _prediction(meta, lb, detections=[
        Detection(box=tuple(float(v) for v in boxes[k]), label=int(labels[k]),
                  name=meta.class_names[int(labels[k])], score=float(scores[k]), crop=crops[k])
        for k in range(n)])


DECODERS: dict[str, Decoder] = {
    "classify": decode_classify,
    "localize": decode_localize,
    "detect": decode_detect,
    "segment": decode_detect,
}
"""Task name -> decoder. A new task adds its decoder here and its outputs to the contract."""


def decode_batch(outputs: Outputs, letterboxes: Sequence[Letterbox], sources: Sequence[str],
                 meta: ModelMetadata, min_score: float = 0.0) -> list[Prediction]:
    """Predictions of a batch, row ``i`` for ``letterboxes[i]`` / ``sources[i]``; detections
    scoring below ``min_score`` are left out."""
    decoder = DECODERS[meta.task]
    predictions = []
    for i, (lb, source) in enumerate(zip(letterboxes, sources, strict=True)):
        prediction = decoder(outputs, i, lb, meta, min_score)
        prediction.source = source
        predictions.append(prediction)
    return predictions
