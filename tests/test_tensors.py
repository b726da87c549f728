"""Tensor helpers: native tensors out, d2l's names, the dtype rules, NumPy-seeded randomness."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND


def _np(x):
    return d2lconv.to_numpy(x)


def test_helpers_return_native_tensors(d2l):
    native = d2lconv.backend.load(BACKEND).is_native
    for x in (d2l.tensor([1.0]), d2l.zeros(2, 3), d2l.ones((2, 3)), d2l.arange(4), d2l.normal(2), d2l.rand(2)):
        assert native(x)


def test_default_dtypes(d2l):
    assert _np(d2l.tensor([1.0, 2.0])).dtype == np.float32
    assert _np(d2l.tensor(np.ones(2))).dtype == np.float32  # float64 NumPy data too, numpy backend too
    assert _np(d2l.tensor([1, 2])).dtype == (np.int32 if BACKEND == "jax" else np.int64)
    assert _np(d2l.tensor([True])).dtype == np.bool_
    assert _np(d2l.zeros(2)).dtype == np.float32
    assert _np(d2l.arange(16, dtype=d2l.float32)).dtype == np.float32


def test_float64_where_the_framework_allows_it(d2l):
    jax = pytest.importorskip("jax") if BACKEND == "jax" else None

    if jax is not None and not jax.config.jax_enable_x64:
        with pytest.raises(TypeError, match="float64 on the jax backend needs 64-bit mode: set JAX_ENABLE_X64=1"):
            d2l.tensor([1.0], d2l.float64)
        return
    X = d2l.tensor(np.arange(9.0).reshape(1, 1, 3, 3) / 3, "float64")
    Y = d2l.conv2d(X, d2l.ones(1, 1, 2, 2, dtype=d2l.float64))
    assert _np(Y).dtype == np.float64
    np.testing.assert_allclose(_np(Y)[0, 0], [[8 / 3, 4], [20 / 3, 8]], rtol=1e-15)


def test_jax_float64_in_64_bit_mode():
    """JAX_ENABLE_X64=1 in a fresh interpreter: float64 in, float64 out, float64 precision."""
    if BACKEND != "jax":
        pytest.skip("jax's 64-bit mode is tested in the jax env")
    code = (
        "import numpy as np; from d2lconv import jax as d2l; "
        "X = d2l.tensor(np.arange(9.0).reshape(1, 1, 3, 3) / 3, 'float64'); "
        "Y = d2l.conv2d(X, d2l.ones(1, 1, 2, 2, dtype='float64')); "
        "print(Y.dtype, repr(float(Y[0, 0, 0, 0])))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env=dict(os.environ, JAX_ENABLE_X64="1"), cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr
    dtype, value = result.stdout.split()
    assert dtype == "float64" and abs(float(value) - 8 / 3) < 1e-15  # float32 would miss by ~1e-7


def test_dtype_objects_of_the_framework_are_accepted(d2l):
    x = d2l.tensor([1, 2])
    native_dtype = getattr(x, "dtype")
    assert _np(d2l.tensor([1.5], native_dtype)).dtype == _np(x).dtype
    assert _np(d2l.tensor(x, "float32")).dtype == np.float32
    with pytest.raises(TypeError, match="dtype must name a NumPy-compatible dtype"):
        d2l.tensor([1.0], "quaternion")


def test_random_tensors_come_from_numpy_seeds(d2l):
    expected = np.random.default_rng(7).normal(0.0, 1.0, (2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_np(d2l.normal(2, 3, seed=7)), expected)
    d2lconv.seed(3)
    first = _np(d2l.rand(4))
    d2lconv.seed(3)
    np.testing.assert_array_equal(_np(d2l.rand(4)), first)
    assert ((first >= 0) & (first < 1)).all()


def test_shape_helpers_agree_with_numpy(d2l):
    a = np.arange(6.0).reshape(2, 3)
    x = d2l.tensor(a)
    np.testing.assert_array_equal(_np(d2l.reshape(x, (3, 2))), a.reshape(3, 2))
    np.testing.assert_array_equal(_np(d2l.transpose(x)), a.T)
    np.testing.assert_array_equal(_np(d2l.transpose(d2l.reshape(x, (1, 2, 3)), (2, 0, 1))), a.reshape(1, 2, 3).transpose(2, 0, 1))
    np.testing.assert_array_equal(_np(d2l.stack([x, x], 1)), np.stack([a, a], 1))
    np.testing.assert_array_equal(_np(d2l.concat([x, x], 0)), np.concatenate([a, a], 0))
    np.testing.assert_array_equal(_np(d2l.matmul(x, d2l.transpose(x))), a @ a.T)
    np.testing.assert_array_equal(_np(d2l.reduce_sum(x)), a.sum())
    np.testing.assert_array_equal(_np(d2l.reduce_sum(x, 1, keepdims=True)), a.sum(1, keepdims=True))
    np.testing.assert_array_equal(_np(d2l.abs(-x)), a)
    assert d2l.shape(x) == (2, 3)


def test_bad_shapes_for_helpers(d2l):
    with pytest.raises(ValueError, match="shape must be non-negative integers"):
        d2l.zeros(2, -1)
