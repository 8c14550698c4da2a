"""The switches of the runtime's fast path, one object passed to ``Predictor(options=...)``.

Each switch is measured on and off by ``benchmarks/gpu_check.py`` (its report:
``benchmarks/RESULTS-gpu.md``); a switch whose benefit is not yet measured on a GPU stays at
the behaviour the runtime had before it existed.

=================  =======  ==============================================================
switch             default  what it does
=================  =======  ==============================================================
``io_binding``     False    onnxruntime I/O binding: the uint8 batch is copied to the
                            device once, outputs stay where the provider wrote them (GPU
                            memory on CUDA / TensorRT) and are copied to host memory only
                            when the decoder reads them (:mod:`.iobinding`); on the CPU
                            provider the same calls run on host memory.
``pinned``         True     with ``io_binding`` on CUDA / TensorRT: the uint8 batch is
                            staged in pinned (page-locked) host memory when onnxruntime
                            offers an allocator for it, else in ordinary memory (the CPU
                            provider has none: a reused staging buffer).
``shared_session`` True     the lanes of a stream share one session (CPU: of
                            ``threads // lanes`` intra-op threads); False: each lane thread
                            builds its own (GPU: each its own CUDA stream and memory arena).
``tensorrt``       True     ``device`` auto / cuda try TensorRT before CUDA; False: CUDA only.
``trt_fp16``       False    TensorRT may build fp16 kernels for an fp32 file (an fp16 file
                            is fp16 whatever this says).
``trt_cache``      True     TensorRT engines (and timing data) are cached beside the model,
                            in ``<model>.trt/``: minutes of engine building once per model,
                            GPU and TensorRT version, not once per process.
=================  =======  ==============================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RuntimeOptions:
    """The fast-path switches (see the module docstring)."""

    io_binding: bool = False
    pinned: bool = True
    shared_session: bool = True
    tensorrt: bool = True
    trt_fp16: bool = False
    trt_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """The switches that differ from the defaults, e.g. ``io_binding, per-lane sessions``;
        ``defaults`` when none does."""
        changed = [name.replace("_", " ") if value else f"no {name.replace('_', ' ')}"
                   for name, value in asdict(self).items()
                   if value != getattr(DEFAULT_OPTIONS, name)]
        return ", ".join(changed) or "defaults"


DEFAULT_OPTIONS = RuntimeOptions()


def engine_cache_dir(model: str | Path) -> Path:
    """Where TensorRT's engines for ``model`` live: ``<dir>/<stem>.trt/`` beside the file
    (onnxruntime names each engine by a hash of the graph, the GPU and the TensorRT version,
    so a re-exported file or another GPU builds a new engine next to the old ones)."""
    path = Path(model)
    return path.with_name(path.stem + ".trt")
