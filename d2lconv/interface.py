"""What a backend module translates. Arguments arrive already checked and normalised.

A backend file in ``backends/`` defines a subclass of :class:`Backend` and an instance named
``BACKEND``. Layout everywhere: NCHW activations, OIHW kernels. Padding arrives as explicit pairs
``((top, bottom), (left, right))`` and strides as ``(sh, sw)``; pooling windows never lie wholly in
padding. Tensor helpers default to a NumPy-like array namespace ``xp`` (NumPy, jax.numpy,
mxnet.np); frameworks with other spellings override them.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from d2lconv.args import flattened_shape
from d2lconv.pool_counts import inside_fraction


#: Up to this many elements a max pooling's NaN/inf check is NumPy's dot over a view of the host
#: tensor (DLPack, no copy); beyond, the framework's own multi-threaded reduction is quicker.
#: Measured on 2 cores, TF 2.21, the view's dot against ``reduce_sum``: 150k elements 7 vs 154 us,
#: 1.2M 168 vs 373, 4.1M 574 vs 696, 5.6M 793 vs 766.
FINITE_IN_NUMPY_UP_TO = 1 << 22


def surely_finite(array: np.ndarray) -> bool:
    """True when the NumPy ``array`` holds no NaN and no infinity, by one dot product of it with
    itself (0.7 vs 2.0 us for ``isfinite(...).all()`` at 4.7k elements, 165 vs 233 us at 1.2M).
    Also False when finite values square past the dtype's largest (float32: beyond ~1.8e19);
    callers then take their exact path for non-finite inputs, which gives the same answer."""
    flat = array.ravel()
    return math.isfinite(np.dot(flat, flat))


class ModelLoss:
    """The Trainer's loss, ``loss(model, X, y)``: the backend's unchecked cross-entropy of
    ``model(X)``. ``X`` reaches the model unchanged, so a backend's training step may look at it
    before choosing how the model computes (TF and MXNet pad channels only for a finite batch)."""

    def __init__(self, b: "Backend"):
        self.cross_entropy = b.cross_entropy

    def __call__(self, model, X, y):
        return self.cross_entropy(model(X), y)


class Backend:
    """One framework's translation of the d2lconv operators."""

    name: str = ""
    #: True where gradients exist (every framework, not the NumPy reference)
    differentiable: bool = True
    #: True where no operation changes a tensor in place (TensorFlow, JAX), so a converted batch
    #: can be handed out again: data modules then convert their validation set only once
    immutable_tensors: bool = False
    #: True where every eager operation is compiled before it runs (JAX): what needs only shapes
    #: is traced (:meth:`abstractly`), and the Trainer builds a model without running it
    eager_calls_compile: bool = False
    #: None where a tensor's ``shape`` and ``dtype`` are quick to read (the operators' plan keys
    #: read them at every call); else ``fn(x)``: a hashable stand-in for the two, read quicker
    operand_key = None
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

    def batch_from_numpy(self, array: np.ndarray):
        """:meth:`from_numpy` for a batch a data loader has just made and will not touch again
        (C-contiguous, of d2lconv's default dtypes): it may share the array's memory."""
        return self.from_numpy(array)

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

    def abstractly(self, fn, *args):
        """``fn(*args)`` where only its checks and the shapes and dtypes of its result matter (a
        model's checked pass): run as it is where an eager call costs what it computes; traced
        without computing where every eager operation is compiled first (JAX)."""
        return fn(*args)

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

    def sigmoid_in_place_fn(self):
        """``fn(x)``: :meth:`sigmoid` of an ``x`` that nothing else reads (a convolution's or
        dense layer's fresh output inside a container), which it may overwrite; None (the
        default) where the framework has no in-place form or its compiler plans memory itself."""
        return None

    def outside_compiler(self, fn):
        """``fn`` as it runs where a compiler traces its caller (an operator's planning: checks,
        caches, NumPy): as plain Python. By default ``fn`` itself: ``tf.function``, ``jax.jit``
        and ``hybridize`` run Python as it is while they trace."""
        return fn

    # --- built operators: what a built model's forward pass calls --------------------------
    #: the layout of activations inside a built model; "NCHW", or "NHWC" where the framework's
    #: CPU kernels want it (a model converts once at its edges, see :mod:`d2lconv.layers`)
    layout: str = "NCHW"

    def to_internal(self, x):
        """``x`` from NCHW into :attr:`layout` (at a model's input edge); tensors that are not
        4-D pass through unchanged."""
        return x

    def to_nchw(self, x):
        """``x`` from :attr:`layout` back into NCHW (at a model's output edge, before a flatten);
        tensors that are not 4-D pass through unchanged."""
        return x

    # A backend defines the built operators below; the base class adds count_include_pad=False.
    def conv2d_fn(self, stride, pads):
        """``fn(x, w, bias_or_None)``: cross-correlation with ``stride`` and ``pads`` fixed, ``x``
        in :attr:`layout`, ``w`` as :meth:`stored` gives it (OIHW unless the backend keeps its own
        layout), ``bias`` of shape (O,) or None. Built once per layer."""
        raise NotImplementedError(f"backend {self.name!r} does not implement conv2d")

    #: where the framework's CPU convolutions want channel counts in multiples of a block
    #: (TF's and MXNet's oneDNN: 8), that block; None elsewhere. A built container's first
    #: convolution, when its output reaches the next convolution only through per-channel layers,
    #: may then compute zero channels up to the block, which the next one reads with zero weights (see
    #: :func:`d2lconv.layers._channel_blocked_convs`): the same sums for every real channel, for
    #: a finite input (a zero filter over an infinity gives NaN), which the backend checks first.
    channel_block: int | None = None

    def blocked_conv2d_fn(self, stride, pads, extra_out: int, extra_in: int):
        """:meth:`conv2d_fn` with the weight zero-padded by ``extra_out`` filters (the bias by as
        many zeros: those output channels are zeros) and by ``extra_in`` input channels (``x``
        has that many more channels than the weight, which they do not affect). Needed only
        where :attr:`channel_block` is set."""
        raise NotImplementedError(f"backend {self.name!r} pads no convolution channels")

    def max_pool_fn(self, window, stride, pads):
        """``fn(x)``: max over each window of ``x`` in :attr:`layout`; padded cells are -inf. As
        NumPy's ``max``: a window holding NaN gives NaN, a window of -inf gives -inf."""
        raise NotImplementedError(f"backend {self.name!r} does not implement max pooling")

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        """``fn(x)``: average pooling with its configuration fixed, ``x`` in :attr:`layout`.

        A backend implements ``count_include_pad=True`` (padded cells are zeros, the divisor the
        window's area); for False this default divides that by the share of each window inside
        the input (:func:`d2lconv.pool_counts.inside_fraction`), made a tensor once per input size
        and dtype, for NCHW layouts.
        """
        if count_include_pad:
            raise NotImplementedError(f"backend {self.name!r} does not implement average pooling")
        avg_pool = self.avg_pool_fn(window, stride, pads, True)
        if pads == ((0, 0), (0, 0)):
            return avg_pool
        fraction, fractions = inside_fraction(window, stride, pads), {}

        def pool(x):
            key = (*self.shape(x)[2:], self.dtype(x))
            if key not in fractions:
                fractions[key] = self.from_numpy(fraction(*key))
            return avg_pool(x) / fractions[key]

        return pool

    def dense_fn(self):
        """``fn(x, w, bias_or_None)``: ``x @ w.T + bias`` for (N, in) ``x`` and (out, in) ``w``."""
        matmul, transpose = self.matmul, self.transpose

        def dense(x, w, bias):
            y = matmul(x, transpose(w, (1, 0)))
            return y if bias is None else y + bias

        return dense

    def flatten_fn(self):
        """``fn(x)``: (N, ...) in :attr:`layout` -> (N, C*H*W) in C-H-W order."""
        to_nchw, reshape, shape = self.to_nchw, self.reshape, self.shape

        def flatten(x):
            x = to_nchw(x)
            return reshape(x, flattened_shape(shape(x)))

        return flatten

    def flatten_order_dense(self, module, in_shape):
        """For a Dense layer ``module`` (built) that reads a Flatten of an activation of shape
        ``in_shape`` in :attr:`layout` inside a container: read the activation in the order it
        is laid out in memory (H-W-C for NHWC), with the weight kept in that order (TensorFlow)
        or permuted to it per call (torch), so the Flatten costs no transpose or copy, and
        return ``fn(x, w, bias_or_None)`` computing Flatten then Dense from the unflattened
        ``x`` (any shape: one that is not ``in_shape`` takes the C-H-W flatten). :meth:`value`,
        :meth:`assign` and gradients keep speaking the contract's (out, C*H*W). None (the
        default): the weight keeps the contract's layout and the Flatten transposes."""
        return None

    # --- operators: what the public (NCHW) operators run, built once per configuration ------
    # Where :attr:`layout` is NCHW these are the built operators; other layouts define them.
    def nchw_conv2d_fn(self, stride, pads):
        """``fn(x, w, bias_or_None)``: :meth:`conv2d_fn` for NCHW ``x`` (NCHW out)."""
        self._check_nchw("nchw_conv2d_fn")
        return self.conv2d_fn(stride, pads)

    def nchw_max_pool_fn(self, window, stride, pads):
        """``fn(x)``: :meth:`max_pool_fn` for NCHW ``x`` (NCHW out)."""
        self._check_nchw("nchw_max_pool_fn")
        return self.max_pool_fn(window, stride, pads)

    def nchw_avg_pool_fn(self, window, stride, pads, count_include_pad):
        """``fn(x)``: :meth:`avg_pool_fn` for NCHW ``x`` (NCHW out)."""
        self._check_nchw("nchw_avg_pool_fn")
        return self.avg_pool_fn(window, stride, pads, count_include_pad)

    def image_conv2d_fn(self, x_shape, w_shape, out_shape):
        """``fn(x, w, None)``: the cross-correlation of one image ``x`` with kernels ``w`` at
        stride 1 without padding (the book's ``corr2d`` forms, built once per shape): ``x`` and
        ``w`` of any shapes holding NCHW ``x_shape`` (N = 1) and OIHW ``w_shape``, the result
        reshaped to ``out_shape``; by default :meth:`nchw_conv2d_fn` between reshapes."""
        run, reshape = self.nchw_conv2d_fn((1, 1), ((0, 0), (0, 0))), self.reshape
        return lambda x, w, bias: reshape(run(reshape(x, x_shape), reshape(w, w_shape), None), out_shape)

    def _check_nchw(self, method: str) -> None:
        if self.layout != "NCHW":
            raise NotImplementedError(f"backend {self.name!r} computes in {self.layout}: it must define {method}")

    def max_pool_edges(self, y, x, window, avg_pool):
        """``y``, a max pooling of ``x`` by a framework whose max skips NaN and starts from the
        dtype's lowest finite value, corrected to NumPy's semantics: NaN where a window holds NaN,
        -inf where a window holds only -inf and padding. Comparisons, one average pooling and
        arithmetic: no ``where`` (slow on MXNet), no scaling of ``x`` (subnormals are slow).
        ``avg_pool`` is the matching average pooling (same window, stride, padding and layout)."""
        dtype = self.dtype(x)
        area = window[0] * window[1]
        # a cell counts 1 above -inf and area + 1 as NaN (NaN > -inf is false): exact small sums
        marks = self.cast(x > -np.inf, dtype) + self.cast(x != x, dtype) * (area + 1)
        counts = avg_pool(marks) * area
        has_nan = self.cast(counts > area + 0.5, dtype)
        only_neg_inf = self.cast(counts < 0.5, dtype)
        # log(0) = -inf where only -inf; 0 / 0 = NaN where a NaN; + 0 elsewhere
        return y + self.xp.log(1 - only_neg_inf) + 0 / (1 - has_nan)

    def evaluation_fn(self, model):
        """``fn(X)``: ``model``'s output, for evaluating it over and over in a training run (built
        once per :meth:`d2lconv.Trainer.fit`); compiled where a compile repays itself within a few
        epochs; by default ``model`` itself."""
        return model

    def inference(self):
        """A context in which forward passes record nothing for gradients (evaluation)."""
        return contextlib.nullcontext()

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
        """The tensor a parameter holds, in the contract's layout (OIHW conv weights), as the
        checked operators take it."""
        return param

    def stored(self, param):
        """A parameter as the built operators take it (:meth:`conv2d_fn`, :meth:`dense_fn`):
        :meth:`value`, unless the backend keeps a layout of its own (TensorFlow: HWIO)."""
        return self.value(param)

    def assign(self, param, value) -> None:
        """Overwrite a parameter in place with a NumPy array or a native tensor."""
        raise NotImplementedError(f"backend {self.name!r} has no trainable parameters")

    def add_child(self, module, name: str, child) -> None:
        setattr(module, name, child)

    def child(self, module, name: str):
        return getattr(module, name)

    #: training images after which compiling the train step pays for its compile time (the
    #: Trainer compiles a run at least this long unless told otherwise); 0: compiling is cheap
    compile_pays_after: int = 0

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
