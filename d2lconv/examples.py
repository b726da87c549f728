"""The chapter's worked examples, written once against the public API."""

from __future__ import annotations

import numpy as np

from d2lconv import layers, ops, tensors
from d2lconv.params import get_params
from d2lconv.training import sgd


def edge_image():
    """The 6x8 image of section 7.2.2: ones with a black (zero) band in columns 2 to 5."""
    image = np.ones((6, 8), np.float32)
    image[:, 2:6] = 0
    return image


def learn_kernel(steps=10, lr=3e-2, seed=0, verbose=True):
    """Section 7.2.4: learn the edge kernel [1, -1] from the image and its edges alone.

    A ``LazyConv2d(1, kernel_size=(1, 2), bias=False)`` initialised from ``seed`` is trained by
    SGD on the squared error; the loss is printed every second step as in the book. Returns the
    learned (1, 2) kernel and the list of losses (one per step).
    """
    X = tensors.tensor(edge_image().reshape(1, 1, 6, 8))
    Y = ops.corr2d(tensors.tensor(edge_image()), tensors.tensor([[1.0, -1.0]]))
    Y = tensors.reshape(Y, (1, 1, 6, 7))
    conv2d = layers.LazyConv2d(1, kernel_size=(1, 2), bias=False, seed=seed)
    grad_fn = ops.value_and_grad(lambda net, X, Y: tensors.reduce_sum((net(X) - Y) ** 2))
    losses = []
    for i in range(steps):
        loss, grads = grad_fn(conv2d, X, Y)
        sgd(conv2d, grads, lr)
        losses.append(float(tensors.to_numpy(loss)))
        if verbose and (i + 1) % 2 == 0:
            print(f"epoch {i + 1}, loss {losses[-1]:.3f}")
    return get_params(conv2d)["weight"].reshape(1, 2), losses
