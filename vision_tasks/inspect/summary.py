"""``vision-tasks summary``: the course's parameter table of a config or a checkpoint.

The model is built exactly as ``train`` builds it (backbone, freezing, the task's head)
but without loading pretrained weights, which change no shape and no count; a config's
model is built on PyTorch's meta device (shapes without memory or initialisation), so even
resnet101 takes a fraction of a second. A checkpoint's model is loaded with its weights.

Number of classes (the size of the output layer):
- a checkpoint: its own class names; ``--classes`` is refused;
- a config: ``--classes N``, else ``DEFAULT_CLASSES`` (10, the course's LeNet-5). A config
  does not fix it -- training takes it from the class folders of ``data.train`` -- and
  the table must not change with what happens to be on disk.

Input size: ``data.image_size`` of the config (or of the checkpoint's config), or
``--input-size H W``. For a config with ``H == W`` the model is built for that size (as
``--set data.image_size=H`` would); otherwise the model keeps its size and only the traced
input changes, which a head that flattens the last map (LeNet-5's) cannot follow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from vision_tasks.config import Config, load_config
from vision_tasks.configs import resolve as resolve_config
from vision_tasks.engine.checkpoint import load_model
from vision_tasks.errors import ConfigError, VisionTasksError
from vision_tasks.inspect.layer_table import Depth, LayerRow, ModelSummary, summarize_model
from vision_tasks.models.model import build_vision_model

DEFAULT_CLASSES = 10
CONFIG_SUFFIXES = (".yaml", ".yml")
HEADERS = ("No", "Layer type", "Input dim.", "Filter dim.", "Output dim.", "Activation size",
           "Weights", "Biases", "Parameters")
NUMERIC = {"Activation size", "Weights", "Biases", "Parameters"}


@dataclasses.dataclass(frozen=True)
class SourceSummary:
    """A :class:`ModelSummary` plus what it is a summary of."""

    source: str  # the config or checkpoint path
    title: str  # three lines: the source; task, backbone, head; input size, classes
    table: ModelSummary
    model: nn.Module  # a config's is on the meta device: shapes and counts, no values


def _check_options(classes: int | None, input_size: tuple[int, int] | None) -> None:
    if classes is not None and classes < 1:
        raise ConfigError(f"--classes must be at least 1, got {classes}")
    if input_size is not None and min(input_size) < 1:
        raise ConfigError(f"--input-size: height and width must be positive, got {input_size}")


def _named(path: Path, err: Exception) -> VisionTasksError:
    """``err`` as a user-facing error whose message starts with the file's name."""
    if isinstance(err, VisionTasksError) and str(err).startswith(str(path)):
        return err
    return ConfigError(f"{path}: {err}")


def _checkpoint_model(path: Path, overrides: list[str], classes: int | None
                      ) -> tuple[nn.Module, Config, int, str]:
    if classes is not None:
        raise ConfigError(f"{path}: a checkpoint has its own classes; drop --classes "
                          "(it applies to a config)")
    try:
        loaded = load_model(path, overrides)
    except ValueError as err:
        raise _named(path, err) from None
    model, cfg, heads = loaded.model, loaded.cfg, loaded.heads
    if not cfg.single_task:
        counts = ", ".join(f"{name} {len(h.class_names)}" for name, h in heads.items())
        return model, cfg, max(len(h.class_names) for h in heads.values()), \
            f"classes per head: {counts}"
    names = loaded.first[1].class_names
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return model, cfg, len(names), f"the checkpoint's class names: {shown}"


def _config_model(path: Path, cfg: Config, classes: int, device: str) -> nn.Module:
    """The config's model built on ``device``; ``"meta"`` gives shapes without memory or
    initialisation (resnet101 in a fraction of a second)."""
    try:
        with torch.device(device):  # every head with the same number of classes
            return build_vision_model(cfg, dict.fromkeys(cfg.head_configs(), classes),
                                      load_pretrained=False)
    except ValueError as err:  # ConfigError included: a layer that does not fit, a bad head
        raise _named(path, err) from None


def _table(source: Path, model: nn.Module, cfg: Config, size: tuple[int, int],
           depth: Depth) -> ModelSummary:
    try:
        return summarize_model(model, size, depth)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:200]
        raise VisionTasksError(
            f"{source}: a {size[0]}x{size[1]} input does not run through this model ({reason}); "
            f"it was built for {cfg.data.image_size}x{cfg.data.image_size}: use --input-size "
            "with that size or one its layers fit") from None


def summarize_source(source: str | Path, overrides: list[str] | None = None,
                     classes: int | None = None, input_size: tuple[int, int] | None = None,
                     depth: Depth = "auto") -> SourceSummary:
    """The table of a config's (``.yaml``/``.yml``) or a checkpoint's model (see the module
    docstring). Raises ``VisionTasksError`` naming the file for every user mistake.

    A config's model is built on PyTorch's meta device (no weights are needed for shapes
    and counts), or on the CPU when one of its operations has no meta implementation.
    """
    _check_options(classes, input_size)
    # a ready config's name (``lenet5``) or a .yaml is a config; any other file a checkpoint
    path = resolve_config(source) if Path(source).suffix.lower() in ("", *CONFIG_SUFFIXES) else Path(source)
    overrides = list(overrides or [])
    if path.suffix.lower() in CONFIG_SUFFIXES:
        if input_size is not None and input_size[0] == input_size[1]:
            overrides.append(f"data.image_size={input_size[0]}")
        cfg = load_config(path, overrides)
        n_classes = classes if classes is not None else DEFAULT_CLASSES
        origin = "--classes" if classes is not None else "default for a config; set --classes N"
        size = input_size or (cfg.data.image_size, cfg.data.image_size)
        try:
            model = _config_model(path, cfg, n_classes, "meta")
            table = _table(path, model, cfg, size, depth)
        except NotImplementedError:  # an operation with no meta kernel: build it for real
            model = _config_model(path, cfg, n_classes, "cpu")
            table = _table(path, model, cfg, size, depth)
    else:
        model, cfg, n_classes, origin = _checkpoint_model(path, overrides, classes)
        size = input_size or (cfg.data.image_size, cfg.data.image_size)
        table = _table(path, model, cfg, size, depth)
    notes = list(table.notes)
    if cfg.model.backbone.name == "lenet5":
        notes.append(_course_bias_note(table))
    table = dataclasses.replace(table, notes=notes)
    title = (f"{source}\n  task {cfg.task} · backbone {_backbone_text(cfg)} · {_head_text(cfg)}"
             f"\n  input {size[0]}x{size[1]}x3 · {n_classes} classes ({origin})")
    return SourceSummary(str(source), title, table, model)


def _backbone_text(cfg: Config) -> str:
    b = cfg.model.backbone
    text = b.name
    if b.name in ("lenet5", "simple_cnn"):
        text += f" ({b.activation}, {b.pool} pooling)"
    if b.freeze != "none":
        text += f", freeze {b.freeze}"
    return text


def _head_text(cfg: Config) -> str:
    if not cfg.single_task:  # the shared backbone's rows come first, then each head's, in order
        return "heads " + ", ".join(f"{name} ({section.task})" for name, section in cfg.heads.items())
    head = cfg.model.head
    fields = dataclasses.asdict(head) if dataclasses.is_dataclass(head) else {}
    return "head " + (", ".join(f"{k} {v}" for k, v in fields.items()) if fields else "default")


def _course_bias_note(table: ModelSummary) -> str:
    """What the course's LeNet-5 slide would total with one bias per FC layer."""
    fc = [row for row in table.rows if row.layer.startswith("FC ")]
    slide = table.total - sum(row.biases for row in fc) + len(fc)
    biases = " + ".join(str(row.biases) for row in fc)
    return (f"The course slide's total for this table, {slide:,}, counts 1 bias per FC layer; "
            f"each unit has its own bias ({biases}), so the true total is {table.total:,}.")


# ------------------------------------------------------------------ text


def _cells(row: LayerRow) -> list[str]:
    counts = [str(row.weights), str(row.biases), str(row.parameters)] if row.parameters else [""] * 3
    size = "-" if row.activation_size is None else str(row.activation_size)
    return [str(row.no), row.layer, row.input_dims, row.filter_dims, row.output_dims, size, *counts]


def format_table(table: ModelSummary) -> str:
    """The rows as a fixed-width text table (numbers right-aligned, as the course's slide:
    blank counts for layers without parameters), then the totals and the notes."""
    lines = [list(HEADERS)] + [_cells(row) for row in table.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = []
    for i, line in enumerate(lines):
        cells = [cell.rjust(w) if HEADERS[j] in NUMERIC or HEADERS[j] == "No" else cell.ljust(w)
                 for j, (cell, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    totals = [("Trainable parameters", table.trainable), ("Frozen parameters", table.frozen),
              ("Total learnable parameters", table.total)]
    label_w = max(len(name) for name, _ in totals) + 1
    num_w = max(len(f"{n:,}") for _, n in totals)
    out.append("")
    out += [f"{name + ':':<{label_w}} {n:>{num_w},}" for name, n in totals]
    out += [f"note: {note}" for note in table.notes]
    return "\n".join(out)


def format_summary(summary: SourceSummary) -> str:
    """The title line, a blank line, then :func:`format_table`."""
    return f"{summary.title}\n\n{format_table(summary.table)}"
