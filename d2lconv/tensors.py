"""Tensor helpers with d2l's names, returning the current backend's native tensors.

:func:`tensor` makes a tensor from data (NumPy arrays, Python lists and numbers, another
framework's tensors): floating data becomes float32 unless a dtype is given, integers int64
(int32 on JAX without 64-bit mode), booleans stay booleans. Operators pass native tensors through
unchanged and convert anything else as :func:`tensor` does. Scalars are 0-d: ``tensor(3.0).shape``
is ``()``.
"""

from __future__ import annotations

import numpy as np

from d2lconv import backend
from d2lconv.random import generator

float32, float64, int32, int64 = "float32", "float64", "int32", "int64"


def resolve_dtype(dtype) -> np.dtype:
    """A NumPy dtype from a name, a NumPy dtype, or a framework's dtype object."""
    for candidate in (dtype, getattr(dtype, "name", None), str(dtype).rsplit(".", 1)[-1]):
        if candidate is None:
            continue
        try:
            return np.dtype(candidate)
        except TypeError:
            continue
    raise TypeError(f"dtype must name a NumPy-compatible dtype such as 'float32', got {dtype!r}")


def _default_dtype(array: np.ndarray, name: str) -> np.dtype:
    kind = array.dtype.kind
    if kind == "f":
        return np.dtype(np.float32)
    if kind in "iu":
        return np.dtype(np.int64)
    if kind == "b":
        return np.dtype(bool)
    raise TypeError(f"{name} must hold real numbers, got data of dtype {array.dtype}")


def numpy_of(x, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array, whatever framework it came from."""
    owner = backend.framework_of(x)
    if owner is None or owner == "numpy":
        return np.asarray(x)
    try:
        return backend.load(owner).to_numpy(x)
    except Exception as error:  # a framework's own failure, e.g. a symbolic tensor
        if isinstance(error, NotImplementedError) and owner == backend.get_backend():
            raise  # the backend in use, on what of its own it cannot take (MXNet's symbols)
        raise TypeError(
            f"{name} is a {owner} tensor that cannot be converted for the "
            f"{backend.get_backend()} backend ({type(error).__name__}: {error})"
        ) from None


def native(x, name: str = "x"):
    """``x`` as a native tensor of the current backend (unchanged when it already is one)."""
    b = backend.current()
    if b.is_native(x):
        return x
    return tensor(x, name=name)


def tensor(data, dtype=None, *, name: str = "data"):
    """A native tensor holding ``data``; see the module docstring for the default dtype."""
    b = backend.current()
    if b.is_native(data) and not isinstance(data, np.ndarray):  # NumPy arrays are data everywhere
        return data if dtype is None else b.cast(data, resolve_dtype(dtype))
    array = numpy_of(data, name)
    dtype = _default_dtype(array, name) if dtype is None else resolve_dtype(dtype)
    return b.from_numpy(np.asarray(array, dtype=dtype, order="C"))  # 0-d stays 0-d


def _shape(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in size):
        raise ValueError(f"shape must be non-negative integers, got {size!r}")
    return tuple(int(n) for n in size)


def zeros(*shape, dtype=float32):
    """Zeros of ``shape`` (given as integers or one tuple)."""
    return tensor(np.zeros(_shape(shape)), dtype)


def ones(*shape, dtype=float32):
    """Ones of ``shape`` (given as integers or one tuple)."""
    return tensor(np.ones(_shape(shape)), dtype)


def arange(start, stop=None, step=1, dtype=None):
    """``start, start + step, ...`` below ``stop``, as ``numpy.arange``."""
    return tensor(np.arange(start, stop, step) if stop is not None else np.arange(start), dtype)


def normal(*shape, mean=0.0, std=1.0, dtype=float32, seed=None):
    """Gaussian samples drawn from the d2lconv generator (see :func:`d2lconv.seed`)."""
    return tensor(generator(seed).normal(mean, std, _shape(shape)), dtype)


def rand(*shape, dtype=float32, seed=None):
    """Uniform samples in [0, 1) drawn from the d2lconv generator."""
    return tensor(generator(seed).random(_shape(shape)), dtype)


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of any tensor."""
    return numpy_of(x)


def shape(x) -> tuple[int, ...]:
    return backend.current().shape(native(x))


def reshape(x, shape):
    return backend.current().reshape(native(x), tuple(shape))


def transpose(x, axes=None):
    """Axes permuted; by default reversed (``x.T`` for matrices)."""
    x = native(x)
    b = backend.current()
    return b.transpose(x, tuple(axes) if axes is not None else tuple(reversed(range(len(b.shape(x))))))


def stack(xs, axis=0):
    return backend.current().stack([native(x) for x in xs], axis)


def concat(xs, axis=0):
    return backend.current().concat([native(x) for x in xs], axis)


def matmul(a, b):
    return backend.current().matmul(native(a, "a"), native(b, "b"))


def reduce_sum(x, axis=None, keepdims=False):
    return backend.current().reduce_sum(native(x), axis, keepdims)


def abs(x):  # noqa: A001 - d2l's name
    return backend.current().abs(native(x))
