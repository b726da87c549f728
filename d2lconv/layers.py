"""Layers: described once here, wrapped by each backend in its framework's native module class.

A :class:`Layer` says which parameters a layer has, how they are initialised (always from a NumPy
generator, so equal seeds give equal weights on every backend) and how its forward pass is
computed. A backend's ``Module`` class (a torch ``nn.Module``, a ``tf.Module``, a Flax NNX module,
a Gluon block) holds one layer, its native parameters and its child modules.

Build once, run native. The first call of a module builds it (:func:`build`): parameters are
created from the input's shape (lazy, as ``nn.LazyConv2d``) in forward order, the output is
computed with d2lconv's checked operators (clear errors on bad shapes), and the layer's native
function is made from the backend's built operators (``conv2d_fn`` ...; configuration fixed).
Every later call (:func:`run`) runs only that function: framework calls on the backend's
:attr:`~d2lconv.interface.Backend.layout`, converted from and back to NCHW once at the edges of
the outermost module called (a container runs its children's functions directly).

Layout: NCHW in and out; conv weights OIHW, dense weights (out, in); flatten in C-H-W order.
"""

from __future__ import annotations

import math

import numpy as np

from d2lconv import args, backend, ops
from d2lconv.params import named_params
from d2lconv.random import generator
from d2lconv.tensors import native


def uniform_fan_in(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the default of torch's Linear and Conv2d layers."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def xavier_uniform(rng: np.random.Generator, shape) -> np.ndarray:
    """Glorot/Xavier uniform for OIHW or (out, in) weights, as torch.nn.init.xavier_uniform_."""
    receptive = int(np.prod(shape[2:]))
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


INITS = ("default", "xavier")


class LayerInputError(ValueError):
    """An input that does not fit a built layer; each container adds its child's name, so the
    message names the layer by its canonical path (``net.7``)."""

    def __init__(self, kind: str, message: str, path: str = ""):
        self.kind, self.message, self.path = kind, message, path
        super().__init__(f"{path or 'layer'} ({kind}): {message}")

    def within(self, name: str) -> "LayerInputError":
        return LayerInputError(self.kind, self.message, f"{name}.{self.path}" if self.path else name)


class Layer:
    """A framework-agnostic layer: its parameters' initial values and its forward pass."""

    kind = "Layer"  # the name summaries print, as torch's class names
    param_names: tuple[str, ...] = ()
    child_names: tuple[str, ...] = ()
    #: its output is a new tensor that its own gradient does not read (a convolution's, a dense
    #: layer's), so the next child of the same container may overwrite it (:meth:`in_place_fn`)
    fresh_output = False

    def __init__(self, seed=None):
        # an int seed or a shared Generator; None draws from the global one when built
        self.rng = None if seed is None else generator(seed)
        # (non-batch shape, dtype) of each input checked -> the dtype it is cast to (see checked_input)
        self.input_kinds: dict[tuple, object] = {}

    def initial_values(self, rng: np.random.Generator, in_shape) -> dict[str, np.ndarray]:
        return {}

    def apply(self, values: dict, x):
        """The forward pass on NCHW ``x`` with d2lconv's checked operators (the first call)."""
        raise NotImplementedError

    def native_fn(self, b):
        """``fn(x, *param_values)`` in ``b.layout``, values in :attr:`param_names` order as
        ``b.stored`` gives them: the forward pass as ``b``'s framework calls, every configuration
        fixed now."""
        raise NotImplementedError

    def in_place_fn(self, b):
        """:meth:`native_fn` for an input that only this layer reads (see :attr:`fresh_output`),
        which it may overwrite; None where the layer has no such form."""
        return None


class ScratchConv(Layer):
    """The book's from-scratch layer (section 7.2.3): ``corr2d(x, weight) + bias`` on 2-D input."""

    kind = "Conv2D"
    param_names = ("weight", "bias")

    def __init__(self, kernel_size, seed=None):
        super().__init__(seed)
        self.kernel = args.int_pair(kernel_size, "kernel_size")

    def initial_values(self, rng, in_shape):
        return {"weight": rng.random(self.kernel).astype(np.float32), "bias": np.zeros(1, np.float32)}

    def apply(self, values, x):
        return ops.corr2d(x, values["weight"]) + values["bias"]

    def native_fn(self, b):  # the book's teaching layer keeps the checked operator
        def scratch_conv(x, weight, bias):
            with backend.use_backend(b.name):
                return self.apply({"weight": weight, "bias": bias}, x)

        return scratch_conv


class Weighted(Layer):
    """A lazy layer with a weight of shape (out, in, ...) and an optional bias of shape (out,).

    ``init="default"``: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch's layers;
    ``init="xavier"``: Xavier-uniform weight and zero bias, as the book's ``init_cnn``.
    """

    fresh_output = True

    def __init__(self, out, bias, init, seed):
        super().__init__(seed)
        self.out = args._check_int(out, "out_channels" if self.kind == "Conv2d" else "out_features", 1)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        self.param_names = ("weight", "bias") if bias else ("weight",)

    def weight_shape(self, in_shape) -> tuple[int, ...]:
        raise NotImplementedError

    def check_input(self, weight, x) -> None:
        """A LayerInputError unless ``x``'s axis 1 has the size the built ``weight`` takes."""
        b = backend.current()
        expected, got = b.shape(weight)[1], b.shape(x)
        if len(got) != len(b.shape(weight)) or got[1] != expected:
            what = "in_channels" if self.kind == "Conv2d" else "in_features"
            raise LayerInputError(
                self.kind, f"built for {what}={expected} (input shape (N, {expected}, ...)), got an input of shape {got}"
            )

    def initial_values(self, rng, in_shape):
        shape = self.weight_shape(tuple(in_shape))
        fan_in = int(np.prod(shape[1:]))
        xavier = self.init == "xavier"
        values = {"weight": xavier_uniform(rng, shape) if xavier else uniform_fan_in(rng, shape, fan_in)}
        if "bias" in self.param_names:
            values["bias"] = np.zeros(self.out, np.float32) if xavier else uniform_fan_in(rng, (self.out,), fan_in)
        return values


class Conv(Weighted):
    """``LazyConv2d``: OIHW weight, input channels taken from the first input."""

    kind = "Conv2d"

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, bias=True, init="default", seed=None):
        super().__init__(out_channels, bias, init, seed)
        self.kernel = args.int_pair(kernel_size, "kernel_size")
        self.stride = args.stride_pair(stride)
        self.padding = args.padding_pairs(padding, self.kernel, self.stride)

    def weight_shape(self, in_shape):
        args.check_rank(in_shape, (4,), "the input", "(N, C, H, W)", "LazyConv2d")
        return (self.out, in_shape[1], *self.kernel)

    def apply(self, values, x):
        self.check_input(values["weight"], x)
        return ops.conv2d(x, values["weight"], values.get("bias"), self.stride, self.padding)

    def native_fn(self, b):
        return _with_optional_bias(b.conv2d_fn(self.stride, self.padding), self.param_names)


class Dense(Weighted):
    """``LazyLinear``: ``x @ weight.T + bias`` with weight (out, in), in taken from the first input."""

    kind = "Linear"

    def weight_shape(self, in_shape):
        args.check_rank(in_shape, (2,), "the input", "(N, features)", "LazyLinear")
        return (self.out, in_shape[1])

    def apply(self, values, x):
        self.check_input(values["weight"], x)
        b = backend.current()
        x, weight = ops.in_compute_dtype(b, "LazyLinear", ("x", "weight"), (x, values["weight"]))
        y = b.matmul(x, b.transpose(weight, (1, 0)))
        return y + values["bias"] if "bias" in values else y

    def native_fn(self, b):
        return _with_optional_bias(b.dense_fn(), self.param_names)


def _with_optional_bias(fn, param_names):
    """``fn(x, w, bias)`` as a function of the layer's parameters: ``fn(x, w, None)`` without bias."""
    return fn if "bias" in param_names else (lambda x, weight: fn(x, weight, None))


class Pool(Layer):
    """``MaxPool2d`` / ``AvgPool2d``: :func:`d2lconv.pool2d` as a layer."""

    def __init__(self, mode, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kind = {"max": "MaxPool2d", "avg": "AvgPool2d"}[mode]
        self.mode, self.window = mode, args.int_pair(kernel_size, "kernel_size")
        self.stride = self.window if stride is None else args.stride_pair(stride)
        self.padding = args.padding_pairs(padding, self.window, self.stride)
        self.count_include_pad = count_include_pad

    def apply(self, values, x):
        return ops.pool2d(x, self.window, self.mode, self.stride, self.padding, self.count_include_pad)

    def native_fn(self, b):
        if self.mode == "max":
            return b.max_pool_fn(self.window, self.stride, self.padding)
        return b.avg_pool_fn(self.window, self.stride, self.padding, self.count_include_pad)


class SigmoidLayer(Layer):
    kind = "Sigmoid"

    def apply(self, values, x):
        return backend.current().sigmoid(x)

    def native_fn(self, b):
        return b.sigmoid

    def in_place_fn(self, b):
        return b.sigmoid_in_place_fn()


class FlattenLayer(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C-H-W order on every backend."""

    kind = "Flatten"

    def apply(self, values, x):
        b = backend.current()
        return b.reshape(x, args.flattened_shape(b.shape(x)))

    def native_fn(self, b):
        return b.flatten_fn()


class Container(Layer):
    """A layer made of named children run in order (``Sequential``) or a named model."""

    def __init__(self, kind: str, child_names, seed=None):
        super().__init__(seed)
        self.kind, self.child_names = kind, tuple(child_names)


class LayerModule:
    """Methods every backend's native ``Module`` class shares (mixed in before the framework's).

    A backend's ``Module`` computes ``run(self, x)`` when called. Set on the first call:
    ``d2l_fn``, the module's ``fn(module, x)`` in the backend's layout, and for a layer with no
    children ``d2l_native``, the layer's ``fn(x, *param_values)`` (:meth:`Layer.native_fn`); for
    a Dense layer after a Flatten whose weight the backend keeps in flatten order,
    ``d2l_flat_fn``, its container's ``fn(module, x)`` of the Flatten's input; for a container,
    ``d2l_blocked``, the names of its Conv children that may compute padded channels in a
    backend's training step (their ``d2l_blocked_native``, see :func:`_channel_blocked_convs`);
    for such a Conv and for each container whose input reaches one, ``d2l_blocked_fn``, its
    ``fn(module, x)`` with those channels padded (see :func:`blocked_forward`).
    """

    backend_name = ""
    d2l_fn = d2l_native = d2l_flat_fn = d2l_in_place_fn = d2l_blocked_native = d2l_blocked_fn = None
    d2l_blocked = frozenset()
    #: what building sets (functions, and what a backend derives from the module once): left out
    #: of a pickle or a deep copy, which builds them again at its first call
    d2l_built_names = ("d2l_fn", "d2l_native", "d2l_flat_fn", "d2l_in_place_fn", "d2l_blocked_native",
                       "d2l_blocked_fn", "d2l_blocked")

    def __getstate__(self):
        """The framework's state of the module without what building made (closures, which
        pickle cannot write): a built model pickles as the framework's own modules do."""
        state = super().__getstate__()
        return {name: value for name, value in state.items() if name not in self.d2l_built_names}

    @property
    def d2l_backend(self):
        return backend.load(self.backend_name)

    def d2l_hooked(self) -> bool:
        """Whether the framework would run a hook (one a user registered) for a module below
        this container when calling it. Built functions call no module, so while this holds the
        container calls its children instead (:func:`run_through_calls`). False where modules
        have no hooks."""
        return False

    def layer_summary(self, X_shape):
        """Print each layer's output shape for an input of ``X_shape``, as the book does."""
        return layer_summary(self, X_shape)


def run(module, x):
    """A module's forward pass: NCHW (or 2-D) ``x`` in and out, built on the first call."""
    if module.d2l_layer.child_names and module.d2l_hooked():
        return run_through_calls(module, x)
    b = module.d2l_backend
    x = _native_input(module, x)
    if _empty_batch(x):
        return empty_batch_output(module, x)
    if module.d2l_fn is None:  # building creates parameters from NumPy: no compiler's business
        return b.outside_compiler(_first_call)(module, x)
    x = checked_input(module, x)
    if b.layout == "NCHW":
        return module.d2l_fn(module, x)
    return b.to_nchw(module.d2l_fn(module, b.to_internal(x)))


def run_through_calls(module, x):
    """A container's forward pass calling each child as the framework calls a module, as
    ``nn.Sequential`` does: every hook runs and sees what it would see there; each child
    converts, checks and builds itself. NCHW in and out."""
    return _through_children(module, x, lambda child, x: child(x))


def empty_batch_output(module, x):
    """``module``'s output for ``x``, an empty batch of NCHW images: empty, of the shape and dtype
    of its output for one image of zeros (which builds it if need be). Not every framework's
    kernels take an empty batch: TF's convolution gives it its input's shape, and MXNet's fail,
    with the error raised by a later, unrelated call."""
    b = module.d2l_backend
    y = run(module, b.from_numpy(np.zeros((1, *b.shape(x)[1:]), b.dtype(x))))
    return b.from_numpy(np.zeros((0, *b.shape(y)[1:]), b.dtype(y)))


_UNSEEN = object()


def checked_input(module, x):
    """The per-call guard of a built module, one dict look-up: native NCHW ``x`` as the built
    functions take it. An integer or bool input is cast to the module's compute dtype
    (:func:`_compute_dtype`), as the operators cast integers. An input of a non-batch shape and
    dtype the module has not run on yet goes once through the checked operators, so one that
    does not fit is a LayerInputError naming the layer (``net.7``), or their TypeError for a
    floating dtype other than the parameters', not the framework's error."""
    key = (tuple(x.shape[1:]), x.dtype)
    kinds = module.d2l_layer.input_kinds
    dtype = kinds.get(key, _UNSEEN)
    if dtype is _UNSEEN:
        dtype = module.d2l_backend.outside_compiler(_check_new_input)(module, x, key)
    return x if dtype is None else module.d2l_backend.cast(x, dtype)


def _check_new_input(module, x, key):
    """:func:`checked_input` for an input of a shape and dtype ``module`` has not run on yet:
    the checked pass, then the dtype to cast such input to (None: as it is), kept under ``key``."""
    b = module.d2l_backend
    dtype = _compute_dtype(module) if b.dtype(x).kind in "biu" else None
    with backend.use_backend(b.name):
        b.abstractly(lambda x: _checked_forward(module, x if dtype is None else b.cast(x, dtype)), x)
    module.d2l_layer.input_kinds[key] = dtype
    return dtype


def _compute_dtype(module):
    """The dtype ``module`` computes in: its first parameter's (in forward order), else the
    operators' default for integer data (float32)."""
    b = module.d2l_backend
    first = next(iter(named_params(module).values()), None)
    return ops.DEFAULT_DTYPE if first is None else b.dtype(b.value(first))


def _checked_forward(module, x):
    """The forward pass of a built module through d2lconv's checked operators, NCHW in and out."""
    b, layer = module.d2l_backend, module.d2l_layer
    if layer.child_names:
        return _through_children(module, x, _checked_forward)
    return layer.apply({name: b.value(b.param(module, name)) for name in layer.param_names}, x)


def _through_children(module, x, step):
    """``x`` passed through ``step(child, x)`` for each child of ``module`` in order; a
    LayerInputError from a child gets the child's name in its path (``net.7``)."""
    b = module.d2l_backend
    for name in module.d2l_layer.child_names:
        try:
            x = step(b.child(module, name), x)
        except LayerInputError as error:
            raise error.within(name) from None
    return x


def _native_input(module, x):
    b = module.d2l_backend
    if b.is_native(x):
        return x
    with backend.use_backend(b.name):
        return native(x, f"{module.d2l_layer.kind}: input")


def _empty_batch(x) -> bool:
    return getattr(x, "ndim", None) == 4 and x.shape[0] == 0  # (an MXNet symbol has no ndim)


def _first_call(module, x, abstract=False):
    """``module``'s first call on native ``x``: build it and return its output (NCHW), or with
    ``abstract`` the output's shape and dtype (see :func:`build`)."""
    b = module.d2l_backend
    with backend.use_backend(b.name):
        if b.dtype(x).kind in "biu":
            x = b.cast(x, _compute_dtype(module))
        if not abstract:
            return b.to_nchw(build(module, b.to_internal(x)))
        return b.abstractly(b.to_nchw, build(module, b.abstractly(b.to_internal, x), abstract=True))


def first_output(module, x):
    """``module(x)`` where only building ``module`` and the shape and dtype of its output matter
    (the Trainer's first batch): on a backend whose eager calls compile
    (:attr:`~d2lconv.interface.Backend.eager_calls_compile`, JAX) an unbuilt module is built on
    ``x``'s shape and dtype and its output is traced (``abstractly``), not computed: LeNet's first
    eager call compiles one program a layer, 0.7 s in a fresh process. Elsewhere ``module(x)``."""
    b = module.d2l_backend
    if not b.eager_calls_compile:
        return module(x)
    x = _native_input(module, x)
    if _empty_batch(x):
        return module(x)
    if module.d2l_fn is not None:
        return b.abstractly(module, x)
    return _first_call(module, x, abstract=True)


def build(module, x, abstract=False):
    """Build ``module`` (and its children) on its first input ``x``, in ``b.layout``; return the
    output in that layout. The input is checked by the checked operators first (clear errors);
    the output is the native function's, or with ``abstract`` its shape and dtype
    (:meth:`~d2lconv.interface.Backend.abstractly` of it). Runs inside ``use_backend``."""
    b, layer = module.d2l_backend, module.d2l_layer
    output = b.abstractly if abstract else _called  # how the built function gives the output
    x_nchw = b.abstractly(b.to_nchw, x)  # its shape and dtype
    layer.input_kinds[tuple(x_nchw.shape[1:]), x_nchw.dtype] = None
    if layer.child_names:
        in_shapes = {}  # id(child) -> the shape of its input, in b.layout

        def build_child(child, x):
            in_shapes[id(child)] = b.shape(x)
            return build(child, x, abstract)

        y = _through_children(module, x, build_child)
        flatten_order = _flatten_order_pairs(module, in_shapes)
        module.d2l_blocked = _channel_blocked_convs(module)
        in_place = _in_place_children(module)
        module.d2l_fn = _container_fn(b, layer.child_names, flatten_order, in_place)
        blocked = _blocked_children(module)
        module.d2l_blocked_fn = _container_fn(b, layer.child_names, flatten_order, in_place, blocked) if blocked else None
        # with a weight kept in flatten order the sums run in another order: the first call
        # returns what every later call will (to the last bit)
        return output(lambda x: module.d2l_fn(module, x), x) if flatten_order else y
    if layer.param_names and b.param(module, layer.param_names[0]) is None:
        rng = layer.rng or generator()
        for name, value in layer.initial_values(rng, b.shape(x_nchw)).items():
            b.add_param(module, name, value)
    params = [b.param(module, name) for name in layer.param_names]
    b.abstractly(lambda x, *values: layer.apply(dict(zip(layer.param_names, values)), x),
                 x_nchw, *map(b.value, params))  # checked: clear errors
    module.d2l_native = layer.native_fn(b)
    module.d2l_fn = _leaf_fn(b, module.d2l_native, layer.param_names)
    return output(module.d2l_native, x, *map(b.stored, params))  # one call: ops may learn shapes from it


def _called(fn, *args):
    return fn(*args)


def _leaf_fn(b, fn, param_names):
    """``fn(x, *values)`` as ``f(module, x)`` reading the module's parameters (as the backend
    stores them) at each call."""
    param, stored = b.param, b.stored
    if not param_names:
        return lambda module, x: fn(x)
    return lambda module, x: fn(x, *[stored(param(module, name)) for name in param_names])


def _flatten_order_pairs(module, in_shapes) -> set[str]:
    """The names of the Dense children of a container that follow a Flatten of a 4-D activation
    and whose backend keeps such a weight in the activation's order (see
    :meth:`~d2lconv.interface.Backend.flatten_order_dense`); each gets ``d2l_flat_fn``,
    ``f(module, x)`` of the Flatten's input."""
    b, names, paired = module.d2l_backend, module.d2l_layer.child_names, set()
    for flatten_name, dense_name in zip(names, names[1:]):
        flatten, dense = b.child(module, flatten_name), b.child(module, dense_name)
        in_shape = in_shapes.get(id(flatten), ())
        if not (isinstance(flatten.d2l_layer, FlattenLayer) and isinstance(dense.d2l_layer, Dense)):
            continue
        if len(in_shape) != 4 or not all(isinstance(size, int) for size in in_shape[1:]):
            continue
        fn = b.flatten_order_dense(dense, in_shape)
        if fn is not None:
            param_names = dense.d2l_layer.param_names
            dense.d2l_flat_fn = _leaf_fn(b, _with_optional_bias(fn, param_names), param_names)
            paired.add(dense_name)
    return paired


def _in_place_children(module) -> set[str]:
    """The names of the children of a container that come right after a sibling with a fresh
    output and have an in-place form (:meth:`Layer.in_place_fn`); each gets ``d2l_in_place_fn``.
    Such an output is read by no one else: the container passes it on, and it runs its built
    function only while no hook could see that output (:meth:`LayerModule.d2l_hooked`)."""
    b, names, chosen = module.d2l_backend, module.d2l_layer.child_names, set()
    for before, name in zip(names, names[1:]):
        child = b.child(module, name)
        fn = child.d2l_layer.in_place_fn(b) if b.child(module, before).d2l_layer.fresh_output else None
        if fn is not None:
            child.d2l_in_place_fn = _leaf_fn(b, fn, child.d2l_layer.param_names)
            chosen.add(name)
    return chosen


#: layers that compute each channel on its own: between two convolutions they carry padded
#: channels through (see _channel_blocked_convs)
PER_CHANNEL = (SigmoidLayer, Pool)


def _channel_blocked_convs(module) -> frozenset[str]:
    """Where the backend wants convolution channels in blocks (:attr:`~d2lconv.interface.Backend.channel_block`):
    the names of the Conv children of a container whose output channels may be padded up to the
    block, and of the next Conv child, which reads the extra ones with zero weights. Only the
    first child pads its output, when it reaches the next Conv child through
    :data:`PER_CHANNEL` layers alone: an extra channel is a zero filter's sum, NaN wherever its
    window holds an infinity, so the backend pads only for an input it has checked to be
    finite, and the first child's input is the container's. Each gets ``d2l_blocked_native``."""
    b, names = module.d2l_backend, module.d2l_layer.child_names
    if not b.channel_block or not names:
        return frozenset()
    layers = [b.child(module, name).d2l_layer for name in names]
    first = layers[0]
    if not isinstance(first, Conv) or first.out % b.channel_block == 0:
        return frozenset()
    j = next((j for j in range(1, len(layers)) if not isinstance(layers[j], PER_CHANNEL)), len(layers))
    if j == len(layers) or not isinstance(layers[j], Conv):
        return frozenset()
    padding = -first.out % b.channel_block
    for name, extra_out, extra_in in ((names[0], padding, 0), (names[j], 0, padding)):
        conv = b.child(module, name)
        fn = b.blocked_conv2d_fn(conv.d2l_layer.stride, conv.d2l_layer.padding, extra_out, extra_in)
        conv.d2l_blocked_native = _with_optional_bias(fn, conv.d2l_layer.param_names)
        conv.d2l_blocked_fn = _leaf_fn(b, conv.d2l_blocked_native, conv.d2l_layer.param_names)
    return frozenset((names[0], names[j]))


def _blocked_children(module) -> frozenset[str]:
    """The names of the children a built container runs through their ``d2l_blocked_fn`` in its
    own: its blocked convolutions (``d2l_blocked``), and its first child where that is a
    container whose input reaches some (:func:`input_containers`)."""
    names = module.d2l_layer.child_names
    first = module.d2l_backend.child(module, names[0])
    if first.d2l_layer.child_names and first.d2l_blocked_fn is not None:
        return module.d2l_blocked | {names[0]}
    return module.d2l_blocked


def blocked_forward(module):
    """``fn(x)``: a built ``module``'s forward pass (NCHW in and out, as ``module(x)``) with the
    channels of its blocked convolutions padded (see :func:`_channel_blocked_convs`), for a
    backend's training step to trace; only for a finite ``x``, which the caller checks. None
    where ``module`` pads nothing, runs hooks a padded pass would skip, or is of a class of its
    own (whose call may do more than its layers)."""
    fn, b = module.d2l_blocked_fn, module.d2l_backend
    if fn is None or type(module) is not b.Module or module.d2l_hooked():
        return None
    if b.layout == "NCHW":
        return lambda x: fn(module, checked_input(module, x))
    return lambda x: b.to_nchw(fn(module, b.to_internal(checked_input(module, x))))


#: a layer's attributes that do not decide what its forward pass computes
NOT_ARCHITECTURE = ("rng", "input_kinds")
PLAIN_TYPES = (int, float, str, bool, type(None))


def architecture(module):
    """A hashable description of what decides a built ``module``'s forward pass besides the shapes
    and dtypes of its parameters and input: for it and each child in order, the layer's class and
    configuration (its attributes). Two models of one architecture compute the same function of
    parameters and inputs of the same shapes and dtypes, so a backend may share one compiled step
    among them. None, so nothing is shared, where a module is of a class of its own (its code may
    read anything) or a layer holds anything but numbers, strings and tuples of them."""
    b = module.d2l_backend
    if type(module) is not b.Module:
        return None
    layer = module.d2l_layer
    config = tuple(sorted((name, value) for name, value in vars(layer).items() if name not in NOT_ARCHITECTURE))
    if not _plain(config):
        return None
    children = tuple(architecture(b.child(module, name)) for name in layer.child_names)
    return None if None in children else (type(layer), config, children)


def _plain(value) -> bool:
    if type(value) is tuple:
        return all(map(_plain, value))
    return type(value) in PLAIN_TYPES


def input_containers(module) -> list:
    """``module`` and every container reached from it through first children: the containers
    whose input is ``module``'s, where :func:`_channel_blocked_convs` may pad."""
    b, chain = module.d2l_backend, [module]
    while chain[-1].d2l_layer.child_names:
        first = b.child(chain[-1], chain[-1].d2l_layer.child_names[0])
        if not first.d2l_layer.child_names:
            break
        chain.append(first)
    return chain


def _container_fn(b, child_names, flatten_order=frozenset(), in_place=frozenset(), blocked=frozenset()):
    """``f(module, x)`` running the children's built functions in order, in ``b.layout``. A
    Dense named in ``flatten_order`` runs its ``d2l_flat_fn`` on the input of the Flatten before
    it, which is skipped; a child named in ``in_place`` runs its ``d2l_in_place_fn``, one named
    in ``blocked`` its ``d2l_blocked_fn``."""
    child = b.child
    if flatten_order or in_place or blocked:
        skipped = {names[0] for names in zip(child_names, child_names[1:]) if names[1] in flatten_order}
        steps = [(name, "d2l_flat_fn" if name in flatten_order else "d2l_blocked_fn" if name in blocked
                  else "d2l_in_place_fn" if name in in_place else "d2l_fn")
                 for name in child_names if name not in skipped]

        def run_steps(module, x):
            for name, fn in steps:
                c = child(module, name)
                x = getattr(c, fn)(c, x)
            return x

        return run_steps

    def run_children(module, x):
        for name in child_names:
            c = child(module, name)
            x = c.d2l_fn(c, x)
        return x

    return run_children


def make(layer: Layer, children=()):
    """A native module of the current backend holding ``layer`` and its named children."""
    b = backend.current()
    if b.Module is None:
        raise NotImplementedError(f"backend {b.name!r} has no layers")
    module = b.Module(layer)
    for name, child in children:
        if getattr(child, "backend_name", None) != b.name:
            raise TypeError(
                f"{layer.kind}: child {name!r} must be a d2lconv layer of the {b.name} backend, got {type(child).__name__}"
            )
        b.add_child(module, name, child)
    return module


def leaves(module):
    """The modules a summary lists: a model's ``net`` children, a Sequential's children."""
    b, layer = module.d2l_backend, module.d2l_layer
    if "net" in layer.child_names:
        return leaves(b.child(module, "net"))
    if layer.child_names:
        return [b.child(module, name) for name in layer.child_names]
    return [module]


def layer_summary(model, X_shape):
    """Print and return ``"<Layer> output shape:\\t <shape>"`` rows for an input of zeros."""
    b = model.d2l_backend
    with backend.use_backend(b.name):
        X = b.from_numpy(np.zeros(tuple(X_shape), np.float32))
        rows = []
        for layer in leaves(model):
            X = layer(X)
            rows.append(f"{layer.d2l_layer.kind} output shape:\t {b.shape(X)}")
            print(rows[-1])
    return rows


# --- the public constructors: each returns a native module of the current backend -------------


def LazyConv2d(out_channels, kernel_size, stride=1, padding=0, bias=True, *, init="default", seed=None):
    """A conv layer, NCHW in and out, OIHW weight; in_channels come from the first input."""
    return make(Conv(out_channels, kernel_size, stride, padding, bias, init, seed))


def LazyLinear(out_features, bias=True, *, init="default", seed=None):
    """A dense layer with (out, in) weight; in_features come from the first input."""
    return make(Dense(out_features, bias, init, seed))


def MaxPool2d(kernel_size, stride=None, padding=0):
    return make(Pool("max", kernel_size, stride, padding))


def AvgPool2d(kernel_size, stride=None, padding=0, count_include_pad=True):
    return make(Pool("avg", kernel_size, stride, padding, count_include_pad))


def Sigmoid():
    return make(SigmoidLayer())


def Flatten():
    """(N, C, H, W) -> (N, C*H*W), C-H-W order."""
    return make(FlattenLayer())


def Sequential(*modules):
    """Modules run in order, named "0", "1", ... as torch's ``nn.Sequential``."""
    names = [str(i) for i in range(len(modules))]
    return make(Container("Sequential", names), zip(names, modules))


def Conv2D(kernel_size, *, seed=None):
    """The book's from-scratch ``Conv2D``: weight ~ U[0, 1) of the kernel's shape, bias 0, 2-D input."""
    return make(ScratchConv(kernel_size, seed))
