"""PyTorch: torch.nn.functional's conv2d and pooling, NCHW natively."""

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules import module as nn_module

from d2lconv.compiled import per_model as per_model_fn
from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, checked_input, run


def _symmetric(pads):
    """``(ph, pw)`` when both sides of each axis get the same padding, else None."""
    (top, bottom), (left, right) = pads
    return (top, left) if top == bottom and left == right else None


def _pool_padding(window, pads):
    """The symmetric padding torch's pooling takes itself (at most half the window), else None."""
    padding = _symmetric(pads)
    if padding is None or any(2 * p > k for p, k in zip(padding, window)):
        return None
    return padding


def _compact(pair):
    """``(a, a)`` as ``a``: torch parses an int faster than a tuple (0.5-0.9 us a call here)."""
    return pair[0] if pair[0] == pair[1] else pair


def _torch_pad(pads):
    """((top, bottom), (left, right)) in F.pad's order: last axis first."""
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom)


def _sgd(weights, grads, lr):
    """``w -= lr * g`` for every weight at once; a None gradient (an unused weight) is zero."""
    pairs = [(w, g) for w, g in zip(weights, grads) if g is not None]
    with torch.no_grad():
        torch._foreach_add_([w for w, _ in pairs], [g for _, g in pairs], alpha=-lr)


class _LossOf(torch.nn.Module):
    """``loss_fn(model, *args)`` as a module, which ``torch.func.functional_call`` runs on given
    weights."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, *args):
        return self.loss_fn(self.model, *args)


def _whole_step(model, params, loss_fn, lr):
    """``step(*args)``: one SGD step on ``loss_fn(model, *args)`` whose forward pass, gradients
    (``torch.func.grad_and_value`` on the weights as plain tensors) and update are one compiled
    graph, a pure function of the weights and the learning rate (a tensor, so a new rate does
    not compile again); the new weights are then copied into the parameters. torch keeps the
    graph by its code, so it serves every model of one architecture in a process. LeNet here:
    1.10-1.22x the steps per second of the compiled channels-last ``nn.Sequential`` loop at
    batch 256 and 1.14-1.23x at 32, where compiling the forward alone (autograd then ran the
    compiled backward) gave 0.97-1.02x; updating in place inside the graph, 1.00-1.07x at 256."""
    module = _LossOf(model, loss_fn)
    torch_names = {id(p): name for name, p in module.named_parameters()}
    weights = list(params.values())
    names = [torch_names[id(w)] for w in weights]

    def loss(ws, *args):
        return torch.func.functional_call(module, dict(zip(names, ws)), args)

    grad_and_loss = torch.func.grad_and_value(loss)

    def update(ws, rate, *args):
        grads, value = grad_and_loss(ws, *args)
        return torch._foreach_sub(ws, torch._foreach_mul(grads, rate)), value

    compiled = torch.compile(update, dynamic=False)
    # a 0-d CPU tensor (any device takes it) of the weights' dtype, as eager SGD rounds the rate
    rate = torch.tensor(lr, dtype=weights[0].dtype if weights else torch.float32)

    def step(*args):
        # detached at each call: the parameters' memory now (moving a model to a GPU replaces it)
        new, value = compiled([w.detach() for w in weights], rate, *args)
        with torch.no_grad():
            torch._foreach_copy_(weights, new)
        return value

    return step


class _FirstShapeCompiled:
    """One model's training step: ``compiled`` (which compiles at its first call) for the batch
    shape of the first call that succeeds, ``eager`` for other shapes (a last short batch) rather
    than compile again. Where compiling fails (inductor finds no C++ compiler, say), ``eager``
    for that batch and every later one, with a warning; an error of the step's own (the model's,
    the loss's) is raised by ``eager``, and the next call tries to compile again."""

    def __init__(self, compiled, eager):
        self.compiled, self.eager = compiled, eager
        self.shape, self.tried = None, False

    def __call__(self, *args):
        shape = args[0].shape if args else None
        if self.tried:
            return self.compiled(*args) if shape == self.shape else self.eager(*args)
        try:
            loss = self.compiled(*args)
        except Exception as error:  # the weights are untouched: they change after the graph
            loss = self.eager(*args)
            self.compiled = self.eager
            first_line = next(iter(str(error).strip().splitlines()), "")
            warnings.warn(f"torch.compile of the training step failed ({type(error).__name__}: "
                          f"{first_line}); training eagerly", RuntimeWarning, stacklevel=2)
        self.shape, self.tried = shape, True
        return loss


_DISABLED = {}  # function -> torch.compiler.disable of it (TorchBackend.outside_compiler)

#: the hooks torch runs for every module (``register_module_forward_hook`` and the like), dicts
#: it changes in place
_GLOBAL_HOOKS = (nn_module._global_forward_pre_hooks, nn_module._global_forward_hooks,
                 nn_module._global_backward_pre_hooks, nn_module._global_backward_hooks)


class Module(LayerModule, torch.nn.Module):
    """A d2lconv layer as a ``torch.nn.Module``; children and parameters are registered attributes."""

    backend_name = "torch"
    d2l_hook_dicts = None  # a container's: the hook dicts of the modules below it, and the global ones
    d2l_built_names = (*LayerModule.d2l_built_names, "d2l_hook_dicts")

    def __init__(self, layer):
        torch.nn.Module.__init__(self)
        self.d2l_layer = layer

    def d2l_hooked(self):  # nn.Module.__call__'s own test, for each module below
        dicts = self.d2l_hook_dicts
        if dicts is None:  # torch changes these dicts in place: listed once (1.7 vs 0.4 us a test)
            dicts = self.d2l_hook_dicts = [*_GLOBAL_HOOKS, *(
                d for m in list(self.modules())[1:]
                for d in (m._forward_pre_hooks, m._forward_hooks, m._backward_pre_hooks, m._backward_hooks)
            )]
        return any(dicts)

    def forward(self, x):
        fn = self.d2l_fn
        if fn is None or not isinstance(x, torch.Tensor) or (self.d2l_layer.child_names and self.d2l_hooked()):
            return run(self, x)  # the first call builds; a non-tensor input is converted
        return fn(self, checked_input(self, x))  # NCHW is torch's layout: no edge conversion

    def _get_name(self):  # what repr() shows
        return self.d2l_layer.kind


class TorchBackend(Backend):
    name = "torch"
    # torch.compile of LeNet's whole step (_whole_step), measured on a 2-core AMD EPYC: ~25 s
    # the first time on a machine, 5-7.6 s in each new process after (inductor's on-disk cache),
    # nothing for a second model in one process. Against the eager step (channels-last conv
    # weights, see new_param: oneDNN's NHWC kernels) it saves 26-29 us an image at batch 32
    # (5.1-5.6 vs 5.9-6.5 ms a step) and 24-25 at batch 256 (26.9-28.3 vs 33.3-34.5 ms): a
    # cold compile pays after about a million images
    compile_pays_after = 1_000_000
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

    def batch_from_numpy(self, array):
        return torch.from_numpy(array).to(self.device)  # no copy on the CPU

    def to_numpy(self, x):
        if torch.compiler.is_compiling():  # the tracer would make NumPy calls of it part of the graph
            raise RuntimeError("a tensor's values are unknown while torch.compile traces")
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

    def outside_compiler(self, fn):
        # torch.compile's tracer runs a disabled function as Python, between two graphs; once the
        # plan is made, later traces find it and take the operator's torch calls into the graph.
        # Wrapped once: the tracer cannot trace torch.compiler.disable itself.
        disabled = _DISABLED.get(fn)
        if disabled is None:
            disabled = _DISABLED[fn] = torch.compiler.disable(fn)
        return disabled

    def sigmoid_in_place_fn(self):
        # no new tensor: LeNet's step 5-13% quicker (batch 32: 2.53 vs 2.92 ms; 256: 13.5 vs
        # 14.3). Autograd allows it: convolution and linear gradients do not read their output.
        return torch.sigmoid_

    def conv2d_fn(self, stride, pads):
        padding, stride = _symmetric(pads), _compact(stride)
        if padding is not None:
            padding = _compact(padding)
            return lambda x, w, bias: F.conv2d(x, w, bias, stride, padding)
        pad = _torch_pad(pads)
        return lambda x, w, bias: F.conv2d(F.pad(x, pad), w, bias, stride)

    def image_conv2d_fn(self, x_shape, w_shape, out_shape):
        # torch's own im2col kernel, called directly. At batch 1 torch's rule sends kernels over
        # 3 x 3 to oneDNN, whose set-up costs ~50 us a call on this CPU (a 5 x 5 kernel on
        # 28 x 28: 63 us, im2col 11 us; im2col measured faster on images up to 64 x 64, equal at
        # 100 x 100), and smaller kernels to this same kernel after 0.4-0.7 us of choosing (a
        # 6 x 8 image by 1 x 2: 3.9 vs 4.4 us). Past torch's size limit for that rule (20,480
        # elements) torch chooses. torch.reshape around it, not the backend's method: a 6 x 8
        # corr2d 25.0 vs 26.6 us.
        kernel = w_shape[2:]
        if self.device == "cpu" and math.prod(x_shape) <= 20480:
            conv, reshape = torch._C._nn.thnn_conv2d, torch.reshape
            return lambda x, w, bias: reshape(conv(reshape(x, x_shape), reshape(w, w_shape), kernel), out_shape)
        return super().image_conv2d_fn(x_shape, w_shape, out_shape)

    # torch.max_pool2d: F.max_pool2d's Python dispatch on return_indices costs ~0.8 us a call
    def max_pool_fn(self, window, stride, pads):
        padding, window, stride = _pool_padding(window, pads), _compact(window), _compact(stride)
        if padding is not None:  # torch pads max pooling with -inf itself
            padding = _compact(padding)
            if padding == 0:  # each argument passed costs torch's parser ~0.1-0.2 us
                return lambda x: torch.max_pool2d(x, window, stride)
            return lambda x: torch.max_pool2d(x, window, stride, padding)
        pad = _torch_pad(pads)
        return lambda x: torch.max_pool2d(F.pad(x, pad, value=-np.inf), window, stride)

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        padding = _pool_padding(window, pads)
        if padding is None and not count_include_pad:
            return super().avg_pool_fn(window, stride, pads, count_include_pad)
        window, stride = _compact(window), _compact(stride)
        if padding is not None:
            padding = _compact(padding)
            if padding == 0:  # the defaults not passed: 7.6 vs 8.0 us a batch-1 call here
                return lambda x: F.avg_pool2d(x, window, stride)
            if count_include_pad:
                return lambda x: F.avg_pool2d(x, window, stride, padding)
            return lambda x: F.avg_pool2d(x, window, stride, padding, False, False)  # (ceil_mode, count_include_pad)
        pad = _torch_pad(pads)
        return lambda x: F.avg_pool2d(F.pad(x, pad), window, stride)

    def dense_fn(self):
        return F.linear

    def flatten_fn(self):
        return lambda x: torch.flatten(x, 1)

    def flatten_order_dense(self, module, in_shape):
        # The activation a Flatten reads is channels-last in memory (the conv weights are, see
        # new_param): its C-H-W flatten is a copy, whose gradient then reaches the pooling's
        # backward in the other format, which copies twice more (LeNet batch 256: ~0.3 ms of a
        # 10.5 ms step). Read in memory order (H-W-C) the flatten is a view; the weight, kept in
        # the contract's (out, C*H*W), is permuted to match at each call (48k numbers for LeNet).
        _, channels, height, width = in_shape
        size = channels * height * width

        def flatten_dense(x, w, bias):
            if x.shape[1:] != (channels, height, width) or not x.is_contiguous(memory_format=torch.channels_last):
                return F.linear(torch.flatten(x, 1), w, bias)
            hwc = w.reshape(-1, channels, height, width).permute(0, 2, 3, 1).reshape(-1, size)
            return F.linear(x.permute(0, 2, 3, 1).reshape(-1, size), hwc, bias)

        return flatten_dense

    def inference(self):
        return torch.no_grad()

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
        value = torch.tensor(array, device=self.device)
        if value.dim() == 4:
            # a conv weight, kept channels-last (same OIHW shape and values, NHWC strides): torch
            # then runs a model's convolutions, pooling and activations on oneDNN's NHWC kernels,
            # which measured 20-28% quicker for a LeNet step on this CPU (batch 32: 2.4 vs 3.1
            # ms; 256: 11.1 vs 13.4). ``to``, not ``contiguous``: a one-channel kernel counts
            # as contiguous in both formats and would keep NCHW strides.
            value = value.to(memory_format=torch.channels_last)
        return torch.nn.Parameter(value)

    def assign(self, param, value):
        with torch.no_grad():
            param.copy_(torch.as_tensor(value))

    def sgd_update(self, params, grads, lr):
        weights = list(params.values())
        _sgd(weights, [grads[name] for name in params], lr)

    def train_step(self, loss_fn, lr, compile):
        """Eager: forward and loss, gradients by autograd, one fused SGD update. Compiled: the
        whole step (forward, gradients by ``torch.func``, the update) as one ``torch.compile``
        graph (:func:`_whole_step`) for the first batch shape each model trains on, the eager
        step otherwise (:class:`_FirstShapeCompiled`)."""

        def eager_step(model, params, *args):
            weights = list(params.values())
            with torch.enable_grad():
                loss = loss_fn(model, *args)
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
            _sgd(weights, grads, lr)
            return loss.detach()

        if not compile:
            return eager_step

        def make(model, params):
            return _FirstShapeCompiled(_whole_step(model, params, loss_fn, lr),
                                       lambda *args: eager_step(model, params, *args))

        per_model = per_model_fn(make)
        return lambda model, params, *args: per_model(model, params)(*args)

    def model_value_and_grad(self, loss_fn, compile):  # eager: see README for why
        def wrapped(model, params, *args):
            with torch.enable_grad():
                loss = loss_fn(model, *args)
                # a loss of no parameter (an empty batch's) has zero gradients
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True) \
                    if loss.requires_grad else [None] * len(params)
            return loss.detach(), {
                name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(params.items(), grads)
            }

        return wrapped


BACKEND = TorchBackend()
