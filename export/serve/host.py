"""One served model: its :class:`~vision_tasks.export.runtime.Predictor` (one onnxruntime
session shared by every request), its batcher, and the work done off the event loop.

A request's images are decoded and letterboxed in the shared decoding pool
(:meth:`Predictor.load`, the same model input as ``vision-tasks predict``), batched with
other requests' images, run by :meth:`Predictor.run_lane` in a worker thread, and decoded
there by :meth:`Predictor.decode` with the request's own options; each answer is
:meth:`Prediction.to_dict` written by orjson, so a line of ``predictions.jsonl`` and an
answer of the server are the same JSON for the same image.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import Executor
from typing import Any

import numpy as np

from vision_tasks.imaging import ImageError, Letterbox
from vision_tasks.results import json_line

from ..runtime import Predictor
from .batcher import Batcher, Job
from .inputs import PredictOptions, RequestError, Upload, check_image_header
from .metrics import Metrics
from .options import ServeOptions


class ModelHost:
    """A model behind the API (built inside the running event loop).

    Args:
        name: the model's name in URLs.
        path: its ``.onnx`` file.
        options: the server's settings (device, threads, lanes, batching, limits).
        decode_pool: the threads that decode images, shared by all models.
        metrics: where batch sizes and queue depth are counted.
    """

    def __init__(self, name: str, path: str, options: ServeOptions, decode_pool: Executor,
                 metrics: Metrics) -> None:
        self.name = name
        self.options = options
        self.predictor = Predictor(path, device=options.device, threads=options.threads,
                                   batch_size=options.max_batch,
                                   reduced_decode=options.reduced_decode, lanes=options.lanes)
        self.decode_pool = decode_pool
        self.metrics = metrics
        meta = self.predictor.metadata
        self.head_names = tuple(meta.heads)
        self.has_detections = (meta.task in ("detect", "segment") or any(
            head.task in ("detect", "segment") for head in meta.heads.values()))
        self.batcher = Batcher(self._run_batch, options.max_batch, options.max_delay_ms / 1000,
                               options.max_queue, self.predictor.lanes,
                               on_batch=lambda n: metrics.batch(name, n))
        metrics.queue_depth.labels(name).set_function(lambda: self.batcher.admitted)

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of this model."""
        p = self.predictor
        meta = p.metadata
        heads = {name: {"task": head.task, "classes": list(head.class_names),
                        "max_detections": head.max_detections}
                 for name, head in meta.heads.items()}
        return {"name": self.name, "task": meta.task, "classes": list(meta.class_names),
                "input_size": list(meta.input_size), "heads": heads,
                "max_detections": meta.max_detections, "thresholds": meta.thresholds,
                "score_threshold": p.score_threshold, "contract_version": meta.contract_version,
                "package_version": meta.package_version, "provider": p.provider,
                "lanes": p.lanes, "file": p.path.name}

    async def predict(self, uploads: list[Upload], options: PredictOptions) -> list[bytes]:
        """Each upload's answer (a JSON object, as a ``predictions.jsonl`` line without its
        newline), in order.

        Raises:
            RequestError: 503 when the queue is full; 4xx for an upload that is not an
                image, too large or broken (one such upload is named).
        """
        self.batcher.admit(len(uploads))
        submitted = 0
        try:
            loop = asyncio.get_running_loop()
            prepared = await asyncio.gather(*(
                loop.run_in_executor(self.decode_pool, self._prepare, u) for u in uploads))
            futures = []
            for upload, (image, letterbox) in zip(uploads, prepared, strict=True):
                futures.append(self.batcher.submit((image, letterbox, upload.name), options))
                submitted += 1
            return list(await asyncio.gather(*futures))
        finally:
            self.batcher.release(len(uploads) - submitted)

    def _prepare(self, upload: Upload) -> tuple[np.ndarray, Letterbox]:
        """Decode and letterbox one upload (in a decoding thread)."""
        check_image_header(upload, self.options.max_pixels)
        try:
            image, letterbox, _ = self.predictor.load(upload.data)
        except ImageError as err:
            message = str(err).removeprefix("<bytes>: ").replace(
                "; re-export the file or remove it", "")
            raise RequestError(400, "bad_image", f"{upload.name}: {message}; send the whole, "
                                                 "undamaged image file") from None
        return image, letterbox

    def _run_batch(self, jobs: list[Job]) -> list[bytes]:
        """One inference call for ``jobs``, decoded per request's options (a worker thread)."""
        outputs = self.predictor.run_lane(np.stack([job.item[0] for job in jobs]))
        answers: list[bytes] = [b""] * len(jobs)
        groups: dict[PredictOptions, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[job.options].append(i)
        for options, rows in groups.items():
            part = outputs if len(rows) == len(jobs) else {
                key: value[rows] for key, value in outputs.items()}
            predictions = self.predictor.decode(
                part, [jobs[i].item[1] for i in rows], [jobs[i].item[2] for i in rows],
                score_threshold=options.score_threshold, heads=options.heads)
            for i, prediction in zip(rows, predictions, strict=True):
                answers[i] = json_line(prediction.to_dict(options.top_k))[:-1]
        return answers

    async def close(self) -> None:
        await self.batcher.close(self.options.graceful_timeout_s)
