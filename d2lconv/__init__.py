"""d2lconv: the convolutional-network chapter of Dive into Deep Learning, one API, four frameworks.

    import d2lconv as d2l                 # the current backend (see d2lconv.backend)
    from d2lconv import torch as d2l      # or: tensorflow, jax, mxnet, numpy

Importing d2lconv imports no framework; a backend's framework is imported on first use.
"""

from d2lconv.backend import available_backends, get_backend, set_backend, use_backend
from d2lconv.ops import (
    comp_conv2d,
    conv2d,
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
    pool2d,
    value_and_grad,
)
from d2lconv.data import Digits, FashionMNIST
from d2lconv.layers import (
    AvgPool2d,
    Conv2D,
    Flatten,
    LazyConv2d,
    LazyLinear,
    MaxPool2d,
    Sequential,
    Sigmoid,
    layer_summary,
)
from d2lconv.models import LeNet
from d2lconv.params import get_params, load_params, save_params, set_params
from d2lconv.random import seed
from d2lconv.trainer import Trainer
from d2lconv.training import accuracy, cross_entropy, sgd
from d2lconv.tensors import (
    abs,
    arange,
    concat,
    float32,
    float64,
    int32,
    int64,
    matmul,
    normal,
    ones,
    rand,
    reduce_sum,
    reshape,
    shape,
    stack,
    tensor,
    to_numpy,
    transpose,
    zeros,
)

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "Conv2D", "Digits", "FashionMNIST", "Flatten", "Trainer", "LazyConv2d", "LazyLinear", "LeNet", "MaxPool2d", "Sequential",
    "Sigmoid", "accuracy", "cross_entropy", "get_params", "layer_summary", "load_params",
    "save_params", "set_params", "sgd",
    "abs", "arange", "available_backends", "comp_conv2d", "concat", "conv2d", "corr2d",
    "corr2d_multi_in", "corr2d_multi_in_out", "corr2d_multi_in_out_1x1", "float32", "float64",
    "get_backend", "int32", "int64", "matmul", "normal", "ones", "pool2d", "rand", "reduce_sum",
    "reshape", "seed", "set_backend", "shape", "stack", "tensor", "to_numpy", "transpose",
    "use_backend", "value_and_grad", "zeros",
]

_NAMESPACE_NAMES = {"torch", "pytorch", "tensorflow", "tf", "jax", "mxnet", "mx", "numpy", "np"}


def __getattr__(name):
    """``d2lconv.torch`` and friends: the API bound to one backend, made on first access."""
    if name in _NAMESPACE_NAMES:
        from d2lconv.namespace import namespace

        return namespace(name, {key: globals()[key] for key in __all__})
    raise AttributeError(f"module 'd2lconv' has no attribute {name!r}")
