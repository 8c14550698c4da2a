"""Pipeline throughput with the previous decode path vs the current one, interleaved in one
process, so that both face the same machine load (a fairer A/B than separate runs).

Usage (from the repository root)::

    .venv/bin/python benchmarks/decode_ab.py MODEL.onnx IMAGES [--rounds 7] [--reduced]

Cases, each timed once per round, rounds interleaved (``vision_tasks.export.benchmark`` machinery):

- ``onnxruntime``: model only, a letterboxed batch in memory (as ``vision-tasks benchmark``);
- ``pipeline, Pillow decode``: files -> Pillow decode, EXIF transpose, numpy copies, then
  letterbox: the path ``vision-tasks predict`` took before the OpenCV fast path;
- ``pipeline``: files -> the current ``load_letterboxed`` (what ``vision-tasks predict`` runs);
- ``pipeline, reduced decode`` (with ``--reduced``): the same with ``--reduced-decode``.

Every pipeline case is ``vision_tasks.export.runtime.pipeline``'s batch stream with the same workers,
batch size, model call and JSON lines; only the per-file decode differs. Prints the median
images/s of each and its ratio to model only. Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import numpy as np
import pipeline_inputs
from vision_tasks.export.benchmark import _Case, measure_interleaved
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.pipeline import (
    Prepared,
    batch_stream,
    default_workers,
    make_preparer,
)

from vision_tasks import imaging


def pillow_preparer(predictor: Predictor) -> Callable[[str], Prepared]:
    """The per-file job as it was: Pillow decode of every file, then letterbox."""
    size, pad = predictor.input_size, predictor.metadata.pad_value

    def prepare(source: str) -> Prepared:
        try:
            original = imaging._pil_decode(imaging._read_file(source), source)
            image, lb = imaging.letterbox(original, size, pad)
        except imaging.ImageError as err:
            return Prepared(source, error=str(err))
        return Prepared(source, image, lb)

    return prepare


def main(argv: list[str] | None = None) -> int:
    parser = pipeline_inputs.parser(__doc__.splitlines()[0], count=512)
    parser.add_argument("--reduced", action="store_true", help="also time --reduced-decode")
    args = parser.parse_args(argv)

    predictor, files = pipeline_inputs.predictor_and_files(args)
    reduced = Predictor(args.model, device="cpu", batch_size=args.batch_size, reduced_decode=True)
    workers = default_workers()
    h, w = predictor.input_size
    batch = np.random.default_rng(0).integers(0, 256, (args.batch_size, h, w, 3), dtype=np.uint8)

    def pipeline(model: Predictor, prepare: Callable[[str], Prepared]) -> Callable[[], None]:
        def run() -> None:
            for prepared in batch_stream(files, prepare, args.batch_size, workers):
                if prepared.images is None:
                    continue
                outputs = model.run(prepared.images)
                for p in model.decode(outputs, [g.letterbox for g in prepared.good],
                                      [g.source for g in prepared.good]):
                    json.dumps(p.to_dict())
        return run

    cases = [_Case("onnxruntime", lambda: predictor.run(batch), args.batch_size, 3, 1.0),
             _Case("pipeline, Pillow decode", pipeline(predictor, pillow_preparer(predictor)),
                   len(files), 1, 0.0),
             _Case("pipeline", pipeline(predictor, make_preparer(predictor)), len(files), 1, 0.0)]
    if args.reduced:
        cases.append(_Case("pipeline, reduced decode", pipeline(reduced, make_preparer(reduced)),
                           len(files), 1, 0.0))
    results = measure_interleaved(cases, args.batch_size, args.rounds)
    model_only = results["onnxruntime"].images_per_s
    print(f"{args.model} on {args.images} ({len(set(files))} files, {len(files)} per pass), "
          f"batch {args.batch_size}, {predictor.threads} threads, {workers} decode workers, "
          f"{args.rounds} interleaved rounds")
    for name, m in results.items():
        ratio = "" if name == "onnxruntime" else f"{100 * m.images_per_s / model_only:8.1f} %"
        rounds = " ".join(f"{r:.0f}" for r in m.repeats)
        print(f"  {name:28s}{m.images_per_s:9.1f} img/s{ratio:>10s}   rounds: {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
