"""``vision-tasks export``: a checkpoint -> one self-describing ONNX file (the contract in
:mod:`vision_tasks.contract`).

The graph is an :class:`ExportWrapper`: uint8 ``[N, H, W, 3]`` RGB -> float ``[N, 3, H, W]``
-> the model (normalisation is its first layer) -> the task's traceable post-processing ->
the contract's named outputs. Exporter choices:

- ``torch.onnx.export(dynamo=True)`` (torch.export based; the maintained exporter, and the
  default since PyTorch 2.9). Dynamic batch via ``Dim("batch")`` and the uint8 input export
  cleanly; the TorchScript exporter is deprecated. The dynamo exporter only emits opset
  >= 18 and its down-conversion fails on our graphs (ReduceMean axes), so ``--opset`` below
  18 (for old runtimes) goes through the legacy TorchScript exporter instead.
- Default opset 18: the lowest the dynamo exporter writes natively; onnxruntime >= 1.14,
  TensorRT >= 8.6 and OpenVINO read it.
- The NHWC -> NCHW transpose is made contiguous: otherwise torch.export records a
  channels-last memory layout and the flatten before the classifier becomes an
  ``as_strided`` Gather chain instead of one Reshape.
- ``--fp16``: the fp32 graph, then its network part converted to float16
  (:mod:`vision_tasks.export.fp16`): normalisation, scores, NMS / top-K and mask assembly stay
  float32; the I/O contract is unchanged (uint8 in, float32 / int64 out).
- ``--int8``: the fp32 graph, then onnxruntime static quantization (QDQ) of its network
  part, calibrated on the model's own images (:mod:`vision_tasks.export.quantize`); the
  normalisation and the post-processing stay float. The I/O contract is unchanged.
- The metadata records the precision (``precision``: ``fp32`` | ``fp16`` | ``int8``) and, for
  INT8, the calibration (``calibration``: ``{data, count, method}``); optional keys, which
  a reader may ignore (same contract version).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from vision_tasks import __version__
from vision_tasks.config import Config
from vision_tasks.contract import (
    INPUT_NAME,
    MULTI_HEAD_VERSION,
    MULTI_TASK,
    ModelMetadata,
)
from vision_tasks.engine.checkpoint import HeadInfo, load_checkpoint, load_model
from vision_tasks.errors import VisionTasksError
from vision_tasks.fileio import atomic_path
from vision_tasks.models.model import VisionModel
from vision_tasks.task_spec import TaskSpec, get_spec

from .fp16 import convert_to_fp16
from .parity import MetricReport, ParityReport, check_images, check_int8_metrics, check_parity
from .quant_graph import weight_layers
from .quantize import DEFAULT_CALIBRATION_IMAGES, Calibration, calibration_images, quantize_network

DEFAULT_OPSET = 18
DYNAMO_MIN_OPSET = 18


class ExportError(VisionTasksError):
    """The model cannot be exported as asked."""


class ExportWrapper(nn.Module):
    """``forward(images: uint8 [N, H, W, 3] RGB) -> tuple of the contract's outputs``.

    Float outputs are float32; integer outputs (labels, counts) are int64.
    """

    def __init__(self, model: nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        x = images.permute(0, 3, 1, 2).contiguous().float()
        outputs = self.model.postprocess(self.model(x))
        return tuple(outputs[name].float() if outputs[name].is_floating_point()
                     else outputs[name].long() for name in self.output_names)


def output_names(model: VisionModel, size: int) -> tuple[str, ...]:
    """The contract's output names of ``model``: each head's, in the order of its task's
    spec (checked against what its post-processing returns), under
    :meth:`VisionModel.output_name <vision_tasks.models.model.VisionModel.output_name>`."""
    return tuple(model.output_name(head, name) for head, names in _head_outputs(model, size).items()
                 for name in names)


def _head_outputs(model: VisionModel, size: int) -> dict[str, tuple[str, ...]]:
    """Each head's bare output names, in its spec's order, checked against its
    post-processing."""
    out = {}
    with torch.no_grad():
        raw = model(torch.zeros(2, 3, size, size))
    for head, outputs in raw.items():
        spec = _spec(model, head)
        produced = model.heads[head].postprocess(outputs)
        if set(produced) != set(spec.output_names):
            raise ExportError(f"task '{spec.name}' post-processing returns {sorted(produced)}, "
                              f"but its spec declares the outputs {list(spec.output_names)}")
        out[head] = spec.output_names
    return out


def _spec(model: VisionModel, head: str) -> TaskSpec:
    return get_spec(model.tasks[head])


def build_metadata(spec: TaskSpec, cfg: Config, class_names: list[str], names: tuple[str, ...],
                   sample_outputs: tuple[Tensor, ...],
                   category_ids: list[int | None] | None = None) -> ModelMetadata:
    """The contract's metadata. ``max_detections`` is read off the ``boxes`` output
    (``[N, K, 4]``). The task's ``spec.metadata(cfg)`` adds to it: ``thresholds`` fills that
    field, ``max_detections`` must agree with the graph, and any other key is stored as one
    more JSON metadata entry (e.g. ``pre_nms_topk``). ``category_ids`` (the classes'
    original ids) come from the checkpoint."""
    extra: dict[str, Any] = dict(spec.metadata(cfg) or {})
    shapes = {name: tuple(v.shape) for name, v in zip(names, sample_outputs, strict=True)}
    boxes = shapes.get("boxes", ())
    max_detections = int(boxes[1]) if len(boxes) == 3 else None
    declared = extra.pop("max_detections", max_detections)
    if declared != max_detections:
        raise ExportError(f"task '{spec.name}' declares max_detections={declared}, but its "
                          f"graph returns {max_detections} rows per image")
    ids = category_ids
    if ids is not None and any(i is None for i in ids):
        ids = None  # a class without an original id: results use class indices
    return ModelMetadata(
        task=spec.name, class_names=tuple(class_names),
        input_size=(cfg.data.image_size, cfg.data.image_size), outputs=names,
        thresholds=dict(extra.pop("thresholds", {})), max_detections=max_detections,
        package_version=__version__, config=cfg.to_dict(),
        category_ids=tuple(int(i) for i in ids) if ids is not None else None, extra=extra)


def _to_onnx(wrapper: ExportWrapper, sample: Tensor, opset: int,
             translations: dict[Any, Any]) -> onnx.ModelProto:
    """``translations``: the task's own operators (e.g. detect's grouped NMS) and their ONNX
    translations (:attr:`Task.onnx_translations <vision_tasks.task_api.Task>`)."""
    names = list(wrapper.output_names)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # exporter chatter; real problems raise
        if opset >= DYNAMO_MIN_OPSET:
            program = torch.onnx.export(
                wrapper, (sample,), dynamo=True, verbose=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=names,
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1)}},
                custom_translation_table=dict(translations) or None)
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]})
        return onnx.load_from_string(buffer.getvalue())


def export_model(model: VisionModel, cfg: Config, heads: dict[str, HeadInfo], *,
                 opset: int = DEFAULT_OPSET, fp16: bool = False,
                 int8: Calibration | None = None) -> onnx.ModelProto:
    """The contract's ONNX graph of ``model`` (in eval mode, on the CPU): one input, every
    head's outputs and post-processing, metadata included (each head's classes and original
    category ids from ``heads``), checked by ``onnx.checker``; quantized with the ``int8``
    calibration when given. A single-task model's file is contract version 1 (bare output
    names, the head's metadata at the top), a multi-head model's version 2 (``heads``)."""
    return _precisions(model, cfg, heads, opset, fp16, int8)[-1]


def _precisions(model: VisionModel, cfg: Config, heads: dict[str, HeadInfo], opset: int,
                fp16: bool, int8: Calibration | None) -> tuple[onnx.ModelProto, ...]:
    """:func:`export_model`'s graph; with ``int8``, the fp32 graph and its quantized copy."""
    model = model.eval().cpu().float()
    size = cfg.data.image_size
    per_head = _head_outputs(model, size)
    names = output_names(model, size)
    translations = {op: fn for info in heads.values() for op, fn in info.task.onnx_translations.items()}
    what = next(iter(heads.values())).task.name if cfg.single_task else "multi-head"
    proto, sample_outputs, layers = _trace(model, names, size, opset, translations, what)
    by_name = dict(zip(names, sample_outputs, strict=True))
    head_cfgs = cfg.head_configs()
    head_meta = {name: build_metadata(info.task.spec, head_cfgs[name], info.class_names,
                                      per_head[name],
                                      tuple(by_name[model.output_name(name, o)] for o in per_head[name]),
                                      info.category_ids)
                 for name, info in heads.items()}
    if cfg.single_task:  # contract version 1: the one head's metadata is the file's
        (meta,) = head_meta.values()
    else:
        meta = ModelMetadata(task=MULTI_TASK, class_names=(), input_size=(size, size), outputs=names,
                             contract_version=MULTI_HEAD_VERSION, package_version=__version__,
                             config=cfg.to_dict(), heads=head_meta)
    return _with_precision(proto, meta, layers, fp16, int8)


def _with_precision(proto: onnx.ModelProto, meta: ModelMetadata, layers: list[str], fp16: bool,
                    int8: Calibration | None) -> tuple[onnx.ModelProto, ...]:
    """``(fp32 graph,)`` or, with ``fp16`` / ``int8``, ``(fp32 graph, its converted copy)``,
    each with its metadata (precision, calibration)."""
    if int8 is not None and fp16:
        raise ExportError("--int8 and --fp16 exclude each other; pass one")
    fp32 = _finish(proto, _precision(meta, "fp32"))
    if fp16:
        return fp32, convert_to_fp16(fp32)
    if int8 is not None:
        return fp32, _finish(quantize_network(fp32, layers, int8), _precision(meta, "int8", int8))
    return (fp32,)


def _precision(meta: ModelMetadata, precision: str,
               calibration: Calibration | None = None) -> ModelMetadata:
    extra = {**meta.extra, "precision": precision}
    if calibration is not None:
        extra["calibration"] = calibration.metadata()
    return replace(meta, extra=extra)


def _trace(model: nn.Module, names: tuple[str, ...], size: int, opset: int,
           translations: dict[Any, Any], what: str
           ) -> tuple[onnx.ModelProto, tuple[Tensor, ...], list[str]]:
    """The exported graph of ``model`` with ``names`` outputs, its fp32 outputs on a sample
    batch (for the metadata), and the names of its weight layers (for ``--int8``: read from
    the exporter's per-node records, which are then stripped)."""
    wrapper = ExportWrapper(model, names).eval()
    sample = torch.zeros(2, size, size, 3, dtype=torch.uint8)  # batch 2: 1 would specialise
    with torch.no_grad():
        sample_outputs = ExportWrapper(model, names)(sample)
    try:
        proto = _to_onnx(wrapper, sample, opset, translations)
    except Exception as err:
        first = " ".join(str(err).split())[:300]
        raise ExportError(f"torch.onnx.export failed for this {what} model at opset "
                          f"{opset} ({type(err).__name__}: {first})") from err
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise ExportError(f"asked for opset {opset}, the exporter wrote {got}; "
                          f"use --opset {DEFAULT_OPSET}")
    layers = weight_layers(proto)
    for node in proto.graph.node:  # the exporter's per-node stack traces and source paths:
        del node.metadata_props[:]  # not part of the contract, and they make files differ
    return proto, sample_outputs, layers


def _finish(proto: onnx.ModelProto, meta: ModelMetadata) -> onnx.ModelProto:
    """``meta`` written into ``proto``, checked by ``onnx.checker``."""
    onnx.helper.set_model_props(proto, meta.to_props())
    proto.doc_string = f"vision-tasks {meta.task} model, ONNX contract v{meta.version_needed}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"onnx.checker rejects the exported graph: {str(err).splitlines()[0]}") from err
    return proto


@dataclass
class ExportResult:
    path: Path
    metadata: ModelMetadata
    opset: int
    precision: str  # "fp32" | "fp16" | "int8"
    size_bytes: int
    seconds: float
    parity: ParityReport | MetricReport | None

    def summary(self) -> str:
        h, w = self.metadata.input_size
        meta = self.metadata
        what = (f"multi-head: {', '.join(f'{n} {h.task} {h.num_classes} classes' for n, h in meta.heads.items())}"
                if meta.heads else f"{meta.task}, {meta.num_classes} classes")
        text = (f"exported {self.path} ({what}, "
                f"input uint8 [N, {h}, {w}, 3], opset {self.opset}, {self.precision}, "
                f"{self.size_bytes / 1e6:.2f} MB, {self.seconds:.1f} s)")
        calibration = meta.extra.get("calibration")
        if isinstance(calibration, dict):
            text += (f"\nint8: calibrated on {calibration.get('count')} images of "
                     f"{calibration.get('data')} ({calibration.get('method')})")
        if self.parity is not None:
            text += f"\ncheck passed: {self.parity.summary()}"
        return text


def _load_at_size(checkpoint: Path, image_size: int | None) -> Any:
    if image_size is None:
        return load_model(checkpoint)
    if image_size < 16:
        raise ExportError(f"--image-size {image_size} is too small; pass a side of at least 16 px")
    state = load_checkpoint(checkpoint)  # read once, built twice at most
    own = load_model(checkpoint, state=state)  # the checkpoint's own errors first, as they are
    if own.cfg.data.image_size == image_size:
        return own
    try:
        return load_model(checkpoint, [f"data.image_size={image_size}"], state=state)
    except VisionTasksError as err:
        size = own.cfg.data.image_size
        why = ("a layer's weights are bound to its training size" if "of another shape" in str(err)
               else str(err).splitlines()[0].split(": ", 1)[-1])
        raise ExportError(f"{checkpoint}: cannot export at --image-size {image_size} ({why}); "
                          f"export it at its own size, {size}") from None


def default_output(checkpoint: Path, precision: str = "fp32") -> Path:
    """``RUN/weights/best.pt`` -> ``RUN/weights/best.onnx`` (``best.fp16.onnx``,
    ``best.int8.onnx`` for those precisions)."""
    return checkpoint.with_suffix(".onnx" if precision == "fp32" else f".{precision}.onnx")


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *,
                      opset: int = DEFAULT_OPSET, fp16: bool = False, int8: bool = False,
                      calibration: str = "train",
                      calibration_count: int = DEFAULT_CALIBRATION_IMAGES,
                      calibration_method: str = "minmax", check: bool = False,
                      image_size: int | None = None) -> ExportResult:
    """Export ``checkpoint`` (EMA weights when present) to ``out``, atomically.

    ``image_size``: the side of the file's square input (default: the model's
    ``data.image_size``). A model without size-bound layers (global pooling, anchor points
    derived from the size) exports at any multiple of its backbone stride; one with a
    fully-connected layer over a fixed map is refused with a one-line error.

    With ``check``, the graph is first run by onnxruntime on real ``data.val`` images (or
    synthetic ones) against the fp32 PyTorch model (tolerances: :mod:`vision_tasks.export.parity`); on
    failure :class:`~vision_tasks.export.parity.ExportCheckError` is raised and nothing is written.

    With ``int8``, the network part is quantized, calibrated on ``calibration_count`` images
    of ``calibration`` (``train``, ``val``, or an image folder / glob / list; the first
    head's data for a multi-head model) by ``calibration_method``
    (:mod:`vision_tasks.export.quantize`); its ``check`` compares ``vision-tasks val`` of the
    INT8 and the fp32 graph (:func:`~vision_tasks.export.parity.check_int8_metrics`).
    """
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint)
    if opset < 7:
        raise ExportError(f"--opset {opset} is too old; use {DEFAULT_OPSET} (the default)")
    if opset > onnx.defs.onnx_opset_version():  # refused before minutes of tracing
        raise ExportError(f"--opset {opset} is newer than the installed onnx knows "
                          f"({onnx.defs.onnx_opset_version()}); use {DEFAULT_OPSET} (the default)")
    if int8 and (fp16 or opset < DYNAMO_MIN_OPSET):
        raise ExportError("--int8 needs the default exporter (opset >= 18) and excludes --fp16")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    out = Path(out) if out is not None else default_output(checkpoint, precision)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    loaded = _load_at_size(checkpoint, image_size)
    model, cfg = loaded.model, loaded.cfg
    first, head = loaded.first  # the checks and the calibration use the first head's data
    check_cfg, task, names = cfg.head_configs()[first], head.task, head.class_names
    calib = (calibration_images(check_cfg, task, names, calibration, calibration_count,
                                calibration_method) if int8 else None)
    protos = _precisions(model, cfg, loaded.heads, opset, fp16, calib)
    proto = protos[-1]
    meta = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}, str(out))
    data = proto.SerializeToString()
    report: ParityReport | MetricReport | None = None
    if check and int8:
        where = check_cfg.data.val["images"] if isinstance(check_cfg.data.val, dict) else check_cfg.data.val
        report = check_int8_metrics(protos[0].SerializeToString(), data, task.primary_metric,
                                    f"data.val ({where})")
    elif check:
        images, source = check_images(check_cfg, task, names)
        reference = ExportWrapper(model, meta.outputs).eval()
        report = check_parity(data, reference, images, source, precision)
    with atomic_path(out, durable=True) as tmp:
        tmp.write_bytes(data)
    return ExportResult(out, meta, opset, precision, len(data), time.perf_counter() - t0, report)
