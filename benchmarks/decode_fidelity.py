"""How close the runtime's fast decoding is to the reference decode, on a folder of images.

Usage (from the repository root)::

    .venv/bin/python benchmarks/decode_fidelity.py ../shared/data/coco128/images --size 64
    .venv/bin/python benchmarks/decode_fidelity.py IMAGES --size 64 --model runs/demo/model.onnx
    .venv/bin/python benchmarks/decode_fidelity.py IMAGES --size 64 --long-side 560   # other ratios

For every image it compares, against the reference ``letterbox(load_image(...))`` computed
with the Pillow decoder (what ``load_image`` did for every file before the OpenCV path):

- ``exact``: ``load_letterboxed(reduce=False)``, the default runtime path (OpenCV for PNG
  and JPEG): it should be identical;
- ``reduced``: ``load_letterboxed(reduce=True)`` (``--reduced-decode``), JPEG DCT scaling;
- ``resaved q90``: the reference image saved again as a quality-90 JPEG and decoded, a
  perturbation for scale (what re-saving a photo does to the model input).

It prints the mean absolute difference of the model inputs (grey levels, whole letterboxed
input) as median / 90th percentile / max over images, the scale factors used, and with
``--model`` (a model whose input is ``--size``) the share of images whose top-1 class is
unchanged and the mean absolute change of the scores. ``--long-side L`` first saves a copy of
each image shrunk to ``L`` px on its long side (area-averaged, JPEG quality 95) into a
temporary folder and measures on those, to try other photo-to-input ratios. Figures:
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from vision_tasks.export.runtime.sources import resolve_sources

from vision_tasks import imaging


def _reference(path: str, size: int) -> np.ndarray:
    with open(path, "rb") as f:
        return imaging.letterbox(imaging._pil_decode(f.read(), path), size)[0]


def _resaved(path: str, size: int) -> np.ndarray:
    rgb = imaging._pil_decode(open(path, "rb").read(), path)
    data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return imaging.letterbox(imaging.load_image(data), size)[0]


def _factor(path: str, size: int) -> int:
    with open(path, "rb") as f:
        header = imaging._sniff(f.read())
    if header is None or not header.jpeg:
        return 1
    h, w = header.height, header.width
    if header.orientation >= 5:
        h, w = w, h
    return imaging._reduction(h, w, size, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", help="image folder / glob / list")
    parser.add_argument("--size", type=int, default=64, help="square model input (default 64)")
    parser.add_argument("--model", help="an exported model with that input size, to compare scores")
    parser.add_argument("--long-side", type=int, help="measure on copies shrunk to this long side")
    args = parser.parse_args(argv)

    files = resolve_sources(args.images)
    with tempfile.TemporaryDirectory(prefix="decode-fidelity-") as scratch:
        if args.long_side:
            files = [_shrunk(f, args.long_side, Path(scratch)) for f in files]
        return _measure(files, args)


def _shrunk(path: str, long_side: int, folder: Path) -> str:
    rgb = imaging.load_image(path)
    scale = min(1.0, long_side / max(rgb.shape[:2]))
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    out = folder / f"{Path(path).stem}.jpg"
    cv2.imwrite(str(out), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(out)


def _measure(files: list[str], args: argparse.Namespace) -> int:
    reference = np.stack([_reference(f, args.size) for f in files]).astype(np.int16)
    variants = {
        "exact": np.stack([imaging.load_letterboxed(f, args.size)[0] for f in files]),
        "reduced": np.stack([imaging.load_letterboxed(f, args.size, reduce=True)[0] for f in files]),
        "resaved q90": np.stack([_resaved(f, args.size) for f in files]),
    }
    factors = np.array([_factor(f, args.size) for f in files])
    shrunk = f" shrunk to {args.long_side} px" if args.long_side else ""
    print(f"{len(files)} images from {args.images}{shrunk}, input {args.size}x{args.size}; "
          f"reduced decode scale 1/f: " + ", ".join(
              f"f={f}: {int((factors == f).sum())}" for f in np.unique(factors)))
    scores = {}
    if args.model:
        from vision_tasks.export.runtime import Predictor

        predictor = Predictor(args.model, device="cpu")
        if predictor.input_size != (args.size, args.size):
            print(f"{args.model} takes {predictor.input_size}, not {args.size}", file=sys.stderr)
            return 2

        def run(batch: np.ndarray) -> np.ndarray:
            return np.concatenate([next(iter(predictor.run(batch[i:i + 32]).values()))
                                   for i in range(0, len(batch), 32)])

        scores = {"reference": run(reference.astype(np.uint8))}
        scores.update({name: run(batch) for name, batch in variants.items()})
    print(f"  {'':14s}{'mean |diff| median':>20s}{'p90':>8s}{'max':>8s}"
          + (f"{'top-1 same':>12s}{'mean |dscore|':>15s}" if scores else ""))
    for name, batch in variants.items():
        per_image = np.abs(batch.astype(np.int16) - reference).reshape(len(files), -1).mean(axis=1)
        line = (f"  {name:14s}{np.median(per_image):20.2f}{np.percentile(per_image, 90):8.2f}"
                f"{per_image.max():8.2f}")
        if scores:
            ref, got = scores["reference"], scores[name]
            same = float((ref.argmax(1) == got.argmax(1)).mean())
            line += f"{100 * same:11.1f}%{np.abs(ref - got).mean():15.4f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
