"""Real photos: can our detector and segmenter memorise coco128 (train = val), and how does
Ultralytics YOLO11n (-seg) from scratch do on the same task; ONNX images/s at 640 px.

``../shared/data/coco128``: 128 COCO train2017 photos (80 categories, 71 present, crowd
regions, grayscale images, any aspect ratio). Training part, for each ``--tasks``:

- ours: ``configs/<task>.yaml`` with ``data.train`` = ``data.val`` = coco128 and
  ``data.image_size=320``, ``--epochs`` epochs, everything else as the config has it; run in
  this process (the same code as ``vision-tasks train``, whose equivalent command is in the
  JSON), ``--threads`` compute threads. Per epoch: box (and mask) mAP from the run's
  history (``vision-tasks val``'s COCOeval on coco128's own annotations.json) and the time.
- YOLO11n / YOLO11n-seg (``yolo11n(-seg).yaml``, from scratch, ``pretrained=False``): coco128
  converted by ``vision-tasks data convert`` (boxes, or ``--segments`` outlines; crowd regions
  left out), train = val, the same epochs, image size and batch, Ultralytics' defaults
  otherwise (its own augmentation, optimizer and schedule; on the CPU it uses cores - 1
  compute threads and loads data in the main process, whatever ``workers`` asks, while
  ours keeps its config's 2 loader processes), ``plots=False``. Per epoch:
  Ultralytics' own validator mAP (``results.csv``) and, from the weights it saves every
  epoch (``save_period=1``, its EMA), the same COCOeval as ours on the same annotations.json
  (``--yolo-eval-every`` epochs and the last one; predictions at 320 px, score > 0.001,
  IoU 0.7, at most 100 per image, masks at the original size).

Speed part (``--speed-only``): ONNX files at 640 px of ``configs/detect.yaml``,
``detect_resnet18.yaml``, ``detect_mobilenet_v3.yaml`` (ours: NMS inside the graph) and
YOLO11n (exported by Ultralytics, ``nms=True``, score > 0.001, IoU 0.7, at most 100 per
image: its NMS inside the graph too), timed with the same onnxruntime in one process, batch
``--batch``, interleaved calls (``benchmarks/int8.py``'s ``throughput``), on the first
coco128 photos letterboxed to 640 px. Weights: the training part's last epoch for
``detect.yaml`` and YOLO11n when ``--out`` holds them, else untrained (``yolo11n.yaml``) or
trained one step (ours: one batch of 8 coco128 images at 320 px, ImageNet weights not
loaded); resnet18 and mobilenet_v3 always one step. Speed depends on the weights only
through NMS work, so the detections per image of each file are reported beside it.

Ultralytics is AGPL and never a dependency of this package: it runs in its own venv,
``--yolo-python`` (benchmarks/RESULTS.md: torch reused from .venv through a .pth file)::

    python3 -m venv /tmp/yolo-venv
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /tmp/yolo-venv/lib/python3.11/site-packages/zz_main_venv.pth
    /tmp/yolo-venv/bin/pip install --no-deps ultralytics ultralytics-thop psutil polars \\
        requests urllib3 idna certifi charset-normalizer py-cpuinfo
    .venv/bin/python benchmarks/real_photos.py --out /tmp/real-photos --epochs 30 --train-only
    .venv/bin/python benchmarks/real_photos.py --out /tmp/real-photos --speed-only

Results accumulate in ``OUT/real_photos.json`` (a later part keeps the earlier ones);
markdown tables are printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vision_tasks.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent))
from detect_vs_yolo import coco_results, cocoeval_map  # noqa: E402
from real_photos_speed import COCO128, YOLO_ENV, coco_subset, data_overrides, speed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent

YOLO_TRAIN = textwrap.dedent("""
    import json, os, sys, time
    benchmarks, data, out, task, imgsz, epochs, batch, workers, images, every = sys.argv[1:11]
    sys.path.insert(0, benchmarks)
    from detect_vs_yolo import yolo_predictions
    from ultralytics import YOLO
    seg, epochs = task == "segment", int(epochs)
    model = YOLO("yolo11n-seg.yaml" if seg else "yolo11n.yaml")
    marks = []
    model.add_callback("on_fit_epoch_end",
                       lambda trainer: marks.append([time.time() - t0, os.getloadavg()[0]]))
    t0 = time.time()
    model.train(data=data, imgsz=int(imgsz), epochs=epochs, batch=int(batch),
                workers=int(workers), device="cpu", pretrained=False, amp=False, plots=False,
                project=out, name="train", exist_ok=True, verbose=False, seed=0,
                deterministic=False, save_period=1)
    seconds = time.time() - t0
    t1 = time.time()
    chosen = sorted({*range(int(every), epochs + 1, int(every)), epochs})
    predictions = {e: yolo_predictions(YOLO(f"{out}/train/weights/epoch{e - 1}.pt"), images,
                                       int(imgsz), seg) for e in chosen}
    json.dump({"seconds": seconds, "epoch_marks": marks, "predictions": predictions,
               "predict_seconds": time.time() - t1, "parameters": sum(
                   p.numel() for p in model.model.parameters())},
              open(out + "/yolo_result.json", "w"))
""")

def train_ours(task: str, images: Path, annotations: Path, out: Path,
               args: argparse.Namespace) -> dict:
    """``configs/<task>.yaml`` trained on coco128 with train = val; per-epoch metrics and
    seconds (from the start of ``fit``, data and model set-up included)."""
    import torch

    from vision_tasks.config import load_config
    from vision_tasks.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from vision_tasks.engine.precision import amp_note
    from vision_tasks.engine.trainer import Trainer

    overrides = [*data_overrides(images, annotations), f"data.image_size={args.size}",
                 f"train.epochs={args.epochs}", *args.overrides]
    cfg = load_config(REPO / "configs" / f"{task}.yaml", overrides)
    torch.set_num_threads(args.threads)
    marks: list[tuple[float, float]] = []
    t0 = time.time()
    result = Trainer(cfg, out, progress=False, overwrite=True, callbacks=[
        lambda trainer, epoch, row: marks.append((time.time() - t0, os.getloadavg()[0]))]).fit()
    seconds = time.time() - t0
    history = load_checkpoint(result.last)["history"]
    keys = ("box_map", "box_map50") + (("mask_map", "mask_map50") if task == "segment" else ())
    epochs = [{"epoch": row["epoch"], "seconds": mark[0], "load_1min": mark[1],
               **{k: row[f"val_{k}"] for k in keys}, "train_loss": row["train_loss"]}
              for row, mark in zip(history, marks, strict=True)]
    return {"model": f"vision-tasks {task} (configs/{task}.yaml)",
            "command": " ".join(["vision-tasks train", f"configs/{task}.yaml", f"--out {out}",
                                 *(f"--set {o}" for o in overrides)]),
            "threads": args.threads, "batch": cfg.train.batch_size, "workers": cfg.data.workers,
            "precision": f"train.amp={cfg.train.amp}: "
                         f"{amp_note(cfg.train.amp, torch.device('cpu'))}",
            "train_seconds": seconds, "epochs": epochs, "last_checkpoint": str(result.last),
            "parameters": sum(p.numel()
                              for p in model_from_checkpoint(result.last)[0].parameters())}


def yolo_layout(root: Path, annotations: Path, out: Path, segments: bool) -> Path:
    """coco128 in Ultralytics' layout by ``vision-tasks data convert``: train and val splits
    of the same images and annotations; returns data.yaml (its root made absolute)."""
    import yaml

    for split in ("train", "val"):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, target in (("images", COCO128 / "images"), ("annotations.json", annotations)):
            (folder / name).unlink(missing_ok=True)
            (folder / name).symlink_to(target.resolve())
    subprocess.run([sys.executable, "-m", "vision_tasks", "data", "convert", str(root), str(out),
                    *(["--segments"] if segments else [])], check=True)
    data_yaml = out / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "path": str(out.resolve())}, sort_keys=False))
    return data_yaml


def train_yolo(task: str, annotations: Path, work: Path, args: argparse.Namespace) -> dict:
    """YOLO11n(-seg) from scratch on the same images (train = val), in its own venv; per
    epoch Ultralytics' validator mAP and our COCOeval of the epoch's saved weights."""
    seg = task == "segment"
    out = work / f"yolo-{task}"
    data_yaml = yolo_layout(work / "coco", annotations, out / "data", seg)
    script = out / "yolo_train.py"
    script.write_text(YOLO_TRAIN)
    cmd = [args.yolo_python, str(script), str(BENCHMARKS), str(data_yaml), str(out), task,
           str(args.size), str(args.epochs), str(args.batch), str(args.workers),
           str(out / "data" / "images" / "val"), str(args.yolo_eval_every)]
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=out, env={**os.environ, **YOLO_ENV})
    wall = time.time() - t0
    raw = json.loads((out / "yolo_result.json").read_text())
    with open(out / "train" / "results.csv") as f:
        table = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    kinds = [("box", "bbox", "B")] + ([("mask", "segm", "M")] if seg else [])
    epochs = []
    # One mark per epoch, then one more for Ultralytics' final validation of best.pt.
    for row, (seconds, load) in zip(table, raw["epoch_marks"][:len(table)], strict=True):
        e = int(float(row["epoch"]))
        entry = {"epoch": e, "seconds": seconds, "load_1min": load,
                 "train_box_loss": float(row["train/box_loss"])}
        for name, iou_type, suffix in kinds:
            entry[f"ultralytics_{name}_map"] = float(row[f"metrics/mAP50-95({suffix})"])
            entry[f"ultralytics_{name}_map50"] = float(row[f"metrics/mAP50({suffix})"])
            if str(e) in raw["predictions"]:
                results = coco_results(raw["predictions"][str(e)], annotations)
                entry[f"{name}_map"], entry[f"{name}_map50"] = cocoeval_map(annotations, results,
                                                                            iou_type)
        epochs.append(entry)
    name = f"yolo11n{'-seg' if seg else ''}"
    return {"model": f"YOLO11n{'-seg' if seg else ''} ({name}.yaml, from scratch)",
            "threads": "Ultralytics' own: min(8, cores - 1)", "batch": args.batch,
            "workers": f"0 (Ultralytics sets 0 on the CPU; {args.workers} asked)",
            "train_seconds": raw["seconds"], "wall_seconds": wall,
            "predict_seconds_for_cocoeval": raw["predict_seconds"], "epochs": epochs,
            "parameters": raw["parameters"],
            "last_checkpoint": str(out / "train" / "weights" / "last.pt")}


def print_tables(report: dict) -> None:
    for task, sides in report.get("train", {}).items():
        ours, yolo = sides.get("ours"), sides.get("yolo")
        kinds = ("box", "mask") if task == "segment" else ("box",)
        print(f"\n{task}: mAP@[.5:.95] on the training images (train = val), per epoch")
        head = ["epoch"] + [f"ours {k}" for k in kinds] + ["ours s"]
        if yolo:
            head += [f"YOLO {k} (COCOeval)" for k in kinds]
            head += [f"YOLO {k} (Ultralytics)" for k in kinds] + ["YOLO s"]
        print("| " + " | ".join(head) + " |\n|" + "---:|" * len(head))
        rows = {}
        for side, run in (("ours", ours), ("yolo", yolo)):
            for entry in (run or {}).get("epochs", []):
                rows.setdefault(entry["epoch"], {})[side] = entry
        for epoch, row in sorted(rows.items()):
            o, y = row.get("ours", {}), row.get("yolo", {})
            cells = [str(epoch), *(_f(o.get(f"{k}_map")) for k in kinds),
                     _f(o.get("seconds"), 0)]
            if yolo:
                cells += [_f(y.get(f"{k}_map")) for k in kinds]
                cells += [_f(y.get(f"ultralytics_{k}_map")) for k in kinds]
                cells += [_f(y.get("seconds"), 0)]
            print("| " + " | ".join(cells) + " |")
        print("\n| model | epochs | s to the last epoch's end | last box mAP / mAP50 |"
              + (" last mask mAP / mAP50 |" if task == "segment" else "") + " load (1 min) |")
        print("|---|---:|---:|---|" + ("---|" if task == "segment" else "") + "---|")
        for run in (ours, yolo):
            if not run:
                continue
            last = run["epochs"][-1]
            loads = [e["load_1min"] for e in run["epochs"]]
            cells = [run["model"], str(last["epoch"]), _f(last["seconds"], 0)]
            cells += [f"{_f(last.get(f'{k}_map'))} / {_f(last.get(f'{k}_map50'))}" for k in kinds]
            cells += [f"{min(loads):.1f} to {max(loads):.1f}"]
            print("| " + " | ".join(cells) + " |")
    if report.get("speed"):
        s = report["speed"]
        print(f"\nONNX at {s['size']} px, batch {s['batch']}, {s['threads']} threads, "
              f"{len(s['runs'])} runs of {s['rounds']} interleaved rounds; "
              f"load {s['load_average']}")
        print("| model | img/s (median) | img/s per run | detections / image | MB | weights |")
        print("|---|---:|---|---:|---:|---|")
        for name, rate in s["median"].items():
            print(f"| {name} | {rate:.1f} | {', '.join(f'{r[name]:.1f}' for r in s['runs'])} | "
                  f"{s['detections_per_image'][name]:.1f} | {s['megabytes'][name]:.1f} | "
                  f"{s['weights'][name]} |")


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/real-photos"))
    parser.add_argument("--tasks", nargs="+", choices=["detect", "segment"],
                        default=["detect", "segment"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=320, help="training image size")
    parser.add_argument("--batch", type=int, default=16,
                        help="YOLO's training batch (ours keeps its config's: 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="YOLO's loader workers (Ultralytics 8.4 uses 0 on the CPU whatever "
                             "is asked; ours keeps its config's: 2)")
    parser.add_argument("--threads", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="our training threads (default: Ultralytics' rule, cores - 1, "
                             "at most 8)")
    parser.add_argument("--images", type=int, default=None,
                        help="only the first N coco128 images (for trying the script out)")
    parser.add_argument("--skip-yolo", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--yolo-python", default="/tmp/yolo-venv/bin/python")
    parser.add_argument("--yolo-eval-every", type=int, default=4,
                        help="COCOeval of YOLO's weights every N epochs (and the last)")
    parser.add_argument("--speed-size", type=int, default=640)
    parser.add_argument("--speed-batch", type=int, default=8)
    parser.add_argument("--speed-threads", type=int, default=2)
    parser.add_argument("--runs-timed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=60, help="calls of each file per run")
    parser.add_argument("--tables", action="store_true",
                        help="only print the tables of OUT/real_photos.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override for ours (KEY=VALUE)")
    args = parser.parse_args(argv)
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    report_path = work / "real_photos.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report.setdefault("settings", {})
    if args.tables:
        print_tables(report)
        return 0
    annotations = coco_subset(COCO128 / "annotations.json", args.images,
                              work / "coco128-subset.json")
    if not args.speed_only:
        report["settings"]["train"] = {k: str(v) for k, v in vars(args).items()}
        for task in args.tasks:
            sides = report.setdefault("train", {}).setdefault(task, {})
            sides["ours"] = train_ours(task, COCO128 / "images", annotations,
                                       work / f"ours-{task}", args)
            atomic_write_text(report_path, json.dumps(report, indent=2))
            print(json.dumps({task: {"ours": sides["ours"]["epochs"][-1]}}), flush=True)
            if not args.skip_yolo:
                sides["yolo"] = train_yolo(task, annotations, work, args)
                atomic_write_text(report_path, json.dumps(report, indent=2))
                print(json.dumps({task: {"yolo": sides["yolo"]["epochs"][-1]}}), flush=True)
    if not args.train_only:
        report["settings"]["speed"] = {k: str(v) for k, v in vars(args).items()}
        report["speed"] = speed(work, args)
        atomic_write_text(report_path, json.dumps(report, indent=2))
    print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
