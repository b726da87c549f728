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

from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _pad_nhwc(x, pads, value):
    if pads == ((0, 0), (0, 0)):
        return x
    return tf.pad(x, [[0, 0], *pads, [0, 0]], constant_values=value)


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
        return self.max_pool_edges(y, x, window, stride, pads)  # tf.nn's max skips NaN

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
        step = _loss_and_grads(loss_fn)
        step = tf.function(step) if compile else step  # one trace per batch shape: shapes stay static

        def wrapped(model, params, *args):
            loss, grads = step(model, list(params.values()), *args)
            return loss, dict(zip(params, grads))

        return wrapped

    def train_step(self, loss_fn, lr, compile):
        loss_and_grads = _loss_and_grads(loss_fn)

        def step(model, variables, *args):
            loss, grads = loss_and_grads(model, variables, *args)
            for variable, grad in zip(variables, grads):
                variable.assign_sub(lr * grad)
            return loss

        step = tf.function(step) if compile else step
        return lambda model, params, *args: step(model, list(params.values()), *args)


BACKEND = TensorflowBackend()
