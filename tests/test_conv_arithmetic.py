"""Tests for vision_tasks.conv_arithmetic: the course's worked examples and parity with torch."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision_tasks import conv_arithmetic
from vision_tasks.conv_arithmetic import (
    ConvSpec,
    conv_output_size,
    conv_params,
    convolve2d,
    cross_correlate2d,
    linear_params,
    pool_output_size,
    resolve_padding,
)

# The course's 7x7 strided-convolution image; its top-left 6x6 is the edge-detection image.
COURSE_IMAGE_7 = np.array(
    [
        [3, 0, 1, 2, 7, 4, 2],
        [1, 5, 8, 9, 3, 1, 1],
        [2, 7, 2, 5, 1, 3, 5],
        [0, 1, 3, 1, 7, 8, 4],
        [4, 2, 1, 6, 2, 8, 3],
        [2, 4, 5, 2, 3, 9, 8],
        [2, 3, 6, 4, 2, 0, 1],
    ]
)
COURSE_KERNEL = np.array([[-1, 0, 1]] * 3)


@pytest.mark.parametrize(
    ("n", "f", "p", "s", "expected"),
    [
        (6, 3, 0, 1, 4),  # valid: n - f + 1
        (6, 3, 1, 1, 6),  # p=1 keeps 6x6
        (6, 3, 2, 1, 8),  # p=2 grows to 8x8
        (7, 3, 0, 2, 3),  # strided: floor(4/2) + 1
        (6, 3, 0, 2, 2),  # floor(3/2) + 1
        (32, 5, 0, 1, 28),  # LeNet-5 conv 1
        (14, 5, 0, 1, 10),  # LeNet-5 conv 2
    ],
)
def test_conv_output_size_matches_course_worked_examples(n, f, p, s, expected):
    assert conv_output_size(n, f, p, s) == expected
    assert ConvSpec(f=f, s=s, p=p).output_size(n) == expected


def test_lenet5_max_pools_halve_28_to_14_and_10_to_5():
    assert pool_output_size(28, 2) == 14
    assert pool_output_size(10, 2) == 5


@pytest.mark.parametrize("f", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_same_padding_keeps_size_for_odd_filters(f, d):
    for n in (1, 6, 17, 32):
        p = resolve_padding("same", f, d)
        if n + 2 * p >= d * (f - 1) + 1:
            assert conv_output_size(n, f, p, 1, d) == n


def test_valid_padding_is_zero_and_ints_pass_through():
    assert resolve_padding("valid", 5) == 0
    assert resolve_padding(2, 5) == 2


def test_same_padding_with_even_filter_raises_and_explains_odd_f():
    with pytest.raises(ValueError, match="odd"):
        resolve_padding("same", 4)


@pytest.mark.parametrize("bad", [-1, "full"])
def test_resolve_padding_rejects_negative_and_unknown_padding(bad):
    with pytest.raises(ValueError):
        resolve_padding(bad, 3)


def test_shrinking_below_one_pixel_raises_naming_f_p_s():
    with pytest.raises(ValueError, match=r"input 3 with f=5, p=0, s=1 gives an output of -1"):
        conv_output_size(3, 5)


@pytest.mark.parametrize(
    "kwargs", [{"f": 0}, {"f": 3, "s": 0}, {"f": 3, "d": 0}, {"f": 3, "p": -1}, {"f": 3, "n": 0}]
)
def test_conv_output_size_rejects_invalid_hyperparameters(kwargs):
    args = {"n": 6, **kwargs}
    with pytest.raises(ValueError):
        conv_output_size(**args)
    if "n" not in kwargs:
        with pytest.raises(ValueError):
            ConvSpec(**kwargs)


def _torch_shape(layer: nn.Module, n: int) -> int | None:
    try:
        return layer(torch.zeros(1, 1, n, n)).shape[-1]
    except RuntimeError:
        return None


def _ours(fn, *args, **kwargs) -> int | None:
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


def test_conv_output_size_matches_torch_conv2d_on_random_combinations():
    rng = random.Random(0)
    rejected = 0
    for _ in range(200):
        n, f, p = rng.randint(1, 20), rng.randint(1, 7), rng.randint(0, 3)
        s, d = rng.randint(1, 4), rng.randint(1, 3)
        expected = _torch_shape(nn.Conv2d(1, 1, f, stride=s, padding=p, dilation=d), n)
        rejected += expected is None
        # torch rejects exactly the combos whose output would be < 1: then we must raise.
        assert _ours(conv_output_size, n, f, p, s, d) == expected, (n, f, p, s, d)
    assert 0 < rejected < 200


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool_output_size_matches_torch_pooling_on_random_combinations(pool):
    rng = random.Random(1)
    rejected = 0
    for _ in range(200):
        n, f, s = rng.randint(1, 20), rng.randint(1, 6), rng.choice([None, 1, 2, 3])
        p, ceil_mode = rng.randint(0, 3), rng.random() < 0.5
        expected = _torch_shape(pool(f, stride=s, padding=p, ceil_mode=ceil_mode), n)
        rejected += expected is None
        got = _ours(pool_output_size, n, f, s, p, ceil_mode)
        assert got == expected, (pool.__name__, n, f, s, p, ceil_mode)
    assert 0 < rejected < 200


def test_pool_ceil_mode_drops_a_last_window_that_starts_in_right_padding():
    # 5 with f=2, s=2, p=1: ceil gives 4 windows, but the 4th starts at 6 >= n + p.
    assert pool_output_size(5, 2, 2, p=1, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2) == 2


@pytest.mark.parametrize(
    ("f", "c_in", "n_filters", "groups"),
    [(3, 3, 10, 1), (5, 3, 6, 1), (5, 6, 16, 1), (3, 8, 8, 8), (1, 12, 6, 3), (7, 4, 8, 2)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_params_equals_torch_conv2d_numel(f, c_in, n_filters, groups, bias):
    layer = nn.Conv2d(c_in, n_filters, f, groups=groups, bias=bias)
    weights, biases = conv_params(f, c_in, n_filters, bias=bias, groups=groups)
    assert weights == layer.weight.numel()
    assert biases == (layer.bias.numel() if bias else 0)
    assert weights + biases == sum(q.numel() for q in layer.parameters())


def test_conv_params_course_quiz_is_280_and_ignores_input_size():
    assert sum(conv_params(3, 3, 10)) == 280


def test_conv_params_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError, match="groups"):
        conv_params(3, 4, 6, groups=4)


@pytest.mark.parametrize(("n_in", "n_out"), [(400, 120), (120, 84), (84, 10), (1, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_params_equals_torch_linear_with_one_bias_per_unit(n_in, n_out, bias):
    layer = nn.Linear(n_in, n_out, bias=bias)
    assert sum(linear_params(n_in, n_out, bias)) == sum(q.numel() for q in layer.parameters())


def test_lenet5_on_32x32x3_has_62006_parameters_not_the_course_total_61795():
    total = (
        sum(conv_params(5, 3, 6))
        + sum(conv_params(5, 6, 16))
        + sum(linear_params(400, 120))
        + sum(linear_params(120, 84))
        + sum(linear_params(84, 10))
    )
    assert total == 62006


def test_cross_correlate2d_reproduces_course_vertical_edge_example():
    out = cross_correlate2d(COURSE_IMAGE_7[:6, :6], COURSE_KERNEL)
    # The course's slide prints 2 at [1, 2]; the windows give -8+3-2+1-3+7 = -2.
    expected = [[5, 4, 0, -8], [10, 2, -2, -3], [0, 2, 4, 7], [3, 2, 3, 16]]
    np.testing.assert_array_equal(out, expected)


def test_cross_correlate2d_reproduces_course_stride_2_example():
    out = cross_correlate2d(COURSE_IMAGE_7, COURSE_KERNEL, s=2)
    np.testing.assert_array_equal(out, [[5, 0, -3], [0, 4, 2], [4, -5, 5]])


def test_cross_correlate2d_equals_torch_conv2d_on_random_input():
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(4, 16, size=2)
        fh, fw = rng.integers(1, 5, size=2)
        p, s = int(rng.integers(0, 3)), int(rng.integers(1, 4))
        image, kernel = rng.standard_normal((h, w)), rng.standard_normal((fh, fw))
        expected = F.conv2d(
            torch.from_numpy(image)[None, None],
            torch.from_numpy(kernel)[None, None],
            padding=p,
            stride=s,
        )[0, 0].numpy()
        got = cross_correlate2d(image, kernel, p=p, s=s)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_convolve2d_equals_cross_correlation_with_kernel_flipped_in_both_axes():
    rng = np.random.default_rng(1)
    image, kernel = rng.standard_normal((9, 11)), rng.standard_normal((3, 4))
    for p, s in [(0, 1), (1, 2), (2, 3)]:
        np.testing.assert_allclose(
            convolve2d(image, kernel, p, s), cross_correlate2d(image, kernel[::-1, ::-1], p, s)
        )
    assert not np.allclose(convolve2d(image, kernel), cross_correlate2d(image, kernel))


def test_cross_correlate2d_rejects_non_2d_input_and_too_large_kernel():
    with pytest.raises(ValueError, match="2-D"):
        cross_correlate2d(np.zeros((1, 4, 4)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="f=5"):
        cross_correlate2d(np.zeros((3, 3)), np.ones((5, 5)))


def test_module_doctests_pass():
    result = doctest.testmod(conv_arithmetic)
    assert result.attempted > 0
    assert result.failed == 0
