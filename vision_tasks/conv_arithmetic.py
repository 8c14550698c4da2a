"""Convolution arithmetic: output sizes, padding, parameter counts and 2-D reference filters.

Every formula of the course's convolution chapter, in plain numpy, so layer shapes can be
checked before any tensor exists. Sizes follow PyTorch (``nn.Conv2d``, ``nn.MaxPool2d``,
``nn.AvgPool2d``); with dilation d = 1 the output size is the course's
``floor((n + 2p - f) / s) + 1``.

Convolution vs cross-correlation: true convolution flips the kernel in both axes (a 180°
turn) before it slides, multiplies and sums; cross-correlation slides, multiplies and sums
without the flip. Deep-learning "convolution" layers compute cross-correlation; since their
kernels are learned, a network would simply learn the flipped kernel, so the name stuck.
The course's vertical-edge example, with a bright left half:

>>> import numpy as np
>>> image = np.array([[10, 10, 10, 0, 0, 0]] * 6)
>>> kernel = np.array([[1, 0, -1]] * 3)
>>> cross_correlate2d(image, kernel)
array([[ 0, 30, 30,  0],
       [ 0, 30, 30,  0],
       [ 0, 30, 30,  0],
       [ 0, 30, 30,  0]])

True convolution turns this kernel into ``[[-1, 0, 1]] * 3``, so the edge changes sign:

>>> convolve2d(image, kernel)
array([[  0, -30, -30,   0],
       [  0, -30, -30,   0],
       [  0, -30, -30,   0],
       [  0, -30, -30,   0]])

The two agree exactly when the kernel equals its own 180° turn, ``k == k[::-1, ::-1]``
(e.g. a Laplacian or a Gaussian blur); the edge kernel is not, its turn is its negative:

>>> laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
>>> bool(np.array_equal(convolve2d(image, laplacian), cross_correlate2d(image, laplacian)))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "ConvSpec",
    "conv_output_size",
    "conv_params",
    "convolve2d",
    "cross_correlate2d",
    "linear_params",
    "pool_output_size",
    "resolve_padding",
]


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1, d: int = 1) -> int:
    """Output size along one axis of a convolution (as ``torch.nn.Conv2d``).

    ``floor((n + 2p - d*(f-1) - 1) / s) + 1``; for d = 1 this is the course's
    ``floor((n + 2p - f) / s) + 1``, e.g. 6 with f=3 -> 4, 7 with f=3, s=2 -> 3.

    Args:
        n: input size in pixels (height or width).
        f: filter (kernel) size. p: zero padding on each side. s: stride. d: dilation.

    Raises:
        ValueError: if n, f, s or d < 1, p < 0, or the filter does not fit in the padded
            input (output below 1 pixel).
    """
    for name, value in (("n", n), ("f", f), ("s", s), ("d", d)):
        _check_at_least(name, value, 1)
    _check_at_least("p", p, 0)
    out = (n + 2 * p - d * (f - 1) - 1) // s + 1
    if out < 1:
        dil = f", d={d}" if d != 1 else ""
        raise ValueError(
            f"input {n} with f={f}, p={p}, s={s}{dil} gives an output of {out} pixels; "
            f"the filter spans {d * (f - 1) + 1} pixels but the padded input has only "
            f"{n + 2 * p}: use a smaller filter, more padding or a larger input"
        )
    return out


def pool_output_size(
    n: int, f: int, s: int | None = None, p: int = 0, ceil_mode: bool = False
) -> int:
    """Output size along one axis of max or average pooling (as ``nn.MaxPool2d``/``AvgPool2d``).

    The stride ``s`` defaults to ``f`` (non-overlapping windows, as in the course). With
    ``ceil_mode`` the size is rounded up, but a last window that would start in the right
    padding (past ``n + p``) is dropped, as PyTorch does.

    Raises:
        ValueError: if n, f or s < 1, p < 0, p > f // 2 (PyTorch's limit: padding at most
            half the window), or the output would be below 1 pixel.
    """
    s = f if s is None else s
    for name, value in (("n", n), ("f", f), ("s", s)):
        _check_at_least(name, value, 1)
    _check_at_least("p", p, 0)
    if p > f // 2:
        raise ValueError(f"pooling padding p={p} must be at most half the window f={f}")
    out = (n + 2 * p - f + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    if out < 1:
        raise ValueError(
            f"input {n} with pooling f={f}, p={p}, s={s} gives an output of {out} pixels; "
            "use a smaller window or a larger input"
        )
    return out


def resolve_padding(p: int | str, f: int, d: int = 1) -> int:
    """Padding in pixels per side for an int or the course's names ``'valid'``/``'same'``.

    ``'valid'`` is no padding (output ``n - f + 1``). ``'same'`` keeps the size at stride 1:
    ``n = n + 2p - f + 1`` gives ``p = (f - 1) / 2`` (times d with dilation).

    Raises:
        ValueError: for a negative int, an unknown name, or ``'same'`` with an even f.
    """
    if isinstance(p, str):
        name = p.strip().lower()
        if name == "valid":
            return 0
        if name == "same":
            _check_at_least("f", f, 1)
            _check_at_least("d", d, 1)
            if f % 2 == 0:
                raise ValueError(
                    f"'same' padding needs an odd filter size, got f={f}: it must pad "
                    f"(f-1)/2 = {(f - 1) / 2} pixels per side, which is only a whole, "
                    "symmetric number of pixels when f is odd; use an odd f or an int padding"
                )
            return (f - 1) // 2 * d
        raise ValueError(f"padding must be an int, 'valid' or 'same', got {p!r}")
    _check_at_least("p", p, 0)
    return p


def conv_params(
    f: int, c_in: int, n_filters: int, bias: bool = True, groups: int = 1
) -> tuple[int, int]:
    """Learnable parameters of a 2-D convolution layer as ``(weights, biases)``.

    Each filter is ``f x f x (c_in / groups)`` and has one bias, so the course's quiz
    (10 filters of 3x3x3) has 270 weights + 10 biases = 280; the input's height and width
    do not matter. Pooling layers have no parameters.

    Raises:
        ValueError: if a size is < 1 or groups does not divide both c_in and n_filters.
    """
    for name, value in (("f", f), ("c_in", c_in), ("n_filters", n_filters), ("groups", groups)):
        _check_at_least(name, value, 1)
    if c_in % groups or n_filters % groups:
        raise ValueError(f"groups={groups} must divide both c_in={c_in} and n_filters={n_filters}")
    return f * f * (c_in // groups) * n_filters, n_filters if bias else 0


def linear_params(n_in: int, n_out: int, bias: bool = True) -> tuple[int, int]:
    """Learnable parameters of a fully connected layer as ``(weights, biases)``.

    One bias per output unit. The course's LeNet-5 table gives each FC layer a single bias
    (48001, 10081, 841), which is wrong: with 120, 84 and 10 biases LeNet-5 on 32x32x3
    has 62,006 learnable parameters, not 61,795.

    Raises:
        ValueError: if n_in or n_out < 1.
    """
    _check_at_least("n_in", n_in, 1)
    _check_at_least("n_out", n_out, 1)
    return n_in * n_out, n_out if bias else 0


def cross_correlate2d(image: np.ndarray, kernel: np.ndarray, p: int = 0, s: int = 1) -> np.ndarray:
    """Slide ``kernel`` over ``image``, multiply and sum: what CNN "conv" layers compute.

    Args:
        image: array [H, W]. kernel: array [fh, fw] (not flipped).
        p: zero padding on each side. s: stride.

    Returns:
        array [Ho, Wo] with ``Ho = conv_output_size(H, fh, p, s)`` (likewise Wo), of the
        common dtype of image and kernel.
    """
    image, kernel = np.asarray(image), np.asarray(kernel)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(
            f"expected a 2-D image and kernel, got shapes {image.shape} and {kernel.shape}"
        )
    ho = conv_output_size(image.shape[0], kernel.shape[0], p, s)
    wo = conv_output_size(image.shape[1], kernel.shape[1], p, s)
    padded = np.pad(image, p) if p else image
    windows = sliding_window_view(padded, kernel.shape)[::s, ::s][:ho, :wo]
    return np.einsum("ijkl,kl->ij", windows, kernel)


def convolve2d(image: np.ndarray, kernel: np.ndarray, p: int = 0, s: int = 1) -> np.ndarray:
    """True 2-D convolution: flip ``kernel`` in both axes, then cross-correlate.

    Same arguments, shapes and dtype as :func:`cross_correlate2d`.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"expected a 2-D kernel, got shape {kernel.shape}")
    return cross_correlate2d(image, kernel[::-1, ::-1], p, s)


@dataclass(frozen=True)
class ConvSpec:
    """Hyperparameters of one convolution along an axis: filter f, stride s, padding p,
    dilation d. ``ConvSpec(f=3, p=1).output_size(6) == 6``."""

    f: int
    s: int = 1
    p: int = 0
    d: int = 1

    def __post_init__(self) -> None:
        for name in ("f", "s", "d"):
            _check_at_least(name, getattr(self, name), 1)
        _check_at_least("p", self.p, 0)

    @property
    def receptive_span(self) -> int:
        """Pixels of input one output pixel sees: ``d * (f - 1) + 1``."""
        return self.d * (self.f - 1) + 1

    def output_size(self, n: int) -> int:
        """Output size for an input of n pixels (see :func:`conv_output_size`)."""
        return conv_output_size(n, self.f, self.p, self.s, self.d)
