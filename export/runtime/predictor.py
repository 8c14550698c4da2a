"""``Predictor``: a vision-tasks ONNX file -> typed predictions for any images.

Imports numpy, onnxruntime and :mod:`vision_tasks.imaging` only (never torch), so any
Python application can embed it::

    from vision_tasks.export.runtime import Predictor

    predictor = Predictor("model.onnx", device="auto")   # TensorRT > CUDA > CPU
    for p in predictor.predict(["a.jpg", "b.png"]):
        print(p.source, p.name, p.score)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from vision_tasks.contract import (
    DEFAULT_SCORE_THRESHOLD,
    INPUT_NAME,
    ModelFileError,
    ModelMetadata,
)
from vision_tasks.errors import ConfigError
from vision_tasks.imaging import ImageError, ImageSource, Letterbox, load_letterboxed
from vision_tasks.results import Prediction
from vision_tasks.task_spec import TaskSpec, get_spec, task_names

from .decode import Outputs, decode_batch
from .fast_path import DEFAULT_OPTIONS, RuntimeOptions
from .lanes import LaneSessions, SessionRunner
from .pipeline import predict_stream
from .providers import CPU, create_session, load_for_inspection
from .sources import source_name

DEFAULT_BATCH_SIZE = 32
MAX_DEFAULT_LANES = 2
"""A stream runs at most this many batches at once unless asked for more (see
``Predictor(lanes=...)``); each lane's batch activations are in memory at the same time."""


def read_metadata(session: ort.InferenceSession, source: str) -> ModelMetadata:
    """The validated metadata of a loaded model, checked against its graph's input/outputs."""
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, source)
    inputs = session.get_inputs()
    h, w = meta.input_size
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)" \
            or list(inputs[0].shape[1:]) != [h, w, 3]:
        got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        raise ModelFileError(f"{source}: graph input is {got}; the contract expects "
                             f"'{INPUT_NAME}' tensor(uint8) [N, {h}, {w}, 3]; re-export the model")
    names = tuple(o.name for o in session.get_outputs())
    expected = tuple(meta.output_name(name, out) for name, spec in specs_of(meta, source).items()
                     for out in spec.output_names)
    if set(names) != set(expected):
        raise ModelFileError(f"{source}: outputs {list(names)} do not match the {meta.task} "
                             f"contract {list(expected)}; re-export the model")
    check_output_shapes(session.get_outputs(), meta, source)
    return meta


_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


def check_output_shapes(outputs: Sequence[ort.NodeArg], meta: ModelMetadata, source: str) -> None:
    """Each graph output's element type and fixed sizes against what the metadata says of
    it: ``C`` = the head's class count, ``K`` = its ``max_detections``, numbers as the task
    spec states them (sizes the graph leaves symbolic are not compared). A file whose
    metadata was edited, or written by another tool, fails here with one line, not later
    with wrong class names or an index error in a decoder."""
    graph = {o.name: o for o in outputs}
    for name, head in meta.head_views().items():
        for out in get_spec(head.task).outputs:
            arg = graph[meta.output_name(name, out.name)]
            wanted = {"C": head.num_classes, "K": head.max_detections}
            if arg.type != _ORT_TYPES[out.dtype]:
                raise ModelFileError(f"{source}: output '{arg.name}' is {arg.type}, the contract "
                                     f"says {_ORT_TYPES[out.dtype]}; re-export the model")
            if len(arg.shape) != len(out.shape):
                raise ModelFileError(f"{source}: output '{arg.name}' has {len(arg.shape)} "
                                     f"dimensions, the contract {len(out.shape)} "
                                     f"({', '.join(map(str, out.shape))}); re-export the model")
            for got, dim in zip(arg.shape, out.shape, strict=True):
                need = dim if isinstance(dim, int) else wanted.get(dim)
                if isinstance(got, int) and need is not None and got != need:
                    what = {"C": f"{need} classes in class_names",
                            "K": f"max_detections {need}"}.get(str(dim), str(need))
                    raise ModelFileError(f"{source}: output '{arg.name}' has size {got} where "
                                         f"its metadata says {what}; the metadata does not "
                                         "describe this graph: re-export the model")


def specs_of(meta: ModelMetadata, source: str) -> dict[str, TaskSpec]:
    """Each head's installed task spec (a single-task file: its one head, named after its
    task); checked against the head's recorded outputs."""
    heads = meta.head_views()
    specs = {name: spec_of(head, source) for name, head in heads.items()}
    for name, spec in specs.items():
        if set(spec.output_names) != set(heads[name].outputs):
            raise ModelFileError(f"{source}: head '{name}' records the outputs "
                                 f"{list(heads[name].outputs)}, the {spec.name} task has "
                                 f"{list(spec.output_names)}; re-export the model")
    return specs


def spec_of(meta: ModelMetadata, source: str) -> TaskSpec:
    """The installed task that reads a model of ``meta.task``.

    Raises:
        ModelFileError: no such task is installed here.
    """
    try:
        return get_spec(meta.task)
    except KeyError:
        raise ModelFileError(f"{source}: a '{meta.task}' model, a task not installed here "
                             f"(installed: {', '.join(task_names())}); install the package "
                             "that provides it, or upgrade vision-tasks") from None


class Predictor:
    """Run a vision-tasks ONNX model on images of any size.

    Args:
        path: the ``.onnx`` file (from ``vision-tasks export``).
        device: ``"auto"`` (TensorRT > CUDA > CPU, the first that works), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        task: when given, the model must be of this task (else :class:`ModelFileError`).
        threads: CPU intra-op threads (default: the cores this process may use).
        batch_size: images per inference call in :meth:`predict`.
        reduced_decode: decode JPEG files / bytes at least 8x larger than their letterboxed
            size at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling): faster on photographs, but
            the model input is then slightly smoother than a full decode's (see
            :func:`vision_tasks.imaging.load_letterboxed`). Off by default: every input is
            exactly ``letterbox(load_image(source))``, what training and evaluation use.
        score_threshold: detections (detect, segment) scoring below this are left out
            (default :data:`DEFAULT_SCORE_THRESHOLD`; 0 keeps all the graph returns).
        lanes: how many batches a stream of images (``vision-tasks predict``,
            :func:`vision_tasks.export.runtime.pipeline.predict_stream`) runs at once (default:
            ``min(threads, 2)``). On the CPU each lane gets ``threads // lanes`` intra-op
            threads (so ``lanes`` may not exceed ``threads``): separate batches in parallel
            keep the cores busier than one batch split across them, above all while other
            threads decode images (``benchmarks/RESULTS.md``). On a GPU the lanes share one
            session, so that one batch's results are read while the next runs. :meth:`run`
            (and so :meth:`predict` of up to one batch) always uses the session of all
            ``threads``.
        options: the fast-path switches (I/O binding, pinned input, a session per lane,
            TensorRT and its engine cache; :class:`~vision_tasks.export.runtime.fast_path.
            RuntimeOptions`); default: each at its default.

    Attributes:
        metadata: the model's :class:`ModelMetadata` (task, classes, input size...).
        spec: the task's :class:`~vision_tasks.task_spec.TaskSpec` (outputs, decoder); None
            for a multi-head model, whose results hold each head's (``Prediction.heads``).
        head_specs: a multi-head model's spec per head (empty for a single-task model).
        provider: the execution provider really in use, e.g. ``"CPUExecutionProvider"``.
        provider_note: why a faster provider was not used ("" when it was).
        lanes: batches a stream runs at once (see ``lanes`` above).

    Raises:
        ModelFileError: the file is missing, not an ONNX model, not a vision-tasks model,
            of another task than ``task``, or ``device`` cannot be honoured.
        ConfigError: ``batch_size``, ``score_threshold`` or ``lanes`` out of range (a
            ``ValueError``).
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", task: str | None = None,
                 threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 reduced_decode: bool = False,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 lanes: int | None = None, options: RuntimeOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or DEFAULT_OPTIONS
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.score_threshold = float(score_threshold)
        if not self.path.is_file():
            what = "is a folder, not a model file" if self.path.is_dir() else "model file not found"
            raise ModelFileError(f"{self.path}: {what}; export one with "
                                 "`vision-tasks export RUN/weights/best.pt --out model.onnx`")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if lanes is not None and lanes < 1:
            raise ConfigError(f"lanes must be at least 1, got {lanes}")
        self.batch_size = batch_size
        self.reduced_decode = reduced_decode
        # The metadata is read before any GPU session is built (which can take minutes).
        probe = load_for_inspection(str(self.path))
        self.metadata = read_metadata(probe, str(self.path))
        # The task's spec; a multi-head model has one per head instead (spec None).
        specs = specs_of(self.metadata, str(self.path))
        self.head_specs = specs if self.metadata.is_multi_head else {}
        self.spec = None if self.head_specs else next(iter(specs.values()))
        del probe
        if task is not None and task != self.metadata.task:
            raise ModelFileError(f"{self.path}: a {self.metadata.task} model, but a {task} model "
                                 f"is needed here; pass a model exported from a {task} run")
        h, w = self.metadata.input_size
        self.session, info = create_session(str(self.path), device, threads, (h, w, 3), batch_size,
                                            self.options)
        self.provider, self.threads, self.provider_note = info.provider, info.threads, info.note
        self.output_names = [o.name for o in self.session.get_outputs()]
        if lanes is not None and self.provider == CPU and lanes > self.threads:
            raise ConfigError(f"lanes={lanes} needs at least {lanes} CPU threads (each lane runs "
                             f"on threads // lanes of them), got threads={self.threads}; "
                             "pass fewer lanes (--lanes) or more threads (--threads)")
        self.lanes = lanes or min(MAX_DEFAULT_LANES, self.threads)
        self._runner = SessionRunner(self.output_names, self.options.io_binding, self.options.pinned)
        cpu = self.provider == CPU
        self._lane_sessions = LaneSessions(lambda: create_session(
            str(self.path), "cpu" if cpu else device, self.threads // self.lanes if cpu else threads,
            (h, w, 3), batch_size, self.options)[0], self.options.shared_session)

    @property
    def task(self) -> str:
        return self.metadata.task

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input ``(height, width)``."""
        return self.metadata.input_size

    def __repr__(self) -> str:
        h, w = self.input_size
        return (f"Predictor({str(self.path)!r}, task={self.task!r}, classes={len(self.class_names)}, "
                f"input={h}x{w}, provider={self.provider!r}, lanes={self.lanes})")

    def prepare(self, source: ImageSource) -> tuple[np.ndarray, Letterbox]:
        """Decode and letterbox one image: uint8 ``[H, W, 3]`` model input and its mapping
        (:func:`vision_tasks.imaging.load_letterboxed`, reduced as ``reduced_decode`` says).

        Raises:
            ImageError: the source cannot be read or decoded.
        """
        image, geometry, _ = self.load(source)
        return image, geometry

    def load(self, source: ImageSource, keep_original: bool = False
             ) -> tuple[np.ndarray, Letterbox, np.ndarray | None]:
        """:meth:`prepare`, plus the decoded original image when ``keep_original`` (for
        drawing), else None."""
        return load_letterboxed(source, self.input_size, self.metadata.pad_value,
                                reduce=self.reduced_decode, keep_original=keep_original)

    def run(self, images: np.ndarray) -> Outputs:
        """Model only: uint8 ``[N, H, W, 3]`` letterboxed batch -> the graph's named outputs,
        one call on all ``threads``."""
        return self._run(self.session, images)

    def run_lane(self, images: np.ndarray) -> Outputs:
        """:meth:`run` for one of :attr:`lanes` threads calling at once: on the CPU with
        ``lanes > 1``, a session of ``threads // lanes`` intra-op threads (shared by the lanes,
        built on first use; onnxruntime runs concurrent calls of one session safely), else
        :meth:`run`'s session; with ``RuntimeOptions(shared_session=False)`` each lane thread
        its own (:mod:`~vision_tasks.export.runtime.lanes`). The outputs are the same as
        :meth:`run`'s."""
        if self.lanes == 1 or (self.provider != CPU and self.options.shared_session):
            return self._run(self.session, images)
        return self._run(self._lane_sessions.get(), images)

    def _run(self, session: ort.InferenceSession, images: np.ndarray) -> Outputs:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
                or images.shape[1:] != (*self.input_size, 3) or not len(images):
            got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
                   else type(images).__name__)
            raise ValueError(f"run expects a non-empty uint8 array [N, {self.input_size[0]}, "
                             f"{self.input_size[1]}, 3] of letterboxed images, got {got}; use "
                             "predict for images of any size")
        return self._runner.run(session, np.ascontiguousarray(images))

    def decode(self, outputs: Outputs, letterboxes: Sequence[Letterbox],
               sources: Sequence[str], score_threshold: float | None = None,
               heads: Sequence[str] | None = None) -> list[Prediction]:
        """Outputs of :meth:`run` -> predictions in original-image coordinates.

        ``score_threshold``: this call's instead of :attr:`score_threshold`; ``heads``: a
        multi-head model's heads to decode (default all; names of :attr:`head_specs`).
        """
        spec = self.head_specs or self.spec
        if heads is not None:
            spec = {name: self.head_specs[name] for name in heads}
        try:
            return decode_batch(outputs, letterboxes, sources, self.metadata, spec,
                                self.score_threshold if score_threshold is None else score_threshold)
        except ModelFileError as err:  # outputs the metadata does not describe
            raise ModelFileError(f"{self.path}: {err}") from None

    def predict_prepared(self, images: Sequence[np.ndarray], letterboxes: Sequence[Letterbox],
                         sources: Sequence[str]) -> list[Prediction]:
        """Predictions of already letterboxed images (one inference call)."""
        return self.decode(self.run(np.stack(images)), letterboxes, sources)

    def predict(self, sources: ImageSource | Iterable[ImageSource]) -> list[Prediction]:
        """Predictions for one image or many, in order, ``batch_size`` images per call.

        A source is a path, encoded bytes, a PIL image or a numpy array (gray, RGB, RGBA,
        16-bit...; see :func:`vision_tasks.imaging.load_image`). One source gives a list of one;
        a 4-D array ``[N, H, W, C]`` is N images.
        More than one batch of sources goes through the predict pipeline
        (:func:`vision_tasks.export.runtime.pipeline.predict_stream`: decoding in worker threads,
        :attr:`lanes` batches at once); one batch is decoded here and run in one call.

        Raises:
            ImageError: an image cannot be read or decoded (the batch CLI skips such
                images instead; see :mod:`vision_tasks.export.runtime.batch`).
        """
        if isinstance(sources, np.ndarray) and sources.ndim == 4:
            sources = list(sources)  # a batch [N, H, W, C]: one image per row
        elif isinstance(sources, str | os.PathLike | bytes | bytearray | memoryview
                        | np.ndarray | Image.Image):
            sources = [sources]
        sources = list(sources)
        if len(sources) > self.batch_size:
            results: list[Prediction] = []
            for outcome in predict_stream(self, sources):
                if outcome.prediction is None:
                    raise ImageError(outcome.error)
                results.append(outcome.prediction)
            return results
        if not sources:
            return []
        prepared = [(*self.prepare(source), source_name(source)) for source in sources]
        return self.predict_prepared(*zip(*prepared, strict=True))

    def predict_one(self, source: ImageSource) -> Prediction:
        """The prediction of one image."""
        return self.predict([source])[0]

    __call__ = predict
