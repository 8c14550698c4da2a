"""One backbone and four heads against four single-task models: quality, training time, speed.

On the product's synthetic sets (one per task, all at ``--size`` px), with ``configs/multi.yaml``:

1. four single-task runs, each with exactly its head's single-task config
   (``Config.for_head``: the same backbone, heads, settings and epochs);
2. one joint run of all four heads per ``train.head_sampling`` (round_robin, proportional);
3. speed, model only: the joint run's one ONNX file against the four single-task files run one
   after another on the same letterboxed batches (onnxruntime, CPU, batch ``--batch``),
   interleaved repeats, medians.

Prints a Markdown table and writes ``OUT/results.json``::

    .venv/bin/python benchmarks/multi_head.py --out /tmp/multi-bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime import Predictor

from vision_tasks.config import load_config
from vision_tasks.engine.trainer import Trainer
from vision_tasks.imaging import load_letterboxed
from vision_tasks.task_api import get_task

REPO = Path(__file__).resolve().parents[1]
TASKS = ("classify", "localize", "detect", "segment")
PRIMARY = {"classify": "top1", "localize": "corloc", "detect": "box_map", "segment": "mask_map"}


def data_overrides(root: Path) -> list[str]:
    out = [f"heads.classify.data.train={root / 'classify' / 'train'}",
           f"heads.classify.data.val={root / 'classify' / 'val'}"]
    for task in TASKS[1:]:
        for split in ("train", "val"):
            value = json.dumps({"images": str(root / task / split / "images"),
                                "annotations": str(root / task / split / "annotations.json")})
            out.append(f"heads.{task}.data.{split}={value}")
    return out


def train(cfg, out: Path) -> tuple[dict, float, Path]:
    t0 = time.perf_counter()
    result = Trainer(cfg, out, progress=False, log=lambda _: None, overwrite=True).fit()
    return result.metrics, time.perf_counter() - t0, result.best


def model_only(predictors: list[Predictor], batches: list[np.ndarray], repeats: int) -> list[float]:
    """Images/s of running every predictor on every batch, per repeat."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for batch in batches:
            for p in predictors:
                p.run(batch)
        rates.append(sum(len(b) for b in batches) / (time.perf_counter() - t0))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train", type=int, default=600, help="training images per task")
    ap.add_argument("--val", type=int, default=150, help="validation images per task")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32, help="batch of the speed measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--speed-images", type=int, default=256)
    args = ap.parse_args()
    out = args.out
    for i, task in enumerate(TASKS):
        get_task(task).synthesize(out / "data" / task, args.train, args.val, args.size, seed=i)
    base = [*data_overrides(out / "data"), f"data.image_size={args.size}",
            f"train.epochs={args.epochs}"]
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "single": {}, "joint": {}}

    multi = load_config(REPO / "configs" / "multi.yaml", base)
    single_best = {}
    for task in TASKS:
        metrics, seconds, single_best[task] = train(multi.for_head(task), out / f"single-{task}")
        results["single"][task] = {"metric": metrics[PRIMARY[task]], "seconds": seconds}
        print(f"single {task}: {PRIMARY[task]} {metrics[PRIMARY[task]]:.4f} in {seconds:.0f} s",
              flush=True)
    joint_best = {}
    for sampling in ("round_robin", "proportional"):
        cfg = load_config(REPO / "configs" / "multi.yaml", [*base, f"train.head_sampling={sampling}"])
        metrics, seconds, joint_best[sampling] = train(cfg, out / f"joint-{sampling}")
        results["joint"][sampling] = {"seconds": seconds,
                                      **{t: metrics[f"{t}.{PRIMARY[t]}"] for t in TASKS}}
        print(f"joint {sampling}: " + ", ".join(f"{t} {metrics[f'{t}.{PRIMARY[t]}']:.4f}"
                                                for t in TASKS) + f" in {seconds:.0f} s", flush=True)

    multi_onnx = export_checkpoint(joint_best["round_robin"], out / "multi.onnx").path
    single_onnx = [export_checkpoint(single_best[t], out / f"{t}.onnx").path for t in TASKS]
    images = sorted((out / "data" / "detect" / "val" / "images").iterdir())
    images = (images * (args.speed_images // len(images) + 1))[:args.speed_images]
    size = (args.size, args.size)
    inputs = np.stack([load_letterboxed(p, size)[0] for p in images])
    batches = [inputs[i:i + args.batch] for i in range(0, len(inputs), args.batch)]
    one = [Predictor(multi_onnx, device="cpu", batch_size=args.batch)]
    four = [Predictor(p, device="cpu", batch_size=args.batch) for p in single_onnx]
    model_only(one + four, batches[:2], 1)  # warm-up
    multi_rates, single_rates = [], []
    for _ in range(args.repeats):  # interleaved: both see the same machine state
        multi_rates += model_only(one, batches, 1)
        single_rates += model_only(four, batches, 1)
    m, s = statistics.median(multi_rates), statistics.median(single_rates)
    results["speed"] = {"multi_img_s": m, "four_singles_img_s": s, "ratio": m / s,
                        "threads": one[0].threads}
    (out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\n| head | single-task {args.epochs} epochs | joint round robin | joint proportional |")
    print("|---|---|---|---|")
    for task in TASKS:
        cells = [f"{results['single'][task]['metric']:.3f}",
                 *(f"{results['joint'][s][task]:.3f}" for s in ("round_robin", "proportional"))]
        print(f"| {task} {PRIMARY[task]} | " + " | ".join(cells) + " |")
    single_seconds = sum(r["seconds"] for r in results["single"].values())
    print(f"| training time | {single_seconds:.0f} s (four runs) | "
          f"{results['joint']['round_robin']['seconds']:.0f} s | "
          f"{results['joint']['proportional']['seconds']:.0f} s |")
    print(f"\nspeed, model only, batch {args.batch}, {args.size} px, {one[0].threads} threads: "
          f"one multi-head file {m:.1f} img/s, four single-task files {s:.1f} img/s "
          f"({m / s:.2f}x)")


if __name__ == "__main__":
    main()
