"""``vision-tasks benchmark``: throughput ratios taken in one run, on one machine.

Up to four measurements, same batch size and thread count, each after a warm-up, as the
median images/s of several repeats; the repeats are interleaved (a round times each once),
so on a shared machine a change of load hits all of them alike:

- ``onnxruntime``: model only, one call at a time on all threads (letterboxed uint8 batch
  in memory -> outputs; :meth:`Predictor.run`);
- ``onnxruntime_lanes`` (when ``Predictor.lanes > 1``): model only as the pipeline runs it,
  ``lanes`` batches at once (:meth:`Predictor.run_lane`);
- ``pytorch``: the same graph in PyTorch eager (``ExportWrapper`` on the checkpoint), one
  call at a time on all threads, when a checkpoint is given;
- ``pipeline``: files -> decode + letterbox (worker threads) -> onnxruntime -> results
  (:func:`vision_tasks.export.runtime.pipeline.predict_stream` and the JSON line of each prediction,
  what ``vision-tasks predict`` runs, minus the disk writes of those lines).

Ratios: onnxruntime / pytorch compares like with like (one call on all threads); pipeline
/ model only divides by the faster of the two model-only ways, so a pipeline cannot look
good against a slow model-only figure (``pipeline_over_one_call`` also gives it against one
call on all threads, the model-only figure of a one-lane pipeline). The output is the
measurements and their ratios; what they are held to, and past figures, are in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vision_tasks.contract import ModelFileError
from vision_tasks.results import json_line

from .runtime import Predictor
from .runtime.pipeline import default_workers, predict_stream
from .runtime.sources import SourceError, resolve_sources

MODEL_ONLY = ("onnxruntime", "onnxruntime_lanes")
LANE_CALLS = 8  # batches each lane runs between two meetings (see _lanes_runner)


@dataclass
class Measurement:
    name: str
    images_per_s: float
    ms_per_batch: float
    repeats: list[float] = field(default_factory=list)  # images/s of each repeat


@dataclass
class BenchmarkReport:
    model: str
    task: str
    input_size: tuple[int, int]
    batch_size: int
    threads: int
    workers: int
    lanes: int
    provider: str
    pipeline_images: str
    measurements: dict[str, Measurement]
    reduced_decode: bool = False  # the pipeline decoded large JPEGs at reduced scale

    @property
    def model_only(self) -> str:
        """The faster model-only measurement: the one the pipeline is held to."""
        names = [n for n in MODEL_ONLY if n in self.measurements]
        return max(names, key=lambda n: self.measurements[n].images_per_s)

    def ratio(self, a: str, b: str) -> float | None:
        if a in self.measurements and b in self.measurements:
            return self.measurements[a].images_per_s / self.measurements[b].images_per_s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_only": self.model_only, "ratios": {
            "onnxruntime_over_pytorch": self.ratio("onnxruntime", "pytorch"),
            "pipeline_over_model_only": self.ratio("pipeline", self.model_only),
            "pipeline_over_one_call": self.ratio("pipeline", "onnxruntime")}}

    def table(self) -> str:
        h, w = self.input_size
        lines = [f"benchmark {self.model}: {self.task}, input {h}x{w}, batch {self.batch_size}, "
                 f"{self.threads} threads, {self.lanes} lane{'s' * (self.lanes != 1)}, "
                 f"{self.workers} decode workers, {self.provider}",
                 f"  {'':34s}{'images/s':>10s}{'ms/batch':>10s}"]
        labels = {"onnxruntime": "onnxruntime (model only)",
                  "onnxruntime_lanes": f"onnxruntime, {self.lanes} lanes (model only)",
                  "pytorch": "pytorch eager (model only)", "pipeline": "predict pipeline (files)"}
        for key, label in labels.items():
            if key in self.measurements:
                m = self.measurements[key]
                lines.append(f"  {label:34s}{m.images_per_s:10.1f}{m.ms_per_batch:10.2f}")
        onnx_torch = self.ratio("onnxruntime", "pytorch")
        if onnx_torch is not None:
            lines.append(f"  {'onnxruntime / pytorch':34s}{onnx_torch:9.2f}x")
        pipe = self.ratio("pipeline", self.model_only)
        if pipe is not None:
            lines.append(f"  {'pipeline / best model only':34s}{100 * pipe:9.1f} %")
        if self.model_only != "onnxruntime" and pipe is not None:
            one_call = self.ratio("pipeline", "onnxruntime")
            lines.append(f"  {'pipeline / one-call model only':34s}{100 * one_call:9.1f} %  "
                         "(model only as measured before lanes)")
        lines.append(f"  pipeline images: {self.pipeline_images}; "
                     f"{'reduced' if self.reduced_decode else 'full'} JPEG decode")
        return "\n".join(lines)


@dataclass
class _Case:
    """One thing to time: ``run()`` handles ``images_per_call`` images."""

    name: str
    run: Callable[[], Any]
    images_per_call: int
    warmup: int
    min_seconds: float  # a timed repeat lasts at least this long
    calls: int = 1  # calls per timed repeat, set by calibrate()
    rates: list[float] = field(default_factory=list)

    def calibrate(self) -> None:
        """Warm up, then choose how many calls make a repeat last ``min_seconds``."""
        for _ in range(max(1, self.warmup)):
            self.run()
        t0 = time.perf_counter()
        self.run()
        once = max(time.perf_counter() - t0, 1e-6)
        self.calls = max(1, int(np.ceil(self.min_seconds / once)))

    def time_once(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.calls):
            self.run()
        self.rates.append(self.calls * self.images_per_call / (time.perf_counter() - t0))

    def result(self, batch_size: int) -> Measurement:
        rate = statistics.median(self.rates)
        return Measurement(self.name, rate, 1000 * batch_size / rate, self.rates)


def measure_interleaved(cases: list[_Case], batch_size: int, repeats: int) -> dict[str, Measurement]:
    """Median images/s of each case over ``repeats`` rounds; a round times every case once,
    so a ratio compares figures taken seconds apart (fair on a shared, busy machine)."""
    for case in cases:
        case.calibrate()
    for _ in range(repeats):
        for case in cases:
            case.time_once()
    return {case.name: case.result(batch_size) for case in cases}


def repeat_to(items: list[str], count: int) -> list[str]:
    """``items`` repeated in order until there are ``count`` (fewer items: whole repeats)."""
    return (items * (-(-count // len(items))))[:count]


def _pipeline_files(predictor: Predictor, images: str | None, count: int,
                    scratch: Path) -> tuple[list[str], str]:
    """Files for the pipeline measurement: ``images``, else ``data.val`` of the model's
    config, else ``count`` synthetic JPEGs; repeated to ``count`` files."""
    source = images or (predictor.metadata.config.get("data", {}) or {}).get("val")
    files: list[str] = []
    if isinstance(source, str):
        try:
            files = resolve_sources(source)
            what = source
        except SourceError:
            if images:
                raise
    if not files:
        import cv2

        rng = np.random.default_rng(0)
        h, w = predictor.input_size
        for i in range(count):
            pixels = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
            path = scratch / f"{i:05d}.jpg"
            cv2.imwrite(str(path), pixels)
            files.append(str(path))
        what = f"{count} synthetic {h}x{w} JPEGs"
    repeated = repeat_to(files, count)
    return repeated, f"{what} ({len(set(repeated))} distinct files, {len(repeated)} per pass)"


def run_benchmark(model: str | Path, checkpoint: str | Path | None = None, batch_size: int = 32,
                  device: str = "cpu", threads: int | None = None, workers: int | None = None,
                  images: str | None = None, pipeline_count: int = 2048, warmup: int = 3,
                  repeats: int = 5, min_seconds: float = 1.0, reduced_decode: bool = False,
                  lanes: int | None = None) -> BenchmarkReport:
    """Measure and return the throughputs (see the module docstring). Model-only repeats
    last at least ``min_seconds``; a pipeline repeat is one pass over ``pipeline_count``
    files (long enough that filling and draining the stream, a few batches, weigh little),
    decoded as ``Predictor(reduced_decode=...)`` says."""
    predictor = Predictor(model, device=device, threads=threads, batch_size=batch_size,
                          reduced_decode=reduced_decode, lanes=lanes)
    workers = workers or default_workers()
    h, w = predictor.input_size
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8)
    cases = [_Case("onnxruntime", lambda: predictor.run(batch), batch_size, warmup, min_seconds)]
    with tempfile.TemporaryDirectory(prefix="vision-tasks-bench-") as scratch, \
            contextlib.ExitStack() as stack:
        if predictor.lanes > 1:
            cases.append(_Case("onnxruntime_lanes", _lanes_runner(predictor, batch, stack),
                               batch_size * predictor.lanes * LANE_CALLS, 1, min_seconds))
        if checkpoint is not None:
            run_torch = stack.enter_context(_torch_runner(checkpoint, batch, predictor))
            cases.append(_Case("pytorch", run_torch, batch_size, warmup, min_seconds))
        files, what = _pipeline_files(predictor, images, pipeline_count, Path(scratch))

        def run_pipeline() -> None:
            for outcome in predict_stream(predictor, files, batch_size, workers):
                if outcome.prediction is not None:
                    json_line(outcome.prediction.to_dict())

        cases.append(_Case("pipeline", run_pipeline, len(files), warmup=1, min_seconds=0.0))
        results = measure_interleaved(cases, batch_size, repeats)
    return BenchmarkReport(str(model), predictor.task, predictor.input_size, batch_size,
                           predictor.threads, workers, predictor.lanes, predictor.provider, what,
                           results, reduced_decode)


def _lanes_runner(predictor: Predictor, batch: np.ndarray,
                  stack: contextlib.ExitStack) -> Callable[[], None]:
    """``predictor.lanes`` threads (this one and ``lanes - 1`` helpers) each running
    ``LANE_CALLS`` copies of ``batch`` back to back through :meth:`Predictor.run_lane`, as the
    pipeline keeps them busy: the lanes meet once per ``LANE_CALLS`` batches, not after each
    (waiting for the slower lane after every batch would understate the model's speed)."""
    pool = stack.enter_context(ThreadPoolExecutor(predictor.lanes - 1, thread_name_prefix="lane"))

    def lane() -> None:
        for _ in range(LANE_CALLS):
            predictor.run_lane(batch)

    def run() -> None:
        others = [pool.submit(lane) for _ in range(predictor.lanes - 1)]
        lane()
        for future in others:
            future.result()

    return run


def _check_same_model(checkpoint: str | Path, described: tuple[str, tuple[str, ...], int],
                      predictor: Predictor) -> None:
    """``described``: the checkpoint's (task, class names, input side)."""
    task, names, size = described
    meta = predictor.metadata
    differs = [f"{what} {mine} vs {theirs}" for what, mine, theirs in (
        ("task", task, meta.task), ("input size", f"{size}x{size}",
                                    "x".join(map(str, meta.input_size)))) if mine != theirs]
    if len(names) != len(meta.class_names):
        differs.append(f"{len(names)} vs {len(meta.class_names)} classes")
    elif tuple(names) != tuple(meta.class_names):
        differs.append("other class names")
    if differs:
        raise ModelFileError(f"{checkpoint} is not the model of {predictor.path} ("
                             f"{'; '.join(differs)}, checkpoint vs ONNX file); pass the checkpoint "
                             "the file was exported from")


@contextlib.contextmanager
def _torch_runner(checkpoint: str | Path, batch: np.ndarray,
                  predictor: Predictor) -> Iterator[Callable[[], Any]]:
    """PyTorch eager on the same uint8 batch, through the same wrapper as the export, with
    the predictor's threads; host memory in and out like onnxruntime's ``run`` (on the GPU
    when onnxruntime used one). Yields the function to time.

    Raises:
        ModelFileError: the checkpoint is not the ONNX file's model (another task, other
            classes or another input size): the ratio would compare two different models.
    """
    import torch

    from vision_tasks.engine.checkpoint import model_from_checkpoint

    from .onnx_export import ExportWrapper, output_names
    from .runtime.providers import CPU

    model, cfg, task, names = model_from_checkpoint(checkpoint)
    _check_same_model(checkpoint, (task.name, tuple(names), cfg.data.image_size), predictor)
    threads, provider = predictor.threads, predictor.provider
    wrapper = ExportWrapper(model, output_names(model, cfg.data.image_size)).eval()
    device = torch.device("cpu" if provider == CPU or not torch.cuda.is_available() else "cuda")
    wrapper.to(device)
    tensor = torch.from_numpy(batch)

    def run_batch() -> list[np.ndarray]:
        with torch.inference_mode():  # .cpu() waits for the GPU
            return [v.cpu().numpy() for v in wrapper(tensor.to(device))]

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield run_batch
    finally:
        torch.set_num_threads(previous)
