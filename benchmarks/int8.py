"""INT8 vs fp32 with the same onnxruntime: images/s and the task metric, the four tasks; and
for detect, ours INT8 against Ultralytics YOLO11n's INT8 ONNX export at 128 and 320 px.

For each task, a trained checkpoint (``--runs DIR``: ``DIR/<task>-off-s0/weights/best.pt``,
as ``benchmarks/bf16_training.py`` leaves them, or ``--checkpoint task=PATH``) is exported
twice, ``vision-tasks export`` fp32 and ``--int8`` (calibration: ``--calibration-images``
images of ``data.train``, ``--calibration-method``), and then:

- **metric**: ``vision-tasks val`` of each file (onnxruntime, the model's ``data.val``);
- **images/s**: both files in one process, onnxruntime CPU sessions as the runtime makes
  them (``--threads`` intra-op threads, no spinning), batch ``--batch`` of the first val
  images (letterboxed as the runtime does), model only. ``--runs-timed`` runs of
  ``--rounds`` rounds, a round being one call of each file in turn; per run each file's
  images / median call time, and their ratio (the ratio of neighbouring calls is the figure
  that survives a shared machine).

``--yolo`` adds detect against YOLO11n (Ultralytics in its own venv, ``--yolo-python``;
AGPL, never a dependency): its ``best.pt`` (``--yolo-weights``, trained from
``yolo11n.yaml`` on the same synthetic set, see ``benchmarks/detect_vs_yolo.py``) is
exported by Ultralytics to ONNX, fp32 and INT8 (its own onnxruntime static quantization:
Conv/Gemm/MatMul, calibrated on the same number of training images), with NMS in the graph
(``nms=True``, with the thresholds of a mAP run: score > 0.001, IoU 0.7, at most 100 per
image, as ours keeps) so that its NMS is timed too; mAP by the same COCOeval on the same val
annotations (its predictions through Ultralytics' ONNX predictor). At 320 px both models
are the 128 px ones run on 320 px inputs (the val images letterboxed up): the images/s are
those of a 320 px model, the mAP is not a 320 px model's.

Usage::

    .venv/bin/python benchmarks/int8.py --runs /tmp/bf16 --out /tmp/int8
    .venv/bin/python benchmarks/int8.py --runs /tmp/bf16 --out /tmp/int8 --tasks detect \\
        --yolo --yolo-weights /tmp/yolo/run/train/weights/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from detect_vs_yolo import cocoeval_map, write_yolo_layout  # noqa: E402
from vision_tasks.export.onnx_eval import evaluate_onnx  # noqa: E402
from vision_tasks.export.onnx_export import export_checkpoint  # noqa: E402
from vision_tasks.export.runtime import Predictor  # noqa: E402
from vision_tasks.export.runtime.providers import create_session  # noqa: E402

from vision_tasks.config import config_from_dict  # noqa: E402
from vision_tasks.engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vision_tasks.task_api import get_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = ("classify", "localize", "detect", "segment")
CHECKED = ("top1", "corloc", "mean_iou", "box_map", "box_map50", "mask_map", "mask_map50")

YOLO_SCRIPT = textwrap.dedent("""
    import json, shutil, sys
    from ultralytics import YOLO
    weights, data, out, val_images, sizes, calibration = sys.argv[1:7]
    result = {}
    for size in [int(s) for s in sizes.split(",")]:
        for precision in ("fp32", "int8"):
            extra = ({"quantize": 8, "data": data, "split": "train", "fraction": int(calibration)}
                     if precision == "int8" else {})
            f = YOLO(weights).export(format="onnx", imgsz=size, dynamic=True, nms=True,
                                     simplify=False, device="cpu", batch=32, conf=0.001,
                                     iou=0.7, max_det=100, **extra)
            target = f"{out}/yolo11n_{size}_{precision}.onnx"
            shutil.move(f, target)
            preds = []
            for r in YOLO(target, task="detect").predict(val_images, imgsz=size, conf=0.001, iou=0.7,
                                                         max_det=100, device="cpu", verbose=False,
                                                         stream=True, batch=32):
                name = r.path.rsplit("/", 1)[-1]
                for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(),
                                                  r.boxes.cls.tolist()):
                    preds.append({"file_name": name, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                  "score": s, "class": int(c)})
            result[f"{size}_{precision}"] = {"onnx": target, "predictions": preds}
    json.dump(result, open(out + "/yolo_onnx.json", "w"))
""")


def export_pair(checkpoint: Path, out: Path, calibration: int, method: str,
                size: int | None = None) -> dict:
    """fp32 and INT8 files of ``checkpoint`` (at ``size`` px when given: its config's
    ``data.image_size`` changed); export seconds of each."""
    out.mkdir(parents=True, exist_ok=True)
    if size is not None:
        state = load_checkpoint(checkpoint)
        state["config"]["data"]["image_size"] = size
        checkpoint = out / f"{checkpoint.stem}_{size}.pt"
        save_checkpoint(checkpoint, state)
    files = {}
    for precision in ("fp32", "int8"):
        t0 = time.perf_counter()
        result = export_checkpoint(checkpoint, out / f"model.{precision}.onnx",
                                   int8=precision == "int8", calibration_count=calibration,
                                   calibration_method=method)
        files[precision] = {"path": str(result.path), "export_seconds": time.perf_counter() - t0,
                            "megabytes": result.size_bytes / 1e6}
    return files


def val_metrics(path: str) -> dict[str, float]:
    """``vision-tasks val`` of an ONNX file (CPU), scalar metrics."""
    metrics, _ = evaluate_onnx(path, [], None, "cpu", False)
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def timing_images(path: str, batch: int) -> np.ndarray:
    """uint8 ``[batch, S, S, 3]``: the first val images of the model's data, letterboxed as
    ``vision-tasks val`` feeds them (repeated when the set is smaller)."""
    meta = Predictor(path, device="cpu").metadata
    cfg = config_from_dict(meta.config, path)
    dataset = get_task(meta.task).build_dataset(cfg, "val", train=False,
                                                class_names=list(meta.class_names))
    images = [dataset[i % len(dataset)][0].permute(1, 2, 0).numpy() for i in range(batch)]
    return np.ascontiguousarray(np.stack(images))


def throughput(files: dict[str, tuple[str, dict[str, np.ndarray]]], batch: int, threads: int,
               runs: int, rounds: int) -> dict:
    """Images/s of each file on its feed: ``runs`` runs of ``rounds`` rounds, each round one
    call of every file in turn (so that neighbouring calls share the machine's load); per
    run, ``batch`` / the median seconds of a call, for each file; then the median over the
    runs."""
    sessions = {name: create_session(path, "cpu", threads)[0] for name, (path, _) in files.items()}
    for name, session in sessions.items():  # warm-up
        for _ in range(3):
            session.run(None, files[name][1])
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        seconds: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):
            for name, session in sessions.items():
                t0 = time.perf_counter()
                session.run(None, files[name][1])
                seconds[name].append(time.perf_counter() - t0)
        per_run.append({name: batch / statistics.median(s) for name, s in seconds.items()})
    return {"batch": batch, "threads": threads, "rounds": rounds, "runs": per_run,
            "median": {name: statistics.median(r[name] for r in per_run) for name in sessions},
            "load_average": os.getloadavg()}


def ratios(speed: dict, over: str, under: str) -> dict:
    """``over / under`` per run and the median of those."""
    each = [r[over] / r[under] for r in speed["runs"]]
    return {"runs": each, "median": statistics.median(each)}


def bench_task(task: str, checkpoint: Path, out: Path, args: argparse.Namespace,
               earlier: dict | None) -> dict:
    """One task's row; with ``--speed-only``, the files and metrics of ``earlier`` (a row of
    an earlier report) are kept and only the speed is measured again."""
    if args.speed_only and earlier:
        files, metrics = earlier["files"], earlier["metrics"]
    else:
        files = export_pair(checkpoint, out / task, args.calibration_images, args.calibration_method)
        metrics = {p: val_metrics(f["path"]) for p, f in files.items()}
    images = timing_images(files["fp32"]["path"], args.batch)
    speed = throughput({p: (f["path"], {"images": images}) for p, f in files.items()}, args.batch,
                       args.threads, args.runs_timed, args.rounds)
    row = {"task": task, "checkpoint": str(checkpoint), "files": files, "speed": speed,
           "int8_over_fp32": ratios(speed, "int8", "fp32"),
           "metrics": {p: {k: v for k, v in m.items() if k in CHECKED} for p, m in metrics.items()}}
    print(json.dumps(row), flush=True)
    return row


def bench_yolo(checkpoint: Path, out: Path, args: argparse.Namespace,
               earlier: list[dict] | None) -> list[dict]:
    """Ours (fp32, INT8) and YOLO11n (fp32, INT8) at each ``--yolo-sizes`` (with
    ``--speed-only``, the files and mAPs of ``earlier`` rows are kept)."""
    cfg = load_checkpoint(checkpoint)["config"]
    val = cfg["data"]["val"]
    ann_file, val_images = Path(val["annotations"]), Path(val["images"])
    data_root = ann_file.parent.parent
    yolo_dir = out / "yolo"
    yolo_dir.mkdir(parents=True, exist_ok=True)
    if not (yolo_dir / "yolo_onnx.json").is_file():
        data_yaml = write_yolo_layout(data_root, yolo_dir / "yolo-data")
        script = yolo_dir / "yolo_export.py"
        script.write_text(YOLO_SCRIPT)
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
        subprocess.run([args.yolo_python, str(script), args.yolo_weights, str(data_yaml),
                        str(yolo_dir), str(val_images), ",".join(map(str, args.yolo_sizes)),
                        str(args.calibration_images)], check=True, cwd=yolo_dir, env=env)
    yolo = json.loads((yolo_dir / "yolo_onnx.json").read_text())
    ann = json.loads(ann_file.read_text())
    ids = {im["file_name"]: im["id"] for im in ann["images"]}
    cats = [c["id"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    rows = []
    previous = {row["size"]: row for row in earlier or []}
    for size in args.yolo_sizes:
        if args.speed_only and size in previous:
            ours_map, yolo_map = previous[size]["ours_map"], previous[size]["yolo_map"]
            ours = {p: {"path": str(out / f"detect_{size}" / f"model.{p}.onnx")}
                    for p in ("fp32", "int8")}
        else:
            ours = export_pair(checkpoint, out / f"detect_{size}", args.calibration_images,
                               args.calibration_method, size=size)
            ours_map = {p: val_metrics(f["path"]) for p, f in ours.items()}
            yolo_map = {}
            for p in ("fp32", "int8"):
                results = [{"image_id": ids[r["file_name"]], "category_id": cats[r["class"]],
                            "bbox": r["bbox"], "score": r["score"]}
                           for r in yolo[f"{size}_{p}"]["predictions"]]
                box_map, box_map50 = cocoeval_map(ann_file, results)
                yolo_map[p] = {"box_map": box_map, "box_map50": box_map50}
        images = timing_images(ours["fp32"]["path"], args.batch)
        nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / 255
        files = {f"ours_{p}": (f["path"], {"images": images}) for p, f in ours.items()}
        files |= {f"yolo_{p}": (yolo[f"{size}_{p}"]["onnx"], {"images": nchw})
                  for p in ("fp32", "int8")}
        speed = throughput(files, args.batch, args.threads, args.runs_timed, args.rounds)
        row = {"size": size, "speed": speed,
               "ours_int8_over_yolo_int8": ratios(speed, "ours_int8", "yolo_int8"),
               "ours_int8_over_fp32": ratios(speed, "ours_int8", "ours_fp32"),
               "yolo_int8_over_fp32": ratios(speed, "yolo_int8", "yolo_fp32"),
               "ours_map": {p: {k: m[k] for k in ("box_map", "box_map50")} for p, m in ours_map.items()},
               "yolo_map": yolo_map}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/bf16"),
                        help="run folders of benchmarks/bf16_training.py (<task>-off-s0)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="TASK=PATH")
    parser.add_argument("--out", type=Path, default=Path("/tmp/int8"))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--calibration-method", default="minmax")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs-timed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=60, help="calls of each file per run")
    parser.add_argument("--speed-only", action="store_true",
                        help="keep the files and metrics of OUT/int8.json, time again")
    parser.add_argument("--yolo", action="store_true")
    parser.add_argument("--yolo-python", default="/tmp/yolo-venv/bin/python")
    parser.add_argument("--yolo-weights", default="/tmp/yolo/run/train/weights/best.pt")
    parser.add_argument("--yolo-sizes", type=int, nargs="+", default=[128, 320])
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.checkpoint)
    checkpoints = {t: Path(given.get(t, args.runs / f"{t}-off-s0" / "weights" / "best.pt"))
                   for t in TASKS}
    report_path = args.out / "int8.json"
    args.out.mkdir(parents=True, exist_ok=True)
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["settings"] = {k: str(v) for k, v in vars(args).items()}
    for task in args.tasks:
        report[task] = bench_task(task, checkpoints[task], args.out, args, report.get(task))
        report_path.write_text(json.dumps(report, indent=2))
    if args.yolo:
        report["yolo"] = bench_yolo(checkpoints["detect"], args.out, args, report.get("yolo"))
        report_path.write_text(json.dumps(report, indent=2))
    print("\n| task | fp32 img/s | int8 img/s | int8/fp32 (3 runs) | metric fp32 -> int8 |")
    print("|---|---:|---:|---|---|")
    for task in TASKS:
        row = report.get(task)
        if not row:
            continue
        med, r = row["speed"]["median"], row["int8_over_fp32"]
        m = row["metrics"]
        metric = ", ".join(f"{k} {m['fp32'][k]:.4f} -> {m['int8'][k]:.4f}" for k in m["fp32"])
        print(f"| {task} | {med['fp32']:.1f} | {med['int8']:.1f} | {r['median']:.2f}x "
              f"({', '.join(f'{x:.2f}' for x in r['runs'])}) | {metric} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
