"""Speed sections: model-only images/s per runtime, and the JPEG pipeline against it.

Model only: one letterboxed uint8 batch in host memory -> every output in host memory (what
``Predictor.run`` gives a decoder; with I/O binding the outputs are read to the host in the
timed call too, so every runtime pays the same copies). Runtimes:

- ``torch_fp32`` / ``torch_amp``: PyTorch eager, the export's own wrapper on the checkpoint
  (``inference_mode``; AMP: bf16 autocast, as ``train.amp=auto`` picks on a bf16 GPU);
- ``ort_fp32`` / ``ort_fp16`` (+ ``_iobind``): onnxruntime's CUDA provider alone (CPU
  provider in the CPU modes) on the fp32 / fp16 file, I/O binding off / on;
- ``trt_fp16``: TensorRT with fp16 kernels on the fp32 file, nodes it cannot take left to
  CUDA, engines cached beside the model: the engine build (cold cache: session + first
  call) and the load from the cache (warm) are timed apart, never in images/s.

Cases are timed interleaved (a round times each once; the median of the rounds), so a
change of load hits all alike.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vision_tasks.export.onnx_export import ExportWrapper
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.fast_path import RuntimeOptions, engine_cache_dir

from vision_tasks.engine.checkpoint import model_from_checkpoint

from .models import Made
from .plan import NO_GPU, NO_TIME, Budget, Plan


def time_interleaved(cases: dict[str, Callable[[], Any]], images_per_call: int, min_seconds: float,
                     repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    """Median images/s of each case, each call repeated enough to last ``min_seconds``;
    and the error of each case that failed its warm-up (left out of the timing)."""
    calls, errors = {}, {}
    for name, run in cases.items():
        try:
            run()  # warm-up (allocations, cuDNN / kernel choice)
        except Exception as err:  # one runtime's failure is reported, the others are timed
            errors[name] = f"error: {' '.join(str(err).split())[:200]}"
            continue
        t0 = time.perf_counter()
        run()
        calls[name] = max(1, int(np.ceil(min_seconds / max(time.perf_counter() - t0, 1e-6))))
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name in calls:
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                cases[name]()
            rates[name].append(calls[name] * images_per_call / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}, errors


def torch_runner(checkpoint: Path, names: tuple[str, ...], device: torch.device, amp: bool
                 ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """PyTorch eager through the export's wrapper: uint8 batch (host) -> outputs (host)."""
    model, _, _, _ = model_from_checkpoint(checkpoint)
    wrapper = ExportWrapper(model.eval(), names).to(device).eval()
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else (
        contextlib.nullcontext)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode(), autocast():
            return [v.cpu().numpy() for v in wrapper(torch.from_numpy(batch).to(device))]

    return run


def _read_all(predictor: Predictor, batch: np.ndarray) -> None:
    outputs = predictor.run(batch)
    for name in outputs:  # I/O binding: the copy to host memory happens here
        outputs[name]


@functools.cache
def pinned_probe() -> tuple[bool, str]:
    """Whether pinned staging buffers can be allocated here, tried in a child process (an
    untried allocator path must not take the whole check down with it)."""
    code = ("from vision_tasks.export.runtime.iobinding import pinned_buffer\n"
            "print('yes' if pinned_buffer((2, 8, 8, 3), 0) is not None else 'no')")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return False, "pinned allocation probe timed out"
    if done.returncode != 0:
        return False, f"pinned allocation probe failed (exit {done.returncode})"
    ok = done.stdout.strip().endswith("yes")
    return ok, "pinned host memory" if ok else "no pinned allocator in this onnxruntime build"


def ort_predictors(made: Made, gpu: bool, max_batch: int
                   ) -> tuple[dict[str, Predictor], dict[str, str]]:
    """The onnxruntime cases of :mod:`this module <.speed>` (TensorRT apart), and the
    error of each that could not start."""
    device = "cuda" if gpu else "cpu"
    out, errors = {}, {}
    for precision, path in (("fp32", made.fp32), ("fp16", made.fp16)):
        for binding in (False, True):
            name = f"ort_{precision}{'_iobind' if binding else ''}"
            pinned = gpu and binding and pinned_probe()[0]
            options = RuntimeOptions(io_binding=binding, tensorrt=False, pinned=pinned)
            try:
                out[name] = Predictor(path, device=device, batch_size=max_batch, options=options)
            except Exception as err:  # reported in its row
                errors[name] = f"error: {' '.join(str(err).split())[:200]}"
    return out, errors


def tensorrt_predictor(made: Made, max_batch: int) -> tuple[Predictor, dict[str, float]]:
    """TensorRT fp16 on the fp32 file: built with a cold engine cache, then loaded warm;
    returns the warm predictor and both times (seconds)."""
    shutil.rmtree(engine_cache_dir(made.fp32), ignore_errors=True)
    h, w = made.size, made.size
    batch = np.zeros((max_batch, h, w, 3), np.uint8)
    options = RuntimeOptions(trt_fp16=True)
    times = {}
    for what in ("engine_build_s", "engine_load_s"):
        t0 = time.perf_counter()
        predictor = Predictor(made.fp32, device="cuda", batch_size=max_batch, options=options)
        predictor.run(batch)
        times[what] = time.perf_counter() - t0
    if predictor.provider != "TensorrtExecutionProvider":
        raise RuntimeError(f"TensorRT did not start ({predictor.provider_note or predictor.provider})")
    return predictor, times


def model_only(made: Made, plan: Plan, gpu: bool, budget: Budget, deadline: float
               ) -> list[dict[str, Any]]:
    """Rows: task, size, batch, runtime, images/s (or a status), for one model."""
    device = torch.device("cuda" if gpu else "cpu")
    max_batch = max(plan.speed_batches)
    predictors, failed = ort_predictors(made, gpu, max_batch)
    names = tuple(Predictor(made.fp32, device="cpu", threads=1).output_names)
    runners: dict[str, Callable[[np.ndarray], Any]] = {
        "torch_fp32": torch_runner(made.checkpoint, names, device, amp=False),
        "torch_amp": torch_runner(made.checkpoint, names, device, amp=True)}
    for key, predictor in predictors.items():
        runners[key] = bind(_read_all, predictor)
    extra: dict[str, Any] = {}
    failed["trt_fp16"] = NO_GPU
    if gpu and budget.elapsed() < deadline:
        try:
            trt, extra = tensorrt_predictor(made, max_batch)
            runners["trt_fp16"] = bind(_read_all, trt)
            del failed["trt_fp16"]
        except Exception as err:  # reported, the other runtimes still run
            failed["trt_fp16"] = f"error: {' '.join(str(err).split())[:200]}"
    elif gpu:
        failed["trt_fp16"] = NO_TIME
    rows = []
    rng = np.random.default_rng(0)
    for batch_size in plan.speed_batches:
        base = {"task": made.task, "size": made.size, "batch": batch_size}
        if budget.elapsed() > deadline:
            rows += [{**base, "runtime": k, "status": NO_TIME} for k in runners]
            continue
        batch = rng.integers(0, 256, (batch_size, made.size, made.size, 3), dtype=np.uint8)
        rates, errors = time_interleaved({k: bind(run, batch) for k, run in runners.items()},
                                         batch_size, plan.speed_seconds, plan.speed_repeats)
        rows += [{**base, "runtime": k, "images_per_s": v, "status": "measured",
                  **(extra if k == "trt_fp16" else {})} for k, v in rates.items()]
        rows += [{**base, "runtime": k, "status": v} for k, v in {**failed, **errors}.items()]
    for key, predictor in predictors.items():  # where the batch was staged (I/O binding)
        if predictor.options.io_binding:
            note = (predictor._runner.bound(predictor.session).pinned_note
                    if predictor.options.pinned or not gpu else pinned_probe()[1])
            for row in rows:
                if row["runtime"] == key:
                    row["staging"] = note
    return rows


def bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """``fn`` with ``args`` bound (a closure, so that a runner and its batch travel together)."""
    return lambda *more: fn(*args, *more)


def pipeline(made: Made, images: str, count: int, gpu: bool, repeats: int, batch_size: int
             ) -> dict[str, Any]:
    """``vision-tasks benchmark`` of the fp16 file (onnxruntime model only, its lanes, and the
    JPEG pipeline over ``count`` files of ``images``) on the best provider onnxruntime has
    here (``auto``: TensorRT > CUDA > CPU; the report names it), or the CPU without a GPU."""
    from vision_tasks.export.benchmark import run_benchmark
    from vision_tasks.export.runtime.pipeline import default_workers
    from vision_tasks.export.runtime.providers import cpu_threads

    report = run_benchmark(made.fp16, batch_size=batch_size, device="auto" if gpu else "cpu",
                           images=images,
                           pipeline_count=count, repeats=repeats, min_seconds=0.5, warmup=1)
    return {**report.to_dict(), "cpu_cores": cpu_threads(), "decode_workers": default_workers()}


def synthetic_jpegs(folder: Path, count: int = 128, size: tuple[int, int] = (480, 640)) -> str:
    """``count`` photo-sized JPEGs of smooth noise in ``folder`` (when coco128 is absent)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return str(folder)
