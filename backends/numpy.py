"""The NumPy reference as a backend: forward only, computed in float64, returned in the inputs' dtype."""

import numpy as np

from d2lconv import reference
from d2lconv.interface import Backend


class NumpyBackend(Backend):
    name = "numpy"
    differentiable = False

    def is_native(self, x):
        return isinstance(x, np.ndarray)

    def conv2d(self, x, w, bias, stride, pads):
        return reference.conv2d(x, w, bias, stride, pads).astype(np.result_type(x, w))

    def max_pool(self, x, window, stride, pads):
        return reference.pool2d(x, window, stride, pads, "max").astype(x.dtype)

    def avg_pool(self, x, window, stride, pads):
        return reference.pool2d(x, window, stride, pads, "avg").astype(x.dtype)


BACKEND = NumpyBackend()
