"""The course's building blocks: activations (incl. maxout) and conv blocks."""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "maxout", "silu", "identity")


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


def make_activation(name: str) -> nn.Module:
    """An activation module by name. ``maxout`` is handled by the layer before it
    (it must produce ``pieces`` times the channels); here it is the max itself."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    if name == "elu":
        return nn.ELU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "maxout":
        return Maxout(2)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation '{name}': choose one of {', '.join(ACTIVATIONS)}")


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
