"""Graph outputs of one batch -> :class:`~vision_tasks.results.Prediction` objects in
original-image coordinates, by the task's own decoder.

Each task's :class:`~vision_tasks.task_spec.TaskSpec` names its decoder: it takes the
batch's outputs (named as in the spec), the row index, the image's
:class:`~vision_tasks.imaging.Letterbox`, the model metadata and the lowest score a
detection must have to be kept (box tasks; the graph's own threshold is a floor below it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_tasks.contract import ModelMetadata
from vision_tasks.imaging import Letterbox
from vision_tasks.results import Prediction
from vision_tasks.task_spec import TaskSpec

Outputs = dict[str, np.ndarray]


def decode_batch(outputs: Outputs, letterboxes: Sequence[Letterbox], sources: Sequence[str],
                 meta: ModelMetadata, spec: TaskSpec, min_score: float = 0.0) -> list[Prediction]:
    """Predictions of a batch by the task's decoder (``spec.decoder``), row ``i`` for
    ``letterboxes[i]`` / ``sources[i]``; detections scoring below ``min_score`` are left out."""
    decoder = spec.decoder
    predictions = []
    for i, (lb, source) in enumerate(zip(letterboxes, sources, strict=True)):
        prediction = decoder(outputs, i, lb, meta, min_score)
        prediction.source = source
        predictions.append(prediction)
    return predictions
