"""One backbone and four heads against four single-task models: quality, training time, speed.

On the product's synthetic sets (one per task, all at ``--size`` px, ``--style default|hard``),
with ``configs/multi.yaml`` (its epochs unless ``--epochs``):

1. four single-task runs, each with exactly its head's single-task config
   (``Config.head_configs()``: the same backbone, heads, settings and epochs);
2. one joint run of all four heads per ``train.head_sampling`` (round_robin, proportional),
   and with ``--share-neck`` one more round-robin run whose detect and segment heads share
   their neck (``model.share_neck``);
3. speed, model only, at each of ``--speed-sizes``: the four single-task files run one after
   another, the round-robin run's one file, and one file with a shared neck (the shared-neck
   run's, or without ``--share-neck`` the round-robin weights in a shared-neck model: the cost
   of a graph does not depend on its weights), on the same letterboxed batches (onnxruntime,
   CPU, batch ``--batch``), interleaved repeats, medians. ``--speed-only`` measures this again
   from the run folders in ``--out`` (e.g. on a quieter machine than the training had).

Each run's time is wall seconds and CPU seconds (this process and its loader workers), so
that a loaded machine still gives comparable training costs. Prints a Markdown table and writes
``OUT/results.json`` (after each run); at convergence on the hard style (2 to 3 hours on a
2-core CPU)::

    .venv/bin/python benchmarks/multi_head.py --out /tmp/multi-bench --style hard \
        --train 2000 --val 300 --share-neck
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from vision_tasks.export.onnx_export import export_checkpoint, export_model
from vision_tasks.export.runtime import Predictor

from vision_tasks.config import apply_overrides, config_from_dict, load_config
from vision_tasks.engine.checkpoint import load_model
from vision_tasks.engine.trainer import Trainer
from vision_tasks.imaging import load_letterboxed
from vision_tasks.models.model import build_vision_model
from vision_tasks.task_api import get_task

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("size", "train", "val", "epochs", "style")
"""The arguments that a run's results depend on: an --out holding runs of other settings is refused."""
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


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train(cfg, out: Path) -> tuple[dict, dict, Path]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = Trainer(cfg, out, progress=False, log=lambda _: None, overwrite=True).fit()
    return result.metrics, {"seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0}, \
        result.best


def onnx_at(checkpoint: Path, size: int, out: Path, overrides: tuple[str, ...] = ()) -> Path:
    """``checkpoint`` as an ONNX file with a ``size`` px input (and config ``overrides``, e.g.
    ``model.share_neck=true``). Layers whose shapes change (localize's fully-connected trunk at
    another size) keep their fresh initialisation: the cost of a graph does not depend on its
    weights, only NMS on how many boxes pass its threshold."""
    loaded = load_model(checkpoint)
    if loaded.cfg.data.image_size == size and not overrides:
        return export_checkpoint(checkpoint, out).path
    cfg = config_from_dict(apply_overrides(loaded.cfg.to_dict(), [f"data.image_size={size}", *overrides]))
    model = build_vision_model(cfg, {n: len(h.class_names) for n, h in loaded.heads.items()},
                               load_pretrained=False)
    own = model.state_dict()
    fits = {k: v for k, v in loaded.model.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fits, strict=False)
    out.write_bytes(export_model(model.eval(), cfg, loaded.heads).SerializeToString())
    return out


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


def train_all(args: argparse.Namespace) -> dict:
    """The four single-task runs and the joint variants; their metrics and costs. Runs already
    in ``OUT/results.json`` (an earlier, interrupted invocation) are not trained again: the
    whole study takes hours, and can be done a few runs at a time."""
    out = args.out
    path = out / "results.json"
    results: dict = json.loads(path.read_text()) if path.is_file() else {}
    settings = {k: str(v) for k, v in vars(args).items() if k in SETTINGS}
    if results and results.get("settings") != settings:
        raise SystemExit(f"{path} holds runs of other settings ({results.get('settings')}); "
                         "pass another --out")
    results = {"settings": settings, "single": {}, "joint": {}, **results}
    for i, task in enumerate(TASKS):
        if not (out / "data" / task / "val").is_dir():
            get_task(task).synthesize(out / "data" / task, args.train, args.val, args.size, seed=i,
                                      style=args.style)
    base = [*data_overrides(out / "data"), f"data.image_size={args.size}",
            *([f"train.epochs={args.epochs}"] if args.epochs else [])]

    multi = load_config(REPO / "configs" / "multi.yaml", base)
    for task in TASKS:
        if task in results["single"]:
            continue  # done by an earlier invocation into this --out
        metrics, cost, _ = train(multi.head_configs()[task], out / f"single-{task}")
        results["single"][task] = {"metric": metrics[PRIMARY[task]], **cost}
        (out / "results.json").write_text(json.dumps(results, indent=2))  # kept as it goes
        print(f"single {task}: {PRIMARY[task]} {metrics[PRIMARY[task]]:.4f} in {cost['seconds']:.0f} s "
              f"({cost['cpu_seconds']:.0f} CPU s)", flush=True)
    variants = {"round_robin": ["train.head_sampling=round_robin"],
                "proportional": ["train.head_sampling=proportional"]}
    if args.share_neck:
        variants["round_robin_shared_neck"] = ["train.head_sampling=round_robin", "model.share_neck=true"]
    for name, extra in variants.items():
        if name in results["joint"]:
            continue
        cfg = load_config(REPO / "configs" / "multi.yaml", [*base, *extra])
        metrics, cost, _ = train(cfg, out / f"joint-{name}")
        results["joint"][name] = {**cost, **{t: metrics[f"{t}.{PRIMARY[t]}"] for t in TASKS}}
        print(f"joint {name}: " + ", ".join(f"{t} {metrics[f'{t}.{PRIMARY[t]}']:.4f}" for t in TASKS)
              + f" in {cost['seconds']:.0f} s ({cost['cpu_seconds']:.0f} CPU s)", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))  # kept as it goes
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train", type=int, default=600, help="training images per task")
    ap.add_argument("--val", type=int, default=150, help="validation images per task")
    ap.add_argument("--epochs", type=int, default=None, help="default: configs/multi.yaml's")
    ap.add_argument("--style", choices=("default", "hard"), default="default")
    ap.add_argument("--share-neck", action="store_true",
                    help="also a round-robin run with model.share_neck (detect + segment)")
    ap.add_argument("--batch", type=int, default=32, help="batch of the speed measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--speed-images", type=int, default=256)
    ap.add_argument("--speed-only", action="store_true",
                    help="measure the speed only, from the best.pt files of an earlier run into "
                         "--out (e.g. again on a quieter machine); results.json is updated")
    ap.add_argument("--speed-sizes", type=int, nargs="+", default=[128, 320],
                    help="input sides of the speed measurement (the training size uses the "
                         "trained files; another size the same weights where their shapes fit)")
    args = ap.parse_args()
    out = args.out
    if args.speed_only:
        path = out / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
    else:
        results = train_all(args)
    results["speed"] = measure_speed(args)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if "single" in results:
        print_table(results)
    for size, r in results["speed"].items():
        print(f"\nspeed, model only, batch {args.batch}, {size} px, {r['threads']} threads, "
              f"medians of {args.repeats}: four single-task files {r['four_singles_img_s']:.1f} img/s; "
              f"one file {r['multi_img_s']:.1f} img/s ({r['ratio']:.2f}x); one file with a shared "
              f"neck ({r['shared_neck_file']}) {r['shared_img_s']:.1f} img/s "
              f"({r['shared_ratio']:.2f}x)")


def measure_speed(args: argparse.Namespace) -> dict:
    """Images/s at each of ``--speed-sizes`` of the four single-task files run one after
    another, the round-robin joint file, and a joint file with a shared neck (the shared-neck
    run's when it was trained, else the round-robin weights in a shared-neck model)."""
    out = args.out
    single = {t: out / f"single-{t}" / "weights" / "best.pt" for t in TASKS}
    joint = out / "joint-round_robin" / "weights" / "best.pt"
    shared_run = out / "joint-round_robin_shared_neck" / "weights" / "best.pt"
    images = sorted((out / "data" / "detect" / "val" / "images").iterdir())
    images = (images * (args.speed_images // len(images) + 1))[:args.speed_images]
    speed = {}
    for size in args.speed_sizes:
        four = [Predictor(onnx_at(single[t], size, out / f"{t}-{size}.onnx"), device="cpu",
                          batch_size=args.batch) for t in TASKS]
        one = [Predictor(onnx_at(joint, size, out / f"multi-{size}.onnx"), device="cpu",
                         batch_size=args.batch)]
        shared_file = (onnx_at(shared_run, size, out / f"multi-shared-{size}.onnx") if shared_run.is_file()
                       else onnx_at(joint, size, out / f"multi-shared-{size}.onnx", ("model.share_neck=true",)))
        shared = [Predictor(shared_file, device="cpu", batch_size=args.batch)]
        inputs = np.stack([load_letterboxed(p, (size, size))[0] for p in images])
        batches = [inputs[i:i + args.batch] for i in range(0, len(inputs), args.batch)]
        model_only(four + one + shared, batches[:2], 1)  # warm-up
        rates: dict[str, list[float]] = {"four": [], "one": [], "shared": []}
        for _ in range(args.repeats):  # interleaved: all see the same machine state
            for name, predictors in (("four", four), ("one", one), ("shared", shared)):
                rates[name] += model_only(predictors, batches, 1)
        m = {name: statistics.median(r) for name, r in rates.items()}
        speed[str(size)] = {"four_singles_img_s": m["four"], "multi_img_s": m["one"],
                            "shared_img_s": m["shared"], "ratio": m["one"] / m["four"],
                            "shared_ratio": m["shared"] / m["four"], "threads": one[0].threads,
                            "shared_neck_file": "trained" if shared_run.is_file()
                            else "round-robin weights, neck shared",
                            "trained_size": size == args.size, "load": os.getloadavg()[0]}
    return speed


def print_table(results: dict) -> None:
    variants = list(results["joint"])
    print("\n| head | single-task | " + " | ".join(f"joint {v}" for v in variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for task in TASKS:
        cells = [f"{results['single'][task]['metric']:.3f}",
                 *(f"{results['joint'][v][task]:.3f}" for v in variants)]
        print(f"| {task} {PRIMARY[task]} | " + " | ".join(cells) + " |")
    for key, unit in (("seconds", "s"), ("cpu_seconds", "CPU s")):
        total = sum(r[key] for r in results["single"].values())
        print(f"| training {unit} | {total:.0f} (four runs) | "
              + " | ".join(f"{results['joint'][v][key]:.0f}" for v in variants) + " |")


if __name__ == "__main__":
    main()
