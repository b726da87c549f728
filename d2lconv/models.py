"""LeNet-5 as in section 7.6 of the book, a native model of the current backend."""

from __future__ import annotations

from d2lconv import args, layers
from d2lconv.random import generator
from d2lconv.training import check_lr


def LeNet(lr=0.1, num_classes=10, seed=None):
    """The book's LeNet: conv 6@5x5 pad 2, sigmoid, avg-pool 2/2, conv 16@5x5, sigmoid,
    avg-pool 2/2, flatten, dense 120, sigmoid, dense 84, sigmoid, dense ``num_classes``.

    Weights are Xavier-uniform and biases zero (the book's ``init_cnn``), drawn in forward order
    from ``numpy.random.default_rng(seed)`` (the global d2lconv generator when ``seed`` is None)
    when the model first sees an input; parameter names are ``net.<index>.weight|bias``.
    """
    lr = check_lr(lr)
    num_classes = args._check_int(num_classes, "num_classes", 1)
    rng = None if seed is None else generator(seed)
    xavier = {"init": "xavier", "seed": rng}
    net = layers.Sequential(
        layers.LazyConv2d(6, kernel_size=5, padding=2, **xavier), layers.Sigmoid(),
        layers.AvgPool2d(kernel_size=2, stride=2),
        layers.LazyConv2d(16, kernel_size=5, **xavier), layers.Sigmoid(),
        layers.AvgPool2d(kernel_size=2, stride=2),
        layers.Flatten(),
        layers.LazyLinear(120, **xavier), layers.Sigmoid(),
        layers.LazyLinear(84, **xavier), layers.Sigmoid(),
        layers.LazyLinear(num_classes, **xavier),
    )
    model = layers.make(layers.Container("LeNet", ["net"]), [("net", net)])
    model.lr = lr
    return model
