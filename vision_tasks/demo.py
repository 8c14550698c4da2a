"""``vision-tasks demo``: the whole product on built-in synthetic data, in one command.

Synthesize a shapes set -> train the task's ready config -> evaluate best.pt ->
print where everything is. Runs on a 2-core CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vision_tasks.config import load_config
from vision_tasks.engine.evaluate import format_metrics
from vision_tasks.engine.trainer import Trainer
from vision_tasks.engine.validate import validate_model
from vision_tasks.errors import ConfigError
from vision_tasks.task_api import get_task

# Synthetic set sizes of the demo (images per split, pixels).
DEMO_DATA = {"n_train": 1500, "n_val": 300, "size": 64}


def find_config(task: str) -> Path:
    """The ready config ``configs/<task>.yaml`` of a source checkout or an installed package."""
    candidates = [Path(__file__).resolve().parents[1] / "configs" / f"{task}.yaml",
                  Path(sys.prefix) / "share" / "vision-tasks" / "configs" / f"{task}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"no ready config for task '{task}' (looked in {', '.join(map(str, candidates))})")


def run_demo(args: argparse.Namespace, run_verb: Callable[[list[str]], int]) -> int:
    t0 = time.time()
    task = get_task(args.task)
    out = Path(args.out)
    data_dir = out / "data"
    print(f"[1/3] synthesizing a {args.task} shapes set in {data_dir}")
    task.synthesize(data_dir, DEMO_DATA["n_train"], DEMO_DATA["n_val"], DEMO_DATA["size"], seed=0)

    config_path = find_config(args.task)
    overrides = [*task.demo_overrides(data_dir), f"data.image_size={DEMO_DATA['size']}",
                 *args.overrides]
    cfg = load_config(config_path, overrides)
    print(f"[2/3] training {config_path.name} ({cfg.model.backbone.name}, {cfg.train.epochs} epochs)")
    run_dir = out / "run"
    result = Trainer(cfg, run_dir, progress=not args.quiet, overwrite=True).fit()

    print(f"[3/3] evaluating {result.best}")
    metrics, val_dir = validate_model(result.best, [], progress=not args.quiet)
    print()
    print(f"demo finished in {time.time() - t0:.0f} s")
    print(f"  metrics:   {format_metrics(metrics)}")
    print(f"  weights:   {result.best}")
    print(f"  curves:    {run_dir / 'curves.png'}   per-epoch table: {run_dir / 'metrics.csv'}")
    print(f"  val:       {val_dir / 'metrics.json'} (plots beside it)")
    return 0
