"""The one model: normalisation -> shared backbone -> one or more named task heads.

A single-task config builds a :class:`VisionModel` with one head, named after its task; a
config with ``heads`` builds one head per section. Every command (train, val, export,
summary, compose) walks the heads the same way. Two facts depend on whether the config is
single-task (:attr:`Config.single_task <vision_tasks.config.Config.single_task>`), and both
live at the model's edges:

- output names: a single-task model's post-processing gives the contract's bare names
  (``boxes``), a multi-head model's ``<head>.<output>`` (``detect.boxes``);
- weight names: a single-task model's state dict names its head ``head.*`` (the checkpoint
  layout of every release), a multi-head model's ``heads.<name>.*``. A state dict of either
  layout loads into a one-head model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vision_tasks.config import Config
from vision_tasks.contract import head_output
from vision_tasks.models.backbones import Backbone, build_backbone
from vision_tasks.models.necks import PyramidNeck, share_necks
from vision_tasks.models.weights import apply_freeze, load_backbone_weights
from vision_tasks.task_api import Task, TaskHead, get_task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SINGLE_HEAD_PREFIX = "head."
"""Where a single-task model's head weights sit in its state dict (and checkpoints)."""


class Normalize(nn.Module):
    """[N, 3, H, W] float RGB in 0..255 -> (x / 255 - mean) / std, per channel."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class VisionModel(nn.Module):
    """``forward(images float [N, 3, H, W] RGB 0..255) -> {head: raw outputs}`` (every head on
    one batch), or ``forward({head: images}) -> {head: raw}`` (each head on its own batch, as
    a multi-head run trains); :meth:`postprocess` of that -> the contract's named outputs.

    ``tasks``: each head's task name. ``single_task``: the one head's outputs and weights
    keep the single-task names (see the module docstring).
    """

    def __init__(self, backbone: Backbone, heads: dict[str, TaskHead], tasks: dict[str, str],
                 single_task: bool = False) -> None:
        super().__init__()
        if single_task and len(heads) != 1:
            raise ValueError(f"a single-task model has one head, got {len(heads)}")
        if set(tasks) != set(heads):
            raise ValueError(f"tasks {sorted(tasks)} name other heads than {sorted(heads)}")
        self.normalize = Normalize()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.tasks = dict(tasks)
        self.single_task = single_task
        self.shared_necks: list[PyramidNeck] = []  # set by share_neck: forgotten after each pass
        if single_task:
            self.register_state_dict_post_hook(_single_task_keys)
            self.register_load_state_dict_pre_hook(_from_single_task_keys)

    @property
    def head(self) -> TaskHead:
        """The head of a one-head model."""
        if len(self.heads) != 1:
            raise AttributeError(f"this model has {len(self.heads)} heads ({', '.join(self.heads)}); "
                                 "pick one from .heads")
        return next(iter(self.heads.values()))

    def features(self, images: Tensor) -> list[Tensor]:
        return self.backbone(self.normalize(images))

    def forward(self, images: Tensor | dict[str, Tensor]) -> dict[str, Any]:
        if isinstance(images, dict):
            out = {name: self.heads[name](self.features(batch)) for name, batch in images.items()}
        else:
            features = self.features(images)
            out = {name: head(features) for name, head in self.heads.items()}
        for neck in self.shared_necks:
            neck.forget()
        return out

    def output_name(self, head: str, output: str) -> str:
        """The contract's name of output ``output`` of head ``head``."""
        return output if self.single_task else head_output(head, output)

    def postprocess(self, raw: dict[str, Any]) -> dict[str, Tensor]:
        """Each head's traceable post-processing (:meth:`TaskHead.postprocess`), under the
        contract's output names."""
        return {self.output_name(name, key): value for name, outputs in raw.items()
                for key, value in self.heads[name].postprocess(outputs).items()}

    def view(self, name: str) -> HeadView:
        """Head ``name`` alone, with its task's bare output names."""
        return HeadView(self, name)


class HeadView(nn.Module):
    """One head of a :class:`VisionModel` (shares its weights): ``forward(images) -> raw``,
    ``postprocess(raw) -> the task's outputs`` with bare names; what the evaluator and the
    parity check of one head run."""

    def __init__(self, model: VisionModel, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, images: Tensor) -> Any:
        return self.model.heads[self.name](self.model.features(images))

    def postprocess(self, raw: Any) -> dict[str, Tensor]:
        return self.model.heads[self.name].postprocess(raw)


def _single_task_keys(module: VisionModel, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State dict hook: ``heads.<name>.*`` -> ``head.*`` (in place, order kept)."""
    inner = f"{prefix}heads.{next(iter(module.heads))}."
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + SINGLE_HEAD_PREFIX + key[len(inner):]] = state.pop(key)


def _from_single_task_keys(module: VisionModel, state: dict[str, Any], prefix: str,
                           *_: Any) -> None:
    """Load pre-hook: a ``head.*`` state dict (every single-task checkpoint) into ``heads``."""
    inner = f"{prefix}heads.{next(iter(module.heads))}."
    outer = prefix + SINGLE_HEAD_PREFIX
    for key in [k for k in state if k.startswith(outer)]:
        state[inner + key[len(outer):]] = state.pop(key)


def build_shared_backbone(cfg: Config, load_pretrained: bool = True) -> Backbone:
    """``model.backbone`` for ``data.image_size`` inputs, with its starting weights (unless
    ``load_pretrained`` is off: a checkpoint's weights come next) and its frozen stages."""
    bcfg = cfg.model.backbone
    backbone = build_backbone(bcfg, cfg.data.image_size)
    if load_pretrained and bcfg.pretrained:
        load_backbone_weights(backbone, bcfg.pretrained, bcfg.name)
    apply_freeze(backbone, bcfg.freeze)
    return backbone


def build_vision_model(cfg: Config, num_classes: dict[str, int], load_pretrained: bool = True
                       ) -> VisionModel:
    """The shared backbone (its starting weights and freezing as ``model.backbone`` says) and
    every head of the config (:meth:`Config.head_configs`) with ``num_classes[name]`` classes."""
    backbone = build_shared_backbone(cfg, load_pretrained)
    size = cfg.data.image_size
    shapes = backbone.feature_shapes(size, size)
    heads = {name: get_task(head_cfg.task).build_head(head_cfg, backbone.feature_info,
                                                      num_classes[name], shapes)
             for name, head_cfg in cfg.head_configs().items()}
    tasks = {name: head_cfg.task for name, head_cfg in cfg.head_configs().items()}
    shared = share_necks(heads) if cfg.model.share_neck else []
    model = VisionModel(backbone, heads, tasks, single_task=cfg.single_task)
    model.shared_necks = shared
    return model


def build_model(cfg: Config, task: Task, num_classes: int, load_pretrained: bool = True) -> VisionModel:
    """The model of a single-task config (``task`` is its task): :func:`build_vision_model`
    with its one head's class count."""
    if not cfg.single_task or cfg.task != task.name:
        raise ValueError(f"build_model takes a single-task config of {task.name}; use build_vision_model")
    return build_vision_model(cfg, {cfg.task: num_classes}, load_pretrained)
