"""The speed half of ``benchmarks/real_photos.py`` and the coco128 helpers both halves use:
ours (``configs/detect.yaml``, ``detect_resnet18``, ``detect_mobilenet_v3``) and YOLO11n as
ONNX at ``--speed-size`` (640), batch 8, images/s of interleaved calls in one process
(``benchmarks/int8.py``'s ``throughput``). Run through ``real_photos.py --speed-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8 import throughput, timing_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "data" / "coco128"
SPEED_CONFIGS = ("detect", "detect_resnet18", "detect_mobilenet_v3")
# Albumentations (visible to Ultralytics through the .pth) would check for updates online;
# YOLO_OFFLINE stops Ultralytics' own online checks and downloads.
YOLO_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "YOLO_OFFLINE": "1"}

YOLO_EXPORT = textwrap.dedent("""
    import shutil, sys
    from ultralytics import YOLO
    weights, target, size, batch = sys.argv[1:5]
    f = YOLO(weights).export(format="onnx", imgsz=int(size), dynamic=True, nms=True,
                             simplify=False, device="cpu", batch=int(batch), conf=0.001,
                             iou=0.7, max_det=100)
    shutil.move(f, target)
""")


def coco_subset(annotations: Path, count: int | None, out: Path) -> Path:
    """The first ``count`` images of a COCO file with their annotations, all categories kept
    (so the class list stays the same), written to ``out``; the file itself when ``count``
    is None."""
    if count is None:
        return annotations
    ann = json.loads(annotations.read_text())
    images = ann["images"][:count]
    ids = {im["id"] for im in images}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**ann, "images": images, "annotations": [
        a for a in ann["annotations"] if a["image_id"] in ids]}))
    return out


def data_overrides(images: Path, annotations: Path) -> list[str]:
    return [f"data.{split}.{key}={value}" for split in ("train", "val")
            for key, value in (("images", images), ("annotations", annotations))]


def one_step_checkpoint(config: str, images: Path, work: Path) -> Path:
    """``configs/<config>.yaml`` trained one step (one batch of 8 coco128 images, 320 px,
    no pretrained weights: nothing is downloaded); returns its last.pt."""
    from vision_tasks.config import load_config
    from vision_tasks.engine.trainer import Trainer

    annotations = coco_subset(COCO128 / "annotations.json", 8, work / "coco128-8.json")
    cfg = load_config(REPO / "configs" / f"{config}.yaml", [
        *data_overrides(images, annotations), "data.image_size=320", "data.workers=0",
        "train.epochs=1", "train.batch_size=8", "train.device=cpu",
        "model.backbone.pretrained=null"])
    return Trainer(cfg, work / f"step-{config}", progress=False, overwrite=True).fit().last


def export_at(checkpoint: Path, size: int, out: Path) -> Path:
    """``checkpoint`` exported to ONNX (fp32) with ``data.image_size`` = ``size``."""
    from vision_tasks.export.onnx_export import export_checkpoint

    from vision_tasks.engine.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(checkpoint)
    state["config"]["data"]["image_size"] = size
    resized = out.with_suffix(".pt")
    save_checkpoint(resized, state)
    return export_checkpoint(resized, out).path


def detections_per_image(path: str, feed: dict, threads: int) -> float:
    """Mean detections per image of one call: ours' ``num_detections``, YOLO's rows with a
    score (its NMS output ``[N, 100, 6]``: x1, y1, x2, y2, score, class; zero rows pad)."""
    from vision_tasks.export.runtime.providers import create_session

    session = create_session(path, "cpu", threads)[0]
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                       strict=True))
    if "num_detections" in outputs:
        return float(outputs["num_detections"].mean())
    out = next(iter(outputs.values()))
    return float((out[..., 4] > 0).sum(axis=-1).mean())


def speed(work: Path, args: argparse.Namespace) -> dict:
    """Ours (``SPEED_CONFIGS``) and YOLO11n as ONNX at ``--speed-size``: images/s of
    interleaved calls in one process, detections per image, file sizes, which weights."""
    import numpy as np

    out = work / "speed"
    out.mkdir(parents=True, exist_ok=True)
    files, weights = {}, {}
    trained = work / "ours-detect" / "weights" / "last.pt"
    for config in SPEED_CONFIGS:
        if config == "detect" and trained.is_file():
            checkpoint, weights[config] = trained, f"training part's last epoch ({trained})"
        else:
            checkpoint = one_step_checkpoint(config, COCO128 / "images", out)
            weights[config] = "one step from scratch"
        files[config] = str(export_at(checkpoint, args.speed_size, out / f"{config}.onnx"))
    if not args.skip_yolo:
        yolo_trained = work / "yolo-detect" / "train" / "weights" / "last.pt"
        source = str(yolo_trained) if yolo_trained.is_file() else "yolo11n.yaml"
        weights["yolo11n"] = (f"training part's last epoch ({yolo_trained})"
                              if yolo_trained.is_file() else "untrained (yolo11n.yaml)")
        files["yolo11n"] = str(out / "yolo11n.onnx")
        script = out / "yolo_export.py"
        script.write_text(YOLO_EXPORT)
        subprocess.run([args.yolo_python, str(script), source, files["yolo11n"],
                        str(args.speed_size), str(args.speed_batch)],
                       check=True, cwd=out, env={**os.environ, **YOLO_ENV})
    images = timing_images(files["detect"], args.speed_batch)
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / 255
    feeds = {name: {"images": nchw if name == "yolo11n" else images} for name in files}
    timed = throughput({name: (files[name], feeds[name]) for name in files}, args.speed_batch,
                       args.speed_threads, args.runs_timed, args.rounds)
    return {"size": args.speed_size, **timed, "weights": weights, "files": files,
            "megabytes": {n: os.path.getsize(f) / 1e6 for n, f in files.items()},
            "detections_per_image": {n: detections_per_image(f, feeds[n], args.speed_threads)
                                     for n, f in files.items()}}
