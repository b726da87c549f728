"""MXNet as its users write it (NumPy mode, ``npx.set_np()``): ``npx.convolution`` and
``npx.pooling`` on NCHW, and LeNet as a hybridized Gluon ``HybridSequential`` trained by
``gluon.Trainer``."""

from __future__ import annotations

import mxnet as mx
from mxnet import autograd, gluon, np, npx
from mxnet.gluon import nn

from d2lconv.bench.loop import put_in_place as loop_put, sum_method as loop_sum  # noqa: F401

npx.set_np()

PACKAGES = ("mxnet",)
KERAS_BACKEND = None  # Keras 3 has no MXNet backend
OPS_LAYOUT = "npx.convolution / npx.pooling on NCHW"


def to_native(array):
    return np.array(array, dtype=array.dtype)


def sync(x):
    x.wait_to_read()
    return x


def operator_calls(X, W, P):
    X, W, P = to_native(X), to_native(W), to_native(P)
    return {
        "conv2d": lambda: npx.convolution(X, W, kernel=(5, 5), pad=(2, 2), num_filter=6, no_bias=True),
        "max_pool": lambda: npx.pooling(P, kernel=(2, 2), stride=(2, 2), pool_type="max"),
        "avg_pool": lambda: npx.pooling(P, kernel=(2, 2), stride=(2, 2), pool_type="avg"),
    }


def loop_zeros(shape):
    return np.zeros(shape)


def lenet():
    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(6, 5, padding=2, activation="sigmoid"), nn.AvgPool2D(2, 2),
        nn.Conv2D(16, 5, activation="sigmoid"), nn.AvgPool2D(2, 2),
        nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"), nn.Dense(10),
    )
    net.initialize(mx.init.Xavier())  # uniform, magnitude 3, fan average: Glorot; biases zero
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def fit(batches, val, epochs, lr, mark):
    net = lenet()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    X_val, y_val = to_native(val[0]), to_native(val[1])
    for _ in range(epochs):
        mark()
        total = np.zeros(())
        for X, y in batches:
            X, y = to_native(X), to_native(y)
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            trainer.step(X.shape[0])
            total += loss.mean()
        train_loss = float(total) / len(batches)
        logits = net(X_val)
        float(loss_fn(logits, y_val).mean()), float((logits.argmax(1).astype(y_val.dtype) == y_val).mean())
    return train_loss


def training_loops():
    return {"gluon hybridized": ("Gluon HybridSequential, hybridized, gluon.Trainer", fit)}
