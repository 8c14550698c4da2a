"""onnxruntime sessions on the best execution provider that actually works here.

``onnxruntime-gpu`` lists TensorRT and CUDA among ``get_available_providers()`` on any
machine, GPU or not; asking for them without a GPU (or without the CUDA / TensorRT
libraries) makes onnxruntime print errors and fall back. So a GPU provider is only tried
when the CUDA driver reports a device, each is tried on its own with logging muted, and
the provider the session really runs on is what is reported.

A TensorRT session hands the nodes TensorRT cannot take to CUDA (then the CPU): its
provider list is TensorRT, CUDA, CPU. Its engines are cached beside the model
(:func:`~vision_tasks.export.runtime.fast_path.engine_cache_dir`) unless
``RuntimeOptions(trt_cache=False)``; ``RuntimeOptions(tensorrt=False)`` skips TensorRT.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from vision_tasks.contract import ModelFileError
from vision_tasks.errors import DeviceError

from .fast_path import DEFAULT_OPTIONS, RuntimeOptions, engine_cache_dir

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


@dataclass(frozen=True)
class SessionInfo:
    """What :func:`create_session` got: the provider in use and why it was chosen."""

    provider: str
    threads: int
    note: str  # e.g. "no CUDA GPU visible" when auto fell back to the CPU


def cpu_threads() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cuda_device_count() -> int:
    """GPUs the CUDA driver sees (0 without a driver); does not initialise any framework."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
        except AttributeError:
            return 0
        return int(count.value)
    return 0


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """All graph optimisations, ``threads`` intra-op threads (default: usable cores), one
    inter-op thread (the graphs are sequential), and no busy-waiting between runs so that
    decoding threads get the CPU while the model waits for its next batch."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


def parse_device(device: str) -> tuple[str, int]:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> ``(kind, GPU index)``, e.g.
    ``("cuda", 1)`` for ``cuda:1`` (index 0 for the others).

    Raises:
        DeviceError: any other text.
    """
    if device in DEVICES:
        return device, 0
    match = _CUDA_INDEX.fullmatch(device)
    if match is None:
        raise DeviceError(f"unknown device '{device}'; use one of {', '.join(DEVICES)} or cuda:N")
    return "cuda", int(match.group(1))


def _gpu_candidates(available: list[str], tensorrt: bool = True) -> tuple[list[str], str]:
    """The GPU providers worth trying here (best first), or none and the reason."""
    wanted = [p for p in ((TENSORRT, CUDA) if tensorrt else (CUDA,)) if p in available]
    if not wanted:
        return [], "this onnxruntime build has no GPU provider (install onnxruntime-gpu)"
    if cuda_device_count() == 0:
        return [], "no CUDA GPU visible"
    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels, without torch
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()
    return wanted, ""


def trt_cache_dir(model: str | bytes) -> Path:
    """Where TensorRT engines of ``model`` are cached: beside a model file
    (``<stem>.trt/``) when that folder can be written, else under the temporary folder
    (by the file's path, or the bytes' hash)."""
    if isinstance(model, str):
        beside = engine_cache_dir(model)
        with contextlib.suppress(OSError):
            beside.mkdir(parents=True, exist_ok=True)
            if os.access(beside, os.W_OK):
                return beside
        key = hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:16]
    else:
        key = "bytes-" + hashlib.sha256(model).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "vision-tasks-trt" / key
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def provider_options(provider: str, model: str | bytes, input_shape: tuple[int, int, int],
                     max_batch: int, device_id: int = 0,
                     options: RuntimeOptions = DEFAULT_OPTIONS) -> dict[str, str]:
    """onnxruntime's options of ``provider`` for ``model``: the GPU index; for TensorRT one
    optimisation profile for batches ``1..max_batch`` of ``input_shape`` ``(H, W, 3)``, fp16
    kernels when ``options.trt_fp16``, engine and timing caches when ``options.trt_cache``."""
    if provider == CPU:
        return {}
    values = {"device_id": str(device_id)}
    if provider != TENSORRT:
        return values
    h, w, c = input_shape
    values.update({"trt_profile_min_shapes": f"images:1x{h}x{w}x{c}",
                   "trt_profile_opt_shapes": f"images:{max_batch}x{h}x{w}x{c}",
                   "trt_profile_max_shapes": f"images:{max_batch}x{h}x{w}x{c}",
                   "trt_fp16_enable": str(options.trt_fp16)})
    if options.trt_cache:  # engines take minutes to build for big models: build once
        cache = str(trt_cache_dir(model))
        values.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
                       "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache})
    return values


def provider_chain(provider: str, options: dict[str, str]) -> list[str | tuple[str, dict[str, str]]]:
    """The providers a session of ``provider`` is given, best first: TensorRT hands the nodes
    it cannot take to CUDA, and every GPU provider to the CPU last."""
    if provider == TENSORRT:
        return [(TENSORRT, options), (CUDA, {"device_id": options["device_id"]}), CPU]
    return [(provider, options), CPU]


def _try_session(model: str | bytes, provider: str, options: ort.SessionOptions,
                 provider_options: dict[str, str]) -> ort.InferenceSession | None:
    """A session whose first provider is ``provider``, or None when it cannot start."""
    quiet = session_options(options.intra_op_num_threads)
    quiet.log_severity_level = 4  # fatal only while probing
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints its fallbacks
            session = ort.InferenceSession(model, sess_options=quiet,
                                           providers=provider_chain(provider, provider_options))
    except Exception:  # the provider's libraries are missing or the GPU is unusable
        return None
    return session if session.get_providers()[0] == provider else None


def load_for_inspection(path: str) -> ort.InferenceSession:
    """A CPU session without graph optimisation: cheap, for reading metadata and signature."""
    options = session_options(threads=1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(path, sess_options=options, providers=[CPU])
    except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        raise _load_error(path, err) from None


def _load_error(name: str, err: Exception) -> ModelFileError:
    reason = " ".join(str(err).split())[:300]
    return ModelFileError(f"{name}: onnxruntime cannot load this model ({reason}); "
                          "check that it is an ONNX file from `vision-tasks export`")


def create_session(model: str | bytes, device: str = "auto", threads: int | None = None,
                   input_shape: tuple[int, int, int] = (0, 0, 3), max_batch: int = 32,
                   options: RuntimeOptions = DEFAULT_OPTIONS
                   ) -> tuple[ort.InferenceSession, SessionInfo]:
    """An inference session for ``model`` (a path or serialized bytes) on ``device``.

    ``device``: ``"auto"`` (TensorRT > CUDA > CPU, the first that works), ``"cpu"``, or
    ``"cuda"`` / ``"cuda:N"`` (TensorRT > CUDA on GPU N; an error when neither works).
    ``input_shape`` is ``(H, W, 3)``, used for TensorRT's optimisation profile of batches
    ``1..max_batch``. ``options``: the TensorRT switches of :class:`RuntimeOptions`.
    """
    kind, index = parse_device(device)
    name = model if isinstance(model, str) else "<bytes>"
    session_opts = session_options(threads)
    note = "cpu asked for"
    if kind != "cpu":
        candidates, note = _gpu_candidates(ort.get_available_providers(), options.tensorrt)
        for provider in candidates:
            chosen = provider_options(provider, model, input_shape, max_batch, index, options)
            session = _try_session(model, provider, session_opts, chosen)
            if session is not None:
                return session, SessionInfo(provider, session_opts.intra_op_num_threads, "")
        if candidates:
            note = f"{' and '.join(candidates)} could not start (libraries or GPU unusable)"
        if kind == "cuda":
            raise DeviceError(f"{name}: device '{device}' asked for, but {note}; "
                              "use --device cpu or auto")
    try:
        session = ort.InferenceSession(model, sess_options=session_opts, providers=[CPU])
    except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        raise _load_error(name, err) from None
    return session, SessionInfo(CPU, session_opts.intra_op_num_threads, note)
