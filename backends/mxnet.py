"""MXNet 1.9.1 in NumPy mode: npx.convolution and npx.pooling, NCHW natively.

MXNet's own padding arguments are symmetric, so asymmetric padding is made explicit first.
``mxnet.np.pad`` ignores ``constant_values`` (it always pads with zeros), so max pooling adds a
constant -inf mask over the padded cells instead.
"""

import ctypes
import functools
import math
import threading

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx

from d2lconv.interface import FINITE_IN_NUMPY_UP_TO, Backend, ModelLoss, surely_finite
from d2lconv.layers import LayerModule, checked_input, empty_batch_output, input_containers, run

npx.set_np()
mnp = mx.np
#: without a GPU every array is in host memory, where NumPy reads it through a view; with one, an
#: array's context is read first (a GPU array stays with MXNet's own reduction)
ALL_ON_HOST = mx.context.num_gpus() == 0


class _HostArray:
    """A host MXNet array behind the DLPack protocol ``np.from_dlpack`` reads (MXNet 1.9.1's
    arrays have only ``to_dlpack_for_read``, which waits for pending writes), so NumPy shares its
    memory instead of copying it: 2.3 vs 5.8 us at batch 1 (6 x 28 x 28)."""

    __slots__ = ("capsule",)

    def __init__(self, x):
        self.capsule = x.to_dlpack_for_read()

    def __dlpack__(self, **_):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # DLPack's kDLCPU, device 0


def _finite_on_host(x):
    """:func:`surely_finite` of a host array's memory read through DLPack, or None where MXNet
    holds ``x`` in one of oneDNN's blocked layouts, which has no plain view (seen on the
    activation of a convolution with padded channels)."""
    try:
        view = np.from_dlpack(_HostArray(x))
    except mx.base.MXNetError:
        return None
    return surely_finite(view)


def _new_operand_reads():
    """ctypes values for :func:`_operand_key` (one set per thread) and references to them."""
    ndim, sizes, dtype = mx.base.mx_int(), ctypes.POINTER(_SIZE_TYPE)(), ctypes.c_int()
    return ctypes.byref(ndim), ctypes.byref(sizes), ctypes.byref(dtype), ndim, sizes, dtype


_INT64_SIZES = mx.runtime.Features().is_enabled("INT64_TENSOR_SIZE")
_SIZE_TYPE = mx.base.mx_int64 if _INT64_SIZES else mx.base.mx_int
_GET_SHAPE = mx.base._LIB.MXNDArrayGetShapeEx64 if _INT64_SIZES else mx.base._LIB.MXNDArrayGetShapeEx
_operand_reads = threading.local()


def _operand_key(x):
    """``(shape, dtype code)`` of an MXNet array: what ``x.shape`` and ``x.dtype`` read (3.6 and
    2.6 us on an AMD EPYC, 1.2 and 0.9 on an Intel Xeon), through the same C calls into ctypes
    values made once per thread (2.2 and 1.0 us there)."""
    try:
        reads = _operand_reads.values
    except AttributeError:
        reads = _operand_reads.values = _new_operand_reads()
    ndim_ref, sizes_ref, dtype_ref, ndim, sizes, dtype = reads
    handle = x.handle
    mx.base.check_call(_GET_SHAPE(handle, ndim_ref, sizes_ref))
    mx.base.check_call(mx.base._LIB.MXNDArrayGetDType(handle, dtype_ref))
    return tuple(sizes[:ndim.value]), dtype.value


def _npx_op(name, **params):
    """``fn(*arrays)``: ``npx.<name>(*arrays, **params)``. Eager arrays go through the C call
    that npx's generated function makes (``MXImperativeInvokeEx``, which autograd records the
    same way), with the operator's handle and the parameters' strings prepared once instead of
    at every call: 162 vs 197 us for a batch-1 LeNet convolution, 139 vs 173 us for its pooling
    (AMD EPYC; MXNet 1.9.1 is its last release). Symbols (a hybridized graph's trace) take
    ``mx.sym.npx``'s function."""
    handle = mx.base.OpHandle()
    mx.base.check_call(mx.base._LIB.NNGetOpHandle(mx.base.c_str(f"_npx_{name}"), ctypes.byref(handle)))
    count, keys = ctypes.c_int(len(params)), mx.base.c_str_array(list(params))
    values = mx.base.c_str_array([str(value) for value in params.values()])
    symbolic = functools.partial(getattr(mx.sym.npx, name), **params)

    def op(*arrays):
        if isinstance(arrays[0], mx.sym.Symbol):
            return symbolic(*arrays)
        outputs, made, stypes = ctypes.c_int(0), ctypes.POINTER(mx.base.NDArrayHandle)(), ctypes.POINTER(ctypes.c_int)()
        mx.base.check_call(mx.base._LIB.MXImperativeInvokeEx(
            handle, len(arrays), mx.base.c_handle_array(arrays), ctypes.byref(outputs), ctypes.byref(made),
            count, keys, values, ctypes.byref(stypes)))
        return mnp.ndarray(handle=ctypes.cast(made[0], mx.base.NDArrayHandle))  # dense: these ops make no other

    return op


def _weighted_op(name, config):
    """``fn(x, w, bias_or_None)``: :func:`_npx_op` ``name`` with the parameters ``config(w)``
    (read from the first weight seen) and ``no_bias`` as the call says."""
    made = {}  # by whether a bias is given

    def op(x, w, bias):
        without = bias is None
        fn = made.get(without)
        if fn is None:
            fn = made[without] = _npx_op(name, no_bias=without, **config(w))
        return fn(x, w) if without else fn(x, w, bias)

    return op


_SIGMOID, _BATCH_FLATTEN = _npx_op("activation", act_type="sigmoid"), _npx_op("batch_flatten")


def _backward(value) -> bool:
    """``value.backward()``; False, computing nothing, where ``value`` depends on nothing autograd
    recorded (MXNet raises then; its gradients are zero)."""
    try:
        value.backward()
    except mx.base.MXNetError as error:
        if "not in a computational graph" not in str(error):
            raise
        return False
    return True


def _sgd(weights, grads, lr):
    """``w -= lr * g`` in place for every weight, one ``sgd_update`` each: one
    ``multi_sgd_update`` over LeNet's ten weights measured ~440 us a step here (its list
    arguments included), the ten calls 180 us."""
    for w, g in zip(weights, grads):
        w = w.as_nd_ndarray()  # a legacy operator
        mx.nd.sgd_update(w, g.as_nd_ndarray(), lr=lr, out=w)


def _view(x, shape):
    """``x`` reshaped to ``shape`` (positive sizes, same size) as the legacy ``NDArray.reshape``
    makes it, through the same C call but without its two NumPy size products and handle
    conversions (MXNet 1.9.1 is its last release): ~4 vs ~14 us a reshape here."""
    handle = mx.base.NDArrayHandle()
    mx.base.check_call(mx.base._LIB.MXNDArrayReshape64(
        x.handle, len(shape), mx.base.c_array(ctypes.c_int64, shape), False, ctypes.byref(handle)))
    return mnp.ndarray(handle=handle, writable=x.writable)


def _ops(x):
    """``(np, npx)`` for ``x``: the symbolic namespaces while a hybridized block is traced."""
    return (mx.sym.np, mx.sym.npx) if isinstance(x, mx.sym.Symbol) else (mnp, npx)


def _symmetric(pads):
    """``(ph, pw)`` when both sides of each axis get the same padding, else None."""
    (top, bottom), (left, right) = pads
    return (top, left) if top == bottom and left == right else None


def _padded(np_, x, pads):
    """``x`` with explicit zero padding (``np.pad`` pads with zeros only)."""
    return np_.pad(x, ((0, 0), (0, 0), *pads), mode="constant")


def _options(**options):
    """The keyword arguments that differ from MXNet's defaults: each one passed costs ~1 us of
    string conversion per call (stride (1, 1), pad (0, 0), count_include_pad True are defaults)."""
    defaults = {"stride": (1, 1), "pad": (0, 0), "count_include_pad": True}
    return {name: value for name, value in options.items() if name not in defaults or value != defaults[name]}


def _weight_shape_config(make):
    """A config dict filled by ``make(weight_shape)`` on the first call: the kernel size and
    output count that MXNet's ops need as arguments. A traced weight (a symbol) has no ``shape``;
    its shape is inferred from the parameter's (a padded weight's first call is a trace)."""
    config = {}

    def get(w):
        if not config:
            shape = w.infer_shape()[1][0] if isinstance(w, mx.sym.Symbol) else w.shape
            config.update(make(tuple(shape)))
        return config

    return get


def _first_forward(model, loss_fn, compile, padded, args):
    """``(forward, loss of args)``: the fused hybridized block (its model's channels padded if
    ``padded``) when ``loss_fn`` traces symbolically, else ``loss_fn`` run eagerly over the
    model hybridized alone."""
    if compile:
        fused = _FusedLoss(model, loss_fn, padded)
        try:
            return fused, fused(*args)
        except (TypeError, ValueError, AttributeError, NotImplementedError,
                mx.base.MXNetError):  # not symbolic-safe
            model.hybridize(static_alloc=True, static_shape=True)
    eager = functools.partial(loss_fn, model)
    return eager, eager(*args)


#: ``.containers``: while a model's graph is traced with padded channels in this thread, its
#: containers that read its input (:func:`~d2lconv.layers.input_containers`)
_padded_trace = threading.local()


class _FusedLoss(gluon.HybridBlock):
    """``loss_fn(model, *args)`` (a loss, or :func:`_output`) as one hybridized block: one cached
    graph for the forward pass, the loss and their backward pass; with ``padded``, the model's
    ``d2l_blocked`` convolutions compute padded channels in it."""

    def __init__(self, model, loss_fn, padded=False):
        super().__init__()
        self.model, self.loss_fn, self.padded = model, loss_fn, padded
        self.hybridize(static_alloc=True, static_shape=True)

    def hybrid_forward(self, F, *args):  # called only to trace the graph
        _padded_trace.containers = input_containers(self.model) if self.padded else ()
        try:
            return self.loss_fn(self.model, *args)
        finally:
            _padded_trace.containers = ()


def _output(model, x):
    return model(x)


def _padded_dtype(model):
    """The dtype of the input ``model``'s forward pass may compute padded channels for (its
    parameters'), or None where it pads none (``d2l_blocked_fn``, see
    :func:`d2lconv.layers.blocked_forward`). A traced graph does not cast its input as the
    model's call does (integer images), so only that dtype pads."""
    if model.d2l_blocked_fn is None:
        return None
    return next(iter(model.collect_params().values())).dtype


def _pads(x, dtype) -> bool:
    """Whether ``x`` may run through padded channels: an array of ``dtype`` (None: none may)
    found finite on the host (a zero filter over an infinity gives NaN)."""
    return isinstance(x, mnp.ndarray) and x.dtype == dtype and _finite_on_host(x) is True


class Module(LayerModule, gluon.HybridBlock):
    """A d2lconv layer as a Gluon ``HybridBlock``: parameters and children registered with Gluon,
    so a built model can be hybridized (the Trainer does)."""

    backend_name = "mxnet"

    def __init__(self, layer):
        gluon.HybridBlock.__init__(self)
        self.d2l_layer = layer

    def __setstate__(self, state):
        """As Python unpickles, then the parameters marked for autograd again: Gluon pickles
        their arrays and gradient buffers but not that mark (its own blocks then fail to train:
        "Cannot differentiate node because it is not in a computational graph")."""
        self.__dict__.update(state)
        for param in self._reg_params.values():
            if param._data is not None:
                param._init_grad()

    def d2l_hooked(self):  # Gluon's __call__ runs these two kinds
        below = list(self._children.values())
        for block in below:  # grows while it is read: every module below
            below.extend(block._children.values())
        return any(block._forward_pre_hooks or block._forward_hooks for block in below)

    def forward(self, x, *args):
        if self.d2l_fn is None or not isinstance(x, (mnp.ndarray, mx.sym.Symbol)):
            return run(self, x)  # the first call builds; a non-tensor input is converted
        if isinstance(x, mnp.ndarray):
            x = checked_input(self, x)
            if x.shape[0] == 0:  # not through MXNet's kernels (see empty_batch_output)
                return empty_batch_output(self, x)
        return gluon.HybridBlock.forward(self, x, *args)

    def hybrid_forward(self, F, x, **params):
        layer = self.d2l_layer
        if layer.child_names:
            blocked = self.d2l_blocked  # padded only in a graph traced for them (_FusedLoss)
            if blocked and not any(c is self for c in getattr(_padded_trace, "containers", ())):
                blocked = ()
            for name in layer.child_names:
                child = self._children[name]
                x = _blocked_call(child, x) if name in blocked else child(x)
            return x
        return self.d2l_native(x, *[params[name] for name in layer.param_names])


def _blocked_call(conv, x):
    """A Conv child's forward with padded channels (``d2l_blocked_native``, see
    ``d2lconv.layers._channel_blocked_convs``) in a traced graph, given the parameters' symbols
    as Gluon's ``forward`` would hand them to its ``hybrid_forward``."""
    params = {name: p.var() for name, p in conv._reg_params.items()}
    return conv.d2l_blocked_native(x, *[params[name] for name in conv.d2l_layer.param_names])


class MxnetBackend(Backend):
    name = "mxnet"
    xp = mnp
    operand_key = staticmethod(_operand_key)

    def devices(self):
        return ["cpu"] + [f"gpu({i})" for i in range(mx.context.num_gpus())]

    def gpu_count(self):
        return mx.context.num_gpus()

    def batch_from_numpy(self, array):
        # shared through DLPack: no copy through MXNet's engine, which waits for its thread
        # (a batch of 32 images: 20 vs 176 us; its labels 17 vs 150 us)
        if mx.context.current_context().device_type != "cpu":
            return self.from_numpy(array)
        return mx.nd.from_numpy(array, zero_copy=True, array_cls=mnp.ndarray)

    def to_numpy(self, x):
        if isinstance(x, mx.sym.Symbol):
            raise NotImplementedError(
                "backend 'mxnet': d2lconv's operators take arrays, not the symbols of a hybridized "
                "block's graph; call them on arrays, or build the block from d2lconv's layers, "
                "which hybridize")
        return x.asnumpy()

    def is_native(self, x):
        return isinstance(x, mnp.ndarray)

    def reshape(self, x, shape):
        # the legacy NDArray's reshape is a view (recorded by autograd) with no engine operation:
        # corr2d's three reshapes made a 6x8 corr2d with its sync 177 us, as views 128 us (one
        # convolution: 116-125 us). Its shapes give 0 and -1 other meanings: only positive sizes.
        if type(x) is mnp.ndarray and all(type(size) is int and size > 0 for size in shape) \
                and math.prod(shape) == x.size:
            return _view(x, shape)
        return mnp.reshape(x, shape)

    def sigmoid(self, x):
        return _SIGMOID(x)  # the oneDNN kernel Gluon layers use

    def conv2d_fn(self, stride, pads):
        padding = _symmetric(pads)
        options = _options(stride=stride, pad=padding or (0, 0))
        config = _weight_shape_config(lambda shape: {"kernel": shape[2:], "num_filter": shape[0], **options})

        convolve = _weighted_op("convolution", config)
        if padding is not None:
            return convolve
        return lambda x, w, bias: convolve(_padded(_ops(x)[0], x, pads), w, bias)

    # oneDNN runs LeNet's convolutions on its GEMM kernels with 6 channels and on its blocked
    # JIT kernels with 8: a batch-256 step with the first layer's 6 filters padded to 8 (and the
    # second layer reading them with zero weights) took 21.2 vs 25.3 ms for Gluon's step (which
    # d2lconv's matched before), batch 32 3.2 vs 3.9 ms. Measured on oneDNN only: not with a GPU.
    channel_block = 8 if ALL_ON_HOST else None

    def blocked_conv2d_fn(self, stride, pads, extra_out, extra_in):
        conv = self.conv2d_fn(stride, pads)  # its kernel shape comes from the padded weight
        weight_pads, bias_pads = ((0, extra_out), (0, extra_in), (0, 0), (0, 0)), ((0, extra_out), (0, 0))

        def blocked(x, w, bias):
            np_ = _ops(x)[0]  # np.pad pads with zeros, and takes no 1-D array
            if bias is not None and extra_out:
                bias = np_.pad(bias.reshape(-1, 1), bias_pads, mode="constant").reshape(-1)
            return conv(x, np_.pad(w, weight_pads, mode="constant"), bias)

        return blocked

    def _max_pool_fn(self, window, stride, pads):
        padding = _symmetric(pads)
        if padding is not None:  # MXNet's max pooling never lets padded cells win
            return _npx_op("pooling", **_options(kernel=window, stride=stride, pad=padding, pool_type="max"))

        options = _options(kernel=window, stride=stride, pool_type="max")

        def max_pool(x):  # np.pad pads with zeros only: padded cells become -inf through a mask
            np_, npx_ = _ops(x)
            # added, not chosen with np.where(inside, x, -inf): MXNet 1.9.1 passes no gradient
            # to x through where's array branch when the other is a scalar
            mask = np_.where(_padded(np_, np_.ones_like(x), pads), 0, -np.inf)
            return npx_.pooling(_padded(np_, x, pads) + mask, **options)

        return max_pool

    def max_pool_fn(self, window, stride, pads):
        pool = self._max_pool_fn(window, stride, pads)
        avg_pool = self.avg_pool_fn(window, stride, pads, True)

        def max_pool(x):
            y = pool(x)
            if not isinstance(x, mnp.ndarray):
                return y  # a hybridized graph: no data-dependent branch (README: known gap)
            # finite means no NaN and no -inf anywhere, so MXNet's max is NumPy's already; the
            # check waits for x (one sync) and runs while the engine pools, which costs far less
            # than the correction on MXNet (2x2 max pooling of 1.2M elements with the check over
            # without: 1.01-1.10; with MXNet's own reduction 1.65)
            finite = None
            if x.size <= FINITE_IN_NUMPY_UP_TO and (ALL_ON_HOST or x.ctx.device_type == "cpu"):
                finite = _finite_on_host(x)
            if finite is None:  # a global average pooling (fast) then a sum of N x C numbers
                finite = bool(mnp.isfinite(npx.pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg").sum()))
            if finite:
                return y
            return self.max_pool_edges(y, x, window, avg_pool)  # MXNet's max skips NaN

        return max_pool

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        padding = _symmetric(pads)
        if padding is not None:
            return _npx_op("pooling", **_options(kernel=window, stride=stride, pad=padding, pool_type="avg",
                                                count_include_pad=count_include_pad))

        options = _options(kernel=window, stride=stride, pool_type="avg")

        def avg_pool(x):
            np_, npx_ = _ops(x)
            y = npx_.pooling(_padded(np_, x, pads), **options)
            if count_include_pad:
                return y
            inside = _padded(np_, np_.ones_like(x), pads)
            return y / npx_.pooling(inside, **options)

        return avg_pool

    def dense_fn(self):
        return _weighted_op("fully_connected", _weight_shape_config(lambda shape: {"num_hidden": shape[0]}))

    def flatten_fn(self):
        return _BATCH_FLATTEN

    def value_and_grad(self, fn, argnums):
        def wrapped(*args):
            args = list(args)
            for i in argnums:
                args[i] = args[i].copy()
                args[i].attach_grad()
            with autograd.record():
                value = fn(*args)
            _backward(value)  # if it uses none of the inputs, their gradients stay attach_grad's zeros
            return value, tuple(args[i].grad for i in argnums)

        return wrapped

    def cross_entropy(self, logits, labels):
        npx_ = _ops(logits)[1]
        return -npx_.pick(npx_.log_softmax(logits, axis=1), labels, axis=1).mean()

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

    def sgd_update(self, params, grads, lr):
        _sgd([p.data() for p in params.values()], [grads[name] for name in params], lr)

    def evaluation_fn(self, model):
        """``model``, or for a model that pads channels (:attr:`channel_block`), its forward
        pass as one hybridized graph computing them padded, run for a batch found finite on the
        host (the model itself for any other): LeNet on 1,024 images 21.9 vs 31.2 ms (hybridized
        without padding: 31.2). Not for a model of a class of its own or one with hooks, which a
        cached graph would run only while it is traced."""
        dtype = _padded_dtype(model)
        if dtype is None or type(model) is not Module or model.d2l_hooked():
            return model
        padded = _FusedLoss(model, _output, padded=True)
        return lambda X: padded(X) if _pads(X, dtype) else model(X)

    def train_step(self, loss_fn, lr, compile):
        """Model and loss as one hybridized graph (``compile``), recorded by autograd, then an
        ``sgd_update`` per parameter in place. A loss function that cannot be traced
        symbolically (d2lconv's checked ``cross_entropy``, say) runs eagerly on the hybridized
        model. With the Trainer's loss, a batch found finite on the host runs a graph whose
        convolutions compute channels padded to :attr:`channel_block`; any other, the plain one."""
        forwards = {}  # (model, padded) -> its forward pass
        dtypes = {}  # model -> _padded_dtype(model)
        may_pad = compile and isinstance(loss_fn, ModelLoss)

        def padded_dtype(model):
            if (dtype := dtypes.get(model, False)) is False:
                dtype = dtypes[model] = _padded_dtype(model)
            return dtype

        def step(model, params, *args):
            padded = may_pad and _pads(args[0], padded_dtype(model))
            with autograd.record():
                if (forward := forwards.get((model, padded))) is None:
                    forward, loss = _first_forward(model, loss_fn, compile, padded, args)
                    forwards[model, padded] = forward
                else:
                    loss = forward(*args)
            loss.backward()
            _sgd([p.data() for p in params.values()], [p.grad() for p in params.values()], lr)
            return loss

        return step

    def model_value_and_grad(self, loss_fn, compile):  # eager: see README for why
        def wrapped(model, params, *args):
            with autograd.record():
                loss = loss_fn(model, *args)
            if not _backward(loss):  # (an empty batch's loss) not the last backward's gradients
                return loss, {name: mnp.zeros_like(p.data()) for name, p in params.items()}
            return loss, {name: p.grad().copy() for name, p in params.items()}

        return wrapped


BACKEND = MxnetBackend()
