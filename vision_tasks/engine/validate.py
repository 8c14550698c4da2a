"""``vision-tasks val``: a model's metrics on ``data.val``, written to metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vision_tasks.contract import ModelFileError
from vision_tasks.engine.checkpoint import LoadedModel, load_model
from vision_tasks.engine.evaluate import evaluate, write_metrics_json
from vision_tasks.engine.heads import HeadData, HeadEvaluators, evaluate_heads, head_data
from vision_tasks.engine.runlog import check_run_folder, plot_names
from vision_tasks.engine.trainer import select_device
from vision_tasks.errors import VisionTasksError

METRICS = "metrics.json"


def validate_model(model_path: str | Path, overrides: list[str], out_dir: str | Path | None = None,
                   batch_size: int | None = None, device: str | None = None, progress: bool = True,
                   evaluators: dict[str, Any] | None = None, overwrite: bool = False
                   ) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint (or, through ``evaluators``, another model format).

    ``evaluators`` maps a file suffix (e.g. ``.onnx``) to an entry point whose loaded
    function takes ``(path, overrides, batch_size, device, progress)`` and returns
    ``(metrics, evaluator)``. Results go to ``out_dir`` (default: ``RUN/val`` for
    ``RUN/weights/x.pt``, else the model's folder). A folder that holds no earlier ``val``
    output (nor a training run) keeps its files: ``metrics.json`` or a plot of the same name
    is replaced only with ``overwrite`` (:func:`~vision_tasks.engine.runlog.check_run_folder`).
    """
    path = Path(model_path)
    if out_dir is None:
        out_dir = path.parent.parent / "val" if path.parent.name == "weights" else path.parent / "val"
    out = Path(out_dir)
    overwrite = overwrite or _earlier_output(out)
    check_run_folder(out, [METRICS, *plot_names(None)], overwrite, "val")
    suffix = path.suffix.lower()
    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "model file not found"
        raise ModelFileError(f"{path}: {what}; pass RUN/weights/best.pt or an exported model")
    if suffix in (evaluators or {}):
        metrics, evaluator = evaluators[suffix].load()(path, overrides, batch_size, device, progress)
    elif suffix in (".pt", ".pth"):
        loaded = load_model(path, overrides)
        dev = (select_device(device, "--device") if device
               else select_device(loaded.cfg.train.device, f"{path}: train.device",
                                  "pass --device cpu or auto"))
        metrics, evaluator = validate_heads(loaded, batch_size, dev, progress)
    else:
        known = ", ".join([".pt", *(evaluators or {})])
        raise VisionTasksError(f"{path}: unknown model format '{suffix}'; expected one of {known}")
    if isinstance(evaluator, HeadEvaluators):  # a multi-head model: plots in <head>/
        check_run_folder(out, plot_names(list(evaluator.evaluators)), overwrite, "val")
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_json({"model": str(path), **metrics}, out / METRICS)
    evaluator.save_plots(out)
    return metrics, out


def _earlier_output(out: Path) -> bool:
    """``out`` holds what an earlier ``val`` wrote (a ``metrics.json`` naming its model) or a
    training run (``weights/last.pt``): its files of our names are ours to replace."""
    if (out / "weights" / "last.pt").is_file():
        return True
    try:
        record = json.loads((out / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("model"), str)


def validate_heads(loaded: LoadedModel, batch_size: int | None, device: Any, progress: bool
                   ) -> tuple[dict[str, Any], Any]:
    """Every head of a checkpoint's model on its own ``val`` set (one head: its metrics as
    they are; several: each head's under its name, and the run's score)."""
    model, cfg = loaded.model.to(device), loaded.cfg
    heads = head_data(cfg, {name: info.class_names for name, info in loaded.heads.items()},
                      batch_size or cfg.train.batch_size, train=False)

    def run(name: str, head: HeadData) -> tuple[dict[str, Any], Any]:
        return evaluate(model.view(name), head.task, head.val, head.class_names, device,
                        progress, desc="val" if cfg.single_task else f"val {name}")

    return evaluate_heads(run, heads, cfg.single_task)


__all__ = ["validate_model"]
