"""``vision-tasks export --int8``: onnxruntime static quantization (QDQ) of the network part.

What is quantized (chosen from the graph by :mod:`vision_tasks.export.quant_graph`): the
network's convolution and linear layers, weights int8 per output channel (symmetric), and
the activations, pooling, additions and concatenations between them, uint8 (asymmetric,
ranges calibrated), so that onnxruntime runs integer kernels from one layer to the next.
What stays float32, and so exact: the normalisation at the graph's start, the first layer,
and all of the post-processing (softmax and sigmoid of the outputs, box decoding, top-k,
NMS, mask assembly).

Calibration: ``count`` images of the model's own data (``data.train`` by default, or
``data.val``, or a folder / glob / list of images), spread evenly over the set and
letterboxed exactly as at inference, run through the float graph in batches of 32;
``minmax`` (the default) takes each activation's range over all of them, ``percentile``
(99.999 %) and ``entropy`` are onnxruntime's other calibrators (slower, more memory).

Settings for x86 CPUs with VNNI (``QUInt8`` activations, ``QInt8`` weights, full range), as
onnxruntime recommends; onnxruntime fuses each ``DequantizeLinear -> Conv ->
QuantizeLinear`` into an integer convolution. Measured in ``benchmarks/RESULTS.md`` ("INT8
export")."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from vision_tasks.config import Config
from vision_tasks.contract import INPUT_NAME
from vision_tasks.errors import VisionTasksError
from vision_tasks.task_api import Task

from .quant_graph import REGION_OPS, network_nodes, pin_float_pools

DEFAULT_CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class QuantizeError(VisionTasksError):
    """The model cannot be quantized as asked (no calibration data, no layers found)."""


@dataclass(frozen=True)
class Calibration:
    """The images that set the activation ranges, and where they came from."""

    images: np.ndarray  # uint8 [N, H, W, 3], letterboxed as at inference
    data: str  # e.g. "data.train (data/shapes-detect/train/images)"
    method: str = "minmax"

    def metadata(self) -> dict[str, Any]:
        """The ``calibration`` entry of the INT8 file's metadata."""
        return {"data": self.data, "count": int(len(self.images)), "method": self.method}


def calibration_images(cfg: Config, task: Task, class_names: list[str], source: str = "train",
                       count: int = DEFAULT_CALIBRATION_IMAGES, method: str = "minmax"
                       ) -> Calibration:
    """``count`` images spread evenly over ``source``: ``train`` / ``val`` (the config's
    ``data.train`` / ``data.val``, loaded as validation loads them: no augmentation,
    letterboxed) or an image folder / glob / ``.txt`` list (decoded and letterboxed by the
    runtime's own :func:`~vision_tasks.imaging.load_letterboxed`)."""
    if method not in CALIBRATION_METHODS:
        raise QuantizeError(f"--calibration-method {method!r}: use one of "
                            f"{', '.join(CALIBRATION_METHODS)}")
    if count < 1:
        raise QuantizeError(f"--calibration-images must be at least 1, got {count}")
    if source in ("train", "val"):
        split = getattr(cfg.data, source)
        where = split.get("images") if isinstance(split, dict) else split
        try:
            dataset = task.build_dataset(cfg, source, train=False, class_names=class_names)
        except (VisionTasksError, OSError, ValueError, KeyError) as err:
            raise QuantizeError(f"--int8 calibrates on data.{source} ({where}), which cannot be "
                                f"read here ({err}); pass --calibration IMAGES (a folder of "
                                "images like the model's)") from None
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round())
        images = [dataset[int(i)][0].permute(1, 2, 0).numpy() for i in picks]
        return Calibration(np.ascontiguousarray(np.stack(images)), f"data.{source} ({where})", method)
    from vision_tasks.imaging import ImageError, load_letterboxed

    from .runtime.sources import resolve_sources

    paths = resolve_sources(source)
    picks = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round())
    size = (cfg.data.image_size, cfg.data.image_size)
    images = []
    for i in picks:
        try:
            images.append(load_letterboxed(paths[int(i)], size)[0])
        except ImageError:
            continue  # a bad file among many: calibrate on the rest
    if not images:
        raise QuantizeError(f"--calibration {source}: none of its images could be read")
    return Calibration(np.stack(images), source, method)


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: the calibration images in batches."""

    def __init__(self, images: np.ndarray, batch: int) -> None:
        self.batches: Iterator[np.ndarray] = (images[i:i + batch]
                                              for i in range(0, len(images), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantize_network(proto: onnx.ModelProto, layers: list[str], calibration: Calibration,
                     ) -> onnx.ModelProto:
    """The QDQ-quantized copy of ``proto`` (the float graph, metadata included): ``layers``
    (:func:`~vision_tasks.export.quant_graph.weight_layers`) and the region between them
    int8, the rest untouched (see the module docstring)."""
    if not layers:
        raise QuantizeError("--int8: no convolution or linear layer found to quantize (the "
                            "graph carries no exporter records; export with the default opset)")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration.method]
    with tempfile.TemporaryDirectory(prefix="vision-tasks-int8-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, source)
        with _without_preprocessing_hint():
            quantize_static(
                str(source), str(target), _Reader(calibration.images, CALIBRATION_BATCH),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(REGION_OPS),
                nodes_to_quantize=network_nodes(proto, layers), per_channel=True,
                reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        quantized = onnx.load(target)
    pin_float_pools(quantized)
    del quantized.metadata_props[:]  # the float file's own, as written (quantize_static
    quantized.metadata_props.extend(proto.metadata_props)  # may add its own entries)
    quantized.doc_string = proto.doc_string
    return quantized


@contextlib.contextmanager
def _without_preprocessing_hint() -> Iterator[None]:
    """onnxruntime's quantizer logs (root logger, WARNING) that the model should be
    pre-processed first (shape inference, constant folding): the exporter's graph already is."""
    def hint(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)
