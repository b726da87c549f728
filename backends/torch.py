"""PyTorch: torch.nn.functional's conv2d and pooling, NCHW natively."""

import numpy as np
import torch
import torch.nn.functional as F

from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run


def _torch_pad(pads):
    """((top, bottom), (left, right)) in F.pad's order: last axis first."""
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom)


def _symmetric_within_half(pads, window) -> bool:
    """Padding torch's pooling takes itself: the same on both sides, at most half the window."""
    (top, bottom), (left, right) = pads
    return top == bottom and left == right and 2 * top <= window[0] and 2 * left <= window[1]


class Module(LayerModule, torch.nn.Module):
    """A d2lconv layer as a ``torch.nn.Module``; children and parameters are registered attributes."""

    backend_name = "torch"

    def __init__(self, layer):
        torch.nn.Module.__init__(self)
        self.d2l_layer = layer

    def forward(self, x):
        return run(self, x)

    def _get_name(self):  # what repr() shows
        return self.d2l_layer.kind


class TorchBackend(Backend):
    name = "torch"
    device = "cpu"  # where new tensors and parameters go; use_gpu() moves it

    def devices(self):
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def gpu_count(self):
        return torch.cuda.device_count()

    def use_gpu(self, model):
        self.device = "cuda:0"
        model.to(self.device)

    def from_numpy(self, array):
        return torch.tensor(array, device=self.device)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def is_native(self, x):
        return isinstance(x, torch.Tensor)

    def dtype(self, x):
        return np.dtype(str(x.dtype).removeprefix("torch."))

    def cast(self, x, dtype):
        return x.to(getattr(torch, np.dtype(dtype).name))

    def reshape(self, x, shape):
        return torch.reshape(x, shape)

    def transpose(self, x, axes):
        return torch.permute(x, axes)

    def stack(self, xs, axis):
        return torch.stack(list(xs), dim=axis)

    def concat(self, xs, axis):
        return torch.cat(list(xs), dim=axis)

    def matmul(self, a, b):
        return torch.matmul(a, b)

    def reduce_sum(self, x, axis, keepdims):
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis, keepdim=keepdims)

    def abs(self, x):
        return torch.abs(x)

    def sigmoid(self, x):
        return torch.sigmoid(x)

    def conv2d(self, x, w, bias, stride, pads):
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:
            return F.conv2d(x, w, bias, stride, (top, left))
        return F.conv2d(F.pad(x, _torch_pad(pads)), w, bias, stride)

    def max_pool(self, x, window, stride, pads):
        if _symmetric_within_half(pads, window):  # torch's own padding is -inf: no copy
            return F.max_pool2d(x, window, stride, (pads[0][0], pads[1][0]))
        return F.max_pool2d(F.pad(x, _torch_pad(pads), value=-np.inf), window, stride)

    def avg_pool(self, x, window, stride, pads):
        if _symmetric_within_half(pads, window):  # zeros counted, as count_include_pad=True
            return F.avg_pool2d(x, window, stride, (pads[0][0], pads[1][0]))
        return F.avg_pool2d(F.pad(x, _torch_pad(pads)), window, stride)

    def value_and_grad(self, fn, argnums):
        def wrapped(*args):
            args = list(args)
            for i in argnums:
                args[i] = args[i].detach().clone().requires_grad_(True)
            with torch.enable_grad():
                value = fn(*args)
                wrt = [args[i] for i in argnums]
                if value.requires_grad:
                    grads = torch.autograd.grad(value, wrt, allow_unused=True)
                else:  # the loss uses none of the inputs: every gradient is zero
                    grads = [None] * len(wrt)
            grads = tuple(torch.zeros_like(args[i]) if g is None else g for i, g in zip(argnums, grads))
            return value.detach(), grads

        return wrapped

    def cross_entropy(self, logits, labels):
        return F.cross_entropy(logits, labels.long())

    Module = Module

    def new_param(self, name, array):
        return torch.nn.Parameter(torch.tensor(array, device=self.device))

    def assign(self, param, value):
        with torch.no_grad():
            param.copy_(torch.as_tensor(value))

    def model_value_and_grad(self, loss_fn, compile):  # eager: see README for why
        def wrapped(model, params, *args):
            with torch.enable_grad():
                loss = loss_fn(model, *args)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            return loss.detach(), {
                name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(params.items(), grads)
            }

        return wrapped


BACKEND = TorchBackend()
