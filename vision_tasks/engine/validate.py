"""``vision-tasks val``: a model's metrics on ``data.val``, written to metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vision_tasks.contract import ModelFileError
from vision_tasks.engine.checkpoint import LoadedModel, load_model
from vision_tasks.engine.evaluate import evaluate, write_metrics_json
from vision_tasks.engine.heads import HeadData, evaluate_heads, head_data
from vision_tasks.engine.trainer import select_device
from vision_tasks.errors import VisionTasksError


def validate_model(model_path: str | Path, overrides: list[str], out_dir: str | Path | None = None,
                   batch_size: int | None = None, device: str | None = None, progress: bool = True,
                   evaluators: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint (or, through ``evaluators``, another model format).

    ``evaluators`` maps a file suffix (e.g. ``.onnx``) to an entry point whose loaded
    function takes ``(path, overrides, batch_size, device, progress)`` and returns
    ``(metrics, evaluator)``. Results go to ``out_dir`` (default: ``RUN/val`` for
    ``RUN/weights/x.pt``, else the model's folder).
    """
    path = Path(model_path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found; pass RUN/weights/best.pt or an exported model")
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
    if out_dir is None:
        out_dir = path.parent.parent / "val" if path.parent.name == "weights" else path.parent / "val"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_json({"model": str(path), **metrics}, out / "metrics.json")
    evaluator.save_plots(out)
    return metrics, out


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
