"""Backbones: feature extractors that return one feature map per stage.

Every backbone exposes ``feature_info`` (channels and stride of each stage's map) and
``feature_shapes(h, w)`` (the exact [C, H, W] of each map for an input size), so any
head fits any backbone. ``forward(x: Tensor[N, 3, H, W]) -> list[Tensor[N, C_i, H_i, W_i]]``.

Names (entry points of the group ``vision_tasks.backbones``, so another distribution can
add one): ``lenet5``, ``simple_cnn`` (built from the course's parts, checked with the conv
arithmetic before building) and the torchvision families. A builder is
``builder(cfg: BackboneConfig, image_size: int) -> Backbone``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models as tv

from vision_tasks import plugins
from vision_tasks.config import BackboneConfig
from vision_tasks.conv_arithmetic import conv_output_size, pool_output_size, resolve_padding
from vision_tasks.errors import ConfigError
from vision_tasks.models.layers import ConvBlock, check_activation


@dataclass(frozen=True)
class FeatureInfo:
    """A stage's output: ``channels`` and ``stride`` (input pixels per feature pixel)."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """A sequence of stages; ``forward`` returns every stage's output, first to last."""

    def __init__(self, stages: list[nn.Module], feature_info: list[FeatureInfo]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.feature_info = feature_info
        self.frozen_stages = 0

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def feature_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """[C, H, W] of each stage's output for an input of ``height`` x ``width``."""
        sizes = self._spatial_sizes(height, width)
        return [(info.channels, h, w) for info, (h, w) in zip(self.feature_info, sizes, strict=True)]

    def _spatial_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        # Stride-2 stages with "same"-style padding halve sizes rounding up.
        sizes, prev = [], 1
        for info in self.feature_info:
            for _ in range(int(math.log2(info.stride // prev))):
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            prev = info.stride
            sizes.append((height, width))
        return sizes

    def freeze(self, stages: int) -> None:
        """Stop training the first ``stages`` stages (weights and BatchNorm statistics)."""
        self.frozen_stages = min(stages, len(self.stages))
        for i, stage in enumerate(self.stages):
            for p in stage.parameters():
                p.requires_grad_(i >= self.frozen_stages)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for stage in list(self.stages)[: self.frozen_stages]:
            stage.eval()
        return self

    def torchvision_key(self, key: str) -> str | None:
        """The torchvision state-dict key of one of this backbone's keys (or None)."""
        return None


# --------------------------------------------------------------- course CNNs


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a from-scratch CNN, as written in a config."""

    type: str  # "conv" or "pool"
    filters: int = 0
    f: int = 3
    s: int = 1
    p: int | str = 0
    act: str = "relu"
    kind: str = "max"  # pool only
    batch_norm: bool = True

    def output_size(self, n: int) -> int:
        if self.type == "conv":
            return conv_output_size(n, self.f, resolve_padding(self.p, self.f), self.s)
        return pool_output_size(n, self.f, self.s, resolve_padding(self.p, self.f))

    def build(self, c_in: int) -> tuple[nn.Module, int]:
        if self.type == "conv":
            block = ConvBlock(c_in, self.filters, self.f, self.s, resolve_padding(self.p, self.f),
                              self.act, self.batch_norm)
            return block, self.filters
        pool = nn.MaxPool2d if self.kind == "max" else nn.AvgPool2d
        return pool(self.f, self.s, resolve_padding(self.p, self.f)), c_in


_LAYER_KEYS = {"conv": {"type", "filters", "f", "s", "p", "act", "batch_norm"},
               "pool": {"type", "kind", "f", "s", "p"}}


def parse_layer(raw: dict[str, Any], where: str, cfg: BackboneConfig) -> LayerSpec:
    """Validate one layer dict of ``model.backbone.stages``."""
    kind = raw.get("type")
    if kind not in _LAYER_KEYS:
        raise ConfigError(f"{where}.type: expected 'conv' or 'pool', got {kind!r}")
    unknown = set(raw) - _LAYER_KEYS[kind]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} for a {kind} layer; "
                          f"valid: {sorted(_LAYER_KEYS[kind])}")
    for key in ("filters", "f", "s"):
        if key in raw and (not isinstance(raw[key], int) or raw[key] < 1):
            raise ConfigError(f"{where}.{key}: expected a positive integer, got {raw[key]!r}")
    if kind == "conv":
        if "filters" not in raw:
            raise ConfigError(f"{where}.filters: a conv layer needs its number of filters")
        act = raw.get("act", cfg.activation)
        check_activation(act, f"{where}.act" if "act" in raw else "model.backbone.activation")
        bn = raw.get("batch_norm", cfg.batch_norm)
        return LayerSpec("conv", raw["filters"], raw.get("f", 3), raw.get("s", 1),
                         raw.get("p", "same"), act, batch_norm=bool(bn))
    pool_kind = raw.get("kind", cfg.pool)
    if pool_kind not in ("max", "avg"):
        raise ConfigError(f"{where}.kind: expected 'max' or 'avg', got {pool_kind!r}")
    f = raw.get("f", 2)
    return LayerSpec("pool", f=f, s=raw.get("s", f), p=raw.get("p", 0), kind=pool_kind)


class CourseCNN(Backbone):
    """A CNN built from conv/pool layer specs, one stage per list of layers."""

    def __init__(self, stage_specs: list[list[LayerSpec]], image_size: int, where: str) -> None:
        self.stage_specs = stage_specs
        self._check_fits(image_size, where)
        stages, info, c_in, stride = [], [], 3, 1
        for specs in stage_specs:
            layers = []
            for spec in specs:
                module, c_in = spec.build(c_in)
                layers.append(module)
                stride *= spec.s
            stages.append(nn.Sequential(*layers))
            info.append(FeatureInfo(c_in, stride))
        super().__init__(stages, info)

    def _check_fits(self, image_size: int, where: str) -> None:
        n = image_size
        for i, specs in enumerate(self.stage_specs):
            for j, spec in enumerate(specs):
                try:
                    n = spec.output_size(n)
                except ValueError as err:
                    raise ConfigError(
                        f"{where}[{i}][{j}] ({spec.type} f={spec.f} s={spec.s} p={spec.p}) does not "
                        f"fit data.image_size={image_size}: {err}") from None

    def _spatial_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        sizes = []
        for specs in self.stage_specs:
            for spec in specs:
                height, width = spec.output_size(height), spec.output_size(width)
            sizes.append((height, width))
        return sizes


def lenet5(cfg: BackboneConfig, image_size: int) -> Backbone:
    """LeNet-5's feature extractor: conv 6@5x5 valid, act, pool 2; conv 16@5x5, act, pool 2."""
    bn = bool(cfg.batch_norm) if cfg.batch_norm is not None else False
    conv = dict(type="conv", f=5, s=1, p=0, batch_norm=bn)
    raw = [[dict(conv, filters=6), dict(type="pool", f=2)],
           [dict(conv, filters=16), dict(type="pool", f=2)]]
    specs = [[parse_layer(layer, "model.backbone(lenet5)", cfg) for layer in stage] for stage in raw]
    return CourseCNN(specs, image_size, "lenet5 layer")


def simple_cnn(cfg: BackboneConfig, image_size: int) -> Backbone:
    """VGG-style stages: ``depths[i]`` 3x3 'same' convs with ``width * 2**i`` filters
    (capped at 8 x width), then a 2x2 pool. Or exactly ``stages`` when given."""
    bn = cfg.batch_norm if cfg.batch_norm is not None else True
    raw = cfg.stages
    if raw is None:
        raw = []
        for i, depth in enumerate(cfg.depths):
            filters = cfg.width * 2 ** min(i, 3)
            convs = [dict(type="conv", filters=filters, f=3, p="same", batch_norm=bn)] * depth
            raw.append([*convs, dict(type="pool", f=2)])
    if not raw or any(not stage for stage in raw):
        raise ConfigError("model.backbone.stages: expected a non-empty list of non-empty stages")
    specs = [[parse_layer(layer, f"model.backbone.stages[{i}][{j}]", cfg)
              for j, layer in enumerate(stage)] for i, stage in enumerate(raw)]
    return CourseCNN(specs, image_size, "model.backbone.stages")


# --------------------------------------------------------------- torchvision


class TorchvisionBackbone(Backbone):
    """Stages cut from a torchvision classifier; keys map back to torchvision's names."""

    def __init__(self, named_stages: list[list[tuple[str, nn.Module]]], strides: list[int]) -> None:
        # Module names cannot hold dots: "features.5" is stored as "features_5".
        self_names = {name.replace(".", "_"): name for children in named_stages for name, _ in children}
        stages = [nn.Sequential(OrderedDict((n.replace(".", "_"), m) for n, m in children))
                  for children in named_stages]
        with torch.no_grad():
            x, channels = torch.zeros(1, 3, 64, 64), []
            for stage in stages:
                x = stage.eval()(x)
                channels.append(x.shape[1])
        super().__init__(stages, [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)])
        self._tv_names = self_names

    def torchvision_key(self, key: str) -> str | None:
        # "stages.2.features_5.block.0.weight" -> "features.5.block.0.weight"
        parts = key.split(".")
        if len(parts) < 4 or parts[0] != "stages" or parts[2] not in self._tv_names:
            return None
        return ".".join([self._tv_names[parts[2]], *parts[3:]])


def _torchvision_net(name: str) -> nn.Module:
    return getattr(tv, name)(weights=None)


def _resnet(name: str) -> Callable[[BackboneConfig, int], Backbone]:
    def build(cfg: BackboneConfig, image_size: int) -> Backbone:
        net = _torchvision_net(name)
        stem = [("conv1", net.conv1), ("bn1", net.bn1), ("relu", net.relu), ("maxpool", net.maxpool)]
        stages = [stem] + [[(name, getattr(net, name))] for name in ("layer1", "layer2", "layer3", "layer4")]
        return TorchvisionBackbone(stages, [4, 4, 8, 16, 32])

    return build


def _block_stride(block: nn.Module) -> int:
    return max((m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d)), default=1)


def _features_net(name: str) -> Callable[[BackboneConfig, int], Backbone]:
    """MobileNet/EfficientNet: ``features`` is a list of blocks; a stride-2 block starts a stage."""

    def build(cfg: BackboneConfig, image_size: int) -> Backbone:
        net = _torchvision_net(name)
        stages: list[list[tuple[str, nn.Module]]] = []
        strides: list[int] = []
        stride = 1
        for i, block in enumerate(net.features):
            s = _block_stride(block)
            if s > 1 or not stages:
                stride *= s
                stages.append([])
                strides.append(stride)
            stages[-1].append((f"features.{i}", block))
        return TorchvisionBackbone(stages, strides)

    return build


# The torchvision families (their builders import torchvision only when called).
resnet18, resnet34, resnet50, resnet101 = (
    _resnet(name) for name in ("resnet18", "resnet34", "resnet50", "resnet101"))
mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, efficientnet_b1 = (
    _features_net(name) for name in ("mobilenet_v3_small", "mobilenet_v3_large",
                                     "efficientnet_b0", "efficientnet_b1"))


def backbone_names() -> list[str]:
    """Every installed backbone (the ``vision_tasks.backbones`` entry points)."""
    return plugins.names(plugins.BACKBONES)


def build_backbone(cfg: BackboneConfig, image_size: int) -> Backbone:
    """The backbone ``cfg.name``, shape-checked for ``image_size`` inputs."""
    try:
        builder = plugins.load(plugins.BACKBONES, cfg.name, "backbone")
    except KeyError as err:
        raise ConfigError(f"model.backbone.name: {err.args[0]}") from None
    return builder(cfg, image_size)
