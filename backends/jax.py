"""JAX: lax.conv_general_dilated and lax.reduce_window (or strided slices), NCHW natively through
dimension numbers.

The public operators run as ``jax.jit``-ed functions with stride, padding and window static (one
compilation per configuration, then jax's C++ dispatch). Inside a built model activations are
NHWC, the layout XLA's CPU convolutions want; kernels stay OIHW (dimension numbers say so). The
training step is one ``jax.jit`` of a pure function of the parameters' arrays: the model is split
with ``nnx.split`` once, not walked by ``nnx.jit`` on every call. On the CPU a convolution of one
input channel folds the kernel's rows into channels (see :func:`_rows_folded_conv`), and a built
model's convolutions have their gradients computed the ways XLA's CPU runs fastest (see
:func:`_nhwc_conv`).

float64 needs ``jax_enable_x64`` (``JAX_ENABLE_X64=1``); without it a float64 request is an error
rather than a silent float32. On accelerators convolutions and dense layers ask for full precision
so GPUs do not use TF32; on the CPU float32 is computed in full anyway, and asking for HIGHEST
there measured 9% slower on a LeNet step.
"""

from functools import lru_cache, partial, reduce
from operator import add

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from d2lconv.compiled import per_model as per_model_fn
from d2lconv.interface import Backend, ModelLoss
from d2lconv.layers import LayerModule, architecture, run
from d2lconv.params import named_params
from d2lconv.pool_counts import inside_fraction

NCHW = ("NCHW", "OIHW", "NCHW")
NHWC = ("NHWC", "OIHW", "NHWC")
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
CPU = jax.default_backend() == "cpu"
PRECISION = None if CPU else lax.Precision.HIGHEST
#: XLA's CPU convolution of one input channel is quicker with the kernel's rows folded into
#: channels for up to this many output channels (measured; see _rows_folded_conv)
FOLD_ROWS, FOLD_ROWS_UP_TO = CPU, 16
#: XLA's CPU weight gradient slows down more than linearly with the batch (LeNet's second
#: convolution: 0.35 ms at 32, 5.3 ms at 256): above twice this many examples it is summed over
#: slices of this many (1.5 ms at 256; see _weight_grad)
WEIGHT_GRAD_SLICE = 16
#: XLA's CPU data gradient is a convolution out to the layer's input channels, slow on few of
#: them: up to this many (or a 1 x 1 kernel) it is one matrix product and a col2im (see _input_grad)
COL2IM_UP_TO = 8
NO_PADS = ((0, 0), (0, 0))
DENSE = (((1,), (1,)), ((), ()))  # x (N, in) . w (out, in) over "in": x @ w.T without a transpose
ARRAY = type(jnp.zeros(()))  # the concrete type of JAX's arrays (tracers are jax.Arrays too)


def _conv(x, w, stride, pads, dimension_numbers):
    if FOLD_ROWS and w.shape[1] == 1 and w.shape[0] <= FOLD_ROWS_UP_TO:
        return _rows_folded_conv(x, w, stride, pads, dimension_numbers)
    return _plain_conv(x, w, stride, pads, dimension_numbers)


def _rows_folded_conv(x, w, stride, pads, dimension_numbers):
    """The same cross-correlation of a one-channel ``x`` with the kernel's rows as input channels:
    ``x``'s kh row-shifted copies stacked on the channel axis, convolved with a 1 x kw kernel
    (the same products and sums, in another order). XLA's CPU convolution is 1.4-2.3x slower on
    one input channel (LeNet's first layer: 8.5 vs 4.9 ms at batch 256) than on kh channels;
    with 32 or more output channels it is the other way round (3.9 vs 13.3 ms), hence the bound."""
    (top, bottom), left_right = pads
    kh, (sh, sw) = w.shape[2], stride
    height = dimension_numbers[0].index("H")
    padding = [(0, 0)] * 4
    padding[height] = (top, bottom)
    x = jnp.pad(x, padding)
    rows = (x.shape[height] - kh) // sh + 1
    shifted = [lax.slice_in_dim(x, a, a + sh * (rows - 1) + 1, sh, height) for a in range(kh)]
    folded = jnp.concatenate(shifted, axis=dimension_numbers[0].index("C"))
    kernel = jnp.reshape(w, (w.shape[0], kh, 1, w.shape[3]))  # OIHW (O, 1, kh, kw) -> (O, kh, 1, kw)
    return lax.conv_general_dilated(
        folded, kernel, (1, sw), ((0, 0), left_right), dimension_numbers=dimension_numbers, precision=PRECISION
    )


def _plain_conv(x, w, stride, pads, dimension_numbers):
    return lax.conv_general_dilated(x, w, stride, pads, dimension_numbers=dimension_numbers, precision=PRECISION)


def _nhwc_conv(stride, pads):
    """``conv(x, w)`` on NHWC ``x``; on the CPU with its gradient computed the ways XLA's CPU
    runs fastest (:func:`_weight_grad`, :func:`_input_grad`; the same sums in another order).
    Built models use it; being a ``jax.custom_vjp`` it has no forward-mode derivative."""

    def plain(x, w):
        return _conv(x, w, stride, pads, NHWC)

    if not CPU:
        return plain

    def forward(x, w):
        return plain(x, w), (x, w)

    def backward(saved, dy):
        x, w = saved
        return _input_grad(x, w, dy, stride, pads), _weight_grad(x, w, dy, stride, pads)

    conv = jax.custom_vjp(plain)
    conv.defvjp(forward, backward)
    return conv


def _weight_grad(x, w, dy, stride, pads):
    """The weight gradient of the NHWC convolution: XLA's own up to twice
    :data:`WEIGHT_GRAD_SLICE` examples; beyond, the convolution XLA makes for it summed over
    slices of that many (measured at batch 256: LeNet's convolutions 8.7 -> 2.1 and 5.3 -> 1.6
    ms; 3 x 3, 32 -> 32 channels on 16 x 16: 45 -> 13 ms)."""
    size, n, (kh, kw) = WEIGHT_GRAD_SLICE, x.shape[0], w.shape[2:]
    if n <= 2 * size:
        return jax.vjp(lambda w: _plain_conv(x, w, stride, pads, NHWC), w)[1](dy)[0]

    def slice_grad(x_chwn, dy_hwno):
        # x's channels as the batch, the examples as the input channels, dy dilated by the
        # stride as the kernel: (C, kh', kw', O), kh' >= kh, more where the stride leaves rows unread
        dimension_numbers = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x_chwn, dy_hwno, (1, 1), pads, rhs_dilation=stride, dimension_numbers=dimension_numbers, precision=PRECISION)

    # zero examples up to whole slices add nothing; laid out once so that each slice is
    # contiguous, and summed in a loop that compiles its body once (unrolled, each slice's copy
    # and convolution compiled apart: 2x the step's compile)
    def slices(a, per_example_axes):
        a = jnp.pad(a, ((0, -n % size), (0, 0), (0, 0), (0, 0)))
        return jnp.transpose(jnp.reshape(a, (-1, size, *a.shape[1:])), (0, *(axis + 1 for axis in per_example_axes)))

    xs, dys = slices(x, (3, 1, 2, 0)), slices(dy, (1, 2, 0, 3))  # G C H W S, G H W S O
    zeros = jnp.zeros(jax.eval_shape(slice_grad, xs[0], dys[0]).shape, w.dtype)
    total = lax.scan(lambda total, slice_: (total + slice_grad(*slice_), None), zeros, (xs, dys))[0]
    return jnp.transpose(total[:, :kh, :kw, :], (3, 0, 1, 2))


def _input_grad(x, w, dy, stride, pads):
    """The gradient with respect to NHWC ``x``. For up to :data:`COL2IM_UP_TO` input channels or a
    1 x 1 kernel: every window's gradient at once (``dy`` times the kernel, one matrix product),
    each kernel position's share placed where its window reads ``x`` (a strided pad) and summed,
    the padding cropped (LeNet's second convolution at batch 256: 4.7 -> 2.3 ms; 1 x 1, 64 -> 64
    channels: 11 -> 2 ms). With more channels the sum of kh * kw shifted copies costs more
    than XLA's data-gradient convolution (5 x 5, 16 -> 16 channels: 16 vs 4.6 ms), used there."""
    out, channels, kh, kw = w.shape
    if channels > COL2IM_UP_TO and kh * kw > 1:
        return jax.vjp(lambda x: _plain_conv(x, w, stride, pads, NHWC), x)[1](dy)[0]
    n, rows, cols, _ = dy.shape
    (sh, sw), ((top, bottom), (left, right)) = stride, pads
    height, width = x.shape[1] + top + bottom, x.shape[2] + left + right
    windows = jnp.reshape(dy, (-1, out)) @ jnp.reshape(jnp.transpose(w, (0, 2, 3, 1)), (out, -1))
    windows = jnp.reshape(windows, (n, rows, cols, kh, kw, channels))
    zero = np.zeros((), dy.dtype)

    def placed(a, b):  # row a, column b of every window, where they sit in the padded input
        spans = ((a, height - a - sh * (rows - 1) - 1, sh - 1), (b, width - b - sw * (cols - 1) - 1, sw - 1))
        return lax.pad(windows[:, :, :, a, b, :], zero, ((0, 0, 0), *spans, (0, 0, 0)))

    total = reduce(add, [placed(a, b) for a in range(kh) for b in range(kw)])
    return total[:, top : top + x.shape[1], left : left + x.shape[2], :]


def _conv_fn(layout, stride, pads):
    """``fn(x, w, bias_or_None)``: cross-correlation of ``x`` in ``layout`` with OIHW ``w``."""

    convolve = _nhwc_conv(stride, pads) if layout == NHWC else lambda x, w: _conv(x, w, stride, pads, layout)
    if layout == NHWC:
        add_bias = _bias_added if _ynnpack_reductions() else add
    else:
        add_bias = lambda y, bias: y + bias[:, None, None]  # noqa: E731

    def conv(x, w, bias):
        y = convolve(x, w)
        return y if bias is None else add_bias(y, bias)

    return conv


@jax.custom_vjp
def _bias_added(y, bias):
    """``y + bias`` over NHWC ``y``'s channels, whose bias gradient is summed in two stages (see
    :func:`_channel_sums`)."""
    return y + bias


def _channel_sums(dy, run=8):
    """``dy`` summed over all axes but the last: runs of ``run`` pixels' channels first, then the
    runs. Where YNNPACK takes XLA's reductions (:func:`_ynnpack_reductions`), one sum over LeNet's
    first activation at batch 256 (28 x 28 x 6) took 1,145 us, the two 174 us; LeNet's step
    0.95x / 0.98x at batch 32 / 256."""
    channels = dy.shape[-1]
    if dy.size == 0 or (dy.size // channels) % run:
        return jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))
    runs = jnp.sum(jnp.reshape(dy, (-1, run * channels)), axis=0)
    return jnp.sum(jnp.reshape(runs, (run, channels)), axis=0)


_bias_added.defvjp(lambda y, bias: (y + bias, None), lambda _, dy: (dy, _channel_sums(dy)))


def _pool_fn(layout, init, op, window, stride, pads):
    """``fn(x)``: ``op`` (``lax.max`` or ``lax.add``) over each window of ``x`` in ``layout``,
    padded with ``init``: ``lax.reduce_window``, or where :func:`_ynnpack_reductions` says, the
    window's cells as strided slices of ``x`` combined elementwise, along the width and then
    along the height (XLA fuses each pass into one loop)."""
    spatial = (1, 2) if layout == NHWC else (2, 3)
    windows, strides, edges = [1] * 4, [1] * 4, [(0, 0)] * 4
    for axis, k, s, edge in zip(spatial, window, stride, pads):
        windows[axis], strides[axis], edges[axis] = k, s, edge
    # a NumPy init value stays concrete under jit, so JAX sees a differentiable max/sum monoid
    reduced = lambda x: lax.reduce_window(x, np.array(init, x.dtype), op, windows, strides, edges)  # noqa: E731
    if not _ynnpack_reductions():
        return reduced
    passes = [_window_pass(op, k, s, axis) for axis, k, s in zip(reversed(spatial), reversed(window), reversed(stride))]
    padding = [(*edge, 0) for edge in edges]  # lax.pad's (low, high, interior)

    def pooled(x):
        if pads != NO_PADS:
            x = lax.pad(x, np.array(init, x.dtype), padding)
        for one_pass in passes:
            x = one_pass(x)
        return x

    if op is lax.max:  # its passes have their own derivatives
        return pooled
    # a sum's derivative is reduce_window's, transposed by reduce_window's own rule: the slices'
    # transposes (strided pads) made LeNet's step slower (batch 256: 1.34x reduce_window's; with
    # reduce_window's derivative 0.94x / 0.96x at batch 32 / 256)
    summed = jax.custom_jvp(pooled)
    summed.defjvp(lambda primals, tangents: (pooled(*primals), reduced(*tangents)))
    return summed


@lru_cache(maxsize=None)
def _ynnpack_reductions() -> bool:
    """Whether XLA hands this CPU's reductions to YNNPACK, known by its max pooling skipping NaN
    (probed once). There pooling is computed by strided slices rather than
    ``lax.reduce_window``, and a built convolution's bias gradient in two stages
    (:func:`_channel_sums`). jaxlib 0.10.2 on an AVX2 AMD EPYC hands
    reductions of more than a few thousand elements to YNNPACK, which skips NaN in max (``jnp.max``
    of 34,560 zeros and a NaN: 0.0; the contract wants NaN) and ran slower there than the slices
    (NHWC 2 x 2 windows at batch 256: max 1.9 vs 0.46 ms, its gradient 11.9 vs 3.5 ms; sum 2.3
    vs 0.26 ms). On an Intel Xeon, where XLA's own reductions ran, the slices had made LeNet's
    step slower (30 vs 17.7 ms at batch 256)."""
    if not CPU:
        return False
    x = np.zeros((8, 8, 32, 32), np.float32)
    x[5, 3, 17, 9] = np.nan
    with jax.ensure_compile_time_eval():  # concrete even when first asked while a step is traced
        pooled = jax.jit(lambda x: lax.reduce_window(x, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"))(x)
    return not np.isnan(np.asarray(pooled)).any()


def _window_cells(x, k, s, axis):
    """``x``'s strided slices along ``axis``, one per cell of a window of ``k`` at stride ``s``:
    slice ``i`` holds cell ``i`` of every window, in order."""
    windows = (x.shape[axis] - k) // s + 1
    return [lax.slice_in_dim(x, i, i + s * (windows - 1) + 1, s, axis) for i in range(k)]


@lru_cache(maxsize=None)
def _window_pass(op, k, s, axis):
    """``fn(x)``: ``op`` over the cells of each window of ``k`` at stride ``s`` along ``axis``.
    For ``lax.max``, a ``jax.custom_jvp`` whose derivative is the first maximal cell's, as
    ``lax.reduce_window``'s is (which its derivative rule would otherwise split between ties);
    a NaN window's derivative is zero. Two passes, width then height, choose the first maximum
    of the first row that holds it: the first in row-major order."""
    if op is not lax.max:
        return lambda x: reduce(op, _window_cells(x, k, s, axis))

    @jax.custom_jvp
    def max_pass(x):
        return reduce(lax.max, _window_cells(x, k, s, axis))

    @max_pass.defjvp
    def first_maximum(primals, tangents):
        (x,), (dx,) = primals, tangents
        cells = _window_cells(x, k, s, axis)
        y, taken, dy = reduce(lax.max, cells), None, None
        for cell, d_cell in zip(cells, _window_cells(dx, k, s, axis)):
            hit = cell == y if taken is None else (cell == y) & ~taken
            taken = hit if taken is None else taken | hit
            term = jnp.where(hit, d_cell, jnp.zeros_like(d_cell))
            dy = term if dy is None else dy + term
        return y, dy

    return max_pass


def _max_pool_fn(layout, window, stride, pads):
    """``fn(x)``: max pooling of ``x`` in ``layout``; NaN where a window holds one (XLA's CPU max
    reduction can skip NaN: see :func:`_ynnpack_reductions`)."""
    return _pool_fn(layout, -np.inf, lax.max, window, stride, pads)


def _avg_pool_fn(layout, window, stride, pads, count_include_pad):
    """``fn(x)``: average pooling of ``x`` in ``layout``; the divisor counts padded zeros or not."""
    total, area = _pool_fn(layout, 0, lax.add, window, stride, pads), window[0] * window[1]
    if count_include_pad or pads == ((0, 0), (0, 0)):
        return lambda x: total(x) / area
    fraction, spatial = inside_fraction(window, stride, pads), (1, 2) if layout == NHWC else (2, 3)

    def inside_only(x):  # shapes are static under jit: the divisor is a constant
        divisor = area * fraction(*(x.shape[i] for i in spatial), x.dtype)
        return total(x) / (divisor[:, :, None] if layout == NHWC else divisor)

    return inside_only


def _dense_fn():
    def dense(x, w, bias):
        y = lax.dot_general(x, w, DENSE, precision=PRECISION)
        return y if bias is None else y + bias

    return dense


@lru_cache(maxsize=1024)  # as many as the operators' plans (each keeps its compiled programs)
def _shared_jit(make, *config):
    """``jax.jit(make(*config))``, made once per configuration (it compiles once per shape)."""
    return jax.jit(make(*config))


class Module(LayerModule, nnx.Module):
    """A d2lconv layer as a Flax NNX module: ``nnx.Param`` attributes, child modules by name."""

    backend_name = "jax"

    def __init__(self, layer):
        self.d2l_layer = layer

    def __call__(self, x):
        return run(self, x)


class JaxBackend(Backend):
    name = "jax"
    immutable_tensors = True
    eager_calls_compile = True
    xp = jnp

    def devices(self):
        return [str(device) for device in jax.devices()]

    def gpu_count(self):
        return sum(device.platform == "gpu" for device in jax.devices())

    def use_gpu(self, model):
        pass  # JAX's default device is the first GPU when there is one

    def from_numpy(self, array):
        if array.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
            if array.dtype.kind == "f":
                raise TypeError(
                    "float64 on the jax backend needs 64-bit mode: set JAX_ENABLE_X64=1 "
                    "or jax.config.update('jax_enable_x64', True) before using jax"
                )
            array = array.astype(array.dtype.kind + "4")  # int64 -> int32, jax's own default
        # a copy by transfer: jnp.asarray stages the array through a computation compiled per
        # shape (25-30 ms each in a fresh process) and queued behind the computations running
        return jax.device_put(array)

    def is_native(self, x):
        # isinstance(x, jax.Array) alone is an ABC check: 0.16 us, against 0.03 for the type test
        return type(x) is ARRAY or isinstance(x, jax.Array)

    def abstractly(self, fn, *args):
        # each eager operation compiles once per shape (25-80 ms here): a LeNet's checked pass at
        # its first call compiled 20 programs
        return jax.eval_shape(fn, *args)

    def sigmoid(self, x):
        return jax.nn.sigmoid(x)

    def reshape(self, x, shape):
        return x if x.shape == tuple(shape) else jnp.reshape(x, shape)  # no dispatch for a no-op

    # --- built operators: NHWC inside a model -------------------------------------------------
    layout = "NHWC"

    def to_internal(self, x):
        return jnp.transpose(x, TO_NHWC) if x.ndim == 4 else x

    def to_nchw(self, x):
        return jnp.transpose(x, TO_NCHW) if x.ndim == 4 else x

    # Each built operator is one jax.jit per configuration, shared by every model: a built model
    # run eagerly (its first call, evaluation) dispatches and compiles one program a layer, not
    # one an operation; inside a compiled step they are inlined.
    def conv2d_fn(self, stride, pads):
        return _shared_jit(_conv_fn, NHWC, stride, pads)

    def max_pool_fn(self, window, stride, pads):
        return _shared_jit(_max_pool_fn, NHWC, window, stride, pads)

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        return _shared_jit(_avg_pool_fn, NHWC, window, stride, pads, count_include_pad)

    def dense_fn(self):
        return _shared_jit(_dense_fn)

    def flatten_fn(self):
        return _shared_jit(Backend.flatten_fn, self)

    # --- operators (NCHW): one jax.jit per configuration, then jax's C++ dispatch ------------
    def nchw_conv2d_fn(self, stride, pads):
        return _shared_jit(_conv_fn, NCHW, stride, pads)

    def nchw_max_pool_fn(self, window, stride, pads):
        return _shared_jit(_max_pool_fn, NCHW, window, stride, pads)

    def nchw_avg_pool_fn(self, window, stride, pads, count_include_pad):
        return _shared_jit(_avg_pool_fn, NCHW, window, stride, pads, count_include_pad)

    def value_and_grad(self, fn, argnums):
        return jax.value_and_grad(fn, argnums=argnums)

    def cross_entropy(self, logits, labels):
        log_probs = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

    Module = Module

    def new_param(self, name, array):
        return nnx.Param(self.from_numpy(array))

    def value(self, param):
        return param[...]

    def assign(self, param, value):
        param[...] = jnp.asarray(value, param[...].dtype)

    def model_value_and_grad(self, loss_fn, compile):
        """One ``jax.jit`` of ``(values, rest, *args) -> (loss, grads)`` per model (see :class:`_Split`)."""

        def value_and_grad(structure, values, rest, *args):
            return jax.value_and_grad(lambda values: loss_fn(structure.merge(values, rest), *args))(values)

        per_model = _per_model(value_and_grad, compile)

        def wrapped(model, params, *args):
            split, fn = per_model(model, params)
            loss, grads = fn(split.values(), split.rest, *args)
            return loss, {name: grad for name, grad in zip(split.names, grads) if name in params}

        return wrapped

    def evaluation_fn(self, model):
        """``model``'s forward pass as one ``jax.jit`` shared by the models of its architecture
        (see :func:`_per_model`): LeNet on 1,024 images 33.6 vs 36.1 ms through its layers' jits,
        its compile 0.22-0.27 s once a process against 0.5 s for the layers' at a new batch size.
        A model of a class of its own, or input that is not an array, runs through its layers."""
        if architecture(model) is None:
            return model

        def forward(x):
            if type(x) is not ARRAY:
                return model(x)
            split, fn = _evaluation(model, None)
            return fn(split.values(), split.rest, x)

        return forward

    def train_step(self, loss_fn, lr, compile):
        """One ``jax.jit`` of ``(values, rest, *args) -> (loss, new values)`` per model; the new
        arrays go into the model's parameters after each call (no graph walk per step). The
        Trainer's step (loss :class:`ModelLoss`, which only calls the model) is shared by the
        models of one architecture, whatever their learning rate (see :func:`_per_model`)."""

        def sgd_step(structure, values, rest, rate, *args):  # rate: traced, so any lr shares it
            loss, grads = jax.value_and_grad(lambda values: loss_fn(structure.merge(values, rest), *args))(values)
            return loss, [value - rate * grad for value, grad in zip(values, grads)]

        per_model = _per_model(sgd_step, compile, ("sgd",) if isinstance(loss_fn, ModelLoss) else None)

        def step(model, params, *args):
            split, fn = per_model(model, params)
            loss, values = fn(split.values(), split.rest, lr, *args)
            split.assign(values)
            return loss

        return step


class _Structure:
    """What rebuilding a model from its parameters' arrays inside a pure function needs: the
    graph definition and the parameters' tree, from ``nnx.split``; no arrays."""

    def __init__(self, graphdef, treedef):
        self.graphdef, self.treedef = graphdef, treedef

    def merge(self, values, rest):
        return nnx.merge(self.graphdef, jax.tree_util.tree_unflatten(self.treedef, values), rest)


class _Split:
    """A built model split once with ``nnx.split``: its parameters as a list of arrays in a fixed
    order (``names``, canonical), the rest of its state, and its :class:`_Structure`.
    ``values``/``assign`` read and write the live parameters' arrays directly, so a step costs no
    walk over the model's graph."""

    def __init__(self, model):
        graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
        paths, treedef = jax.tree_util.tree_flatten_with_path(params)
        self.structure = _Structure(graphdef, treedef)
        self.names = tuple(".".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)) for path, _ in paths)
        live = named_params(model)
        self.variables = [live[name] for name in self.names]

    def values(self):
        return [variable.get_raw_value() for variable in self.variables]

    def assign(self, values):
        for variable, value in zip(self.variables, values):
            variable.set_raw_value(value)


#: compiled steps shared by the models of one architecture (see _per_model), at most this many
SHARED_STEPS = 64
_shared_steps: dict = {}


def _per_model(pure, compile, shared_as=None):
    """``get(model, params) -> (split, fn)``: the model split once and ``pure`` bound to its
    :class:`_Structure`, ``jax.jit``-ed when ``compile``. With ``shared_as`` (a hashable key for
    what ``pure`` computes besides the model), the models of one architecture
    (:func:`d2lconv.layers.architecture`) share one ``jax.jit``, so a second model, or a second
    fit of a new one, does not trace and compile its step again (0.5-0.8 s for LeNet here)."""

    def make(model, params):
        split = _Split(model)
        if not compile:
            return split, partial(pure, split.structure)
        shape = None if shared_as is None else architecture(model)
        if shape is None:
            return split, jax.jit(partial(pure, split.structure))
        key = (shared_as, shape, split.structure.treedef, split.names)
        fn = _shared_steps.get(key)
        if fn is None:
            if len(_shared_steps) >= SHARED_STEPS:
                _shared_steps.clear()
            fn = _shared_steps[key] = jax.jit(partial(pure, split.structure))
        return split, fn

    return per_model_fn(make)


def _forward(structure, values, rest, x):
    return structure.merge(values, rest)(x)


_evaluation = _per_model(_forward, True, ("forward",))

BACKEND = JaxBackend()
