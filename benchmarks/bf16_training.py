"""bf16 training on the CPU (``train.amp``): images/s and the final metric, fp32 vs bf16,
for the four default configs.

Two measurements per task, on the synthetic set its config names (``vision-tasks data
synth``, seed 0):

1. **Step rate, alternating** (the ratio that counts on a shared machine): two copies of
   the same freshly initialised model, one stepping in fp32 and one under bf16 autocast
   (the trainer's own :func:`~vision_tasks.engine.trainer.train_step`), take one step each
   in turn on the same ``--steps`` pre-loaded batches (augmented as in training),
   ``--rounds`` rounds per run, ``--runs`` runs; per run, batch / median step time of each
   and their ratio. Data loading is left out (the same for both precisions).
2. **Whole runs**: ``vision-tasks train`` of the task's config with ``train.amp=off`` and
   then ``train.amp=bf16`` (same seed, same data), ``--epochs`` epochs (default: the
   config's, see ``EPOCHS``); seconds per epoch (training + validation + checkpoints) and
   the best validation value of the primary metric.

Usage::

    .venv/bin/python benchmarks/bf16_training.py --out /tmp/bf16 [--tasks classify detect]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from vision_tasks.config import load_config
from vision_tasks.engine.evaluate import make_loader
from vision_tasks.engine.precision import cpu_bf16_units
from vision_tasks.engine.trainer import StepSettings, Trainer, TrainState, train_step
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

REPO = Path(__file__).resolve().parents[1]
SETS = {"classify": (1000, 200, 64), "localize": (1000, 200, 64), "detect": (2000, 300, 128),
        "segment": (2000, 300, 128)}
"""Training / validation images and size of each task's synthetic set (its config's comment)."""
EPOCHS = {"classify": 8, "localize": 6, "detect": 5, "segment": 5}
"""Epochs of the whole runs: the configs' own for classify and localize; detect and
segment are shortened from 10 to 5 (the schedule is planned for 5)."""


def task_config(task_name: str, data_root: Path, overrides: list[str]):
    task = get_task(task_name)
    if not (data_root / "val").exists():
        task.synthesize(data_root, *SETS[task_name], seed=0)
    return task, load_config(REPO / "configs" / f"{task_name}.yaml",
                             [*task.demo_overrides(data_root), *overrides])


def step_rates(task_name: str, data_root: Path, steps: int, runs: int, rounds: int,
               seed: int) -> dict:
    """Images/s of fp32 and bf16 training steps, alternating (see the module docstring)."""
    task, cfg = task_config(task_name, data_root, [f"train.seed={seed}", "data.workers=0"])
    dataset = task.build_dataset(cfg, "train", train=True)
    loader = iter(make_loader(task, dataset, cfg.train.batch_size, 0))
    batches = [next(loader) for _ in range(steps)]
    torch.manual_seed(seed)
    model = build_model(cfg, task, len(dataset.class_names))
    criterion = task.build_loss(cfg, len(dataset.class_names))
    cpu = torch.device("cpu")
    states = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        state = TrainState.start(copy.deepcopy(model).train(), cfg.train, steps * rounds * runs,
                                 dtype, cpu)
        states[name] = (state, StepSettings(cpu, dtype, cfg.train.grad_clip))
    for state, settings in states.values():  # warm-up (oneDNN primitives)
        for images, targets in batches[:3]:
            train_step(state, images.float(), targets, criterion, settings)
    per_run = []
    for _ in range(runs):
        seconds: dict[str, list[float]] = {name: [] for name in states}
        for i in range(rounds):
            images, targets = batches[i % steps]
            for name, (state, settings) in states.items():
                t0 = time.perf_counter()
                train_step(state, images.float(), targets, criterion, settings)
                seconds[name].append(time.perf_counter() - t0)
        per_run.append({name: cfg.train.batch_size / statistics.median(s)
                        for name, s in seconds.items()})
    ratios = [r["bf16"] / r["fp32"] for r in per_run]
    return {"batch_size": cfg.train.batch_size, "image_size": cfg.data.image_size,
            "rounds": rounds, "threads": torch.get_num_threads(), "runs": per_run,
            "fp32_median": statistics.median(r["fp32"] for r in per_run),
            "bf16_median": statistics.median(r["bf16"] for r in per_run),
            "bf16_over_fp32": ratios, "bf16_over_fp32_median": statistics.median(ratios),
            "load_average": os.getloadavg()}


def whole_run(task_name: str, data_root: Path, out: Path, amp: str, epochs: int, seed: int) -> dict:
    """One training run; seconds per epoch and the best primary metric."""
    task, cfg = task_config(task_name, data_root, [f"train.amp='{amp}'", f"train.epochs={epochs}",
                                                   f"train.seed={seed}"])
    stamps = [time.perf_counter()]
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(f"  [{task_name} {amp}] {line}", flush=True)

    def stamp(*_: object) -> None:
        stamps.append(time.perf_counter())

    result = Trainer(cfg, out, progress=False, log=log, overwrite=True, callbacks=[stamp]).fit()
    epoch_s = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    return {"amp": amp, "epochs": epochs, "seed": seed, "first_line": lines[0],
            "seconds": result.seconds, "epoch_seconds": [stamps[1] - stamps[0], *epoch_s],
            "primary_metric": result.primary_metric, "best": result.best_metric,
            "best_checkpoint": str(result.best),
            "train_images": SETS[task_name][0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bf16"))
    parser.add_argument("--data", type=Path, default=None, help="synthetic sets (default OUT/data)")
    parser.add_argument("--tasks", nargs="+", default=list(SETS))
    parser.add_argument("--steps", type=int, default=8, help="pre-loaded batches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30, help="steps of each precision per run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override EPOCHS for every task")
    parser.add_argument("--amps", nargs="+", default=["off", "bf16"], help="whole runs to do")
    parser.add_argument("--skip-runs", action="store_true", help="step rates only")
    parser.add_argument("--skip-rates", action="store_true", help="whole runs only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = args.data or args.out / "data"
    report_path = args.out / "bf16_training.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["cpu_bf16_units"] = list(cpu_bf16_units())
    for name in args.tasks:
        entry = report.setdefault(name, {})
        if not args.skip_rates:
            entry["step_rates"] = step_rates(name, data / name, args.steps, args.runs, args.rounds,
                                             args.seed)
            print(name, json.dumps(entry["step_rates"]), flush=True)
        if not args.skip_runs:
            for amp in args.amps:
                epochs = args.epochs or EPOCHS[name]
                run = whole_run(name, data / name, args.out / f"{name}-{amp}-s{args.seed}", amp,
                                epochs, args.seed)
                entry[f"run_{amp}_s{args.seed}"] = run
                print(name, json.dumps(run), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
