"""Task ``classify``: what is in the image? One label per image.

- head: pool (avg | max | flatten) over the last feature map -> optional hidden
  fully connected layers -> class logits [N, C]
- loss: cross-entropy with optional label smoothing
- post-processing: softmax -> ``scores`` [N, C] (the ONNX contract's output)
- metrics: top-1, top-k (k = min(5, C)), per-class accuracy, confusion matrix (PNG)
- data: ImageFolder ``split/<class>/<image>``; synthetic shapes in that layout
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vision_tasks.contract import ModelMetadata
from vision_tasks.imaging import Letterbox
from vision_tasks.results import Prediction
from vision_tasks.task_spec import Output, TaskSpec


@dataclass
class ClassifyHeadConfig:
    pool: Literal["avg", "max", "flatten"] = "avg"
    hidden: list[int] = field(default_factory=list)  # sizes of hidden fully connected layers
    activation: str = "relu"
    dropout: float = 0.0


@dataclass
class ClassifyLossConfig:
    label_smoothing: float = 0.0


def decode_classify(outputs: dict[str, np.ndarray], i: int, lb: Letterbox, meta: ModelMetadata,
                    min_score: float = 0.0) -> Prediction:
    """``scores [N, C]`` -> the class probabilities of image ``i``."""
    return Prediction(source="", task=meta.task, width=lb.width, height=lb.height,
                      class_names=meta.class_names, letterbox=lb, scores=outputs["scores"][i])


SPEC = TaskSpec(
    name="classify",
    outputs=(Output("scores", "float32", ("N", "C")),),
    decoder=decode_classify,
    training="vision_tasks.tasks.classify.training:TASK",
    head_config=ClassifyHeadConfig,
    loss_config=ClassifyLossConfig,
)
