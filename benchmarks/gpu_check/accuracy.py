"""Accuracy section: ``vision-tasks val`` of each exported file (fp32, fp16) on each
runtime against ``vision-tasks val`` of its checkpoint (PyTorch, same data).

Runtimes: ``cuda`` (onnxruntime's CUDA provider alone: ``RuntimeOptions(tensorrt=False)``),
``tensorrt`` (TensorRT, the nodes it cannot take left to CUDA; fp16 kernels for the fp16
file) and, in the CPU modes, ``cpu``. Held to: the checkpoint's metric minus 0.5 point
(fp32) or 1 point (fp16); a file may score higher.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vision_tasks.export import onnx_eval
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.fast_path import RuntimeOptions

from vision_tasks.engine.validate import validate_model

from .models import Made
from .plan import NO_GPU, NO_TIME, Budget

PRIMARY = {"classify": "top1", "localize": "corloc", "detect": "box_map", "segment": "mask_map"}
TOLERANCE = {"fp32": 0.005, "fp16": 0.01}
RUNTIMES = {
    "cpu": ("cpu", RuntimeOptions()),
    "cuda": ("cuda", RuntimeOptions(tensorrt=False)),
    "tensorrt": ("cuda", RuntimeOptions(tensorrt=True)),
}


@contextlib.contextmanager
def predictor_options(options: RuntimeOptions, seen: list[Predictor]) -> Iterator[None]:
    """``vision-tasks val model.onnx`` (:func:`~vision_tasks.export.onnx_eval.evaluate_onnx`)
    with ``options`` given to the Predictor it builds, which is appended to ``seen``."""
    original = onnx_eval.Predictor

    @functools.wraps(original)
    def build(*args: Any, **kwargs: Any) -> Predictor:
        predictor = original(*args, **{**kwargs, "options": options})
        seen.append(predictor)
        return predictor

    onnx_eval.Predictor = build  # type: ignore[assignment, misc]
    try:
        yield
    finally:
        onnx_eval.Predictor = original  # type: ignore[misc]


def _metric(metrics: dict[str, Any], task: str) -> float:
    name = PRIMARY.get(task)
    if name in metrics:
        return float(metrics[name])
    return float(next(v for v in metrics.values() if isinstance(v, float)))


def val_file(path: Path, runtime: str, precision: str, task: str, scratch: Path
             ) -> tuple[float, str]:
    """The primary metric of ``path`` on ``runtime`` and the provider really used (with
    the session's provider chain, e.g. ``TensorRT > CUDA > CPU``)."""
    device, options = RUNTIMES[runtime]
    if runtime == "tensorrt":
        options = RuntimeOptions(trt_fp16=precision == "fp16")
    seen: list[Predictor] = []
    with predictor_options(options, seen):
        metrics, _ = validate_model(path, [], scratch / f"val-{runtime}-{precision}",
                                    device=device, progress=False,
                                    evaluators={".onnx": _Entry(onnx_eval.evaluate_onnx)})
    chain = " > ".join(p.removesuffix("ExecutionProvider") for p in seen[0].session.get_providers())
    return _metric(metrics, task), chain


class _Entry:
    """An entry-point stand-in: ``load()`` gives the evaluator (as ``importlib.metadata``)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def load(self) -> Any:
        return self.fn


def checkpoint_metrics(made: list[Made], gpu: bool, scratch: Path) -> dict[str, float]:
    """``vision-tasks val`` of each checkpoint (PyTorch on the GPU, else the CPU)."""
    out = {}
    for m in made:
        metrics, _ = validate_model(m.checkpoint, [], scratch / f"val-{m.task}-pt",
                                    device="cuda" if gpu else "cpu", progress=False)
        out[m.task] = _metric(metrics, m.task)
    return out


def accuracy_rows(made: list[Made], runtimes: tuple[str, ...], reference: dict[str, float],
                  gpu: bool, budget: Budget, deadline: float, scratch: Path
                  ) -> list[dict[str, Any]]:
    """Rows (task, file precision, runtime, metric, checkpoint's, difference, ok) of
    ``runtimes``, runtime by runtime; a row not started by ``deadline`` (seconds into the
    run) says so."""
    rows = []
    for runtime in runtimes:
        for m in made:
            for precision, path in (("fp32", m.fp32), ("fp16", m.fp16)):
                ref = reference[m.task]
                row: dict[str, Any] = {"task": m.task, "precision": precision, "runtime": runtime,
                                       "checkpoint": ref, "metric": PRIMARY.get(m.task, "?")}
                if runtime != "cpu" and not gpu:
                    row["status"] = NO_GPU
                elif budget.elapsed() > deadline:
                    row["status"] = NO_TIME
                else:
                    try:
                        value, chain = val_file(path, runtime, precision, m.task, scratch)
                    except Exception as err:  # reported in the row, the others still run
                        row["status"] = f"error: {' '.join(str(err).split())[:200]}"
                    else:
                        diff = value - ref
                        row.update(value=value, diff=diff, providers=chain, status="measured",
                                   ok=diff >= -TOLERANCE[precision] - 1e-9)
                rows.append(row)
    return rows
