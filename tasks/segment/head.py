"""The mask branch: prototype masks shared by an image, coefficients per point.

Instance masks from a single-stage detector, the prototype way (YOLACT, Bolya et al., 2019):

- a small *prototype net* turns the finest neck map (stride 8) into ``P`` full-image mask
  bases at stride 4 (``[N, P, H/4, W/4]``): a 3x3 conv block, a 2x nearest upsampling, a
  3x3 conv block and a 1x1 conv (a third 3x3 block at stride 4 cost 18 % of the whole
  model's multiply-adds at 128 px for little mask quality, so there is none);
- next to the class and box branches, every point of every level predicts ``P``
  coefficients (one more decoupled branch per level);
- an object's mask is ``sigmoid(coefficients . prototypes)``, cropped to its box.

So masks cost one small matrix product per kept detection, which the exported graph does
itself (:mod:`.postprocess`); nothing here depends on the batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vision_tasks.contract import MASK_STRIDE
from vision_tasks.errors import ConfigError
from vision_tasks.models.layers import ConvBlock
from vision_tasks.models.necks import PyramidNeck
from vision_tasks.task_api import TaskHead

from ..detect.head import DenseDetectHead, _Branch
from ..detect.postprocess import PostprocessSettings, detections_fixed_k
from .postprocess import assemble_masks


class PrototypeNet(nn.Sequential):
    """``[N, c_in, H/s, W/s] -> [N, num_protos, H/4, W/4]`` mask bases (linear output), from
    the finest neck map (stride ``s`` = ``4 * scale``; 8 with the default backbones)."""

    def __init__(self, c_in: int, hidden: int, num_protos: int, act: str, scale: int = 2) -> None:
        super().__init__(
            ConvBlock(c_in, hidden, 3, p=1, act=act),
            nn.Upsample(scale_factor=float(scale), mode="nearest") if scale > 1 else nn.Identity(),
            ConvBlock(hidden, hidden, 3, p=1, act=act),
            nn.Conv2d(hidden, num_protos, 1),
        )


class Segmenter(TaskHead):
    """The task's head as the core sees it: neck + dense detection head + mask branch.

    ``forward(features: list[Tensor]) -> dict``: the dense head's outputs (``cls``,
    ``dist``, ``boxes``, ``points``, ``point_strides``), plus

    - ``coef``: float ``[N, A, P]`` mask coefficients per point;
    - ``protos``: float ``[N, P, Hm, Wm]`` prototype masks at the contract's mask stride
      (:data:`~vision_tasks.contract.MASK_STRIDE`, also :attr:`mask_stride`).

    :meth:`postprocess` applies the detector's settings, then assembles the kept masks.
    """

    def __init__(self, neck: PyramidNeck, head: DenseDetectHead, settings: PostprocessSettings,
                 strides: list[int], channels: int, num_protos: int, proto_channels: int,
                 coef_hidden: int, depth: int, act: str) -> None:
        super().__init__()
        self.neck, self.head, self.settings = neck, head, settings
        if strides[0] % MASK_STRIDE:
            raise ConfigError(f"model.backbone: the finest map segment uses has stride {strides[0]}; "
                              f"masks are made at stride {MASK_STRIDE} from a map whose stride is "
                              f"a multiple of it (8 with the default backbones): add stages or "
                              "choose another backbone")
        self.mask_stride = MASK_STRIDE
        self.protonet = PrototypeNet(channels, proto_channels, num_protos, act,
                                     strides[0] // MASK_STRIDE)
        self.coef_branches = nn.ModuleList(_Branch(channels, coef_hidden, num_protos, depth, act)
                                           for _ in strides)

    def forward(self, features: list[Tensor]) -> dict:
        maps = self.neck(features)
        out = self.head(maps)
        coef = [branch(x).flatten(2) for x, branch in zip(maps, self.coef_branches, strict=True)]
        out["coef"] = torch.cat(coef, dim=2).transpose(1, 2)  # [N, A, P]
        out["protos"] = self.protonet(maps[0])
        return out

    def postprocess(self, raw: dict) -> dict[str, Tensor]:
        """Raw outputs -> the detect outputs plus ``masks`` float32 [N, K, Hm, Wm] (mask
        probabilities in the input frame, zero outside each box and for empty rows)."""
        out = detections_fixed_k(raw["boxes"], raw["cls"].sigmoid(), self.head.bounds,
                                 self.settings, with_index=True)
        index = out.pop("point_index")
        out["masks"] = assemble_masks(raw["coef"], raw["protos"], index, out["boxes"],
                                      self.mask_stride)
        return out
