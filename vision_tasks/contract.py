"""The ONNX contract, in code: input, outputs per task, and the metadata every model carries.

One ``model.onnx`` is self-describing. Its graph takes

- ``images``: ``uint8 [N, H, W, 3]``, RGB, letterboxed to ``(H, W)`` (aspect kept, centred,
  padded with ``letterbox.pad_value``); ``N`` is dynamic. Normalisation is inside the graph.

and returns, all batched, the outputs its task's :class:`~vision_tasks.task_spec.TaskSpec`
declares (``C`` classes, ``K = max_detections``, ``Hm = H / 4``); the built-in tasks:

- classify: ``scores`` float32 ``[N, C]`` probabilities
- localize: ``scores`` float32 ``[N, C]``, ``boxes`` float32 ``[N, 4]``
- detect: ``boxes`` float32 ``[N, K, 4]``, ``scores`` float32 ``[N, K]``, ``labels`` int64
  ``[N, K]``, ``num_detections`` int64 ``[N]``; rows past ``num_detections`` are zero
- segment: as detect, plus ``masks`` float32 ``[N, K, Hm, Wm]`` probabilities in the input frame
  (mask pixel ``(i, j)`` covers input pixels ``[4j, 4j + 4) x [4i, 4i + 4)``), assembled in
  the graph for each kept detection, zero outside its box (a cell counts as inside when its
  centre is) and zero for rows past ``num_detections``; ``thresholds.mask`` (0.5) in the
  metadata is the probability above which a pixel belongs to the object

Boxes are ``(x1, y1, x2, y2)`` in input pixels (continuous coordinates: the input's full
box is ``(0, 0, W, H)``). Every ``metadata_props`` value is JSON (see :data:`METADATA_KEYS`).

This module is plain Python (no numpy, no onnxruntime, no torch): the exporter writes
:meth:`ModelMetadata.to_props` and the runtime reads :meth:`ModelMetadata.from_props`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vision_tasks.errors import VisionTasksError

CONTRACT_VERSION = 2
"""The newest contract this package reads and writes; bumped whenever a consumer would have to
change to read a newer file. A file records the lowest version a reader needs: 1 for a
single-task model (its layout has not changed since version 1), 2 for a multi-head model."""

SINGLE_TASK_VERSION = 1
MULTI_HEAD_VERSION = 2
"""Version 2 added multi-head files: ``task`` is ``"multi"``, every output is named
``<head>.<output>`` (``detect.boxes``, ``classify.scores``), ``class_names`` is empty, and
``heads`` maps each head, in graph order, to its own ``task``, ``class_names``, ``outputs``
(unprefixed), ``thresholds``, ``max_detections``, optional ``category_ids`` and any key its task
records. A multi-head file of one head is valid."""

MULTI_TASK = "multi"
OUTPUT_SEPARATOR = "."
"""Between a head's name and its output's name in a multi-head file."""


def head_output(head: str, output: str) -> str:
    """The name of ``head``'s output ``output`` in a multi-head file: ``detect.boxes``."""
    return f"{head}{OUTPUT_SEPARATOR}{output}"

INPUT_NAME = "images"
MASK_STRIDE = 4
"""Input pixels per pixel of the segment contract's ``masks`` ``[N, K, H/4, W/4]``: the
resolution the masks are learnt at (the data's mask targets), predicted at (the prototype
net) and delivered at (the ONNX output)."""

DEFAULT_SCORE_THRESHOLD = 0.25
"""The runtime leaves out detections (detect, segment) scoring below this by default.
Exported graphs keep everything above their own, much lower threshold (0.001 as trained:
COCO mAP needs the whole precision-recall curve), which in an application is mostly noise;
``Predictor(score_threshold=0)`` / ``predict --score-threshold 0`` keep all the graph returns."""

METADATA_KEYS: tuple[str, ...] = (
    "task",  # "classify" | "localize" | "detect" | "segment"
    "class_names",  # ["circle", ...]; label i is class_names[i]
    "input_size",  # [H, W] of the input images
    "layout",  # "NHWC"
    "color",  # "RGB"
    "dtype",  # "uint8"
    "letterbox",  # {"pad_value": 114, "align": "center"}
    "outputs",  # output names in graph order
    "thresholds",  # task-specific, e.g. {"score": 0.25, "iou": 0.5, "mask": 0.5}; {} for classify
    "max_detections",  # K for detect / segment; null otherwise
    "contract_version",  # CONTRACT_VERSION of the writer
    "package_version",  # vision-tasks version that exported the file
    "config",  # the resolved training config (a mapping)
)
"""Required metadata keys, each value JSON. Optional: ``category_ids`` (COCO ids of
``class_names``, for detect / segment results), ``heads`` (multi-head files, version 2) and
any task-specific key (JSON too)."""

_HEAD_KEYS = ("task", "class_names", "outputs", "thresholds", "max_detections", "category_ids")

_EXPORT_HINT = "export a checkpoint with `vision-tasks export RUN/weights/best.pt --out model.onnx`"


class ModelFileError(VisionTasksError):
    """A model file that is missing, unreadable, not ours, or not what the caller asked for."""


@dataclass(frozen=True)
class ModelMetadata:
    """The parsed, validated ``metadata_props`` of a vision-tasks ONNX file."""

    task: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width) of the graph input
    outputs: tuple[str, ...]
    pad_value: int = 114
    thresholds: dict[str, float] = field(default_factory=dict)
    max_detections: int | None = None
    contract_version: int = SINGLE_TASK_VERSION
    package_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    category_ids: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other JSON keys a task records
    # A multi-head file (task "multi"): head name -> that head's metadata, in graph order.
    heads: dict[str, ModelMetadata] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_multi_head(self) -> bool:
        return self.task == MULTI_TASK

    def head_views(self) -> dict[str, ModelMetadata]:
        """Every head's metadata by head name: a multi-head file's ``heads``, a single-task
        file (contract version 1) as one head named after its task."""
        return dict(self.heads) if self.is_multi_head else {self.task: self}

    def output_name(self, head: str, output: str) -> str:
        """The graph's name of output ``output`` of head ``head`` (bare in a single-task file)."""
        return head_output(head, output) if self.is_multi_head else output

    @property
    def version_needed(self) -> int:
        """The contract version this file records: the lowest a reader needs."""
        return MULTI_HEAD_VERSION if self.heads else self.contract_version

    def _head_values(self) -> dict[str, Any]:
        values = {"task": self.task, "class_names": list(self.class_names),
                  "outputs": list(self.outputs), "thresholds": dict(self.thresholds),
                  "max_detections": self.max_detections}
        if self.category_ids is not None:
            values["category_ids"] = list(self.category_ids)
        return {**values, **{k: v for k, v in self.extra.items() if k not in values}}

    def to_props(self) -> dict[str, str]:
        """``metadata_props`` of the ONNX file: key -> JSON text."""
        values: dict[str, Any] = {
            "task": self.task,
            "class_names": list(self.class_names),
            "input_size": list(self.input_size),
            "layout": "NHWC",
            "color": "RGB",
            "dtype": "uint8",
            "letterbox": {"pad_value": self.pad_value, "align": "center"},
            "outputs": list(self.outputs),
            "thresholds": dict(self.thresholds),
            "max_detections": self.max_detections,
            "contract_version": self.version_needed,
            "package_version": self.package_version,
            "config": self.config,
        }
        if self.category_ids is not None:
            values["category_ids"] = list(self.category_ids)
        if self.heads:
            values["heads"] = {name: head._head_values() for name, head in self.heads.items()}
        values.update({k: v for k, v in self.extra.items() if k not in values})
        return {key: json.dumps(value, sort_keys=False) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> ModelMetadata:
        """Parse and check ``metadata_props``; ``source`` (the file) names every error.

        Raises:
            ModelFileError: keys missing (not a vision-tasks model), a value that is not
                JSON or not of the expected form, or a contract newer than this runtime.
        """
        if "task" not in props or "contract_version" not in props:
            raise ModelFileError(f"{source}: not a vision-tasks model (its ONNX metadata has no "
                                 f"'task' / 'contract_version'); {_EXPORT_HINT}")
        values = {key: _parse(props, key, source) for key in METADATA_KEYS if key in props}
        version = values["contract_version"]
        if not isinstance(version, int) or version < 1:
            _bad(source, "contract_version", "a positive integer", version)
        if version > CONTRACT_VERSION:
            raise ModelFileError(f"{source}: ONNX contract version {version} is newer than this "
                                 f"runtime understands ({CONTRACT_VERSION}); upgrade vision-tasks")
        if version >= MULTI_HEAD_VERSION and values.get("task") == MULTI_TASK:
            return cls._multi_head(props, values, version, source)
        missing = [key for key in METADATA_KEYS if key not in values]
        if missing:
            raise ModelFileError(f"{source}: incomplete vision-tasks metadata (missing "
                                 f"{', '.join(missing)}); {_EXPORT_HINT}")
        for key, expected in (("layout", "NHWC"), ("color", "RGB"), ("dtype", "uint8")):
            if values[key] != expected:
                _bad(source, key, repr(expected), values[key])
        return cls(
            task=_check(values["task"], str, source, "task", "a task name"),
            class_names=tuple(_check_list(values["class_names"], str, source, "class_names")),
            input_size=_input_size(values["input_size"], source),
            outputs=tuple(_check_list(values["outputs"], str, source, "outputs")),
            pad_value=_pad_value(values["letterbox"], source),
            thresholds=_thresholds(values["thresholds"], source, "thresholds"),
            max_detections=_max_detections(values["max_detections"], source),
            contract_version=version,
            package_version=str(values["package_version"]),
            config=_check(values["config"], dict, source, "config", "a mapping"),
            category_ids=_category_ids(props, source, len(values["class_names"])),
            extra={key: _lenient(text) for key, text in props.items()
                   if key not in METADATA_KEYS and key != "category_ids"},
        )

    @classmethod
    def _multi_head(cls, props: Mapping[str, str], values: dict[str, Any], version: int,
                    source: str) -> ModelMetadata:
        """A version-2 multi-head file: the shared keys, and each head's own."""
        missing = [key for key in METADATA_KEYS if key not in values and key != "class_names"]
        if missing or "heads" not in props:
            raise ModelFileError(f"{source}: incomplete multi-head metadata (missing "
                                 f"{', '.join(missing or ['heads'])}); {_EXPORT_HINT}")
        raw_heads = _check(_parse(props, "heads", source), dict, source, "heads", "a mapping")
        if not raw_heads:
            _bad(source, "heads", "a mapping of at least one head", raw_heads)
        shared = {"input_size": _input_size(values["input_size"], source),
                  "pad_value": _pad_value(values["letterbox"], source),
                  "contract_version": version, "package_version": str(values["package_version"])}
        heads = {}
        for name, head in raw_heads.items():
            where = f"heads.{name}"
            if not isinstance(head, dict) or any(k not in head for k in _HEAD_KEYS[:5]):
                _bad(source, where, f"a mapping with {', '.join(_HEAD_KEYS[:5])}", head)
            ids = head.get("category_ids")
            heads[name] = cls(
                task=_check(head["task"], str, source, f"{where}.task", "a task name"),
                class_names=tuple(_check_list(head["class_names"], str, source, f"{where}.class_names")),
                outputs=tuple(_check_list(head["outputs"], str, source, f"{where}.outputs")),
                thresholds=_thresholds(head["thresholds"], source, f"{where}.thresholds"),
                max_detections=_max_detections(head["max_detections"], source, f"{where}.max_detections"),
                category_ids=(_ids(ids, len(head["class_names"]), source, f"{where}.category_ids")
                              if ids is not None else None),
                extra={k: v for k, v in head.items() if k not in _HEAD_KEYS}, **shared)
        outputs = tuple(_check_list(values["outputs"], str, source, "outputs"))
        return cls(task=MULTI_TASK, class_names=(), outputs=outputs, thresholds={},
                   max_detections=None,
                   config=_check(values["config"], dict, source, "config", "a mapping"),
                   heads=heads, **shared)


def _parse(props: Mapping[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(props[key])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{source}: metadata '{key}' is not valid JSON ({err}); "
                             f"re-export the model ({_EXPORT_HINT})") from None


def _lenient(text: str) -> Any:
    """A key this runtime does not need: its JSON value, or the text when it is not JSON
    (another tool may have added it)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _bad(source: str, key: str, expected: str, got: Any) -> None:
    raise ModelFileError(f"{source}: metadata '{key}' should be {expected}, got {got!r}; "
                         "this runtime reads only the vision-tasks ONNX contract")


def _check(value: Any, kind: type, source: str, key: str, expected: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        _bad(source, key, expected, value)
    return value


def _check_list(value: Any, kind: type, source: str, key: str) -> list[Any]:
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) for v in value):
        _bad(source, key, f"a non-empty list of {kind.__name__}", value)
    return value


def _input_size(value: Any, source: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        _bad(source, "input_size", "[height, width] in pixels", value)
    return int(value[0]), int(value[1])


def _pad_value(value: Any, source: str) -> int:
    pad = value.get("pad_value") if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.get("align", "center") != "center" or not (
            isinstance(pad, int) and 0 <= pad <= 255):
        _bad(source, "letterbox", '{"pad_value": 0..255, "align": "center"}', value)
    return int(pad)


def _max_detections(value: Any, source: str, key: str = "max_detections") -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        _bad(source, key, "a positive integer or null", value)
    return value


def _thresholds(value: Any, source: str, key: str) -> dict[str, float]:
    """A mapping of threshold name -> a number in [0, 1] (score, iou, mask...)."""
    if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
            for v in value.values()):
        _bad(source, key, "a mapping of names to numbers in [0, 1]", value)
    return value


def _ids(value: Any, classes: int, source: str, key: str) -> tuple[int, ...]:
    """Original category ids, one per class name."""
    ids = _check_list(value, int, source, key)
    if len(ids) != classes or any(isinstance(i, bool) for i in ids):
        _bad(source, key, f"one integer per class name ({classes})", value)
    return tuple(ids)


def _category_ids(props: Mapping[str, str], source: str, classes: int) -> tuple[int, ...] | None:
    if "category_ids" not in props:
        return None
    return _ids(_parse(props, "category_ids", source), classes, source, "category_ids")
