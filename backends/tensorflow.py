"""TensorFlow: tf.nn's conv2d and pooling. TF's CPU kernels are NHWC only, so NCHW goes in and
comes out and the transposes stay inside. No Keras here: ops work whatever KERAS_BACKEND says.

Explicit padding goes through explicit pad pairs (never padding="SAME", which pads
asymmetrically and differs from the contract at stride 2).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter, unless asked for

import functools  # noqa: E402
import weakref  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow.experimental.numpy as tnp  # noqa: E402

from d2lconv.compiled import per_model as per_model_fn
from d2lconv.interface import FINITE_IN_NUMPY_UP_TO, Backend, ModelLoss, surely_finite
from d2lconv.layers import LayerModule, blocked_forward, run
from d2lconv.pool_counts import inside_fraction

try:  # whether a gradient tape is recording (a C call); without it, assume one is
    from tensorflow.python.eager.record import could_possibly_record
except ImportError:  # pragma: no cover - TF moved it
    could_possibly_record = lambda: True  # noqa: E731

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
OIHW_TO_HWIO, HWIO_TO_OIHW = (2, 3, 1, 0), (3, 2, 0, 1)
NHWC_SPATIAL, NCHW_SPATIAL = (1, 2), (2, 3)  # the height and width axes
# eager even where this module is first imported while a tf.function traces (a user's first
# d2lconv call inside one): a graph's constant kept here would fail in every later graph
with tf.init_scope():
    # the same permutations as tensors, made once: a tuple is converted again on every call (~60 us)
    PERMUTATIONS = {perm: tf.constant(perm) for perm in (TO_NHWC, TO_NCHW, OIHW_TO_HWIO, HWIO_TO_OIHW)}
    EAGER_TENSOR = type(tf.constant(0.0))  # what eager operations return (immutable)
NO_PADS = ((0, 0), (0, 0))
#: Where oneDNN is off, Eigen's reductions pool non-overlapping windows quicker than its pooling
#: kernels (AVX2 AMD EPYC, 2x2 windows of 6 x 28 x 28 images, max / avg: batch 256 2.3 / 2.3 vs
#: 4.1 / 5.2 ms); from this many input elements quicker still as two reductions over contiguous
#: runs, rows then columns, than as one over both window axes (batch 8 and up: 0.3 vs 0.32 ms).
TWO_REDUCTIONS_FROM = 1 << 15
#: Eigen's convolution of one input channel is slow; with the kernel's rows folded into input
#: channels (:func:`_rows_folded_conv`) it is 1.6-2.2x quicker for up to this many filters
#: (AVX2 AMD EPYC, LeNet's first layer in a tf.function: batch 32 2.0 vs 2.9-3.7 ms, 256 11.4 vs
#: 18.9-25.4 ms; 32 filters at batch 32 2.7 vs 3.3-4.2 ms) from about this many input elements
#: (batch 8 of 28 x 28: 1.0 vs 1.2 ms; batch 1 0.61 vs 0.48-0.55 ms)
FOLD_ROWS_UP_TO, FOLD_ROWS_FROM = 32, 1 << 13


def _pad_fn(pads, value):
    """``fn(x)``: NHWC ``x`` padded by the pairs ``pads`` with ``value``; ``x`` itself if none."""
    if pads == NO_PADS:
        return lambda x: x
    paddings = [[0, 0], *map(list, pads), [0, 0]]
    return lambda x: tf.pad(x, paddings, constant_values=value)


def _loss_and_grads(loss_fn):
    """``(model, variables, *args) -> (loss, [d loss / d variable])`` under a gradient tape."""

    def loss_and_grads(model, variables, *args):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, *args)
        return loss, tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return loss_and_grads


class Module(LayerModule, tf.Module):
    """A d2lconv layer as a ``tf.Module``: variables and children are tracked attributes."""

    backend_name = "tensorflow"

    def __init__(self, layer):
        tf.Module.__init__(self, name=layer.kind.lower())
        self.d2l_layer = layer

    def __call__(self, x):
        return run(self, x)


class TensorflowBackend(Backend):
    name = "tensorflow"
    immutable_tensors = True
    xp = tnp

    def devices(self):
        return [device.name for device in tf.config.list_physical_devices()]

    def gpu_count(self):
        return len(tf.config.list_physical_devices("GPU"))

    def use_gpu(self, model):
        pass  # TensorFlow places work on the first GPU by itself

    def from_numpy(self, array):
        return tf.constant(array)

    def to_numpy(self, x):
        return x.numpy()

    def is_native(self, x):
        return tf.is_tensor(x) or isinstance(x, tf.Variable)

    def dtype(self, x):
        return np.dtype(x.dtype.as_numpy_dtype)

    def cast(self, x, dtype):
        return tf.cast(x, np.dtype(dtype).name)

    def reshape(self, x, shape):
        if tf.executing_eagerly():  # a shape's eager constant, made once: 36 vs 69 us a call (AMD EPYC)
            try:
                return tf.raw_ops.Reshape(tensor=x, shape=_eager_sizes(tuple(shape)))
            except TypeError:  # not a tuple of ints: converted below, or an error from TF
                pass
        try:  # an int32 array skips tf.reshape's conversion of the tuple: 17 vs 44 us a call here
            sizes = np.asarray(shape, np.int32)
        except TypeError:  # a size unknown while a graph is traced: a tensor, or None (below)
            return tf.reshape(x, _with_sizes_of(x, shape) if None in shape else shape)
        return tf.raw_ops.Reshape(tensor=x, shape=sizes)

    def transpose(self, x, axes):
        return tf.transpose(x, axes)

    def stack(self, xs, axis):
        return tf.stack(list(xs), axis=axis)

    def concat(self, xs, axis):
        return tf.concat(list(xs), axis=axis)

    def matmul(self, a, b):
        return tf.matmul(a, b)

    def reduce_sum(self, x, axis, keepdims):
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def abs(self, x):
        return tf.abs(x)

    def sigmoid(self, x):
        return tf.sigmoid(x)

    # --- built operators: NHWC inside a model, the layout of TF's CPU kernels ----------------
    layout = "NHWC"

    def to_internal(self, x):
        if x.shape.rank != 4:
            return x
        n, c, h, w = x.shape  # one channel: a reshape, no copy
        return tf.reshape(x, (-1, h, w, 1)) if c == 1 and None not in (h, w) else tf.transpose(x, TO_NHWC)

    def to_nchw(self, x):
        if x.shape.rank != 4:
            return x
        n, h, w, c = x.shape
        return tf.reshape(x, (-1, 1, h, w)) if c == 1 and None not in (h, w) else tf.transpose(x, TO_NCHW)

    def conv2d_fn(self, stride, pads):
        # tf.nn.conv2d's explicit padding measured 2.5x slower than VALID on this CPU, so pads
        # become "SAME" where that is the same thing (stride 1, any extra cell at the end), else
        # tf.pad then VALID
        strides, pad = (1, *stride, 1), _pad_fn(pads, 0)
        maybe_same = stride == (1, 1) and pads != NO_PADS and all(b - t in (0, 1) for t, b in pads)
        folds = not self.onednn  # measured on Eigen's kernels only
        if folds:
            folded, eager_folded = _rows_folded_conv(stride, pads), _eager_rows_folded_conv(stride, pads)

        def conv(x, w, bias):  # w: HWIO, as the variables are stored
            kernel = w.shape[:2]
            same = maybe_same and all(t + b + 1 == k for (t, b), k in zip(pads, kernel))
            if folds and x.shape[3] == 1 and w.shape[3] <= FOLD_ROWS_UP_TO and _folding_pays(x):
                y = eager_folded(x, w) if tf.executing_eagerly() else folded(x, w)
            elif same:
                y = _raw_conv(x, w, strides, "SAME")
            elif stride == (1, 1):
                y = _raw_conv(pad(x), w, strides, "VALID")
            else:
                rewrites = _rewrites(x, pads, kernel, stride, NHWC_SPATIAL)
                x, safe = _rewritten(pad(x), rewrites, stride, NHWC_SPATIAL)
                y = _raw_conv(x, w, (1, *safe, 1), "VALID")
            return y if bias is None else y + bias  # + : BiasAdd's gradient measured 7% of a step

        return conv

    @functools.cached_property
    def channel_block(self):
        """8 on the CPU: oneDNN runs a convolution with 6 channels on its GEMM kernels and one
        with 8 on its blocked JIT kernels (LeNet's step with the first layer's filters padded to 8,
        steps alone, interleaved: batch 32 2.2-4.5% quicker, 256 6.3-7.4%); Eigen's kernels, where
        oneDNN is off, gain too (whole 3-epoch fits on an AVX2 AMD EPYC: 4.4% at 32, 6.2% at
        256). None with a GPU."""
        return None if self.gpu_count() else 8

    def blocked_conv2d_fn(self, stride, pads, extra_out, extra_in):
        # zeros concatenated, not tf.pad: TF's oneDNN graph rewrite merges a Pad into the VALID
        # convolution it feeds even when it feeds the filter, and the process aborts ("Could
        # not find input edge 1 for Conv2D")
        conv = self.conv2d_fn(stride, pads)

        def blocked(x, w, bias):  # w: HWIO
            height, width, inputs, _ = w.shape
            if extra_out:
                w = tf.concat([w, tf.zeros((height, width, inputs, extra_out), w.dtype)], 3)
                if bias is not None:
                    bias = tf.concat([bias, tf.zeros((extra_out,), bias.dtype)], 0)
            if extra_in:
                w = tf.concat([w, tf.zeros((height, width, extra_in, w.shape[3]), w.dtype)], 2)
            return conv(x, w, bias)

        return blocked

    def _pool_fn(self, pool, window, stride, pads, fill):
        pad = _pad_fn(pads, fill)
        return lambda x: pool(pad(x), window, stride, "VALID")

    def max_pool_fn(self, window, stride, pads):
        pool = self._pool_fn(tf.nn.max_pool2d, window, stride, pads, -np.inf)
        avg_pool = self._pool_fn(tf.nn.avg_pool2d, window, stride, pads, 0)
        return _max_pool_checked(pool, lambda y, x: self.max_pool_edges(y, x, window, avg_pool))

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        pool = self._pool_fn(tf.nn.avg_pool2d, window, stride, pads, 0)
        if count_include_pad or pads == NO_PADS:
            return pool
        return _divided_by_inside_fraction(pool, window, stride, pads, self.dtype, nhwc=True)

    def dense_fn(self):
        def dense(x, w, bias):
            if w.shape.rank == 3:  # kept in a flatten's H-W-C order (flatten_order_dense), called alone
                w = _as_contract(w)
            y = tf.matmul(x, w, transpose_b=True)
            return y if bias is None else y + bias

        return dense

    # A dense weight that reads the flatten of an NHWC activation is kept as the (H*W, C, out)
    # variable whose rows follow that activation's memory: the flatten is a reshape, not two
    # transposes a step (LeNet batch 32: 4.5% of a step). Rank 3 says so to value() and assign().
    def flatten_order_dense(self, module, in_shape):
        _, height, width, channels = in_shape
        weight = module.weight
        if weight.shape.rank != 3 or weight.shape[1] != channels:
            if not tf.executing_eagerly():  # first called in a tf.function: its weights have no
                return None                 # values yet; keep the C-H-W flatten
            contract = _as_contract(weight).numpy()  # (out, C*H*W)
            hwc = contract.reshape(-1, channels, height * width).transpose(2, 1, 0)
            module.weight = tf.Variable(np.ascontiguousarray(hwc), name="weight")
        dense, flatten, reshape = self.dense_fn(), self.flatten_fn(), self.reshape

        def flatten_dense(x, w, bias):
            if x.shape.rank != 4 or x.shape[3] != w.shape[1]:  # an input of another shape
                return dense(flatten(x), w, bias)
            size = w.shape[0] * w.shape[1]
            y = tf.matmul(reshape(x, (-1, size)), reshape(w, (size, -1)))
            return y if bias is None else y + bias

        return flatten_dense

    # --- operators (NCHW) -----------------------------------------------------------------
    # TF's oneDNN kernels have NCHW forward kernels for float32 but NCHW gradients only for
    # average pooling; elsewhere NCHW goes through NHWC by transposes. The NCHW kernels skip four
    # transposes (the costliest part of a call: 3-6x a batch-1 call).
    @functools.cached_property
    def onednn(self) -> bool:
        """True where TF's CPU kernels are oneDNN's, which run float32 NCHW convolution and
        pooling (probed once by running them). TF turns oneDNN on by default only on x86 CPUs
        with AVX-512's neural-network instructions (``TF_ENABLE_ONEDNN_OPTS`` overrides); elsewhere
        (an AVX2-only AMD EPYC, say) Eigen's kernels run, NHWC only. With a GPU, whose kernels
        take NCHW too, also True."""
        with tf.init_scope():  # eager even when first asked while a tf.function traces
            x = tf.zeros((1, 1, 2, 2))
            try:
                tf.raw_ops.Conv2D(input=x, filter=tf.zeros((1, 1, 1, 1)), strides=[1] * 4, padding="VALID",
                                  data_format="NCHW")
                for pool in (_raw_max_pool, _raw_avg_pool):
                    pool(x, ksize=[1] * 4, strides=[1] * 4, padding="VALID", data_format="NCHW")
            except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
                return False
        return True

    def _nchw_fn(self, direct, transposing, gradient):
        """``fn(*args)`` on NCHW tensors: ``direct`` (NCHW kernels) for float32 where TF has
        them, else ``transposing`` (NHWC kernels). ``gradient``: whether ``direct`` has TF's own
        gradient; if not, a gradient tape sees ``direct`` with ``transposing``'s gradient."""
        if not self.onednn:
            return transposing
        if not gradient:
            direct = _with_gradient_of(direct, transposing)
        return lambda x, *rest: direct(x, *rest) if x.dtype is tf.float32 else transposing(x, *rest)

    def nchw_conv2d_fn(self, stride, pads):
        strides, explicit = [1, 1, *stride], [0, 0, 0, 0, *pads[0], *pads[1]]
        nhwc_conv = self.conv2d_fn(stride, pads)

        paddings = [[0, 0], [0, 0], *map(list, pads)]
        hwio = _hwio_remembering_last()

        def direct(x, w):
            kernel, w = w.shape[2:], hwio(w)
            rewrites = None if stride == (1, 1) else _rewrites(x, pads, kernel, stride, NCHW_SPATIAL)
            if rewrites is not None:
                x, safe = _rewritten(tf.pad(x, paddings), rewrites, stride, NCHW_SPATIAL)
                return tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, 1, *safe], padding="VALID", data_format="NCHW")
            return tf.raw_ops.Conv2D(input=x, filter=w, strides=strides, padding="EXPLICIT",
                                     explicit_paddings=explicit, data_format="NCHW")

        def nhwc_between(x, hwio_kernel):
            return _transposed(nhwc_conv(_transposed(x, TO_NHWC), hwio_kernel, None), TO_NCHW)

        def transposing(x, w):  # not hwio(): this is also the gradient's formulation, and a kernel
            # transposed outside the tape that records it would get no gradient
            return nhwc_between(x, _transposed(w, OIHW_TO_HWIO))

        def through_nhwc(x, w):  # Eigen's kernels: NHWC only, but the kernel's HWIO form kept
            return nhwc_between(x, hwio(w))

        if self.onednn:
            conv = self._nchw_fn(direct, transposing, gradient=False)
        else:  # batch 1, LeNet's first layer: 391 vs 429 us (AVX2 AMD EPYC)
            conv = _untaped(through_nhwc, transposing)

        def conv_bias(x, w, bias):
            y = conv(x, w)
            return y if bias is None else tf.nn.bias_add(y, bias, data_format="NCHW")

        return conv_bias

    def _nchw_pool_fn(self, pool, window, stride, pads, fill):
        ksize, strides, paddings = [1, 1, *window], [1, 1, *stride], [[0, 0], [0, 0], *map(list, pads)]
        if pads == NO_PADS:
            return lambda x: pool(x, ksize=ksize, strides=strides, padding="VALID", data_format="NCHW")
        return lambda x: pool(tf.pad(x, paddings, constant_values=fill), ksize=ksize, strides=strides,
                              padding="VALID", data_format="NCHW")

    def nchw_max_pool_fn(self, window, stride, pads):
        transposing = _nchw_through_nhwc(self.max_pool_fn(window, stride, pads))
        if self._reduces_windows(window, stride, pads):  # TF's Max propagates NaN: no check
            direct = _window_reduction(tf.raw_ops.Max, window, nhwc=False, otherwise=transposing)
            return _with_gradient_of(direct, transposing)  # the pooling's gradient: one cell per window
        direct = self._nchw_pool_fn(_raw_max_pool, window, stride, pads, -np.inf)
        avg_pool = self.nchw_avg_pool_fn(window, stride, pads, True)

        checked = _max_pool_checked(direct, lambda y, x: self.max_pool_edges(y, x, window, avg_pool))
        return self._nchw_fn(checked, transposing, gradient=False)

    def nchw_avg_pool_fn(self, window, stride, pads, count_include_pad):
        transposing = _nchw_through_nhwc(self.avg_pool_fn(window, stride, pads, count_include_pad))
        if self._reduces_windows(window, stride, pads):
            return _window_reduction(tf.raw_ops.Mean, window, nhwc=False, otherwise=transposing)
        direct = self._nchw_pool_fn(_raw_avg_pool, window, stride, pads, 0)
        if not count_include_pad and pads != NO_PADS:
            direct = _divided_by_inside_fraction(direct, window, stride, pads, self.dtype)
        return self._nchw_fn(direct, transposing, gradient=True)

    def _reduces_windows(self, window, stride, pads):
        """Whether a pooling is computed by reductions (see :data:`TWO_REDUCTIONS_FROM`): with
        Eigen's kernels, for windows that neither overlap nor leave gaps, unpadded."""
        return not self.onednn and stride == window and pads == NO_PADS

    def value_and_grad(self, fn, argnums):
        def wrapped(*args):
            with tf.GradientTape() as tape:
                for i in argnums:
                    tape.watch(args[i])
                value = fn(*args)
            grads = tape.gradient(
                value, [args[i] for i in argnums], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            return value, tuple(grads)

        return wrapped

    def cross_entropy(self, logits, labels):
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_mean(losses)

    Module = Module

    # Conv weights are variables in HWIO, the layout tf.nn.conv2d takes, so a built model's step
    # transposes no weights (LeNet batch 32: ~3% of a step); value() and assign() speak OIHW.
    def new_param(self, name, array):
        return tf.Variable(array.transpose(OIHW_TO_HWIO) if array.ndim == 4 else array, name=name)

    def value(self, param):
        return _as_contract(param)

    def stored(self, param):
        return param

    def assign(self, param, value):
        value = tf.cast(value, param.dtype)
        if param.shape.rank == 4:
            value = _transposed(value, OIHW_TO_HWIO)
        elif param.shape.rank == 3:  # (out, C*H*W) -> (H*W, C, out)
            value = tf.transpose(tf.reshape(value, (-1, param.shape[1], param.shape[0])), (2, 1, 0))
        param.assign(value)

    def model_value_and_grad(self, loss_fn, compile):
        def make(model, params):
            names, variables, loss_and_grads = list(params), list(params.values()), _loss_and_grads(loss_fn)

            def value_and_grad(*args):
                loss, grads = loss_and_grads(model, variables, *args)
                return loss, {name: _as_contract(grad) for name, grad in zip(names, grads)}

            return _compiled(value_and_grad, compile)

        per_model = per_model_fn(make)
        return lambda model, params, *args: per_model(model, params)(*args)

    def evaluation_fn(self, model):
        # LeNet on 1,024 images here: 30-34 ms eager, 21 ms compiled (Grappler fuses each
        # convolution with its bias and activation) after a first call ~35 ms longer
        return _compiled(model.__call__, True, fallback=model)

    def train_step(self, loss_fn, lr, compile):
        """One compiled SGD step per model. With the Trainer's loss, a model whose convolutions
        pad channels (:attr:`channel_block`) gets a second step computing them padded, run for
        a batch found finite on the host (a zero filter over an infinity gives NaN)."""

        def compiled_step(model, variables, loss_fn):
            loss_and_grads = _loss_and_grads(loss_fn)

            def step(*args):
                loss, grads = loss_and_grads(model, variables, *args)
                for variable, grad in zip(variables, grads):
                    variable.assign_sub(lr * grad)
                return loss

            return _compiled(step, compile)

        def make(model, params):
            variables = list(params.values())
            plain = compiled_step(model, variables, loss_fn)
            forward = blocked_forward(model) if compile and isinstance(loss_fn, ModelLoss) else None
            if forward is None:
                return plain
            padded = compiled_step(model, variables, lambda model, X, y: loss_fn.cross_entropy(forward(X), y))

            def choose(X, *rest):
                finite = type(X) is EAGER_TENSOR and _finite_on_host(X) is True
                return (padded if finite else plain)(X, *rest)

            return choose

        per_model = per_model_fn(make)
        return lambda model, params, *args: per_model(model, params)(*args)


def _divided_by_inside_fraction(pool, window, stride, pads, dtype_of, nhwc=False):
    """``pool`` (counting padded zeros) divided by the share of each window inside the input.
    The divisor is made per call: a constant made once would belong to one graph, and a plan
    serves eager calls and traces alike (a rare path: count_include_pad=False with padding)."""
    fraction = inside_fraction(window, stride, pads)

    def pool_inside_only(x):
        height, width = x.shape[1:3] if nhwc else x.shape[2:4]
        if height is None or width is None:  # sizes read when the graph runs: the share pooled
            return pool(x) / pool(tf.ones_like(x))
        divisor = fraction(height, width, dtype_of(x))
        return pool(x) / tf.constant(divisor[None, :, :, None] if nhwc else divisor)

    return pool_inside_only


def _with_sizes_of(x, shape):
    """``shape`` with each None replaced by ``x``'s size on the same axis counted from the end,
    read when the graph runs: the operators' reshapes of a graph's tensors whose sizes are not
    known while it is traced only add or drop leading axes of size 1 ((H, W) <-> (1, 1, H, W))."""
    sizes = tf.shape(x)
    return [sizes[axis - len(shape)] if size is None else size for axis, size in enumerate(shape)]


def _rewrites(x, pads, kernel, stride, spatial):
    """Per spatial axis, how a strided convolution over ``x`` padded by ``pads`` avoids the
    geometries that TF's oneDNN float32 kernels get wrong (found by d2lconv's property tests on
    TF 2.21, x86: a 1-channel forward pass whose stride-2+ axis has one output position and whose
    other axis has stride 1 returns uninitialised values; the filter gradient of a 1 x 1 kernel at
    unequal strides corrupts the heap): a single output position becomes a crop to the window, a
    window of size 1 a strided slice, both at stride 1 (the same products and sums). None where
    no axis needs a rewrite."""
    rewrites = []
    for axis, pair, k, s in zip(spatial, pads, kernel, stride):
        n = x.shape[axis]
        if s == 1 or n is None:
            rewrites.append(None)
        elif n + sum(pair) - k < s:
            rewrites.append(slice(0, k))
        elif k == 1:
            rewrites.append(slice(None, None, s))
        else:
            rewrites.append(None)
    return None if rewrites == [None, None] else rewrites


def _rewritten(x, rewrites, stride, spatial):
    """``(x', stride')``: the padded input and stride of the same VALID cross-correlation with
    ``rewrites`` (from :func:`_rewrites` on the unpadded input) applied; as given if None."""
    if rewrites is None:
        return x, stride
    index = [slice(None)] * 4
    for axis, rewrite in zip(spatial, rewrites):
        if rewrite is not None:
            index[axis] = rewrite
    return x[tuple(index)], tuple(s if r is None else 1 for s, r in zip(stride, rewrites))


@functools.lru_cache(maxsize=1024)
def _eager_sizes(shape):
    """``shape`` (an int or a tuple of ints) as an eager int32 constant, made once per shape,
    eager even while a graph is traced."""
    with tf.init_scope():
        return tf.constant(np.asarray(shape, np.int32))


def _window_reduction(reduce, window, nhwc, otherwise):
    """``fn(x)``: ``reduce`` (``tf.raw_ops.Max`` or ``Mean``) over each window of ``x``, which
    tile it (stride = window, no padding), through reshapes, never a transpose; ``otherwise(x)``
    for a height or width the window does not divide. Per input shape the reshapes are planned
    once, with eager shape constants for eager calls (a tuple is converted again at every call:
    ~130 us) and literal ones in traced graphs (which keep their static shapes)."""
    plans = {}

    def pooled(x):
        key = (tuple(x.shape), tf.executing_eagerly())
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = _reduction_plan(reduce, window, *key, nhwc) or otherwise
        return plan(x)

    return pooled


def _reduction_plan(reduce, window, shape, eager, nhwc):
    """:func:`_window_reduction`'s function for inputs of ``shape``, or None where the window
    does not divide its height and width. Mean of the rows' means: for windows of powers of two
    the same sums, halved exactly; otherwise within a few ulps of one mean."""
    (kh, kw), (height, width) = window, (shape[1:3] if nhwc else shape[2:])
    channels = shape[3] if nhwc else shape[1]
    if None in (height, width, channels) or height % kh or width % kw:
        return None
    rows, cols = height // kh, width // kw
    size = None if shape[0] is None else shape[0] * channels * height * width
    as_given = _eager_sizes if eager else (lambda v: v)
    if size is not None and size < TWO_REDUCTIONS_FROM:
        tiles = (-1, rows, kh, cols, kw, channels) if nhwc else (-1, channels, rows, kh, cols, kw)
        tiles, axes = as_given(tiles), as_given((2, 4) if nhwc else (3, 5))
        return lambda x: reduce(input=tf.raw_ops.Reshape(tensor=x, shape=tiles), axis=axes)
    row_runs = as_given((-1, kh, width * channels) if nhwc else (-1, kh, width))
    col_runs = as_given((-1, kw, channels) if nhwc else (-1, cols, kw))
    out = as_given((-1, rows, cols, channels) if nhwc else (-1, channels, rows, cols))
    first, second = as_given(1), as_given(1 if nhwc else 2)

    def two_reductions(x):
        by_rows = reduce(input=tf.raw_ops.Reshape(tensor=x, shape=row_runs), axis=first)
        return tf.raw_ops.Reshape(tensor=reduce(input=tf.raw_ops.Reshape(tensor=by_rows, shape=col_runs), axis=second), shape=out)

    return two_reductions


def _folding_pays(x):
    """Whether ``x`` (its shape possibly unknown in a graph) is large enough to fold rows."""
    size = x.shape.num_elements()
    return size is None or size >= FOLD_ROWS_FROM


def _rows_folded_conv(stride, pads):
    """``conv(x, w)``: the cross-correlation of one-channel NHWC ``x`` with HWIO ``w``, made on
    ``x``'s row windows stacked as input channels (``tf.signal.frame``) with the kernel's rows as
    input channels of a one-row kernel: the same products and sums in another order. For graphs
    only (``tf.signal.frame`` is many eager ops)."""
    (top, bottom), (left, right) = pads
    paddings, strides = [[0, 0], [top, bottom], [left, right]], (1, 1, stride[1], 1)

    def folded(x, w):
        padded = tf.pad(tf.squeeze(x, 3), paddings)  # (N, H', W')
        rows = tf.signal.frame(padded, w.shape[0], stride[0], axis=1)  # (N, out rows, kh, W')
        return _raw_conv(tf.transpose(rows, (0, 1, 3, 2)), tf.transpose(w, (2, 1, 0, 3)), strides, "VALID")

    return folded


@functools.lru_cache(maxsize=64)
def _eager_rows_folded_conv(stride, pads):
    """:func:`_rows_folded_conv` for eager calls (its five operations cost ~6 ms of Python run one
    by one): one concrete function per kernel shape and dtype, whatever the input's shape, shared
    by every operator of this stride and padding (a trace costs 70-90 ms: not for each new image
    size, which builds a new operator)."""
    concrete = {}
    conv = _rows_folded_conv(stride, pads)
    function = tf.function(conv, autograph=False)

    def call(x, w):
        key = (tuple(w.shape), x.dtype)
        traced = concrete.get(key)
        if traced is None:
            traced = concrete[key] = function.get_concrete_function(
                tf.TensorSpec((None, None, None, 1), x.dtype), tf.TensorSpec(key[0], x.dtype))
        return traced(x, w)

    return call


def _raw_conv(x, w, strides, padding):
    """TF's NHWC ``Conv2D``, the op ``tf.nn.conv2d`` makes, without its Python checks (~30 us
    an eager call on an AMD EPYC)."""
    return tf.raw_ops.Conv2D(input=x, filter=w, strides=strides, padding=padding)


def _raw_max_pool(x, **config):
    return tf.raw_ops.MaxPool(input=x, **config)


def _raw_avg_pool(x, **config):
    return tf.raw_ops.AvgPool(value=x, **config)


def _as_contract(x):
    """A parameter (or its gradient) as the contract lays it out: a 4-D one is an HWIO conv
    weight, given as OIHW; a 3-D one a dense weight in flatten order (H*W, C, out), given as
    (out, C*H*W); others are already in the contract's layout."""
    if x.shape.rank == 4:
        return _transposed(x, HWIO_TO_OIHW)
    if x.shape.rank == 3:
        return tf.reshape(tf.transpose(x, (2, 1, 0)), (x.shape[2], -1))
    return x


def _transposed(x, perm):
    return tf.raw_ops.Transpose(x=x, perm=PERMUTATIONS[perm])  # tf.transpose: 4x the time here


def _hwio_remembering_last():
    """``hwio(w)``: OIHW ``w`` as HWIO. The last eager constant kernel's HWIO form is kept (while
    that kernel lives), so calling an operator again with the same kernel costs no transpose, and
    oneDNN finds its reordered weights cached: 172 vs 217 us for a batch-1 LeNet convolution
    here. Variables (they change in place) and traced tensors are transposed at every call."""
    last = [None]  # (weak reference to the kernel, its HWIO form), replaced in one assignment

    def hwio(w):
        if type(w) is not EAGER_TENSOR:
            return _transposed(w, OIHW_TO_HWIO)
        entry = last[0]
        if entry is not None and entry[0]() is w:
            return entry[1]
        transposed = _transposed(w, OIHW_TO_HWIO)
        last[0] = (weakref.ref(w, lambda _: last.__setitem__(0, None)), transposed)
        return transposed

    return hwio


def _nchw_through_nhwc(fn):
    """``fn`` of one NHWC tensor as a function of an NCHW one."""
    return lambda x: _transposed(fn(_transposed(x, TO_NHWC)), TO_NCHW)


def _host_view(x):
    """Eager ``x``'s elements as a NumPy array sharing its memory (DLPack; ``x.numpy()`` copies:
    523 vs 0.8 us at 1.2M elements), or None where ``x`` is not in host memory or not shareable."""
    try:
        return np.from_dlpack(x)
    except (AttributeError, TypeError, BufferError, RuntimeError):
        return None


def _finite_on_host(x):
    """:func:`surely_finite` of eager ``x``'s elements read on the host, or None where they are
    not (not in host memory, not shareable, or past ``FINITE_IN_NUMPY_UP_TO``, where TF's own
    reduction is quicker)."""
    view = _host_view(x)  # its size is read quicker than x.shape's (0.7 us)
    if view is None or view.size > FINITE_IN_NUMPY_UP_TO:
        return None
    return surely_finite(view)


def _max_pool_checked(pool, correct):
    """``fn(x)``: ``pool(x)`` (a max pooling by TF, which skips NaN), or ``correct(y, x)`` of it
    where ``x`` holds a NaN or an infinity: only then, in graphs too (``tf.cond``)."""

    def max_pool(x):
        y = pool(x)
        if not tf.executing_eagerly():
            return tf.cond(tf.math.is_finite(tf.reduce_sum(x)), lambda: y, lambda: correct(y, x))
        finite = _finite_on_host(x)
        if finite is None:
            finite = tf.math.is_finite(tf.reduce_sum(x))
        return y if finite else correct(y, x)

    return max_pool


def _untaped(direct, taped):
    """``direct`` for eager calls that no gradient tape records, else ``taped`` (the same
    function, which TF differentiates)."""
    return lambda *args: direct(*args) if tf.executing_eagerly() and not could_possibly_record() else taped(*args)


def _with_gradient_of(direct, transposing):
    """``direct`` whose gradient, when a tape records it, is that of ``transposing`` (the same
    function on TF's NHWC kernels, which have gradients on the CPU)."""

    @tf.custom_gradient
    def recorded(*args):
        def grad(dy):
            with tf.GradientTape() as tape:
                tape.watch(args)
                y = transposing(*args)
            return tape.gradient(y, args, dy, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        return direct(*args), grad

    return _untaped(direct, recorded)  # nothing records: no custom-gradient machinery (~70 us a call)


def _compiled(fn, compile, fallback=None):
    """``fn`` as one ``tf.function`` (one trace per batch shape, shapes stay static) when asked.
    XLA (``jit_compile=True``) measured 3x slower than TF's own kernels for LeNet on this CPU.
    No AutoGraph: d2lconv's forward has no tensor-dependent Python control flow, and AutoGraph
    re-reads source files to convert them (slower traces; wrong code if a file changed on disk).

    Tensors of a shape seen before go straight to that shape's concrete function: through the
    ``tf.function``'s own call, TF counts the traces of every function made from one Python
    function (each fit's step, every model's ``Module.__call__``) together and warns of
    "excessive retracing" from a user's second short fit on. Other arguments (NumPy arrays)
    take ``fallback`` (by default the ``tf.function`` itself)."""
    if not compile:
        return fn
    function, concrete = tf.function(fn, autograph=False), {}
    fallback = function if fallback is None else fallback

    def call(*args):
        if not all(isinstance(x, tf.Tensor) for x in args):
            return fallback(*args)
        key = tuple((x.shape, x.dtype) for x in args)
        traced = concrete.get(key)
        if traced is None:
            traced = concrete[key] = function.get_concrete_function(*(tf.TensorSpec(*k) for k in key))
        return traced(*args)

    return call


BACKEND = TensorflowBackend()
