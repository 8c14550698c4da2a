"""Transfer learning, measured: a localize head on a frozen classify backbone vs from scratch.

Usage (from the repository root)::

    .venv/bin/python benchmarks/transfer_learning.py                    # defaults below
    .venv/bin/python benchmarks/transfer_learning.py --epochs 6 --localize-train 200

Steps, all on synthetic shapes and in this one process:

1. a classify set (ImageFolder, seed 1) and a localize set (COCO json, seed 0: other images);
2. ``configs/classify.yaml`` trained on the classify set (skipped when ``WORK/classify``
   already holds a finished run, or ``--classify-checkpoint`` names one): its
   ``weights/best.pt`` is the source backbone;
3. (a) ``configs/localize.yaml`` from scratch; (b) the same config with
   ``model.backbone.pretrained=<classify best.pt>`` and ``model.backbone.freeze=all``:
   only the new head trains. Both with the same epochs, data and seed.

Prints a markdown table (wall time, trainable weights, best-epoch corloc / top1 / mean IoU,
corloc after each epoch) and writes it with every figure to ``WORK/transfer.json``.
Figures: benchmarks/RESULTS.md, section "Transfer learning".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from vision_tasks.config import load_config
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.trainer import Trainer
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

ROOT = Path(__file__).resolve().parents[1]


def train(config: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Train ``configs/<config>`` with ``overrides`` into ``out``; the figures of the run."""
    cfg = load_config(ROOT / "configs" / config, overrides)
    t0 = time.perf_counter()
    cpu0 = os.times()
    result = Trainer(cfg, out, progress=False, overwrite=True, log=lambda line: print("   ", line)).fit()
    cpu1 = os.times()
    best = load_checkpoint(result.best)
    history = load_checkpoint(result.last)["history"]  # best.pt's stops at the best epoch
    primary = get_task(cfg.task).primary_metric
    row = max(history, key=lambda r: r[f"val_{primary}"])
    model = build_model(cfg, get_task(cfg.task), len(best["class_names"]), load_pretrained=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"run": str(out), "wall_s": time.perf_counter() - t0,
            "cpu_s": sum(cpu1[:4]) - sum(cpu0[:4]),  # this process + its reaped loader workers
            "epochs": cfg.train.epochs, "best_epoch": row["epoch"],
            "trainable_weights": trainable,
            "metrics": {k[4:]: v for k, v in row.items() if k.startswith("val_")},
            "curve": [r[f"val_{primary}"] for r in history]}


def coco_split(root: Path, split: str) -> str:
    return f"data.{split}=" + json.dumps({"images": str(root / split / "images"),
                                          "annotations": str(root / split / "annotations.json")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/transfer", help="work folder (default runs/transfer)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="localize epochs for both runs (default: configs/localize.yaml's)")
    parser.add_argument("--localize-train", type=int, default=1000, help="localize training images")
    parser.add_argument("--val", type=int, default=200, help="validation images of both sets")
    parser.add_argument("--classify-train", type=int, default=1000, help="classify training images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--classify-checkpoint", default=None,
                        help="source backbone to use instead of training one (default: "
                             "WORK/classify/weights/best.pt, trained when missing)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for both localize runs (repeatable)")
    args = parser.parse_args(argv)
    work = Path(args.work)

    classify_data, localize_data = work / "data-classify", work / "data-localize"
    get_task("classify").synthesize(classify_data, args.classify_train, args.val, args.size, seed=1)
    get_task("localize").synthesize(localize_data, args.localize_train, args.val, args.size, seed=0)

    source = Path(args.classify_checkpoint or work / "classify" / "weights" / "best.pt")
    if source.is_file():
        print(f"[1/3] reusing the classify backbone {source}")
        figures: dict[str, Any] = {"classify": None}
    else:
        print("[1/3] training configs/classify.yaml (the source backbone)")
        figures = {"classify": train("classify.yaml", work / "classify",
                                     [f"data.train={classify_data / 'train'}",
                                      f"data.val={classify_data / 'val'}",
                                      f"data.image_size={args.size}"])}
    common = [coco_split(localize_data, "train"), coco_split(localize_data, "val"),
              f"data.image_size={args.size}", *args.overrides]
    if args.epochs:
        common.append(f"train.epochs={args.epochs}")
    print("[2/3] (a) localize from scratch")
    figures["scratch"] = train("localize.yaml", work / "scratch", common)
    print("[3/3] (b) localize head on the frozen classify backbone")
    figures["frozen"] = train("localize.yaml", work / "frozen",
                              [*common, f"model.backbone.pretrained={source}",
                               "model.backbone.freeze=all"])

    figures["setup"] = {"localize_train": args.localize_train, "val": args.val, "size": args.size,
                        "classify_train": args.classify_train, "overrides": args.overrides,
                        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                        "load_average_end": os.getloadavg()}
    table = markdown(figures)
    print()
    print(table)
    (work / "transfer.json").write_text(json.dumps({**figures, "table": table}, indent=2) + "\n")
    return 0


def markdown(figures: dict[str, Any]) -> str:
    lines = ["| localize run | epochs | wall s | CPU s | trainable weights | best epoch | corloc | "
             "top1 | mean IoU | corloc per epoch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"scratch": "(a) from scratch", "frozen": "(b) frozen classify backbone + new head"}
    for key, name in names.items():
        f = figures[key]
        m = f["metrics"]
        curve = " ".join(f"{v:.2f}" for v in f["curve"])
        lines.append(f"| {name} | {f['epochs']} | {f['wall_s']:.0f} | {f['cpu_s']:.0f} | "
                     f"{f['trainable_weights']:,} | {f['best_epoch']} | {m['corloc']:.3f} | {m['top1']:.3f} | "
                     f"{m['mean_iou']:.3f} | {curve} |")
    source = figures.get("classify")
    if source:
        lines.append(f"\nSource backbone: configs/classify.yaml, {source['epochs']} epochs, "
                     f"{source['wall_s']:.0f} s, val top1 {source['metrics']['top1']:.3f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
