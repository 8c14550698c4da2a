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

from vision_tasks.contract import OUTPUT_SEPARATOR, ModelMetadata
from vision_tasks.imaging import Letterbox
from vision_tasks.results import Prediction
from vision_tasks.task_spec import TaskSpec

Outputs = dict[str, np.ndarray]


def decode_batch(outputs: Outputs, letterboxes: Sequence[Letterbox], sources: Sequence[str],
                 meta: ModelMetadata, spec: TaskSpec | dict[str, TaskSpec],
                 min_score: float = 0.0) -> list[Prediction]:
    """Predictions of a batch by the task's decoder (``spec.decoder``), row ``i`` for
    ``letterboxes[i]`` / ``sources[i]``; detections scoring below ``min_score`` are left out.
    A multi-head model (``spec``: head name -> spec) gives each image one prediction holding
    every head's (:attr:`Prediction.heads`)."""
    if isinstance(spec, dict):
        return _decode_heads(outputs, letterboxes, sources, meta, spec, min_score)
    decoder = spec.decoder
    predictions = []
    for i, (lb, source) in enumerate(zip(letterboxes, sources, strict=True)):
        prediction = decoder(outputs, i, lb, meta, min_score)
        prediction.source = source
        predictions.append(prediction)
    return predictions


def _decode_heads(outputs: Outputs, letterboxes: Sequence[Letterbox], sources: Sequence[str],
                  meta: ModelMetadata, specs: dict[str, TaskSpec],
                  min_score: float) -> list[Prediction]:
    per_head = {}
    for name, spec in specs.items():
        prefix = name + OUTPUT_SEPARATOR
        head_outputs = {k.removeprefix(prefix): v for k, v in outputs.items() if k.startswith(prefix)}
        per_head[name] = decode_batch(head_outputs, letterboxes, sources, meta.heads[name], spec,
                                      min_score)
    return [Prediction(source=source, task=meta.task, width=lb.width, height=lb.height,
                       class_names=(), letterbox=lb,
                       heads={name: preds[i] for name, preds in per_head.items()})
            for i, (lb, source) in enumerate(zip(letterboxes, sources, strict=True))]
