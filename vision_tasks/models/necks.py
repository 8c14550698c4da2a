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


def share_necks(heads: dict[str, nn.Module]) -> list[PyramidNeck]:
    """Give heads whose necks are alike (same input stages, width, kind and activation) the
    first one's neck (``model.share_neck``): a detect and a segment head then run one neck.
    Returns the shared necks; raises ``ConfigError`` when no two heads have alike necks."""
    first: dict[tuple, PyramidNeck] = {}
    shared: list[PyramidNeck] = []
    for head in heads.values():
        neck = getattr(head, "neck", None)
        if not isinstance(neck, PyramidNeck):
            continue
        if neck.signature in first:
            head.neck = first[neck.signature]
            if not head.neck.shared:
                head.neck.shared = True
                shared.append(head.neck)
        else:
            first[neck.signature] = neck
    if not shared:
        raise ConfigError("model.share_neck: no two heads have alike necks (the same "
                          "head.neck, head.channels and head.activation on the same backbone); "
                          "set them alike or drop share_neck")
    return shared


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
        self.signature = (tuple(in_channels), channels, kind, act)  # what makes two necks alike
        self.shared = False  # one neck of several heads: computed once per forward pass
        self._memo: tuple[list[Tensor], list[Tensor]] | None = None
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
        if self.shared and self._memo is not None and self._memo[0] is features:
            return self._memo[1]  # another head of this forward pass asked first
        maps = self._maps(features)
        if self.shared:
            self._memo = (features, maps)
        return maps

    def forget(self) -> None:
        """Drop the maps a shared neck kept for the other heads of one forward pass."""
        self._memo = None

    def _maps(self, features: list[Tensor]) -> list[Tensor]:
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
