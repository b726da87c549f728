"""Bad input gives a clear ValueError or TypeError that names the argument."""

import re

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND


@pytest.fixture
def X(d2l):
    return d2l.ones(1, 2, 5, 5)


@pytest.fixture
def W(d2l):
    return d2l.ones(3, 2, 3, 3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"padding": -1}, ValueError, "padding must be non-negative, got -1"),
        ({"padding": 1.5}, TypeError, "padding must be an int, (ph, pw), ((top, bottom), (left, right)), \"valid\" or \"same\"; got 1.5"),
        ({"padding": (1, -2)}, ValueError, "padding must be non-negative"),
        ({"padding": ((1, 0), (0, 1.0))}, TypeError, "padding must be an integer"),
        ({"padding": (1, 2, 3)}, TypeError, "padding must be an int, "),
        ({"padding": "full"}, ValueError, "padding must be an int, a pair"),
        ({"padding": True}, TypeError, "padding must be an int"),
        ({"stride": 0}, ValueError, "stride must be positive, got 0"),
        ({"stride": -2}, ValueError, "stride must be positive, got -2"),
        ({"stride": 1.0}, TypeError, "stride must be an integer"),
        ({"stride": (1, 0)}, ValueError, "stride must be positive"),
        ({"stride": 2, "padding": "same"}, ValueError, 'padding="same" needs stride 1'),
    ],
)
def test_conv2d_bad_padding_and_stride(d2l, X, W, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        d2l.conv2d(X, W, **kwargs)


def test_conv2d_wrong_rank(d2l, W):
    with pytest.raises(ValueError, match=r"conv2d: X must be 4-D \(N, C, H, W\), got shape \(5, 5\)"):
        d2l.conv2d(d2l.ones(5, 5), W)
    with pytest.raises(ValueError, match=r"conv2d: W must be 4-D"):
        d2l.conv2d(d2l.ones(1, 1, 5, 5), d2l.ones(3, 3))


def test_kernel_larger_than_padded_input(d2l, W):
    with pytest.raises(ValueError, match=r"conv2d: kernel \(3, 3\) is larger than the padded input \(2, 4\)"):
        d2l.conv2d(d2l.ones(1, 2, 2, 2), W, padding=(0, 1))
    with pytest.raises(ValueError, match=r"corr2d: kernel \(3, 1\) is larger"):
        d2l.corr2d(d2l.ones(2, 2), d2l.ones(3, 1))
    with pytest.raises(ValueError, match=r"pool2d: kernel \(3, 3\) is larger"):
        d2l.pool2d(d2l.ones(2, 2), 3)


def test_channel_mismatch(d2l, W):
    with pytest.raises(ValueError, match="conv2d: the input has 4 channels but the kernel expects 2"):
        d2l.conv2d(d2l.ones(1, 4, 5, 5), W)
    with pytest.raises(ValueError, match="corr2d_multi_in: the input has 3 channels but the kernel expects 2"):
        d2l.corr2d_multi_in(d2l.ones(3, 4, 4), d2l.ones(2, 2, 2))
    with pytest.raises(ValueError, match="corr2d_multi_in_out_1x1: X has 3 channels but K expects 2"):
        d2l.corr2d_multi_in_out_1x1(d2l.ones(3, 4, 4), d2l.ones(5, 2, 1, 1))


def test_other_shape_errors(d2l, X, W):
    with pytest.raises(ValueError, match=r"corr2d: X must be 2-D \(H, W\)"):
        d2l.corr2d(d2l.ones(1, 3, 3), d2l.ones(2, 2))
    with pytest.raises(ValueError, match=r"corr2d_multi_in_out: K must be 4-D"):
        d2l.corr2d_multi_in_out(d2l.ones(2, 3, 3), d2l.ones(2, 2, 2))
    with pytest.raises(ValueError, match=r"K must be a 1x1 kernel"):
        d2l.corr2d_multi_in_out_1x1(d2l.ones(2, 3, 3), d2l.ones(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(2,\)"):
        d2l.conv2d(X, W, d2l.ones(2))
    with pytest.raises(ValueError, match=r"comp_conv2d: X must be 2-D"):
        d2l.comp_conv2d(lambda x: x, d2l.ones(1, 3, 3))


def test_mixed_dtypes(d2l, X, W):
    if BACKEND == "jax":
        pytest.skip("float64 on jax needs JAX_ENABLE_X64 (tested in test_tensors)")
    with pytest.raises(TypeError, match="conv2d: inputs must share one dtype, but X is float32, W is float64"):
        d2l.conv2d(X, d2l.tensor(np.ones((3, 2, 3, 3)), d2l.float64))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"mode": "min"}, ValueError, r"pool2d: mode must be one of \('max', 'avg'\), got 'min'"),
        ({"pool_size": 0}, ValueError, "pool_size must be positive, got 0"),
        ({"pool_size": (2, 2, 2)}, TypeError, "pool_size must be an integer or a pair"),
        ({"stride": 0}, ValueError, "stride must be positive"),
        ({"padding": 2}, ValueError, r"pool2d: padding .* must be smaller than pool_size \(2, 2\)"),
        ({"padding": "same", "stride": 2}, ValueError, 'padding="same" needs stride 1'),
    ],
)
def test_pool2d_bad_arguments(d2l, kwargs, error, message):
    kwargs = {"pool_size": 2, **kwargs}
    with pytest.raises(error, match=message):
        d2l.pool2d(d2l.ones(4, 4), **kwargs)


def test_pool2d_wrong_rank(d2l):
    with pytest.raises(ValueError, match=r"pool2d: X must be 2 or 3 or 4-D"):
        d2l.pool2d(d2l.ones(4), 2)


def test_non_numeric_data(d2l):
    with pytest.raises(TypeError, match="must hold real numbers"):
        d2l.corr2d([["a", "b"], ["c", "d"]], [[1.0]])


def test_foreign_tensor_that_cannot_be_converted(d2l):
    """A tensor of another framework is converted, or else the error names both frameworks."""
    if BACKEND == "torch" or "torch" not in d2lconv.available_backends():
        pytest.skip("needs torch installed beside another backend under test")
    import torch

    unreadable = torch.empty(3, 3, device="meta")  # holds no data to copy out
    with pytest.raises(TypeError, match=f"corr2d: X is a torch tensor that cannot be converted for the {BACKEND} backend"):
        d2l.corr2d(unreadable, d2l.ones(2, 2))
    converted = d2l.corr2d(torch.ones(3, 3, requires_grad=True), d2l.ones(2, 2))
    np.testing.assert_allclose(d2l.to_numpy(converted), np.full((2, 2), 4.0))
