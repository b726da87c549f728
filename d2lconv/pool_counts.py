"""How much of each pooling window lies inside the input: the divisor of average pooling with
``count_include_pad=False``, computed once per input size in NumPy (no framework call per step)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from d2lconv import reference


def inside_fraction(window, stride, pads):
    """``fraction(h, w, dtype)``: an (OH, OW) array, the share of each window's cells that lie in
    an (h, w) input (1 where no padding is covered); cached per input size and dtype.

    Average pooling that counts padded zeros, divided by this, averages over the inside cells only.
    """

    @lru_cache(maxsize=None)
    def fraction(h: int, w: int, dtype) -> np.ndarray:
        ones = np.ones((1, 1, h, w))
        return reference.pool2d(ones, window, stride, pads, mode="avg")[0, 0].astype(dtype)

    return fraction
