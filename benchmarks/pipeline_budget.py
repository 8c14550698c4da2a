"""Where one image's CPU time goes in ``vision-tasks predict``, and the pipeline / model-only
ratio that those costs allow when the model alone already keeps every core busy.

Usage (from the repository root)::

    .venv/bin/python benchmarks/pipeline_budget.py MODEL.onnx IMAGES [--rounds 7]

Each stage runs on its own, in this one thread, over the same files (process CPU time,
median of ``--rounds``, per image):

- ``model``: :meth:`Predictor.run_lane` on letterboxed batches of ``--batch-size`` (a lane
  session: ``threads // lanes`` intra-op threads, 1 on a 2-core machine);
- ``read``: the file's bytes; ``decode``: read + decode + letterbox
  (:meth:`Predictor.load`, what the pipeline's workers run per file);
- ``results``: outputs -> :class:`Prediction` -> JSON line (what the consumer runs).

On the CPU every stage takes cores from the model, so the pipeline can reach at most
``model / (model + decode + results)`` of the model-only throughput, even with perfect
overlap and no threading cost. Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import pipeline_inputs

from vision_tasks.imaging import _read_file
from vision_tasks.results import json_line


def cpu_per_item(work: Callable[[], object], items: int, rounds: int) -> float:
    """Median process CPU seconds per item of ``work`` (which handles ``items`` items)."""
    work()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        work()
        times.append((time.process_time() - t0) / items)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = pipeline_inputs.parser(__doc__.splitlines()[0], count=256).parse_args(argv)
    predictor, files = pipeline_inputs.predictor_and_files(args)
    loaded = [predictor.load(f) for f in files]
    batches = [np.stack([image for image, _, _ in loaded[i:i + args.batch_size]])
               for i in range(0, len(loaded), args.batch_size)]
    outputs = [predictor.run_lane(b) for b in batches]
    letterboxes = [lb for _, lb, _ in loaded]

    def results() -> None:
        for k, out in enumerate(outputs):
            rows = slice(k * args.batch_size, (k + 1) * args.batch_size)
            for p in predictor.decode(out, letterboxes[rows], files[rows]):
                json_line(p.to_dict())

    us = {name: 1e6 * cpu_per_item(work, len(files), args.rounds) for name, work in (
        ("model", lambda: [predictor.run_lane(b) for b in batches]),
        ("read", lambda: [_read_file(f) for f in files]),
        ("decode", lambda: [predictor.load(f) for f in files]),
        ("results", results))}
    print(f"{args.model}: {predictor.task}, input {predictor.input_size}, lanes "
          f"{predictor.lanes} x {max(1, predictor.threads // predictor.lanes)} threads; "
          f"{len(set(files))} distinct files from {args.images}")
    for name, label in (("model", "model, one lane"), ("read", "read file"),
                        ("decode", "read + decode + letterbox"), ("results", "results + JSON")):
        print(f"  {label:28s}{us[name]:9.1f} us CPU / image")
    bound = us["model"] / (us["model"] + us["decode"] + us["results"])
    print(f"  pipeline / model-only ceiling: {100 * bound:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
