"""Exponential moving average of a model's weights, evaluated instead of the raw model."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after every optimizer step.

    The decay ramps up as ``decay * (1 - exp(-updates / tau))`` so that early, random
    weights are forgotten fast; ``tau`` is a tenth of the run (at most 2000 steps). On
    short runs the decay is capped so the average spans at most ~5 % of the run: an
    average over most of a short run would mix in its early, poor weights (and no longer
    match the BatchNorm statistics, which are copied, not averaged).
    """

    def __init__(self, model: nn.Module, decay: float, total_steps: int) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = min(decay, max(0.0, 1 - 20 / max(total_steps, 1)))
        self.tau = max(1.0, min(2000.0, total_steps / 10))
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average the trained parameters; copy the frozen ones (an average of a constant
        drifts by rounding, and frozen means as loaded, bit for bit) and the buffers. Both
        modules list them in the same order."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        for target, value in zip(self.module.parameters(), model.parameters(), strict=True):
            if value.requires_grad:
                target.mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                target.copy_(value)
        for target, value in zip(self.module.buffers(), model.buffers(), strict=True):
            target.copy_(value)
