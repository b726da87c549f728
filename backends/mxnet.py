"""MXNet 1.9.1 in NumPy mode: npx.convolution and npx.pooling, NCHW natively.

MXNet's own padding arguments are symmetric, so asymmetric padding is made explicit first.
``mxnet.np.pad`` ignores ``constant_values`` (it always pads with zeros), so max pooling adds a
constant -inf mask over the padded cells instead.
"""

import mxnet as mx
import numpy as np
from mxnet import autograd, npx

from d2lconv.interface import Backend

npx.set_np()
mnp = mx.np


def _zero_pad(x, pads):
    if not any(any(pair) for pair in pads):
        return x
    return mnp.pad(x, ((0, 0), (0, 0), *pads), mode="constant")


def _neg_inf_mask(size, pads, dtype):
    """0 over the input's cells, -inf over the padding: shape (1, 1, padded H, padded W)."""
    (top, bottom), (left, right) = pads
    mask = np.full((1, 1, size[0] + top + bottom, size[1] + left + right), -np.inf, dtype)
    mask[:, :, top : top + size[0], left : left + size[1]] = 0
    return mnp.array(mask, dtype=dtype)


class MxnetBackend(Backend):
    name = "mxnet"
    xp = mnp

    def to_numpy(self, x):
        return x.asnumpy()

    def is_native(self, x):
        return isinstance(x, mnp.ndarray)

    def conv2d(self, x, w, bias, stride, pads):
        (top, bottom), (left, right) = pads
        pad = (top, left)
        if top != bottom or left != right:
            x, pad = _zero_pad(x, pads), (0, 0)
        return npx.convolution(
            x, w, bias, kernel=tuple(w.shape[2:]), stride=stride, pad=pad,
            num_filter=w.shape[0], no_bias=bias is None,
        )

    def max_pool(self, x, window, stride, pads):
        if any(any(pair) for pair in pads):
            x = _zero_pad(x, pads) + _neg_inf_mask(x.shape[2:], pads, x.dtype)
        return npx.pooling(x, kernel=window, stride=stride, pool_type="max")

    def avg_pool(self, x, window, stride, pads):
        return npx.pooling(
            _zero_pad(x, pads), kernel=window, stride=stride, pool_type="avg", count_include_pad=True
        )

    def value_and_grad(self, fn, argnums):
        def wrapped(*args):
            args = list(args)
            for i in argnums:
                args[i] = args[i].copy()
                args[i].attach_grad()
            with autograd.record():
                value = fn(*args)
            value.backward()
            return value, tuple(args[i].grad for i in argnums)

        return wrapped


BACKEND = MxnetBackend()
