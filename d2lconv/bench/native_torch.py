"""PyTorch as its users write it: ``torch.nn.functional`` calls, and LeNet with ``nn.Sequential``
and ``optim.SGD``, eager and with ``torch.compile``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from d2lconv.bench.loop import put_in_place as loop_put, sum_method as loop_sum  # noqa: F401

PACKAGES = ("torch",)
KERAS_BACKEND = "torch"
OPS_LAYOUT = "F.conv2d / F.max_pool2d / F.avg_pool2d on NCHW"


def to_native(array):
    return torch.from_numpy(array)


def sync(x):
    return x  # CPU tensors are computed when the call returns


def operator_calls(X, W, P):
    X, W, P = to_native(X), to_native(W), to_native(P)
    return {
        "conv2d": lambda: F.conv2d(X, W, padding=2),
        "max_pool": lambda: F.max_pool2d(P, 2, 2),
        "avg_pool": lambda: F.avg_pool2d(P, 2, 2),
    }


def loop_zeros(shape):
    return torch.zeros(shape)


def lenet():
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return net


def _fit(compiled: bool, channels_last: bool = False):
    def fit(batches, val, epochs, lr, mark):
        net = lenet()
        if channels_last:  # torch's advice for CPU convolutions: oneDNN's NHWC kernels
            net = net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)

        def forward_loss(X, y):
            return F.cross_entropy(net(X), y)

        loss_of = torch.compile(forward_loss) if compiled else forward_loss
        X_val, y_val = to_native(val[0]), to_native(val[1])
        for _ in range(epochs):
            mark()
            net.train()
            total = torch.zeros(())
            for X, y in batches:
                loss = loss_of(to_native(X), to_native(y))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
            train_loss = float(total) / len(batches)
            with torch.no_grad():
                logits = net(X_val)
                float(F.cross_entropy(logits, y_val)), float((logits.argmax(1) == y_val).float().mean())
        return train_loss

    return fit


def training_loops():
    return {
        "torch eager": ("nn.Sequential + optim.SGD, eager", _fit(False)),
        "torch compiled": ("the same, forward+loss under torch.compile", _fit(True)),
        "torch eager, channels_last": (
            "the eager loop with net.to(memory_format=torch.channels_last)", _fit(False, True)),
        "torch compiled, channels_last": ("the compiled loop, channels_last", _fit(True, True)),
    }
