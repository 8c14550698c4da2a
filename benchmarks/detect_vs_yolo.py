"""Our default detector (or segmenter) vs Ultralytics YOLO11n (-seg), same data, image size
and wall-clock budget.

Both train from scratch on one synthetic shapes set (``vision-tasks data synth detect``:
2000 train / 300 val images, 128 px, five classes, 1-6 occluding objects per image, masks
of the visible parts) on this machine's CPU, and both are scored by the same pycocotools
COCOeval on the same val annotations (YOLO's own validator figure is printed too): boxes
for ``--task detect`` (``configs/detect.yaml`` vs ``yolo11n.yaml``), boxes and masks for
``--task segment`` (``configs/segment.yaml`` vs ``yolo11n-seg.yaml``; YOLO's labels are the
masks' outlines as polygons, its predicted masks are taken at the original image size).

``--task segment`` also times both exported ONNX files with the same onnxruntime, batch
32, in one process (interleaved repeats): ours with NMS and the masks assembled inside the
graph, YOLO's as Ultralytics exports it (raw dense outputs + prototypes; NMS and mask
assembly left to the caller).

Ultralytics is AGPL and never a dependency of this package: it runs in its own virtual
environment, called as a subprocess, e.g.::

    python3 -m venv /tmp/yolo-venv
    /tmp/yolo-venv/bin/pip install ultralytics   # (or reuse torch: see RESULTS.md)
    .venv/bin/python benchmarks/detect_vs_yolo.py --yolo-python /tmp/yolo-venv/bin/python

Ours trains ``configs/detect.yaml`` for as many epochs as fit ``--budget`` (estimated from 40
timed steps and one validation pass before the run); YOLO gets ``time=budget`` (Ultralytics
estimates its epochs from the first one and anneals its schedule to fit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

YOLO_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from ultralytics import YOLO
    data, out, budget, imgsz, batch, workers, val_images, task, benchmarks = sys.argv[1:10]
    sys.path.insert(0, benchmarks)
    from detect_vs_yolo import yolo_predictions
    seg = task == "segment"
    t0 = time.time()
    model = YOLO("yolo11n-seg.yaml" if seg else "yolo11n.yaml")
    # epochs=10 as the issue's reference run; time= caps it (Ultralytics re-plans its epochs
    # and schedule from the first one). A large epochs value (e.g. 1000) made every step ~20x
    # slower in Ultralytics 8.4 here, so it is not used.
    model.train(data=data, imgsz=int(imgsz), epochs=10, time=float(budget) / 3600,
                batch=int(batch), workers=int(workers), device="cpu", pretrained=False,
                amp=False, plots=False, project=out, name="train", exist_ok=True, verbose=False,
                seed=0, deterministic=False)
    seconds = time.time() - t0
    best = YOLO(out + "/train/weights/best.pt")
    metrics = best.val(data=data, imgsz=int(imgsz), batch=32, device="cpu", plots=False,
                       conf=0.001, iou=0.7, max_det=100, verbose=False)
    preds = yolo_predictions(best, val_images, int(imgsz), seg)
    result = {"train_seconds": seconds, "ultralytics_map": float(metrics.box.map),
              "ultralytics_map50": float(metrics.box.map50), "predictions": preds}
    if seg:
        result["ultralytics_mask_map"] = float(metrics.seg.map)
        result["ultralytics_mask_map50"] = float(metrics.seg.map50)
        result["onnx"] = best.export(format="onnx", imgsz=int(imgsz), dynamic=True,
                                     simplify=False, device="cpu")
    json.dump(result, open(out + "/yolo_result.json", "w"))
""")


def yolo_predictions(model, images: str, imgsz: int, seg: bool) -> list[dict]:
    """An Ultralytics model's predictions on an image folder, as the thresholds of a mAP run
    (score > 0.001, IoU 0.7, at most 100 per image): one row per detection, ``{"file_name",
    "bbox": [x, y, w, h] original pixels, "score", "class": index}``, with ``seg`` also
    ``"segmentation"``: the mask at the original image size (``retina_masks``) as COCO RLE.
    Runs in the YOLO venv (imported by its subprocess scripts)."""
    preds = []
    for r in model.predict(images, imgsz=imgsz, conf=0.001, iou=0.7, max_det=100,
                           device="cpu", verbose=False, stream=True, retina_masks=True):
        name = r.path.rsplit("/", 1)[-1]
        masks = [None] * len(r.boxes)
        if seg and r.masks is not None:
            import numpy as np
            from pycocotools import mask as mask_utils
            masks = []
            for m in r.masks.data.cpu().numpy() > 0.5:  # retina: original image size
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                masks.append({"size": rle["size"], "counts": rle["counts"].decode("ascii")})
        for (x1, y1, x2, y2), s, c, m in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(),
                                             r.boxes.cls.tolist(), masks, strict=True):
            preds.append({"file_name": name, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s,
                          "class": int(c), **({"segmentation": m} if m else {})})
    return preds


def coco_results(predictions: list[dict], annotation_file: Path) -> list[dict]:
    """Rows of :func:`yolo_predictions` -> COCO results against ``annotation_file``: image
    ids by file name, class index -> category id (categories sorted by id, the class order
    of the YOLO layouts written here and by ``vision-tasks data convert``)."""
    ann = json.loads(Path(annotation_file).read_text())
    ids = {im["file_name"]: im["id"] for im in ann["images"]}
    cats = [c["id"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    return [{"image_id": ids[p["file_name"]], "category_id": cats[p["class"]], "bbox": p["bbox"],
             "score": p["score"], **({"segmentation": p["segmentation"]}
                                     if "segmentation" in p else {})}
            for p in predictions]


def mask_polygon(segmentation: dict, width: int, height: int) -> list[float]:
    """An object's visible mask (COCO RLE) -> one polygon outline, normalised to [0, 1], for
    Ultralytics' label files (one polygon per object): the outer contours of all its pieces
    (occlusion can cut a mask in two), chained through zero-width bridges between them."""
    import cv2
    import numpy as np

    from vision_tasks.data.coco_detection import decode_segmentation

    mask = decode_segmentation(segmentation, height, width).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pieces = [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3]
    if not pieces:
        return []
    pieces.sort(key=lambda c: -cv2.contourArea(c.astype(np.float32)))
    chain = pieces[0]
    for piece in pieces[1:]:  # bridge from the chain's nearest point into the piece and back
        d = np.linalg.norm(chain[:, None] - piece[None], axis=-1)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        rolled = np.roll(piece, -j, axis=0)
        chain = np.concatenate([chain[: i + 1], rolled, rolled[:1], chain[i:]])
    # Contour points are pixel indices; the pixel grid's outline is half a pixel further out.
    xy = (chain + 0.5) / np.array([width, height])
    return np.clip(xy, 0, 1).reshape(-1).tolist()


def write_yolo_layout(coco_root: Path, out: Path, masks: bool = False) -> Path:
    """COCO json splits -> Ultralytics' images/labels folders and data.yaml (same images);
    with ``masks`` the labels are polygons (segment), else boxes."""
    names: list[str] = []
    for split in ("train", "val"):
        ann = json.loads((coco_root / split / "annotations.json").read_text())
        names = [c["name"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
        index = {c["id"]: i for i, c in enumerate(sorted(ann["categories"], key=lambda c: c["id"]))}
        images = out / "images" / split
        labels = out / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        rows: dict[int, list[str]] = {im["id"]: [] for im in ann["images"]}
        size = {im["id"]: (im["width"], im["height"]) for im in ann["images"]}
        for a in ann["annotations"]:
            w, h = size[a["image_id"]]
            x, y, bw, bh = a["bbox"]
            if masks:
                polygon = mask_polygon(a["segmentation"], w, h)
                if polygon:
                    rows[a["image_id"]].append(f"{index[a['category_id']]} "
                                               + " ".join(f"{v:.6f}" for v in polygon))
                continue
            rows[a["image_id"]].append(f"{index[a['category_id']]} {(x + bw / 2) / w:.6f} "
                                       f"{(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        for im in ann["images"]:
            link = images / im["file_name"]
            if not link.exists():
                link.symlink_to((coco_root / split / "images" / im["file_name"]).resolve())
            (labels / Path(im["file_name"]).with_suffix(".txt").name).write_text("\n".join(rows[im["id"]]))
    data = out / "data.yaml"
    data.write_text(json.dumps({"path": str(out), "train": "images/train", "val": "images/val",
                                "names": dict(enumerate(names))}))
    return data


def cocoeval_map(annotation_file: Path, results: list[dict], iou_type: str = "bbox"
                 ) -> tuple[float, float]:
    """(AP@[.5:.95], AP50) of COCO results against the annotation file."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def run_yolo(args: argparse.Namespace, data_root: Path, out: Path) -> dict:
    seg = args.task == "segment"
    data_yaml = write_yolo_layout(data_root, out / "yolo-data", masks=seg)
    script = out / "yolo_train.py"
    script.write_text(YOLO_SCRIPT)
    cmd = [args.yolo_python, str(script), str(data_yaml), str(out / "yolo"), str(args.budget),
           str(args.size), str(args.batch), str(args.workers), str(data_root / "val" / "images"),
           args.task, str(Path(__file__).resolve().parent)]
    # Albumentations (visible to Ultralytics when installed) would check for updates online.
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=out, env=env)
    wall = time.time() - t0
    raw = json.loads((out / "yolo" / "yolo_result.json").read_text())
    val_json = data_root / "val" / "annotations.json"
    results = coco_results(raw["predictions"], val_json)
    box_map, box_map50 = cocoeval_map(val_json, results)
    row = {"model": f"YOLO11n{'-seg' if seg else ''} (yolo11n{'-seg' if seg else ''}.yaml, "
                    "from scratch)",
           "train_seconds": raw["train_seconds"], "wall_seconds": wall, "box_map": box_map,
           "box_map50": box_map50, "ultralytics_box_map": raw["ultralytics_map"],
           "ultralytics_box_map50": raw["ultralytics_map50"],
           "torch_threads": "Ultralytics' own: min(8, cores - 1)"}
    if seg:
        row["mask_map"], row["mask_map50"] = cocoeval_map(val_json, results, "segm")
        row["ultralytics_mask_map"] = raw["ultralytics_mask_map"]
        row["ultralytics_mask_map50"] = raw["ultralytics_mask_map50"]
        row["onnx"] = raw["onnx"]
    return row


def _quiet(_: str) -> None:
    pass


def epochs_for_budget(cfg, budget: float, steps: int = 40, task_name: str = "detect"
                      ) -> tuple[int, float]:
    """Epochs of ``cfg`` that fit ``budget`` seconds: time ``steps`` training steps (after 5
    warm-up steps) and one validation pass, as Ultralytics' ``time=`` mode estimates from its
    first epoch. Returns (epochs, seconds per epoch)."""
    import torch

    from vision_tasks.engine.evaluate import evaluate, make_loader
    from vision_tasks.engine.optim import build_optimizer
    from vision_tasks.models.model import build_model
    from vision_tasks.task_api import get_task

    task = get_task(task_name)
    train = task.build_dataset(cfg, "train", True)
    val = task.build_dataset(cfg, "val", False, train.class_names)
    model = build_model(cfg, task, len(train.class_names)).train()
    loss_fn, opt = task.build_loss(cfg, len(train.class_names)), build_optimizer(model, cfg.train)
    loader = make_loader(task, train, cfg.train.batch_size, cfg.data.workers)
    batches = iter(loader)
    for i in range(steps + 5):
        if i == 5:
            t0 = time.time()
        images, targets = next(batches)
        loss, _ = loss_fn(model(images.float()), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = (time.time() - t0) / steps
    t1 = time.time()
    evaluate(model, task, make_loader(task, val, cfg.train.batch_size, cfg.data.workers),
             train.class_names, torch.device("cpu"), progress=False)
    per_epoch = step * len(loader) + (time.time() - t1) + 1.0  # + checkpoints and plots
    return max(1, int(budget // per_epoch)), per_epoch


def empty_image_detections(checkpoint: Path, size: int, threshold: float = 0.25,
                           count: int = 100) -> int:
    """How many of ``count`` object-free synthetic backgrounds get any detection when the
    graph's score threshold is ``threshold`` (a deployment setting; val uses 0.001)."""
    import numpy as np
    import torch

    from vision_tasks.data.synth import render_scene
    from vision_tasks.engine.checkpoint import model_from_checkpoint

    model, _, task, _ = model_from_checkpoint(checkpoint, [f"model.head.score_threshold={threshold}"])
    images = np.stack([render_scene(np.random.default_rng([7, i]), size, 0)[0] for i in range(count)])
    with torch.no_grad():
        out = model.postprocess(model(torch.from_numpy(images).permute(0, 3, 1, 2).float()))
    return int((out["num_detections"] > 0).sum())


def run_ours(args: argparse.Namespace, data_root: Path, out: Path) -> dict:
    from vision_tasks.config import load_config
    from vision_tasks.engine.trainer import Trainer
    from vision_tasks.task_api import get_task

    overrides = [*get_task(args.task).demo_overrides(data_root), f"data.image_size={args.size}",
                 f"train.batch_size={args.batch}", f"data.workers={args.workers}", *args.overrides]
    cfg = load_config(REPO / "configs" / f"{args.task}.yaml", overrides)
    import torch

    torch.set_num_threads(args.threads)
    if args.epochs is None:
        t0 = time.time()
        cfg.train.epochs, per_epoch = epochs_for_budget(cfg, args.budget, task_name=args.task)
        print(f"ours: {per_epoch:.1f} s per epoch -> {cfg.train.epochs} epochs in {args.budget:.0f} s "
              f"(estimated in {time.time() - t0:.0f} s)", flush=True)
    t0 = time.time()
    result = Trainer(cfg, out / "ours", progress=False, overwrite=True).fit()
    seconds = time.time() - t0
    best = best_row(result)
    row = {"model": f"vision-tasks {args.task} (configs/{args.task}.yaml, {cfg.train.epochs} epochs)",
           "train_seconds": seconds, "box_map": best["val_box_map"],
           "box_map50": best["val_box_map50"], "best_checkpoint": str(result.best),
           "torch_threads": args.threads,
           "empty_backgrounds_with_detections_at_0.25": empty_image_detections(result.best, args.size)}
    if args.task == "segment":
        from vision_tasks.export.onnx_export import export_checkpoint

        row["mask_map"], row["mask_map50"] = best["val_mask_map"], best["val_mask_map50"]
        row["onnx"] = str(export_checkpoint(result.best, out / "ours.onnx").path)
    return row


def best_row(result) -> dict:
    """The history row of the best checkpoint's epoch (its primary metric is the best)."""
    from vision_tasks.engine.checkpoint import load_checkpoint

    state = load_checkpoint(result.best)
    return next(row for row in state["history"] if row["epoch"] == state["epoch"])


def onnx_throughput(ours: str, yolo: str, size: int, batch: int = 32, threads: int = 2,
                    repeats: int = 7, seconds: float = 2.0) -> dict:
    """Images/s of both ONNX files with the same onnxruntime settings (CPU, ``threads``
    intra-op threads, no spinning), median of interleaved repeats of >= ``seconds`` each.
    Inputs as each file expects them: ours uint8 NHWC letterboxed, YOLO's float32 NCHW
    0..1 (the caller's conversion, not timed)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    feeds = {"ours": {"images": images},
             "yolo": {"images": np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / 255}}
    sessions = {name: ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                for name, path in (("ours", ours), ("yolo", yolo))}
    for name, session in sessions.items():  # warm-up
        input_name = session.get_inputs()[0].name
        feeds[name] = {input_name: next(iter(feeds[name].values()))}
        session.run(None, feeds[name])
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            runs, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                session.run(None, feeds[name])
                runs += 1
            rates[name].append(runs * batch / (time.perf_counter() - t0))
    return {name: float(np.median(r)) for name, r in rates.items()} | {
        "batch": batch, "size": size, "threads": threads,
        "outputs": {name: [o.name for o in s.get_outputs()] for name, s in sessions.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["detect", "segment"], default="detect")
    parser.add_argument("--out", default=None, help="default /tmp/TASK-vs-yolo")
    parser.add_argument("--yolo-python", default="/tmp/yolo-venv/bin/python")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training for each")
    parser.add_argument("--epochs", type=int, default=None,
                        help="our epochs (default: as many as fit --budget, estimated first)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="our compute threads (default: Ultralytics' rule on CPU, cores - 1, "
                             "at most 8; 1 on a 2-core machine)")
    parser.add_argument("--only", choices=["ours", "yolo"], default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    out = Path(args.out or f"/tmp/{args.task}-vs-yolo")
    data_root = out / "data"
    if not (data_root / "val" / "annotations.json").is_file():
        from vision_tasks.task_api import get_task

        get_task(args.task).synthesize(data_root, args.train, args.val, args.size, seed=0)
    # Each side's row is kept in OUT/row_<side>.json, so `--only` runs add up to one table.
    for side, run in (("ours", run_ours), ("yolo", run_yolo)):
        if args.only in (None, side):
            row = run(args, data_root, out)
            (out / f"row_{side}.json").write_text(json.dumps(row, indent=2))
            print(json.dumps(row), flush=True)
    rows = [json.loads((out / f"row_{side}.json").read_text()) for side in ("ours", "yolo")
            if (out / f"row_{side}.json").is_file()]
    onnx_files = [r.get("onnx") for r in rows]
    speed = None
    if args.task == "segment" and len(rows) == 2 and all(onnx_files):
        speed = onnx_throughput(onnx_files[0], onnx_files[1], args.size)
        print(json.dumps({"onnx_images_per_s": speed}), flush=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "onnx_speed": speed}, indent=2))
    seg = args.task == "segment"
    print("\n| model | train s | box mAP@[.5:.95] | box mAP50 |"
          + (" mask mAP@[.5:.95] | mask mAP50 |" if seg else "")
          + "\n|---|---|---|---|" + ("---|---|" if seg else ""))
    for r in rows:
        print(f"| {r['model']} | {r['train_seconds']:.0f} | {r['box_map']:.3f} | {r['box_map50']:.3f} |"
              + (f" {r['mask_map']:.3f} | {r['mask_map50']:.3f} |" if seg else ""))
    if speed:
        print(f"\nONNX, batch {speed['batch']}, {speed['size']} px, {speed['threads']} threads: "
              f"ours {speed['ours']:.0f} img/s (NMS + masks in the graph), "
              f"YOLO {speed['yolo']:.0f} img/s (raw outputs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
