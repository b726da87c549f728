"""What a backend module translates. Arguments arrive already checked and normalised.

A backend file in ``backends/`` defines a subclass of :class:`Backend` and an instance named
``BACKEND``. Layout everywhere: NCHW activations, OIHW kernels. Padding arrives as explicit pairs
``((top, bottom), (left, right))`` and strides as ``(sh, sw)``; pooling windows never lie wholly in
padding. Tensor helpers default to a NumPy-like array namespace ``xp`` (NumPy, jax.numpy,
mxnet.np); frameworks with other spellings override them.
"""

from __future__ import annotations

import numpy as np


class Backend:
    """One framework's translation of the d2lconv operators."""

    name: str = ""
    #: True where gradients exist (every framework, not the NumPy reference)
    differentiable: bool = True
    xp = np

    # --- devices ------------------------------------------------------------------------------
    def devices(self) -> list[str]:
        """The devices the framework sees, as its own names."""
        return ["cpu"]

    def gpu_count(self) -> int:
        return 0

    def use_gpu(self, model) -> None:
        """Compute on the first GPU from now on, ``model`` included (called only when one exists)."""
        raise NotImplementedError(f"backend {self.name!r} cannot use a GPU")

    # --- conversion -------------------------------------------------------------------------
    def from_numpy(self, array: np.ndarray):
        """A native tensor holding a copy of ``array``, with its dtype."""
        return self.xp.array(array, dtype=array.dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def is_native(self, x) -> bool:
        """True for this framework's own tensors, which pass through unconverted."""
        raise NotImplementedError

    def shape(self, x) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x) -> np.dtype:
        return np.dtype(x.dtype)

    def cast(self, x, dtype: np.dtype):
        return x.astype(dtype)

    # --- tensor helpers ---------------------------------------------------------------------
    def reshape(self, x, shape):
        return self.xp.reshape(x, shape)

    def transpose(self, x, axes):
        return self.xp.transpose(x, axes)

    def stack(self, xs, axis):
        return self.xp.stack(xs, axis=axis)

    def concat(self, xs, axis):
        return self.xp.concatenate(xs, axis=axis)

    def matmul(self, a, b):
        return self.xp.matmul(a, b)

    def reduce_sum(self, x, axis, keepdims):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def abs(self, x):
        return self.xp.abs(x)

    def sigmoid(self, x):
        raise NotImplementedError(f"backend {self.name!r} does not implement sigmoid")

    # --- operators --------------------------------------------------------------------------
    def conv2d(self, x, w, bias, stride, pads):
        """Cross-correlation of NCHW ``x`` with OIHW ``w``, plus ``bias`` of shape (O,) if given."""
        raise NotImplementedError(f"backend {self.name!r} does not implement conv2d")

    def max_pool(self, x, window, stride, pads):
        """Max over each window of NCHW ``x``; padded cells are -inf. As NumPy's ``max``: a window
        holding NaN gives NaN, a window of -inf gives -inf."""
        raise NotImplementedError(f"backend {self.name!r} does not implement max pooling")

    def max_pool_edges(self, y, x, window, stride, pads):
        """``y``, a max pooling of ``x`` by a framework whose max skips NaN and starts from the
        dtype's lowest finite value, corrected to NumPy's semantics: NaN where a window holds NaN,
        -inf where a window holds only -inf and padding. Comparisons, one average pooling and
        arithmetic: no ``where`` (slow on MXNet), no scaling of ``x`` (subnormals are slow)."""
        dtype = self.dtype(x)
        area = window[0] * window[1]
        # a cell counts 1 above -inf and area + 1 as NaN (NaN > -inf is false): exact small sums
        marks = self.cast(x > -np.inf, dtype) + self.cast(x != x, dtype) * (area + 1)
        counts = self.avg_pool(marks, window, stride, pads) * area
        has_nan = self.cast(counts > area + 0.5, dtype)
        only_neg_inf = self.cast(counts < 0.5, dtype)
        # log(0) = -inf where only -inf; 0 / 0 = NaN where a NaN; + 0 elsewhere
        return y + self.xp.log(1 - only_neg_inf) + 0 / (1 - has_nan)

    def avg_pool(self, x, window, stride, pads):
        """Sum over each window of NCHW ``x`` divided by the window's area; padded cells are 0."""
        raise NotImplementedError(f"backend {self.name!r} does not implement average pooling")

    def value_and_grad(self, fn, argnums: tuple[int, ...]):
        """A function returning ``(fn(*args), (d fn / d args[i] for i in argnums))``."""
        raise NotImplementedError(
            f"backend {self.name!r} computes no gradients; choose torch, tensorflow, jax or mxnet"
        )

    def cross_entropy(self, logits, labels):
        """Mean over the batch of -log softmax(logits)[label]; ``labels`` are integer class ids."""
        raise NotImplementedError(f"backend {self.name!r} does not implement cross_entropy")

    # --- modules and parameters -------------------------------------------------------------
    #: the framework's native module class wrapping a d2lconv layer (see d2lconv.layers)
    Module = None

    def new_param(self, name: str, array: np.ndarray):
        """A native trainable parameter holding a copy of ``array``."""
        raise NotImplementedError(f"backend {self.name!r} has no trainable parameters")

    def add_param(self, module, name: str, array: np.ndarray) -> None:
        setattr(module, name, self.new_param(name, array))

    def param(self, module, name: str):
        """The native parameter ``name`` of ``module``, or None before the module is built."""
        return getattr(module, name, None)

    def value(self, param):
        """The tensor a parameter holds, as operators take it."""
        return param

    def assign(self, param, value) -> None:
        """Overwrite a parameter in place with a NumPy array or a native tensor."""
        raise NotImplementedError(f"backend {self.name!r} has no trainable parameters")

    def add_child(self, module, name: str, child) -> None:
        setattr(module, name, child)

    def child(self, module, name: str):
        return getattr(module, name)

    def train_step(self, loss_fn, lr: float, compile: bool):
        """A function of ``(model, params, *args)``: one SGD step in place, returning the loss.
        By default the gradient function followed by eager updates; compilers fuse both."""
        grad_fn = self.model_value_and_grad(loss_fn, compile)

        def step(model, params, *args):
            loss, grads = grad_fn(model, params, *args)
            self.sgd_update(params, grads, lr)
            return loss

        return step

    def sgd_update(self, params: dict, grads: dict, lr: float) -> None:
        """``param -= lr * grads[name]`` in place for every named native parameter."""
        for name, param in params.items():
            self.assign(param, self.value(param) - lr * grads[name])

    def model_value_and_grad(self, loss_fn, compile: bool):
        """A function of ``(model, params, *args)`` returning ``(loss_fn(model, *args), grads)``,
        ``grads`` keyed like ``params`` (canonical name -> native parameter of ``model``);
        compiled with the framework's compiler when ``compile`` is true and it has one."""
        raise NotImplementedError(
            f"backend {self.name!r} computes no gradients; choose torch, tensorflow, jax or mxnet"
        )
