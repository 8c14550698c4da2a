"""Fixtures of the JavaScript tests, made with the Python product: four small models, test
images, and what the Python runtime gives for them.

    .venv/bin/python js/test/make_fixtures.py OUT

OUT receives
- ``{classify,localize,detect,segment}.onnx``: tiny models trained on synthetic shapes and
  exported by the ``vision-tasks`` command line (``data synth``, ``train``, ``export``):
  classify and localize one epoch; detect and segment 40 epochs on 16 images (the test images
  are those images stretched, so boxes and masks land on the shapes) and keep every
  detection in the graph (score threshold 0), so each image has many boxes and masks;
- ``multi.onnx``: a multi-head model (contract version 2), one head of each task, one epoch;
- ``images/*.png``: portrait and landscape images (RGB, RGBA, gray; smaller and larger than
  the inputs, so the letterbox scales down and up with odd paddings);
- ``expected/<task>.json``: the Python ``Predictor``'s ``to_dict()`` of every image, at the
  default score threshold, at 0.05 and at 0;
- ``images/icc.jpg``, ``expected/icc.json``, ``expected/icc.rgb``: a photo carrying a colour
  profile far from sRGB (``tests/icc_photo.py``), every model's results on it, and the pixels
  ``vision_tasks.imaging.load_image`` decodes from it (converted to sRGB);
- ``contract.json``: the Python package's contract and package versions;
- ``letterbox/``: random images and ``vision_tasks.imaging.letterbox`` of them;
- ``masks.json``: random mask probabilities and ``vision_tasks.masks.resample_mask`` of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLI = [str(Path(sys.executable).with_name("vision-tasks"))]
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from icc_photo import write_icc_photo  # noqa: E402  (the ICC test photo, shared with tests/test_icc.py)

TINY = ["data.workers=0", "train.batch_size=8", "train.warmup_epochs=0"]
SMALL_CNN = ["model.backbone.name=simple_cnn", "model.backbone.width=4", "model.backbone.depths=[1, 1, 1]"]
STRIDED = "model.backbone.stages=" + json.dumps([[{"type": "conv", "filters": 8, "f": 3, "s": 2, "p": 1}]] * 5)
OVERFIT = ["train.epochs=40", "train.lr=0.01"]
TASKS = {  # task -> (synth size, --set overrides)
    "classify": (32, [*SMALL_CNN, "data.image_size=32", "train.lr=0.01", "train.epochs=1"]),
    "localize": (48, [*SMALL_CNN, "data.image_size=48", "model.head.channels=8", "model.head.hidden=32",
                      "train.epochs=1"]),
    # 40 epochs on the 16 images the test images are cut from: boxes and masks where the
    # shapes are, some scoring above the default threshold (one epoch gives whole-image boxes)
    "detect": (64, ["data.image_size=64", STRIDED, *OVERFIT, "model.head.channels=16", "model.head.hidden=16",
                    "model.head.depth=1", "model.head.score_threshold=0"]),
    "segment": (64, ["data.image_size=64", STRIDED, *OVERFIT, "model.head.channels=16", "model.head.hidden=16",
                     "model.head.depth=1", "model.head.num_protos=8", "model.head.proto_channels=16",
                     "model.head.coef_hidden=16", "model.head.score_threshold=0"]),
}
# name -> (width, height, PIL mode): portrait and landscape, down- and upscaled by the letterbox
IMAGES = {
    "landscape.png": (160, 90, "RGB"),
    "portrait.png": (75, 133, "RGB"),
    "small_wide.png": (50, 21, "RGB"),
    "portrait_rgba.png": (90, 170, "RGBA"),
    "landscape_gray.png": (201, 111, "L"),
}


def run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def make_model(task: str, work: Path, out: Path, scenes: Path | None = None) -> Path:
    """data synth (or ``scenes``, a synthetic COCO set) -> train -> export, by the command
    line; the .onnx file."""
    size, sets = TASKS[task]
    data = scenes or work / f"data-{task}"
    if scenes is None:
        run([*CLI, "data", "synth", task, str(data), "--train", "16", "--val", "4", "--size", str(size)], work)
    if task == "classify":
        splits = [f"data.train={data / 'train'}", f"data.val={data / 'val'}"]
    else:
        splits = [f"data.{s}=" + json.dumps({"images": str(data / s / "images"),
                                             "annotations": str(data / s / "annotations.json")})
                  for s in ("train", "val")]
    run([*CLI, "train", task, "--out", str(work / f"run-{task}"), "--quiet",
         *(a for s in [*splits, *TINY, *sets] for a in ("--set", s))], work)
    model = out / f"{task}.onnx"
    run([*CLI, "export", str(work / f"run-{task}" / "weights" / "best.pt"), "--out", str(model)], work)
    return model


def make_multi(work: Path, out: Path, scenes: Path) -> Path:
    """A multi-head model (contract version 2: classify, localize, detect and segment heads on
    one backbone), one epoch of joint training on the other models' data sets."""
    def coco(folder: Path) -> str:
        return json.dumps({"images": str(folder / "images"), "annotations": str(folder / "annotations.json")})

    sets = [*TINY, "train.epochs=1", "data.image_size=64", STRIDED]
    for split in ("train", "val"):
        sets += [f"heads.classify.data.{split}={work / 'data-classify' / split}",
                 f"heads.localize.data.{split}={coco(work / 'data-localize' / split)}",
                 f"heads.detect.data.{split}={coco(scenes / split)}",
                 f"heads.segment.data.{split}={coco(scenes / split)}"]
    for head in ("detect", "segment"):
        sets += [f"heads.{head}.head.{key}" for key in ("hidden=16", "channels=16", "depth=1")]
    sets += [f"heads.segment.head.{key}" for key in ("num_protos=8", "proto_channels=16", "coef_hidden=16")]
    run([*CLI, "train", "multi", "--out", str(work / "run-multi"), "--quiet",
         *(a for s in sets for a in ("--set", s))], work)
    model = out / "multi.onnx"
    run([*CLI, "export", str(work / "run-multi" / "weights" / "best.pt"), "--out", str(model)], work)
    return model


def make_scenes(work: Path) -> Path:
    """The synthetic segment set (seed 0, 64 px) that detect and segment train on."""
    scenes = work / "scenes"
    run([*CLI, "data", "synth", "segment", str(scenes), "--train", "16", "--val", "4", "--size", "64"], work)
    return scenes


def make_images(scenes: Path, out: Path) -> list[Path]:
    """The test images: the detect and segment models' training scenes, stretched to
    portrait and landscape sizes (so those models find objects in them)."""
    sources = sorted((scenes / "train" / "images").iterdir())
    folder = out / "images"
    folder.mkdir(exist_ok=True)
    paths = []
    for k, (name, (w, h, mode)) in enumerate(IMAGES.items()):
        img = Image.open(sources[k % len(sources)]).convert("RGB").resize((w, h), Image.BILINEAR)
        if mode == "RGBA":  # alpha varies; Python and JS both drop it and keep the stored colour
            alpha = Image.linear_gradient("L").resize((w, h))
            img = img.copy()
            img.putalpha(alpha)
        img = img.convert(mode)
        img.save(folder / name)
        paths.append(folder / name)
    return paths


def write_expected(models: dict[str, Path], images: list[Path], out: Path) -> None:
    from vision_tasks.export.runtime import Predictor

    folder = out / "expected"
    folder.mkdir(exist_ok=True)
    for task, model in models.items():
        results = {}
        for threshold in (0.25, 0.05, 0.0):
            predictor = Predictor(model, device="cpu", score_threshold=threshold, threads=1)
            results[str(threshold)] = [p.to_dict() for p in predictor.predict(images)]
        (folder / f"{task}.json").write_text(json.dumps({
            "images": [p.name for p in images], "results": results}))


def write_icc_expected(models: dict[str, Path], scenes: Path, out: Path) -> None:
    """The ICC photo (a training scene stretched to 120 x 90, saved as a JPEG with the
    swapped-primaries profile), its decoded pixels and every model's results on it."""
    from vision_tasks.export.runtime import Predictor

    from vision_tasks import __version__
    from vision_tasks.contract import CONTRACT_VERSION
    from vision_tasks.imaging import load_image

    source = sorted((scenes / "train" / "images").iterdir())[1]
    pixels = np.asarray(Image.open(source).convert("RGB").resize((120, 90), Image.BILINEAR))
    photo = write_icc_photo(out / "images" / "icc.jpg", pixels)
    load_image(photo).tofile(out / "expected" / "icc.rgb")
    results = {task: {str(t): Predictor(model, device="cpu", score_threshold=t, threads=1).predict([photo])[0].to_dict()
                      for t in (0.25, 0.0)} for task, model in models.items()}
    (out / "expected" / "icc.json").write_text(json.dumps({"image": photo.name, "width": 120, "height": 90,
                                                           "results": results}))
    (out / "contract.json").write_text(json.dumps({"contract_version": CONTRACT_VERSION,
                                                   "package_version": __version__}))


def write_letterbox_cases(out: Path, count: int = 60) -> None:
    """Random RGB images of any size and their letterboxed inputs (scaled up and down)."""
    from vision_tasks.imaging import letterbox

    rng = np.random.default_rng(0)
    folder = out / "letterbox"
    folder.mkdir(exist_ok=True)
    cases = []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(1, 400, 2))
        size = [int(rng.choice([32, 64, 100, 128, 320, 640]))] * 2
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs, lb = letterbox(image, tuple(size))
        image.tofile(folder / f"{i}.rgb")
        inputs.tofile(folder / f"{i}.input")
        cases.append({"width": w, "height": h, "size": size, "letterbox": lb.to_dict()})
    (folder / "cases.json").write_text(json.dumps(cases))


def write_mask_cases(out: Path, count: int = 80) -> None:
    """Random smooth mask probabilities, letterboxes and boxes, and resample_mask's RLE."""
    from vision_tasks.imaging import letterbox
    from vision_tasks.masks import resample_mask

    rng = np.random.default_rng(1)
    cases = []
    for _ in range(count):
        in_size = int(rng.choice([64, 128, 320, 640]))
        h, w = (int(v) for v in rng.integers(8, 900, 2))
        _, lb = letterbox(np.zeros((h, w, 3), np.uint8), in_size)  # the geometry only
        hm = wm = in_size // 4
        coarse = rng.random((hm // 4 + 2, wm // 4 + 2)).astype(np.float32)
        probs = np.asarray(Image.fromarray(coarse, mode="F").resize((wm, hm), Image.BICUBIC),
                           dtype=np.float32).clip(0, 1)
        x1, x2 = sorted(rng.uniform(-0.1, 1.1, 2) * w)
        y1, y2 = sorted(rng.uniform(-0.1, 1.1, 2) * h)
        box = np.clip(np.array([x1, y1, x2, y2]), 0, [w, h, w, h]).astype(np.float32)
        use_box = bool(rng.random() < 0.85)
        crop = resample_mask(probs, lb, 0.5, box if use_box else None)
        cases.append({"letterbox": lb.to_dict(), "hm": hm, "wm": wm, "probs": probs.ravel().tolist(),
                      "box": [float(v) for v in box] if use_box else None, "rle": crop.rle(),
                      "crop": [crop.x0, crop.y0, int(crop.mask.shape[1]), int(crop.mask.shape[0])]})
    (out / "masks.json").write_text(json.dumps(cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    out: Path = args.out.resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # two CLI pipelines at once, one torch thread each
        scenes = pool.submit(make_scenes, work)
        models = {task: pool.submit(make_model, task, work, out) for task in ("classify", "localize")}
        images = make_images(scenes.result(), out)
        models |= {task: pool.submit(make_model, task, work, out, scenes.result())
                   for task in ("detect", "segment")}
        models["classify"].result(), models["localize"].result()  # their data sets, for multi
        models["multi"] = pool.submit(make_multi, work, out, scenes.result())
        models = {task: future.result() for task, future in models.items()}
    write_expected(models, images, out)
    write_icc_expected(models, scenes.result(), out)
    write_letterbox_cases(out)
    write_mask_cases(out)
    print(f"fixtures in {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
