"""The NumPy reference as a backend: forward only, computed in float64, returned in the inputs' dtype."""

import numpy as np

from d2lconv import reference
from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run


class Module(LayerModule):
    """A d2lconv layer on the reference: plain attributes holding NumPy arrays, forward only."""

    backend_name = "numpy"

    def __init__(self, layer):
        self.d2l_layer = layer

    def __call__(self, x):
        return run(self, x)


class NumpyBackend(Backend):
    name = "numpy"
    differentiable = False

    def is_native(self, x):
        return isinstance(x, np.ndarray)

    def conv2d_fn(self, stride, pads):
        return lambda x, w, bias: reference.conv2d(x, w, bias, stride, pads).astype(np.result_type(x, w))

    def max_pool_fn(self, window, stride, pads):
        return lambda x: reference.pool2d(x, window, stride, pads, "max").astype(x.dtype)

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        if not count_include_pad:
            return super().avg_pool_fn(window, stride, pads, count_include_pad)
        return lambda x: reference.pool2d(x, window, stride, pads, "avg").astype(x.dtype)

    def sigmoid(self, x):
        return reference.sigmoid(x)

    def cross_entropy(self, logits, labels):
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.take_along_axis(log_probs, labels[:, None], axis=1).mean()

    Module = Module

    def new_param(self, name, array):
        return np.array(array)

    def assign(self, param, value):
        param[...] = value


BACKEND = NumpyBackend()
