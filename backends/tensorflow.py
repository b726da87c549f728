"""TensorFlow: tf.nn's conv2d and pooling. TF's CPU kernels are NHWC only, so NCHW goes in and
comes out and the transposes stay inside. No Keras here: ops work whatever KERAS_BACKEND says.

Explicit padding goes through explicit pad pairs (never padding="SAME", which pads
asymmetrically and differs from the contract at stride 2).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter, unless asked for

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow.experimental.numpy as tnp  # noqa: E402

from d2lconv.compiled import per_model as per_model_fn
from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run
from d2lconv.pool_counts import inside_fraction

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
OIHW_TO_HWIO = (2, 3, 1, 0)
NO_PADS = ((0, 0), (0, 0))


def _pad_nhwc(x, pads, value):
    if pads == ((0, 0), (0, 0)):
        return x
    return tf.pad(x, [[0, 0], *pads, [0, 0]], constant_values=value)


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
        return tf.reshape(x, shape)

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

        def conv(x, w, bias):
            same = maybe_same and all(t + b + 1 == k for (t, b), k in zip(pads, w.shape[2:]))
            w = tf.transpose(w, OIHW_TO_HWIO)
            y = tf.nn.conv2d(x, w, strides, "SAME") if same else tf.nn.conv2d(pad(x), w, strides, "VALID")
            return y if bias is None else tf.nn.bias_add(y, bias)

        return conv

    def _pool_fn(self, pool, window, stride, pads, fill):
        pad = _pad_fn(pads, fill)
        return lambda x: pool(pad(x), window, stride, "VALID")

    def max_pool_fn(self, window, stride, pads):
        pool = self._pool_fn(tf.nn.max_pool2d, window, stride, pads, -np.inf)
        avg_pool = self._pool_fn(tf.nn.avg_pool2d, window, stride, pads, 0)

        def max_pool(x):  # tf.nn's max skips NaN: corrected, in graphs too, only when needed
            y = pool(x)
            return tf.cond(
                tf.math.is_finite(tf.reduce_sum(x)), lambda: y, lambda: self.max_pool_edges(y, x, window, avg_pool)
            )

        return max_pool

    def avg_pool_fn(self, window, stride, pads, count_include_pad):
        pool = self._pool_fn(tf.nn.avg_pool2d, window, stride, pads, 0)
        if count_include_pad or pads == NO_PADS:
            return pool
        fraction = inside_fraction(window, stride, pads)
        return lambda x: pool(x) / tf.constant(fraction(*x.shape[1:3], self.dtype(x))[None, :, :, None])

    def dense_fn(self):
        def dense(x, w, bias):
            y = tf.matmul(x, w, transpose_b=True)
            return y if bias is None else tf.nn.bias_add(y, bias)

        return dense

    # --- operators (NCHW) -----------------------------------------------------------------
    def conv2d(self, x, w, bias, stride, pads):
        y = tf.nn.conv2d(
            tf.transpose(x, TO_NHWC),
            tf.transpose(w, (2, 3, 1, 0)),  # OIHW -> HWIO
            strides=(1, *stride, 1),
            padding=[[0, 0], *pads, [0, 0]],
        )
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return tf.transpose(y, TO_NCHW)

    def _pool(self, pool, x, window, stride, pads, fill):
        y = pool(_pad_nhwc(tf.transpose(x, TO_NHWC), pads, fill), window, stride, "VALID")
        return tf.transpose(y, TO_NCHW)

    def max_pool(self, x, window, stride, pads):
        y = self._pool(tf.nn.max_pool2d, x, window, stride, pads, -np.inf)
        if tf.executing_eagerly() and tf.math.is_finite(tf.reduce_sum(x)):
            return y  # no NaN and no -inf anywhere: tf.nn's max is already NumPy's
        avg_pool = lambda m: self.avg_pool(m, window, stride, pads)  # noqa: E731
        return self.max_pool_edges(y, x, window, avg_pool)  # tf.nn's max skips NaN

    def avg_pool(self, x, window, stride, pads):
        return self._pool(tf.nn.avg_pool2d, x, window, stride, pads, 0)

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

    def new_param(self, name, array):
        return tf.Variable(array, name=name)

    def assign(self, param, value):
        param.assign(tf.cast(value, param.dtype))

    def model_value_and_grad(self, loss_fn, compile):
        def make(model, params):
            names, variables, loss_and_grads = list(params), list(params.values()), _loss_and_grads(loss_fn)

            def value_and_grad(*args):
                loss, grads = loss_and_grads(model, variables, *args)
                return loss, dict(zip(names, grads))

            return _compiled(value_and_grad, compile)

        per_model = per_model_fn(make)
        return lambda model, params, *args: per_model(model, params)(*args)

    def train_step(self, loss_fn, lr, compile):
        def make(model, params):
            variables, loss_and_grads = list(params.values()), _loss_and_grads(loss_fn)

            def step(*args):
                loss, grads = loss_and_grads(model, variables, *args)
                for variable, grad in zip(variables, grads):
                    variable.assign_sub(lr * grad)
                return loss

            return _compiled(step, compile)

        per_model = per_model_fn(make)
        return lambda model, params, *args: per_model(model, params)(*args)


def _compiled(fn, compile):
    """``fn`` as one ``tf.function`` (one trace per batch shape, shapes stay static) when asked.
    XLA (``jit_compile=True``) measured 3x slower than TF's own kernels for LeNet on this CPU.
    No AutoGraph: d2lconv's forward has no tensor-dependent Python control flow, and AutoGraph
    re-reads source files to convert them (slower traces; wrong code if a file changed on disk)."""
    return tf.function(fn, autograph=False) if compile else fn


BACKEND = TensorflowBackend()
