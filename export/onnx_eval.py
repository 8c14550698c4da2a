"""``vision-tasks val model.onnx``: the task's metric computed from the ONNX file itself.

Registered as the ``.onnx`` entry of the ``vision_tasks.evaluators`` group. The data and
the metric are the training side's (the same ``data.val`` loader and the task's
:class:`~vision_tasks.task_api.Evaluator` as ``val best.pt``); only the model is the ONNX
graph, run by onnxruntime through :class:`vision_tasks.export.runtime.Predictor`. The training config
comes from the model's metadata, so ``--set data.val=DIR`` points it at other data. Every
head of the file is scored on its own ``val`` set (a single-task file: its one head).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vision_tasks.config import apply_overrides, config_from_dict
from vision_tasks.contract import ModelMetadata
from vision_tasks.engine.evaluate import score_batches
from vision_tasks.engine.heads import HeadData, evaluate_heads, head_data
from vision_tasks.errors import ConfigError
from vision_tasks.task_api import Evaluator

from .runtime import Predictor


def evaluate_onnx(path: str | Path, overrides: list[str], batch_size: int | None,
                  device: str | None, progress: bool) -> tuple[dict[str, Any], Evaluator]:
    """Metrics of the ONNX model at ``path`` on ``data.val`` (see the module docstring)."""
    predictor = Predictor(path, device=device or "auto")
    meta = predictor.metadata
    raw = apply_overrides(copy.deepcopy(meta.config), overrides)
    cfg = config_from_dict(raw, f"{path} (config in the ONNX metadata)")
    if (cfg.data.image_size, cfg.data.image_size) != meta.input_size:
        raise ConfigError(f"{path}: data.image_size={cfg.data.image_size} but the graph's input is "
                          f"{meta.input_size[0]}x{meta.input_size[1]}; drop that --set")
    heads_meta = meta.head_views()
    heads = head_data(cfg, {name: list(h.class_names) for name, h in heads_meta.items()},
                      batch_size or cfg.train.batch_size, train=False)

    def run(name: str, head: HeadData) -> tuple[dict[str, Any], Evaluator]:
        desc = _desc(predictor) if cfg.single_task else f"{_desc(predictor)} {name}"
        return score_batches(_runner(predictor, meta, name), head.task, head.val, head.class_names,
                             progress, desc)

    return evaluate_heads(run, heads, cfg.single_task)


def _runner(predictor: Predictor, meta: ModelMetadata, head: str
            ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """uint8 [N, 3, S, S] images -> the outputs of ``head``, under the task's own names."""
    names = {meta.output_name(head, out): out for out in meta.head_views()[head].outputs}

    def predict(images: torch.Tensor) -> dict[str, torch.Tensor]:
        nhwc = images.permute(0, 2, 3, 1).contiguous().numpy()  # uint8 [N, 3, S, S] -> [N, S, S, 3]
        return {names[k]: torch.from_numpy(v) for k, v in predictor.run(nhwc).items() if k in names}

    return predict


def _desc(predictor: Predictor) -> str:
    return f"val onnx ({predictor.provider.removesuffix('ExecutionProvider')})"
