"""The course's building blocks: activations (incl. maxout) and conv blocks."""

from __future__ import annotations

from torch import Tensor, nn

from vision_tasks.errors import ConfigError
from vision_tasks.plugins import unknown_name_message

ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "maxout", "silu", "identity")
"""Activation names a config may use (``make_activation`` builds each)."""


class Maxout(nn.Module):
    """max(w1.x + b1, ..., wk.x + bk): the max over ``pieces`` groups of channels.

    Input [N, C * pieces, ...] -> output [N, C, ...]; channel ``c`` of the output is
    the max over input channels ``c * pieces ... c * pieces + pieces - 1``.
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        return x.reshape(n, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


_ACTIVATION_MODULES = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "maxout": lambda: Maxout(2),
    "silu": lambda: nn.SiLU(inplace=True),
    "identity": nn.Identity,
}


def check_activation(name: str, key: str) -> None:
    """Raise a one-line :class:`ConfigError` naming the config ``key`` when ``name`` is not
    an activation of :data:`ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"{key}: {unknown_name_message('activation', name, list(ACTIVATIONS))}")


def make_activation(name: str) -> nn.Module:
    """An activation module by name. ``maxout`` is handled by the layer before it
    (it must produce ``pieces`` times the channels); here it is the max itself."""
    check_activation(name, "activation")
    return _ACTIVATION_MODULES[name]()


def activation_width(name: str) -> int:
    """How many channels the layer before an activation must produce per output channel."""
    return 2 if name == "maxout" else 1


class ConvBlock(nn.Sequential):
    """Conv(f, p, s) -> [BatchNorm] -> activation; [N, c_in, H, W] -> [N, filters, H', W']."""

    def __init__(self, c_in: int, filters: int, f: int, s: int = 1, p: int = 0,
                 act: str = "relu", batch_norm: bool = True) -> None:
        width = filters * activation_width(act)
        layers: list[nn.Module] = [nn.Conv2d(c_in, width, f, s, p, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(make_activation(act))
        super().__init__(*layers)
