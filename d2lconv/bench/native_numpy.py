"""The NumPy reference backend has no framework of its own to compare with and no autodiff:
only the Python-loop ``corr2d`` is measured against it."""

from __future__ import annotations

import numpy as np

from d2lconv.bench.loop import put_in_place as loop_put, sum_method as loop_sum  # noqa: F401

PACKAGES = ("numpy",)
KERAS_BACKEND = None
OPS_LAYOUT = None  # no native operator to compare with


def to_native(array):
    return array


def sync(x):
    return x


def loop_zeros(shape):
    return np.zeros(shape, np.float32)


def training_loops():
    return {}
