"""Typed, validated configuration.

A config is a YAML file validated into the dataclasses below. Every problem is
reported on one line that names the file, the dotted key and what is expected::

    configs/classify.yaml: train.lrr: unknown key (did you mean 'lr'?)

``--set a.b=value`` overrides any key; values are parsed as YAML (``0.1`` is a
float, ``[1, 2]`` a list, ``null`` is None). Task-specific sections
(``model.head``, ``loss`` and ``task_options``) are validated against the dataclasses the task
plug-in's torch-free :class:`~vision_tasks.task_spec.TaskSpec` declares, so the core never
needs to know a task by name, and validating a config imports no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from vision_tasks import plugins
from vision_tasks.config_files import apply_overrides, read_config_file
from vision_tasks.config_numbers import check_numbers
from vision_tasks.errors import ConfigError
from vision_tasks.fileio import atomic_write_text
from vision_tasks.task_spec import get_spec


@dataclass
class BackboneConfig:
    """Which feature extractor, its starting weights and what stays frozen."""

    name: str = "simple_cnn"
    # A local weights file (a torchvision state dict or any checkpoint of this
    # product, of any task) or "torchvision:DEFAULT" / a torchvision weights name.
    pretrained: str | None = None
    # "none", "all", or the number of leading stages to freeze.
    freeze: str | int = "none"
    # simple_cnn / lenet5 only:
    width: int = 16
    depths: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 2])
    activation: str = "relu"
    pool: Literal["max", "avg"] = "max"
    batch_norm: bool | None = None  # None: the backbone's own default
    # simple_cnn only: explicit stages, each a list of layer dicts; overrides width/depths.
    stages: list[list[dict[str, Any]]] | None = None


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # Validated against the task's HeadConfig dataclass.
    head: Any = field(default_factory=dict)
    # Multi-head models: heads whose necks are alike (e.g. a detect and a segment head with the
    # same head.neck and head.channels) run one neck, so the second head costs its head only.
    share_neck: bool = False


@dataclass
class AugmentConfig:
    """Training augmentation; geometric ops keep boxes and masks consistent."""

    enabled: bool = True
    hflip: float = 0.5
    vflip: float = 0.0
    scale: list[float] = field(default_factory=lambda: [0.75, 1.25])
    translate: float = 0.1
    rotate: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02


@dataclass
class DataConfig:
    """Where the data lives. A split is an ImageFolder directory (classify) or
    ``{images: DIR, annotations: FILE}`` (COCO json tasks) or ``{yolo: data.yaml}`` (that
    split of a YOLO set); ``yolo: data.yaml`` gives both splits of a YOLO set to the box
    tasks and wins over ``train``/``val``. Relative paths are taken from the current
    directory."""

    train: str | dict[str, str] | None = None
    val: str | dict[str, str] | None = None
    yolo: str | None = None
    image_size: int = 64
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: Literal["sgd", "momentum", "adagrad", "adam", "adamw"] = "adamw"
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_epochs: float = 1.0
    lr_final: float = 0.05  # final learning rate as a fraction of lr (cosine schedule)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "fp16", "bf16"] = "auto"
    ema: bool = True
    ema_decay: float = 0.999
    grad_clip: float = 10.0  # max gradient norm; 0 turns clipping off
    # Multi-head runs: "round_robin": every step a batch of every head's data set;
    # "proportional": every step one head's batch, the head drawn in proportion to its set's
    # size (an epoch: every head's batches once). See benchmarks/RESULTS.md.
    head_sampling: Literal["round_robin", "proportional"] = "round_robin"
    # Under DDP (torchrun): batch-norm statistics over the global batch instead of each
    # process's share of it.
    sync_bn: bool = False


@dataclass
class HeadData:
    """Where one head of a multi-head model trains and validates (as ``data.train/val``)."""

    train: str | dict[str, str] | None = None
    val: str | dict[str, str] | None = None


@dataclass
class HeadSection:
    """One head of a multi-head model: its task, its own sections, loss weight and data."""

    task: str = ""
    weight: float = 1.0  # of this head's loss in the joint loss
    data: HeadData = field(default_factory=HeadData)
    # Validated against the head's task spec, as model.head / loss / task_options are.
    head: Any = field(default_factory=dict)
    loss: Any = field(default_factory=dict)
    task_options: Any = field(default_factory=dict)


MULTI = "multi"
"""The ``task`` of a multi-head config (one with a ``heads`` section)."""


@dataclass
class Config:
    task: str = "classify"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Validated against the task's LossConfig dataclass.
    loss: Any = field(default_factory=dict)
    # Task-owned data options (e.g. localize's multi_object policy); validated against
    # the task's OptionsConfig dataclass.
    task_options: Any = field(default_factory=dict)
    # A multi-head model (task: multi): head name -> its section. The backbone, data.image_size,
    # data.augment/workers and train are shared; each head brings its task's sections and data.
    heads: dict[str, HeadSection] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of plain values (YAML/JSON friendly)."""
        out = dataclasses.asdict(self)
        if not self.heads:  # a single-task config reads as it always did
            del out["heads"]
        if not self.model.share_neck:  # files of models without it read as they always did
            del out["model"]["share_neck"]
        return out

    @property
    def single_task(self) -> bool:
        """A config without a ``heads`` section: one head, named after its task, whose files
        keep the single-task layout (checkpoint keys ``head.*``, unprefixed ONNX outputs,
        contract version 1)."""
        return not self.heads

    def head_configs(self) -> dict[str, Config]:
        """Every head's single-task view, by head name, in the config's order: ``{task:
        self}`` for a single-task config, :meth:`for_head` of each head otherwise. The one
        way the model, the trainer, the evaluator and the exporter walk a config's heads."""
        if self.single_task:
            return {self.task: self}
        return {name: self.for_head(name) for name in self.heads}

    def for_head(self, name: str) -> Config:
        """The single-task config of head ``name`` of a multi-head config: the shared
        backbone, image size, augmentation and training settings, with the head's task,
        sections and data. Every task's code reads its head through this view."""
        section = self.heads[name]
        data = dataclasses.replace(self.data, train=section.data.train, val=section.data.val)
        model = dataclasses.replace(self.model, head=section.head)
        return dataclasses.replace(self, task=section.task, model=model, data=data,
                                   loss=section.loss, task_options=section.task_options, heads={})


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# A decimal number with an exponent, as YAML 1.1 (PyYAML) leaves it a string: 1e-3, 1E6, 5e+2.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type ``tp``; returns the (possibly converted) value."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {value!r}")
        return _from_dict(tp, value, key, source)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("off" if value is False else "on") in choices:
            value = "off" if value is False else "on"  # YAML 1.1 reads off/no as false, on as true
        if value not in choices:
            _fail(source, key, f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            with contextlib.suppress(ConfigError):
                return _coerce(value, arg, key, source)
        _fail(source, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            _fail(source, key, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{key}.{k}", source) for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            _fail(source, key, f"expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 and 1e6 (no dot) as strings
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(source, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} is not supported")  # a bug in a dataclass, not user input


def _fail(source: str, key: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {key}: {message}")


def _from_dict(cls: type, data: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"{prefix}.{key}" if prefix else str(key)
            _fail(source, where, f"unknown key{hint}; valid keys here: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            where = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], where, source)
    return cls(**kwargs)


def validate_section(cls: type, data: Any, key: str, source: str) -> Any:
    """Validate a task-owned section (``model.head``, ``loss``) into ``cls``."""
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    return _coerce(data if data is not None else {}, cls, key, source)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw mapping into a :class:`Config`, including task-owned sections."""
    if raw.get("heads"):
        raw = {"task": MULTI, **raw}
    cfg = _from_dict(Config, raw, "", source)
    if cfg.heads or cfg.task == MULTI:
        _check_heads(cfg, source)
    else:
        _validate_task_sections(cfg, cfg.task, "", source)
    _check_values(cfg, source)
    return cfg


def _validate_task_sections(holder: Any, task: str, prefix: str, source: str) -> None:
    """Validate the task-owned sections of ``holder`` (a config, or a head section whose
    keys sit under ``prefix``) against the spec of ``task``."""
    try:
        spec = get_spec(task)
    except KeyError as err:
        _fail(source, f"{prefix}task", err.args[0])
    if prefix:  # a head section: head / loss / task_options
        holder.head = validate_section(spec.head_config, holder.head, f"{prefix}head", source)
    else:
        holder.model.head = validate_section(spec.head_config, holder.model.head, "model.head", source)
    holder.loss = validate_section(spec.loss_config, holder.loss, f"{prefix}loss", source)
    holder.task_options = validate_section(spec.options_config, holder.task_options,
                                           f"{prefix}task_options", source)


def _check_heads(cfg: Config, source: str) -> None:
    if cfg.task != MULTI:
        _fail(source, "task", f"a config with heads is a multi-head model: task must be '{MULTI}' "
              f"(or left out), got {cfg.task!r}")
    if not cfg.heads:
        _fail(source, "heads", "a multi-head config needs at least one head, e.g. heads: "
              "{classify: {task: classify, data: {train: ..., val: ...}}}")
    for key, value in (("model.head", cfg.model.head), ("loss", cfg.loss),
                       ("task_options", cfg.task_options)):
        if value:
            _fail(source, key, "a multi-head config sets this per head (heads.<name>."
                  f"{key.removeprefix('model.')}), not at the top")
    for name, section in cfg.heads.items():
        if not name.isidentifier() or not name.islower():
            _fail(source, f"heads.{name}", "a head name is a lower-case identifier (it prefixes "
                  "the head's ONNX outputs, e.g. detect.boxes)")
        if not section.task:
            _fail(source, f"heads.{name}.task", "missing; name the head's task, e.g. task: detect")
        if section.task == MULTI:
            _fail(source, f"heads.{name}.task", "a head is a single task, not 'multi'")
        if not section.weight > 0:  # NaN too
            _fail(source, f"heads.{name}.weight", f"must be positive, got {section.weight}")
        _validate_task_sections(section, section.task, f"heads.{name}.", source)


MAX_IMAGE_SIDE = 4096  # pixels: a batch of such images already takes GiBs; past it, a typo


def _check_values(cfg: Config, source: str) -> None:
    if not 8 <= cfg.data.image_size <= MAX_IMAGE_SIDE:
        _fail(source, "data.image_size", f"must be 8 to {MAX_IMAGE_SIDE} pixels, got "
              f"{cfg.data.image_size}")
    if cfg.train.epochs < 1:
        _fail(source, "train.epochs", f"must be at least 1, got {cfg.train.epochs}")
    if cfg.train.batch_size < 1:
        _fail(source, "train.batch_size", f"must be at least 1, got {cfg.train.batch_size}")
    if not cfg.train.lr > 0:  # NaN too
        _fail(source, "train.lr", f"must be positive, got {cfg.train.lr}")
    if cfg.data.workers < 0:
        _fail(source, "data.workers", f"must be 0 or more, got {cfg.data.workers}")
    if len(cfg.data.augment.scale) != 2 or not 0 < cfg.data.augment.scale[0] <= cfg.data.augment.scale[1]:
        _fail(source, "data.augment.scale", f"expected [min, max] with 0 < min <= max, got {cfg.data.augment.scale}")
    backbones = plugins.names(plugins.BACKBONES)
    if cfg.model.backbone.name not in backbones:
        _fail(source, "model.backbone.name",
              plugins.unknown_name_message("backbone", cfg.model.backbone.name, backbones))
    freeze = cfg.model.backbone.freeze
    if isinstance(freeze, str) and freeze not in ("all", "none"):
        _fail(source, "model.backbone.freeze", f"expected 'all', 'none' or a number of stages, got {freeze!r}")
    if isinstance(freeze, int) and freeze < 0:
        _fail(source, "model.backbone.freeze", f"must be 0 or more stages, got {freeze}")
    check_numbers(cfg, source, _fail)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Read ``path`` (or start from ``base``), apply ``--set`` overrides, validate."""
    raw: dict[str, Any] = dict(base or {})
    source = "<config>"
    if path is not None:
        raw = read_config_file(path)
        source = str(path)
    if overrides:
        apply_overrides(raw, overrides)
        source = f"{source} (with --set)"
    return config_from_dict(raw, source)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
