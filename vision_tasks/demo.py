"""``vision-tasks demo``: the whole product on built-in synthetic data, in one command.

Synthesize a shapes set -> train the task's ready config -> evaluate best.pt ->
export it to ONNX (parity-checked) -> predict the val images with the torch-free runtime ->
print where everything is. Runs on a 2-core CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from vision_tasks import configs
from vision_tasks.config import load_config
from vision_tasks.engine.evaluate import format_metrics
from vision_tasks.engine.trainer import Trainer
from vision_tasks.engine.validate import validate_model
from vision_tasks.errors import VisionTasksError
from vision_tasks.task_api import get_task

# Synthetic set sizes of the demo (images per split); the image side is the task's synth_size.
DEMO_DATA = {"n_train": 1500, "n_val": 300}


def find_config(task: str) -> Path:
    """The task's ready config ``<task>.yaml``, shipped in the package (``vision_tasks.configs``)."""
    return configs.path(task)


def run_demo(args: argparse.Namespace, run_verb: Callable[[list[str]], int]) -> int:
    t0 = time.time()
    task = get_task(args.task)
    out = Path(args.out)
    data_dir = out / "data"
    size = task.synth_size
    config_path = find_config(args.task)
    overrides = [*task.demo_overrides(data_dir), f"data.image_size={size}",
                 *args.overrides]
    cfg = load_config(config_path, overrides)  # a bad --set fails before minutes of work
    print(f"[1/5] synthesizing a {args.task} shapes set in {data_dir}")
    task.synthesize(data_dir, DEMO_DATA["n_train"], DEMO_DATA["n_val"], size, seed=0)

    print(f"[2/5] training {config_path.name} ({cfg.model.backbone.name}, {cfg.train.epochs} epochs)")
    run_dir = out / "run"
    result = Trainer(cfg, run_dir, progress=not args.quiet, overwrite=True).fit()

    print(f"[3/5] evaluating {result.best}")
    metrics, val_dir = validate_model(result.best, [], progress=not args.quiet)

    lines = export_and_predict(result.best, cfg, out, run_verb, args.quiet)
    print()
    print(f"demo finished in {time.time() - t0:.0f} s")
    print(f"  metrics:   {format_metrics(metrics)}")
    print(f"  weights:   {result.best}")
    print(f"  curves:    {run_dir / 'curves.png'}   per-epoch table: {run_dir / 'metrics.csv'}")
    print(f"  val:       {val_dir / 'metrics.json'} (plots beside it)")
    print("\n".join(lines))
    return 0


def export_and_predict(best: Path, cfg, out: Path, run_verb: Callable[[list[str]], int],
                       quiet: bool, examples: int = 3) -> list[str]:
    """Steps 4 and 5 through the ``export`` and ``predict`` verbs (plug-ins: the core does
    not import the export package): ``best`` -> ``out/model.onnx``, parity-checked against
    PyTorch, then the torch-free runtime predicts the val images into ``out/predict/``.
    Returns the lines to report."""
    onnx_path, predict_dir = out / "model.onnx", out / "predict"
    export_argv = ["export", str(best), "--out", str(onnx_path), "--check"]
    print(f"[4/5] vision-tasks {' '.join(export_argv)}")
    if run_verb(export_argv) != 0:
        raise VisionTasksError(f"demo: exporting {best} failed (see above)")
    val = cfg.data.val if isinstance(cfg.data.val, str) else cfg.data.val["images"]
    predict_argv = ["predict", str(onnx_path), str(val), "--out", str(predict_dir), "--overwrite",
                    *(["--quiet"] if quiet else [])]
    print(f"[5/5] vision-tasks {' '.join(predict_argv)}")
    if run_verb(predict_argv) != 0:
        raise VisionTasksError(f"demo: predicting with {onnx_path} failed (see above)")
    predictions_path = predict_dir / "predictions.jsonl"
    records = [json.loads(line) for line in predictions_path.read_text(encoding="utf-8").splitlines()]
    picks = records[:: max(1, len(records) // examples)][:examples]
    return [f"  onnx:      {onnx_path}",
            f"  predict:   {predictions_path} ({len(records)} images)",
            "  examples:", *(f"    {describe_prediction(r)}" for r in picks)]


def describe_prediction(record: dict) -> str:
    """One line of predictions.jsonl as text: ``path: circle 0.97 [box 3 4 40 33]``."""
    text = f"{record['source']}:"
    if "name" in record:
        text += f" {record['name']} {record['score']:.2f}"
    for det in record.get("detections", [])[:3]:
        text += f" [{det['name']} {det['score']:.2f} box {' '.join(f'{v:.0f}' for v in det['box'])}]"
    return text
