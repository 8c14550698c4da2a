"""Necks: mix a backbone's last stages into same-width maps for dense heads.

A neck takes the backbone's feature list and returns ``len(in_channels)`` maps of
``channels`` channels each, at the strides of the stages it was given (finest first).
``fpn`` is top-down only (Lin et al., 2017); ``pan`` adds a bottom-up path after it
(Liu et al., 2018), so fine maps also see context and coarse maps see detail. Both are
plain convolutions, nearest upsampling and additions: they export to ONNX as-is.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vision_tasks.errors import ConfigError
from vision_tasks.models.layers import ConvBlock

NeckKind = Literal["fpn", "pan"]


class PyramidNeck(nn.Module):
    """FPN (``kind="fpn"``) or PAN (``kind="pan"``) over the last ``len(in_channels)`` maps.

    ``forward(features: list[Tensor[N, C_i, H_i, W_i]]) -> list[Tensor[N, channels, H_i, W_i]]``
    for the last ``len(in_channels)`` entries of ``features`` (strides doubling from one to
    the next, finest first). Sizes need not be exact halves: upsampling goes to the size of
    the finer map and downsampling is a stride-2 'same' conv, cropped when odd sizes differ.
    """

    def __init__(self, in_channels: list[int], channels: int, kind: NeckKind = "pan",
                 act: str = "silu") -> None:
        super().__init__()
        if kind not in ("fpn", "pan"):
            raise ConfigError(f"model.head.neck: expected 'fpn' or 'pan', got {kind!r}")
        self.kind = kind
        self.levels = len(in_channels)
        self.lateral = nn.ModuleList(ConvBlock(c, channels, 1, act=act) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBlock(channels, channels, 3, p=1, act=act)
                                    for _ in in_channels)
        if kind == "pan":
            self.down = nn.ModuleList(ConvBlock(channels, channels, 3, s=2, p=1, act=act)
                                      for _ in in_channels[1:])
            self.fuse = nn.ModuleList(ConvBlock(channels, channels, 3, p=1, act=act)
                                      for _ in in_channels[1:])

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        inputs = features[-self.levels:]
        lat = [layer(x) for layer, x in zip(self.lateral, inputs, strict=True)]
        # Top-down: coarse context added into every finer map.
        outs = [lat[-1]]
        for x in reversed(lat[:-1]):
            up = F.interpolate(outs[0], size=x.shape[-2:], mode="nearest")
            outs.insert(0, x + up)
        outs = [conv(x) for conv, x in zip(self.smooth, outs, strict=True)]
        if self.kind == "fpn":
            return outs
        # Bottom-up: fine detail carried back into every coarser map.
        pan = [outs[0]]
        for i in range(1, self.levels):
            down = self.down[i - 1](pan[-1])[..., : outs[i].shape[-2], : outs[i].shape[-1]]
            pan.append(self.fuse[i - 1](outs[i] + down))
        return pan
