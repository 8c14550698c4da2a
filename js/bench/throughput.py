"""Images per second (and CPU milliseconds per image) of a model in the Python runtime, as js/bench/throughput.js measures the
JavaScript one: the model alone (``Predictor.run`` on letterboxed batches) and ``predict`` on
the same decoded images (letterbox, run, decode), same batch and threads.

    .venv/bin/python js/bench/throughput.py MODEL.onnx IMAGES_DIR [--batch 32] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from vision_tasks.export.runtime import Predictor

from vision_tasks.imaging import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("images", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    pool = [load_image(p) for p in files]
    images = [pool[i % len(pool)] for i in range(args.batch)]
    predictor = Predictor(args.model, device="cpu", threads=args.threads, batch_size=args.batch)
    batch = np.stack([predictor.prepare(image)[0] for image in images])
    for _ in range(3):  # warm-up, as throughput.js does
        predictor.run(batch)
        predictor.predict(images)

    def rate(fn) -> tuple[float, float]:
        """Images per second of wall time, and CPU milliseconds per image (all threads of this
        process: steadier than wall time on a machine other jobs share)."""
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.rounds):
            fn()
        n = args.rounds * args.batch
        return (round(n / (time.perf_counter() - start), 1),
                round((time.process_time() - cpu) * 1000 / n, 2))

    alone, alone_cpu = rate(lambda: predictor.run(batch))
    predict, predict_cpu = rate(lambda: predictor.predict(images))
    print(json.dumps({"runtime": "python-onnxruntime", "batch": args.batch, "threads": args.threads,
                      "model_alone_img_s": alone, "predict_img_s": predict,
                      "model_alone_cpu_ms_per_img": alone_cpu, "predict_cpu_ms_per_img": predict_cpu}))


if __name__ == "__main__":
    main()
