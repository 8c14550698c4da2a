"""Why `configs/classify.yaml` learned nothing on the hard synthetic style, measured (issue 13).

Usage (from the repository root)::

    .venv/bin/vision-tasks data synth classify WORK/hard --train 2000 --val 300 --size 128 --style hard
    .venv/bin/python benchmarks/classify_hard.py --data WORK/hard --work WORK/runs \\
        --sizes 128 64 --variants old new

Each variant is ``configs/classify.yaml`` (with ``--config``: another file) plus the
``--set`` overrides of ``VARIANTS`` below, trained ``--epochs`` epochs on ``--data``
(ImageFolder) at each ``--sizes`` input size, seed 0, in this process, one after another.
Prints one markdown row per run (best/last top-1, train loss of the first and last epoch,
wall and CPU seconds) and appends it as JSON to ``WORK/results.jsonl``. CPU seconds are this
process's user + system time: on a shared machine they move much less than wall time.
Figures: benchmarks/RESULTS.md, section "Classify on the hard style".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from vision_tasks.config import load_config
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]

# name -> overrides on top of the config. Every variant spells out what it changes from the
# config of today, so its figures in RESULTS.md stay reproducible when the config moves on.
# "old": the recipe before issue 13; "aug": the first fix (max pooling, five stages, lr
# 0.001) with the old augmentation; "new": the config as it is now (that fix, a flip only).
OLD_AUG = ["data.augment.scale=[0.8,1.2]", "data.augment.translate=0.1", "data.augment.rotate=15"]
OLD = ["model.head.pool=avg", "loss.label_smoothing=0.05", "model.backbone.depths=[1,1,2,2]",
       "train.lr=0.003", *OLD_AUG]
AUG = [*OLD_AUG]
NO_AUG = ["data.augment.scale=[1,1]", "data.augment.translate=0", "data.augment.rotate=0"]
VARIANTS: dict[str, list[str]] = {
    "old": OLD,
    "old_max": [*OLD, "model.head.pool=max"],
    "old_nols": [*OLD, "loss.label_smoothing=0.0"],
    "old_noaug": [*OLD, "data.augment.hflip=0", *NO_AUG],
    "old_lr1e-3": [*OLD, "train.lr=0.001"],
    "old_5stages": [*OLD, "model.backbone.depths=[1,1,2,2,2]"],
    "max_5stages": [*OLD, "model.head.pool=max", "model.backbone.depths=[1,1,2,2,2]"],
    "old_flatten": [*OLD, "model.head.pool=flatten", "model.head.hidden=[256]"],
    "old_w32": [*OLD, "model.backbone.width=32"],
    "max_nols": [*OLD, "model.head.pool=max", "loss.label_smoothing=0.0"],
    "max_lr1e-3": [*OLD, "model.head.pool=max", "train.lr=0.001"],
    "max_nols_lr1e-3": [*OLD, "model.head.pool=max", "loss.label_smoothing=0.0", "train.lr=0.001"],
    "max_lr2e-3": [*OLD, "model.head.pool=max", "train.lr=0.002"],
    "aug": AUG,
    "aug_bs16": [*AUG, "train.batch_size=16"],
    "aug_nols": [*AUG, "loss.label_smoothing=0.0"],
    "aug_lr2e-3": [*AUG, "train.lr=0.002"],
    "aug_norot": [*AUG, "data.augment.rotate=0"],
    "aug_noscale": [*AUG, "data.augment.scale=[1,1]", "data.augment.translate=0"],
    "new": [],
}


def run(config: Path, data: Path, size: int, epochs: int, overrides: list[str], out: Path
        ) -> dict[str, Any]:
    cfg = load_config(config, [f"data.train={data / 'train'}", f"data.val={data / 'val'}",
                               f"data.image_size={size}", f"train.epochs={epochs}", *overrides])
    t0, cpu0 = time.perf_counter(), os.times()
    result = Trainer(cfg, out, progress=False, overwrite=True, log=lambda line: None).fit()
    cpu1 = os.times()
    history = load_checkpoint(result.last)["history"]
    return {"wall_s": time.perf_counter() - t0, "cpu_s": sum(cpu1[:4]) - sum(cpu0[:4]),
            "best_top1": max(r["val_top1"] for r in history), "last_top1": history[-1]["val_top1"],
            "loss_first": history[0].get("train_loss"), "loss_last": history[-1].get("train_loss"),
            "curve": [round(r["val_top1"], 3) for r in history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder set (train/, val/)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the runs")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "classify.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["old", "new"], choices=list(VARIANTS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| variant | px | best top-1 | last top-1 | train loss ep 1 -> last | wall s | CPU s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in args.variants:
        for size in args.sizes:
            row = run(args.config, args.data, size, args.epochs,
                      [*VARIANTS[name], f"train.seed={args.seed}"],
                      args.work / f"{name}-{size}-s{args.seed}")
            row.update(variant=name, size=size, seed=args.seed, data=str(args.data), epochs=args.epochs,
                       load=os.getloadavg()[0])
            with open(args.work / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"| {name} | {size} | {row['best_top1']:.3f} | {row['last_top1']:.3f} | "
                  f"{row['loss_first']:.3f} -> {row['loss_last']:.3f} | {row['wall_s']:.0f} | "
                  f"{row['cpu_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
