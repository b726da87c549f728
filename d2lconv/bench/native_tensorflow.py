"""TensorFlow as its users write it: ``tf.nn`` on NHWC (the only layout TF's CPU convolution
takes), and LeNet as ``tf.Variable`` weights with ``tf.nn`` ops in one ``tf.function`` step."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from d2lconv import backend

PACKAGES = ("tensorflow", "keras")
KERAS_BACKEND = "tensorflow"
OPS_LAYOUT = "tf.nn.conv2d / max_pool2d / avg_pool2d on NHWC inputs, HWIO kernels (a TF user's layout)"


def to_native(array):
    return tf.convert_to_tensor(array)


def sync(x):
    return x  # eager CPU ops have run when they return


def operator_calls(X, W, P):
    X = to_native(np.ascontiguousarray(X.transpose(0, 2, 3, 1)))
    W = to_native(np.ascontiguousarray(W.transpose(2, 3, 1, 0)))
    P = to_native(np.ascontiguousarray(P.transpose(0, 2, 3, 1)))
    pads = [[0, 0], [2, 2], [2, 2], [0, 0]]
    return {
        "conv2d": lambda: tf.nn.conv2d(X, W, 1, pads),
        "max_pool": lambda: tf.nn.max_pool2d(P, 2, 2, "VALID"),
        "avg_pool": lambda: tf.nn.avg_pool2d(P, 2, 2, "VALID"),
    }


NCHW_OPS_LAYOUT = ("tf.nn.* with data_format=\"NCHW\" on NCHW inputs, HWIO kernels (oneDNN's float32 NCHW "
                   "kernels: forward only on the CPU, TF has no NCHW gradient there for conv and max)")


def nchw_skip_reason():
    """Why the NCHW calls cannot run here, or None: TF's CPU takes NCHW only on oneDNN's kernels."""
    if backend.load("tensorflow").onednn:
        return None
    return "TF runs Eigen's CPU kernels here (oneDNN is off on this CPU), which take NHWC only"


def nchw_operator_calls(X, W, P):
    X, P = to_native(X), to_native(P)
    W = to_native(np.ascontiguousarray(W.transpose(2, 3, 1, 0)))
    pads = [[0, 0], [0, 0], [2, 2], [2, 2]]
    return {
        "conv2d": lambda: tf.nn.conv2d(X, W, 1, pads, data_format="NCHW"),
        "max_pool": lambda: tf.nn.max_pool2d(P, 2, 2, "VALID", data_format="NCHW"),
        "avg_pool": lambda: tf.nn.avg_pool2d(P, 2, 2, "VALID", data_format="NCHW"),
    }


def loop_zeros(shape):
    return tf.Variable(tf.zeros(shape))


def loop_put(Y, i, j, value):
    Y[i, j].assign(value)
    return Y


def loop_sum(x):
    return tf.reduce_sum(x)


def _xavier(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return tf.Variable(rng.uniform(-limit, limit, shape).astype(np.float32))


def _lenet_params(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [((5, 5, 1, 6), 25, 150), ((5, 5, 6, 16), 150, 400), ((400, 120), 400, 120), ((120, 84), 120, 84), ((84, 10), 84, 10)]
    weights = [_xavier(rng, shape, fan_in, fan_out) for shape, fan_in, fan_out in shapes]
    biases = [tf.Variable(tf.zeros(shape[-1])) for shape, _, _ in shapes]
    return weights, biases


def _forward(weights, biases, X):
    w1, w2, w3, w4, w5 = weights
    b1, b2, b3, b4, b5 = biases
    H = tf.sigmoid(tf.nn.conv2d(X, w1, 1, "SAME") + b1)  # 5x5 SAME at stride 1 = 2 pixels each side
    H = tf.nn.avg_pool2d(H, 2, 2, "VALID")
    H = tf.sigmoid(tf.nn.conv2d(H, w2, 1, "VALID") + b2)
    H = tf.nn.avg_pool2d(H, 2, 2, "VALID")
    H = tf.reshape(H, (tf.shape(H)[0], -1))
    H = tf.sigmoid(H @ w3 + b3)
    H = tf.sigmoid(H @ w4 + b4)
    return H @ w5 + b5


def _loss(logits, y):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def fit(batches, val, epochs, lr, mark):
    weights, biases = _lenet_params()
    variables = weights + biases

    @tf.function
    def step(X, y):
        with tf.GradientTape() as tape:
            loss = _loss(_forward(weights, biases, X), y)
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(lr * grad)
        return loss

    @tf.function
    def evaluate(X, y):
        logits = _forward(weights, biases, X)
        return _loss(logits, y), tf.reduce_mean(tf.cast(tf.argmax(logits, 1) == y, tf.float32))

    def nhwc(X):  # the data's one channel makes NCHW -> NHWC a reshape; a TF user's data is NHWC
        return to_native(X.reshape(X.shape[0], X.shape[2], X.shape[3], X.shape[1]))

    X_val, y_val = nhwc(val[0]), to_native(val[1])
    for _ in range(epochs):
        mark()
        total = tf.zeros(())
        for X, y in batches:
            total += step(nhwc(X), to_native(y))
        train_loss = float(total) / len(batches)
        loss, acc = evaluate(X_val, y_val)
        float(loss), float(acc)
    return train_loss


def training_loops():
    return {"tf.function": ("tf.Variable + tf.nn on NHWC, one tf.function step", fit)}
