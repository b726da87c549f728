"""The NumPy reference backend has no framework of its own to compare with and no autodiff:
only the Python-loop ``corr2d`` is measured against it."""

from __future__ import annotations

import numpy as np

PACKAGES = ("numpy",)
KERAS_BACKEND = None
OPS_LAYOUT = None  # no native operator to compare with


def to_native(array):
    return array


def sync(x):
    return x


def loop_zeros(shape):
    return np.zeros(shape, np.float32)


def loop_put(Y, i, j, value):
    Y[i, j] = value
    return Y


def loop_sum(x):
    return x.sum()


def training_loops():
    return {}
