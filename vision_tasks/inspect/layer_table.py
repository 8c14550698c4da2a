"""The course's parameter table for any model: one row per layer, or one per block.

:func:`summarize_model` runs one forward pass of a blank image ``[1, 3, H, W]`` with
forward hooks and records, for each row, the shapes that went in and came out. Weights
and biases are counted from the row's own parameters (each parameter once), so the rows
add up to ``sum(p.numel() for p in model.parameters())`` exactly.

Dims are written as the course writes them: a feature map ``[N, C, H, W]`` as ``H*W*C``
(``28*28*6``), a vector ``[N, F]`` as ``F``; a conv layer's filters as
``6 filters * 5*5*3`` (N filters of f*f*c_in), a pooling window as ``2*2*6`` (f*f*C).
The input of a fully connected layer fed by ``nn.Flatten`` reads ``5*5*16 = 400``.
Layers are numbered as in the course: conv and FC layers count 1, 2, 3...; an
activation or batch norm takes the number of the layer before it; pools count apart.

Which modules get a row (``depth``):

- ``"all"``: every leaf layer (conv, batch norm, activation, pooling, FC, dropout).
- an int N >= 0: each *block* -- a direct child of a backbone stage (ResNet's ``layer2``,
  MobileNet's ``features_5``, a course CNN's conv block) -- is one row, opened N levels
  deep; everything outside the backbone's stages (the head) is shown layer by layer.
- ``"auto"``: ``"all"`` for the course's CNNs (a :class:`CourseCNN` backbone: ``lenet5``,
  ``simple_cnn``) and for models without backbone stages, as the course's table shows
  every layer; 0 for the others (the torchvision backbones: one row per block).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from vision_tasks.models.backbones import CourseCNN
from vision_tasks.models.layers import Maxout
from vision_tasks.models.model import Normalize

WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
"""The layers the course numbers (conv 1, conv 2, FC 3...)."""
ACTIVATION_LAYERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid,
                     nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, Maxout)
POOL_LAYERS = (nn.MaxPool2d, nn.AvgPool2d)
GLOBAL_POOL_LAYERS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

Depth = int | str  # an int >= 0, "all" or "auto"


@dataclass(frozen=True)
class LayerRow:
    """One line of the table; dims in the course's notation (``"28*28*6"``), counts as ints.

    ``activation_size`` is the number of values the row outputs per image (None when the
    layer did not run). ``frozen`` is how many of the row's parameters do not train.
    """

    no: int
    layer: str
    module: str  # qualified name in the model ("" for the input row)
    input_dims: str
    filter_dims: str
    output_dims: str
    activation_size: int | None
    weights: int = 0
    biases: int = 0
    frozen: int = 0

    @property
    def parameters(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class ModelSummary:
    """The rows (first: the input) and the totals of a model for one input size."""

    rows: list[LayerRow]
    input_size: tuple[int, int]  # (height, width)
    trainable: int
    frozen: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


# ------------------------------------------------------------------ choosing rows


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def select_rows(model: nn.Module, depth: Depth = "auto") -> list[tuple[str, nn.Module]]:
    """The ``(qualified name, module)`` pairs that get one row each, in module order.

    They partition the model: every leaf layer lies in exactly one of them (see the module
    docstring for ``depth``). A module shared by two parents gets one row.
    """
    backbone = getattr(model, "backbone", None)
    stages = getattr(backbone, "stages", None)
    stage_ids = {id(s) for s in stages} if isinstance(stages, nn.ModuleList) else set()
    if depth == "auto":
        depth = "all" if isinstance(backbone, CourseCNN) or not stage_ids else 0
    if depth == "all":
        return [(name, m) for name, m in model.named_modules() if _is_leaf(m)]
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be 'auto', 'all' or an integer >= 0, got {depth!r}")
    return list(_walk(model, "", None, depth, stage_ids, set()))


def _walk(module: nn.Module, name: str, level: int | None, depth: int, stage_ids: set[int],
          seen: set[int]) -> Iterator[tuple[str, nn.Module]]:
    # level: None outside the backbone's blocks, else how deep inside a block (0 = the block).
    if id(module) in seen:
        return
    if _is_leaf(module) or (level is not None and level >= depth):
        seen.add(id(module))
        yield name, module
        return
    for child_name, child in module.named_children():
        child_level = level + 1 if level is not None else 0 if id(module) in stage_ids else None
        yield from _walk(child, _join(name, child_name), child_level, depth, stage_ids, seen)


# ------------------------------------------------------------------ tracing


@dataclass
class _Calls:
    """What the hooks saw of one row's module: shapes of its first call, and how often."""

    inputs: list[torch.Size] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    count: int = 0


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    return []


def _trace(model: nn.Module, rows: list[tuple[str, nn.Module]], image: Tensor
           ) -> tuple[list[str], dict[str, _Calls], list[Tensor]]:
    """Run ``image`` through ``model`` once (eval mode, no grad); returns the row names in
    the order they first ran, their calls, and the model's output tensors."""
    calls = {name: _Calls() for name, _ in rows}
    order: list[str] = []

    def recorder(name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            record = calls[name]
            if record.count == 0:
                order.append(name)
                record.inputs = [t.shape for t in _tensors(args)]
                record.outputs = _tensors(output)
            record.count += 1
        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in rows]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(image)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return order, calls, _tensors(output)


# ------------------------------------------------------------------ describing rows


def format_dims(shape: torch.Size | tuple[int, ...]) -> str:
    """``[N, C, H, W]`` -> ``"H*W*C"``, ``[N, F]`` -> ``"F"`` (the batch dim is dropped)."""
    dims = list(shape[1:])
    if len(dims) >= 2:
        dims = dims[1:] + dims[:1]  # channels last, as the course writes them
    return "*".join(str(d) for d in dims) or "1"


def _dims(shapes: list[torch.Size]) -> str:
    return " + ".join(format_dims(s) for s in shapes) or "-"


def _size(shapes: list[torch.Size]) -> int:
    return sum(math.prod(s[1:]) for s in shapes)


def _hyper(value: Any) -> str:
    """A conv/pool hyperparameter (int, pair or string) as one short string."""
    if isinstance(value, tuple | list):
        return str(value[0]) if len(set(value)) == 1 else "x".join(str(v) for v in value)
    return str(value)


def _conv_filters(conv: nn.Conv2d | nn.ConvTranspose2d) -> str:
    kh, kw = conv.kernel_size
    c_in = conv.in_channels // conv.groups
    text = f"{conv.out_channels} filters * {kh}*{kw}*{c_in}"
    for key, value, default in (("s", conv.stride, "1"), ("p", conv.padding, "0"),
                                ("d", conv.dilation, "1"), ("groups", conv.groups, "1")):
        if _hyper(value) != default:
            text += f", {key}={_hyper(value)}"
    return text


def _pool_filters(pool: nn.MaxPool2d | nn.AvgPool2d, channels: int | str) -> str:
    k = _hyper(pool.kernel_size)
    window = f"{k}*{k}" if "x" not in k else k.replace("x", "*")
    text = f"{window}*{channels}"
    if _hyper(pool.stride) != k:
        text += f", s={_hyper(pool.stride)}"
    if _hyper(pool.padding) != "0":
        text += f", p={_hyper(pool.padding)}"
    return text


def _activation_name(module: nn.Module) -> str:
    if isinstance(module, nn.LeakyReLU):
        return f"LeakyReLU({module.negative_slope:g})"
    return type(module).__name__


def _composition(module: nn.Module) -> str:
    """What a block is made of: ``"2 x BasicBlock"``, ``"InvertedResidual"``..."""
    children = list(module.children())
    kinds = {type(c).__name__ for c in children}
    if isinstance(module, nn.Sequential | nn.ModuleList) and len(kinds) == 1:
        return f"{len(children)} x {kinds.pop()}"
    return type(module).__name__


def _block_name(name: str) -> str:
    """``"backbone.stages.1.layer1.0"`` -> ``"layer1.0"`` (the name inside its stage)."""
    match = re.search(r"(?:^|\.)stages\.\d+\.(.+)$", name)
    return match.group(1) if match else name


class _Namer:
    """Labels rows as the course does: conv and FC layers numbered together, pools apart."""

    def __init__(self) -> None:
        self.layer = 0
        self.pool = 0

    def _numbered(self, name: str) -> str:
        return f"{name} {self.layer}" if self.layer else name

    def describe(self, name: str, module: nn.Module, inputs: list[torch.Size]) -> tuple[str, str]:
        """``(layer type, filter dims)`` of a row; advances the counters."""
        channels = inputs[0][1] if inputs and len(inputs[0]) == 4 else "C"
        if not _is_leaf(module):
            convs = [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
            fcs = sum(isinstance(m, nn.Linear) for m in module.modules())
            self.layer += len(convs) + fcs
            parts = [f"{n} {kind}" for n, kind in ((len(convs), "conv"), (fcs, "FC")) if n]
            filters = _conv_filters(convs[0]) if len(convs) == 1 and not fcs else ", ".join(parts)
            return f"{_block_name(name)}: {_composition(module)}", filters or "-"
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            self.layer += 1
            return f"Conv {self.layer}", _conv_filters(module)
        if isinstance(module, nn.Linear):
            self.layer += 1
            return f"FC {self.layer}", "-"
        if isinstance(module, POOL_LAYERS):
            self.pool += 1
            kind = "Maxpool" if isinstance(module, nn.MaxPool2d) else "Avgpool"
            return f"{kind} {self.pool}", _pool_filters(module, channels)
        if isinstance(module, GLOBAL_POOL_LAYERS):
            kind = "max" if isinstance(module, nn.AdaptiveMaxPool2d) else "avg"
            window = format_dims(inputs[0]) if inputs else "-"
            return f"Global {kind}pool", window
        if isinstance(module, Maxout):
            return self._numbered("Maxout"), f"max of {module.pieces}"
        if isinstance(module, ACTIVATION_LAYERS):
            return self._numbered(_activation_name(module)), "-"
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            return self._numbered("BatchNorm"), "-"
        if isinstance(module, nn.Dropout):
            return "Dropout", f"p={module.p:g}"
        return type(module).__name__, "-"


def _count(module: nn.Module, seen: set[int]) -> tuple[int, int, int]:
    """(weights, biases, frozen) of ``module``'s parameters not counted before."""
    weights = biases = frozen = 0
    for name, p in module.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name.rsplit(".", 1)[-1] == "bias":
            biases += p.numel()
        else:
            weights += p.numel()
        if not p.requires_grad:
            frozen += p.numel()
    return weights, biases, frozen


def _state(weights: int, biases: int, frozen: int) -> str:
    if not frozen:
        return ""
    return " (frozen)" if frozen == weights + biases else " (partly frozen)"


# ------------------------------------------------------------------ the table


def summarize_model(model: nn.Module, input_size: tuple[int, int],
                    depth: Depth = "auto") -> ModelSummary:
    """The course's table of ``model`` for RGB inputs of ``input_size = (height, width)``.

    ``model(x: float [1, 3, H, W])`` must run; any output structure (tensor, list, dict)
    works. ``x`` is made on the device of the model's parameters, so a model built on the
    meta device (shapes only, no memory) is traced without computing anything.

    Raises whatever the forward pass raises (e.g. ``RuntimeError`` for an input the layers
    do not fit) and ``ValueError`` for a bad ``depth``.
    """
    height, width = input_size
    anchor = next(model.parameters(), None)
    image = torch.zeros(1, 3, height, width, device=anchor.device if anchor is not None else None)
    modules = dict(select_rows(model, depth))
    order, calls, outputs = _trace(model, list(modules.items()), image)
    never_ran = [name for name in modules if not calls[name].count]
    rows = [LayerRow(1, "Input", "", "-", "-", format_dims(image.shape), _size([image.shape]))]
    namer, seen, notes = _Namer(), set[int](), []
    flattened: list[torch.Size] | None = None
    for name in order + never_ran:
        module, record = modules[name], calls[name]
        weights, biases, frozen = _count(module, seen)
        if isinstance(module, Normalize | nn.Identity) and not weights + biases:
            if isinstance(module, Normalize):
                notes.append("Normalize ((x / 255 - mean) / std per channel) runs right after "
                             "the input: fixed constants, no learnable parameters.")
            continue
        if isinstance(module, nn.Flatten):
            flattened = record.inputs  # shown as the next row's input: "5*5*16 = 400"
            continue
        out_shapes = [t.shape for t in record.outputs]
        label, filters = namer.describe(name, module, record.inputs)
        if isinstance(module, WEIGHT_LAYERS) and any(o is t for o in outputs for t in record.outputs):
            label += " (output)"
        if record.count > 1:
            label += f" (runs {record.count}x)"
        in_dims = _dims(record.inputs) if record.count else "-"
        if flattened is not None and record.count:
            in_dims = f"{_dims(flattened)} = {_size(flattened)}"
            flattened = None
        rows.append(LayerRow(
            len(rows) + 1, label + _state(weights, biases, frozen), name, in_dims, filters,
            _dims(out_shapes) if record.count else "(did not run)",
            _size(out_shapes) if record.count else None, weights, biases, frozen))
    extra = _count(model, seen)  # parameters held by containers themselves, if any
    if sum(extra[:2]):
        rows.append(LayerRow(len(rows) + 1, "Other parameters", "", "-", "-", "-", None, *extra))
    total = sum(p.numel() for p in model.parameters())
    frozen_total = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return ModelSummary(rows, (height, width), total - frozen_total, frozen_total, notes)
