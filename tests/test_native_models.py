"""Built models run the backend's built operators (no checks, framework calls only) after their
first call: those later calls must still equal the float64 NumPy reference, every padding form,
every layout conversion at a container's edges, and a batch size other than the first."""

import numpy as np
import pytest

from conftest import BACKEND, assert_close
from d2lconv import reference
from test_layers import expected_lenet_params, lenet_reference

ASYMMETRIC = ((0, 1), (1, 0))


def _twice(module, d2l, first, second):
    """Build ``module`` on ``first``, then return its output on ``second`` (the built path)."""
    module(d2l.tensor(first))
    return module(d2l.tensor(second))


def test_a_built_lenet_matches_the_reference(d2l):
    rng = np.random.default_rng(3)
    first, second = rng.standard_normal((4, 1, 28, 28)), rng.standard_normal((3, 1, 28, 28))
    net = d2l.LeNet(seed=0)
    assert_close(_twice(net, d2l, first, second), lenet_reference(expected_lenet_params(0), second), tol=1e-4)


@pytest.mark.parametrize("padding", [0, 1, ASYMMETRIC])
def test_built_pooling_matches_the_reference(d2l, padding):
    rng = np.random.default_rng(4)
    first, second = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((1, 3, 7, 6)) - 2
    reference_pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    cases = [
        (d2l.MaxPool2d(3, stride=2, padding=padding), dict(mode="max")),
        (d2l.AvgPool2d(3, stride=2, padding=padding), dict(mode="avg")),
        (d2l.AvgPool2d(3, stride=2, padding=padding, count_include_pad=False), dict(mode="avg", count_include_pad=False)),
    ]
    for layer, options in cases:
        expected = reference.pool2d(second, (3, 3), (2, 2), reference_pads, **options)
        assert_close(_twice(layer, d2l, first, second), expected)


def test_a_built_sequential_converts_layouts_only_at_its_edges(d2l):
    """Conv with asymmetric padding and stride, max pool, flatten (C-H-W order), dense."""
    rng = np.random.default_rng(5)
    first, second = rng.standard_normal((2, 2, 9, 8)), rng.standard_normal((5, 2, 9, 8))
    net = d2l.Sequential(
        d2l.LazyConv2d(4, kernel_size=3, stride=2, padding=ASYMMETRIC, seed=1), d2l.Sigmoid(),
        d2l.MaxPool2d(2, padding=((1, 0), (0, 1))), d2l.Flatten(), d2l.LazyLinear(3, seed=2),
    )
    got = _twice(net, d2l, first, second)
    p = d2l.get_params(net)
    h = reference.conv2d(second, p["0.weight"], p["0.bias"], (2, 2), ASYMMETRIC)
    h = reference.pool2d(1 / (1 + np.exp(-h)), (2, 2), (2, 2), ((1, 0), (0, 1)), mode="max")
    h = h.reshape(len(h), -1)
    assert_close(got, h @ p["4.weight"].T + p["4.bias"])


@pytest.mark.parametrize("padding", [1, ASYMMETRIC])
def test_a_built_max_pool_keeps_nan_and_minus_inf(d2l, padding):
    """The edge semantics hold on the built path too (TensorFlow's and MXNet's kernels skip NaN
    and start from the lowest finite float): NaN in a window gives NaN, only -inf gives -inf."""
    first = np.random.default_rng(6).standard_normal((1, 2, 5, 5))
    second = np.full((1, 2, 5, 5), -np.inf)
    second[0, 0, 1, 1] = np.nan
    second[0, 1, 3:, 3:] = 2.0
    reference_pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    expected = reference.pool2d(second, (2, 2), (2, 2), reference_pads, mode="max")
    net = d2l.Sequential(d2l.MaxPool2d(2, padding=padding))
    actual = d2l.to_numpy(_twice(net, d2l, first, second))
    np.testing.assert_array_equal(actual, expected.astype(np.float32))


def test_torch_keeps_conv_weights_channels_last(d2l):
    """On torch every conv weight is stored channels-last (channels the fastest axis), the one-
    input-channel kernel of LeNet's first layer too, so a model's activations stay NHWC in memory
    on oneDNN's kernels; shapes and values stay OIHW, as ``get_params`` and the reference see."""
    from d2lconv.params import named_params

    if BACKEND != "torch":
        pytest.skip(f"memory formats are torch's (backend under test: {BACKEND})")
    net = d2l.LeNet(seed=0)
    X = np.random.default_rng(5).standard_normal((2, 1, 28, 28))
    net(d2l.tensor(X))
    weights = [p for p in named_params(net).values() if p.dim() == 4]
    assert [tuple(w.shape) for w in weights] == [(6, 1, 5, 5), (16, 6, 5, 5)]
    assert all(w.stride()[1] == 1 and w.stride()[3] == w.shape[1] for w in weights), [w.stride() for w in weights]
    for name, value in d2l.get_params(net).items():
        assert value.flags["C_CONTIGUOUS"], name
        np.testing.assert_array_equal(value, expected_lenet_params(0)[name])
