"""MXNet 1.9.1 in NumPy mode: npx.convolution and npx.pooling, NCHW natively.

MXNet's own padding arguments are symmetric, so asymmetric padding is made explicit first.
``mxnet.np.pad`` ignores ``constant_values`` (it always pads with zeros), so max pooling adds a
constant -inf mask over the padded cells instead.
"""

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx

from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run

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


class Module(LayerModule, gluon.Block):
    """A d2lconv layer as a Gluon ``Block``: parameters and children registered with Gluon."""

    backend_name = "mxnet"

    def __init__(self, layer):
        gluon.Block.__init__(self)
        self.d2l_layer = layer

    def forward(self, x):
        return run(self, x)


class MxnetBackend(Backend):
    name = "mxnet"
    xp = mnp

    def devices(self):
        return ["cpu"] + [f"gpu({i})" for i in range(mx.context.num_gpus())]

    def gpu_count(self):
        return mx.context.num_gpus()

    def to_numpy(self, x):
        return x.asnumpy()

    def is_native(self, x):
        return isinstance(x, mnp.ndarray)

    def sigmoid(self, x):
        return npx.sigmoid(x)

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
        padded = x
        if any(any(pair) for pair in pads):
            padded = _zero_pad(x, pads) + _neg_inf_mask(x.shape[2:], pads, x.dtype)
        y = npx.pooling(padded, kernel=window, stride=stride, pool_type="max")
        # a global average pooling (fast) then a sum of N x C numbers: finite means no NaN and no
        # -inf anywhere, so MXNet's max is NumPy's already; the check waits for x (one sync), which
        # costs far less than the correction on MXNet
        total = npx.pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg").sum()
        if bool(mnp.isfinite(total)):
            return y
        return self.max_pool_edges(y, x, window, stride, pads)  # MXNet's max skips NaN

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
            try:
                value.backward()
            except mx.base.MXNetError as error:
                if "not in a computational graph" not in str(error):
                    raise
                # the loss uses none of the inputs: their gradients stay attach_grad's zeros
            return value, tuple(args[i].grad for i in argnums)

        return wrapped

    def cross_entropy(self, logits, labels):
        return -npx.pick(npx.log_softmax(logits, axis=1), labels, axis=1).mean()

    Module = Module

    def add_param(self, module, name, array):
        param = module.params.get(name, shape=array.shape, dtype=array.dtype, init=mx.init.Zero())
        param.initialize()
        param.set_data(mnp.array(array, dtype=array.dtype))
        module._reg_params[name] = param

    def param(self, module, name):
        return module._reg_params.get(name)

    def value(self, param):
        return param.data()

    def assign(self, param, value):
        param.set_data(value if isinstance(value, mnp.ndarray) else mnp.array(value, dtype=value.dtype))

    def add_child(self, module, name, child):
        module.register_child(child, name)

    def child(self, module, name):
        return module._children[name]

    def model_value_and_grad(self, loss_fn, compile):  # eager: see README for why
        def wrapped(model, params, *args):
            with autograd.record():
                loss = loss_fn(model, *args)
            loss.backward()
            return loss, {name: p.grad().copy() for name, p in params.items()}

        return wrapped


BACKEND = MxnetBackend()
