"""Built layers (the second call onward runs the backend's built operators, in its own layout:
NHWC on TensorFlow and JAX) against the NumPy reference, with the padding cases that lowering
treats specially: pads equal to "SAME" at stride 1, uneven pads, strides, -inf padding on
negative inputs, count_include_pad=False, and flatten's C-H-W order behind NHWC activations.
Written against the public API, so it runs on every backend."""

import math

import numpy as np
import pytest

from conftest import assert_close
from d2lconv import reference

X = np.random.default_rng(3).standard_normal((2, 3, 9, 8)).astype(np.float32) - 1.0

CONVS = [  # (kernel, stride, padding as the user writes it, explicit pairs)
    ((5, 5), 1, 2, ((2, 2), (2, 2))),  # LeNet's: "SAME" at stride 1
    ((4, 2), 1, ((1, 2), (0, 1)), ((1, 2), (0, 1))),  # "SAME" with the extra cell at the end
    ((3, 3), 1, ((2, 0), (1, 1)), ((2, 0), (1, 1))),  # uneven the other way: not "SAME"
    ((3, 3), 2, 1, ((1, 1), (1, 1))),
    ((3, 2), (2, 3), 0, ((0, 0), (0, 0))),
    ((1, 1), 1, 0, ((0, 0), (0, 0))),
]


def twice(layer, x):
    """The layer's built (second) call; the first call builds it."""
    layer(x)
    return layer(x)


@pytest.mark.parametrize("kernel, stride, padding, pads", CONVS)
def test_built_conv_matches_the_reference(d2l, kernel, stride, padding, pads):
    conv = d2l.LazyConv2d(4, kernel_size=kernel, stride=stride, padding=padding, seed=0)
    Y = twice(conv, d2l.tensor(X))
    p = d2l.get_params(conv)
    strides = (stride, stride) if isinstance(stride, int) else stride
    assert_close(Y, reference.conv2d(X, p["weight"], p["bias"], strides, pads))


def test_built_conv_without_bias_one_channel_in_and_out(d2l):
    x = X[:, :1]
    conv = d2l.LazyConv2d(1, kernel_size=3, padding=1, bias=False, seed=0)
    Y = twice(conv, d2l.tensor(x))
    assert_close(Y, reference.conv2d(x, d2l.get_params(conv)["weight"], None, (1, 1), ((1, 1), (1, 1))))


POOLS = [  # (window, stride, padding pairs)
    ((2, 2), (2, 2), ((0, 0), (0, 0))),
    ((3, 3), (2, 2), ((1, 1), (1, 1))),
    ((3, 2), (1, 2), ((2, 0), (0, 1))),
]


@pytest.mark.parametrize("window, stride, pads", POOLS)
def test_built_pooling_matches_the_reference(d2l, window, stride, pads):
    x = d2l.tensor(X)  # mostly negative: zero padding in a max pool would show
    assert_close(twice(d2l.MaxPool2d(window, stride, pads), x), reference.pool2d(X, window, stride, pads))
    for include in (True, False):
        expected = reference.pool2d(X, window, stride, pads, mode="avg", count_include_pad=include)
        assert_close(twice(d2l.AvgPool2d(window, stride, pads, count_include_pad=include), x), expected)


def test_built_model_flattens_in_chw_order(d2l):
    net = d2l.Sequential(d2l.LazyConv2d(5, kernel_size=3, seed=0), d2l.Flatten(), d2l.LazyLinear(3, seed=1))
    Y = twice(net, d2l.tensor(X))
    p = d2l.get_params(net)
    hidden = reference.conv2d(X, p["0.weight"], p["0.bias"]).reshape(len(X), -1)
    assert_close(Y, hidden @ p["2.weight"].T + p["2.bias"])
    assert math.prod(p["2.weight"].shape) == 3 * 5 * 7 * 6
