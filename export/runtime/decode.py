"""Graph outputs of one batch -> :class:`Prediction` objects in original-image coordinates.

One decoder per task (see :data:`DECODERS`); each takes the batch's outputs (named as in
:data:`export.runtime.contract.TASK_OUTPUTS`), the row index, the image's
:class:`~vision_tasks.imaging.Letterbox` and the model metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from export.runtime.contract import ModelMetadata
from export.runtime.results import Detection, Prediction
from vision_tasks.imaging import Letterbox

Outputs = dict[str, np.ndarray]
Decoder = Callable[[Outputs, int, Letterbox, ModelMetadata], Prediction]


def _prediction(meta: ModelMetadata, lb: Letterbox, **fields) -> Prediction:
    return Prediction(source="", task=meta.task, width=lb.width, height=lb.height,
                      class_names=meta.class_names, letterbox=lb, **fields)


def decode_classify(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata) -> Prediction:
    """``scores [N, C]`` -> class probabilities."""
    return _prediction(meta, lb, scores=outputs["scores"][i])


def decode_localize(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata) -> Prediction:
    """``scores [N, C]`` and ``boxes [N, 4]`` (input pixels) -> probabilities and one object
    of the top class, its box mapped back to the original image."""
    scores = outputs["scores"][i]
    label = int(np.argmax(scores))
    box = lb.boxes_to_original(outputs["boxes"][i])
    detection = Detection(box=tuple(float(v) for v in box), label=label,
                          name=meta.class_names[label], score=float(scores[label]))
    return _prediction(meta, lb, scores=scores, detections=[detection])


def mask_to_original(mask: np.ndarray, lb: Letterbox, threshold: float) -> np.ndarray:
    """Float ``[Hm, Wm]`` mask probabilities over the model input -> bool ``[H, W]`` over the
    original image, by one bilinear resampling of the letterboxed region (no double resize).
    """
    in_h, in_w = lb.size
    sx, sy = mask.shape[1] / in_w, mask.shape[0] / in_h
    # Original pixel centre (x + 0.5) -> input (x + 0.5) * scale + pad -> mask pixel centre.
    matrix = np.array([[lb.scale * sx, 0.0, (0.5 * lb.scale + lb.pad_x) * sx - 0.5],
                       [0.0, lb.scale * sy, (0.5 * lb.scale + lb.pad_y) * sy - 0.5]])
    resampled = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), matrix,
                               (lb.width, lb.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
    return resampled > threshold


def decode_detect(outputs: Outputs, i: int, lb: Letterbox, meta: ModelMetadata) -> Prediction:
    """``boxes [N, K, 4]``, ``scores``/``labels [N, K]``, ``num_detections [N]`` (and for
    segment ``masks [N, K, Hm, Wm]``) -> the first ``num_detections`` objects."""
    n = int(outputs["num_detections"][i])
    boxes = lb.boxes_to_original(outputs["boxes"][i, :n])
    scores, labels = outputs["scores"][i, :n], outputs["labels"][i, :n]
    masks = outputs.get("masks")
    threshold = float(meta.thresholds.get("mask", 0.5))
    detections = [
        Detection(box=tuple(float(v) for v in boxes[k]), label=int(labels[k]),
                  name=meta.class_names[int(labels[k])], score=float(scores[k]),
                  mask=None if masks is None else mask_to_original(masks[i, k], lb, threshold))
        for k in range(n)]
    return _prediction(meta, lb, detections=detections)


DECODERS: dict[str, Decoder] = {
    "classify": decode_classify,
    "localize": decode_localize,
    "detect": decode_detect,
    "segment": decode_detect,
}
"""Task name -> decoder. A new task adds its decoder here and its outputs to the contract."""


def decode_batch(outputs: Outputs, letterboxes: Sequence[Letterbox], sources: Sequence[str],
                 meta: ModelMetadata) -> list[Prediction]:
    """Predictions of a batch, row ``i`` for ``letterboxes[i]`` / ``sources[i]``."""
    decoder = DECODERS[meta.task]
    predictions = []
    for i, (lb, source) in enumerate(zip(letterboxes, sources, strict=True)):
        prediction = decoder(outputs, i, lb, meta)
        prediction.source = source
        predictions.append(prediction)
    return predictions
