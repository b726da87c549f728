"""Do the frameworks agree? One fixed battery of cases, run on each backend, compared pairwise.

The battery: the operators on fixed random inputs (padding and stride forms, both pool modes),
hostile edge inputs (NaN, infinities, integers, float16, empty sizes, huge padding, bad gradient
requests: each gives the same value or raises the same exception type everywhere),
LeNet's logits from seed 0, and, where the backend has autodiff, LeNet's gradients, five SGD
steps' losses and the learning-a-kernel losses; with ``--train``, the loss and accuracy curves
of 3 epochs of LeNet on the offline digits. Results of a backend that cannot be imported
beside the others (MXNet needs numpy<1.24) travel as an ``.npz`` written with ``--save``.

    python -m d2lconv.agreement                          # every backend installed here
    python -m d2lconv.agreement --backends mxnet --save mxnet.npz
    python -m d2lconv.agreement --load mxnet.npz         # here, plus MXNet's exported results
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from d2lconv import backend, examples, models, ops, params, tensors, training
from d2lconv.data import DIGITS_BATCH_SIZE, DIGITS_LR, Digits
from d2lconv.trainer import Trainer

#: tolerance by key prefix: operators 1e-5 (float32 ops), model outputs 1e-4 (deep float32
#: sums), whole training curves 1e-3 (float32 rounding compounds over 3,400 SGD steps); edge
#: cases must match exactly in shape, dtype, NaN and infinity positions, or raise the same error
TOLERANCES = {"op/": 1e-5, "edge/": 1e-5, "lenet/": 1e-4, "kernel/": 1e-4, "digits/": 1e-3}

CONV_CASES = [  # (padding, stride)
    (0, 1), (1, 1), ((2, 1), 1), (((0, 2), (1, 0)), (2, 3)), ("same", 1), (1, 2),
]
POOL_CASES = [  # (mode, window, stride, padding, count_include_pad)
    ("max", 2, None, 0, True), ("max", 3, 2, 1, True), ("avg", (2, 3), 1, (1, 0), True),
    ("avg", 3, 2, ((1, 0), (0, 2)), False),
]


def _data(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _edge_inputs():
    nan, inf = np.nan, np.inf
    special = np.array(
        [[1, nan, 3, 4, -2], [5, 6, 7, 8, 0], [-inf, -inf, 1, 2, inf], [-inf, -inf, 3, 4, 1], [2, 1, 0, -1, -2]],
        np.float32,
    )
    ints = np.arange(25, dtype=np.int64).reshape(5, 5) - 12
    W = _data(5, 2, 1, 2, 2)

    def grad(fn, argnums, *inputs):
        return lambda: ops.value_and_grad(fn, argnums)(*inputs)[1]

    def total(x, y=None):
        return tensors.reduce_sum(x)

    return {
        "max_pool_nan_inf": lambda: ops.pool2d(special, 2, "max", 1),
        "max_pool_padded_neg_inf": lambda: ops.pool2d(special, 3, "max", 2, 1),
        "max_pool_all_neg_inf": lambda: ops.pool2d(np.full((2, 3, 3), -inf, np.float32), 2, "max", 1, 1),
        "avg_pool_nan_inf": lambda: ops.pool2d(special, 2, "avg", 1, 1),
        "conv_nan_inf": lambda: ops.conv2d(special[None, None], W[:, :1] * 0 + 1, None, 1, 1),
        "max_pool_int": lambda: ops.pool2d(ints, 2, "max", 1, 1),
        "avg_pool_int": lambda: ops.pool2d(ints, 3, "avg", 2, 1, False),
        "avg_pool_bool": lambda: ops.pool2d(ints > 0, 2, "avg"),
        "corr2d_int": lambda: ops.corr2d(ints, [[1, 2], [3, 4]]),
        "conv_batch0": lambda: ops.conv2d(np.zeros((0, 1, 5, 5), np.float32), W[:, :1]),
        "conv_in_channels0": lambda: ops.conv2d(
            np.zeros((2, 0, 4, 4), np.float32), np.zeros((3, 0, 2, 2), np.float32), [1.0, 2, 3], 1, 1
        ),
        "conv_out_channels0": lambda: ops.conv2d(special[None, None], np.zeros((0, 1, 2, 2), np.float32)),
        "conv_kernel0x0": lambda: ops.conv2d(special[None, None], np.zeros((1, 1, 0, 0), np.float32)),
        "pool_channels0": lambda: ops.pool2d(np.zeros((0, 4, 4), np.float32), 2),
        "pool_height0": lambda: ops.pool2d(np.zeros((1, 0, 4), np.float32), 2, padding=1),
        "conv_float16": lambda: ops.conv2d(special[None, None].astype(np.float16), W[:, :1]),
        "pool_float16": lambda: ops.pool2d(tensors.tensor(special, "float16"), 2),
        "conv_huge_padding": lambda: ops.conv2d(special[None, None], W[:, :1], None, 1, 10**7),
        "pool_huge_padding": lambda: ops.pool2d(special, 10**7 + 1, "max", 1, 10**7),
        "scalar_shape": lambda: np.array(tensors.shape(tensors.tensor(3.0))),
        "grad_non_scalar": grad(lambda x: x * 2, 0, special),
        "grad_unused": grad(lambda x, y: tensors.reduce_sum(y), 0, special, W),
        "grad_nothing_used": grad(lambda x: tensors.tensor(1.0), 0, special),
        "grad_argnums_range": grad(total, 2, special),
        "grad_int_input": grad(total, 0, ints),
    }


def _outcome(case) -> np.ndarray:
    """A case's result as a NumPy array, or the name of the exception it raised (as a str array)."""
    try:
        return np.asarray(tensors.to_numpy(case()))
    except (ValueError, TypeError, NotImplementedError) as error:
        return np.array(type(error).__name__)


def edge_battery() -> dict[str, np.ndarray]:
    """Hostile inputs (NaN, infinities, integers, bool, float16, empty sizes, huge padding, bad
    gradient requests) on the current backend: each a value or the exception type it raised."""
    trainable = backend.current().differentiable
    return {
        f"edge/{name}": _outcome(case)
        for name, case in _edge_inputs().items()
        if trainable or not name.startswith("grad_")
    }


def battery(train: bool = False) -> dict[str, np.ndarray]:
    """The battery's results on the current backend, as NumPy arrays keyed by case; with
    ``train``, also the curves of 3 epochs of LeNet on the offline digits (about 30 s)."""
    out = {}
    X, W, bias = _data(0, 2, 3, 9, 8), _data(1, 4, 3, 3, 2), _data(2, 4)
    for i, (padding, stride) in enumerate(CONV_CASES):
        out[f"op/conv2d/{i}"] = tensors.to_numpy(ops.conv2d(X, W, bias, stride, padding))
    for i, (mode, window, stride, padding, count) in enumerate(POOL_CASES):
        out[f"op/pool2d/{i}"] = tensors.to_numpy(ops.pool2d(-np.abs(X), window, mode, stride, padding, count))
    out["op/corr2d_multi_in_out"] = tensors.to_numpy(ops.corr2d_multi_in_out(X[0], W))
    out.update(edge_battery())

    net = models.LeNet(seed=0)
    images, labels = _data(3, 8, 1, 28, 28), np.random.default_rng(4).integers(0, 10, 8)
    out["lenet/logits"] = tensors.to_numpy(net(images))
    if not backend.current().differentiable:
        return out
    step = ops.value_and_grad(lambda model, X, y: training.cross_entropy(model(X), y))
    losses = []
    for i in range(5):
        loss, grads = step(net, images, labels)
        if i == 0:
            out.update({f"lenet/grad/{name}": tensors.to_numpy(g) for name, g in grads.items()})
        training.sgd(net, grads, net.lr)
        losses.append(float(tensors.to_numpy(loss)))
    out["lenet/sgd_losses"] = np.array(losses)
    kernel, kernel_losses = examples.learn_kernel(verbose=False)
    out["kernel/weight"], out["kernel/losses"] = kernel, np.array(kernel_losses)
    if train:
        trainer = Trainer(max_epochs=3, progress=False)
        history = trainer.fit(models.LeNet(lr=DIGITS_LR, seed=0), Digits(batch_size=DIGITS_BATCH_SIZE))
        out.update({f"digits/{key}": np.array(history[key]) for key in ("train_loss", "val_loss", "val_acc")})
    return out


def run(names, train: bool = False) -> dict[str, dict[str, np.ndarray]]:
    results = {}
    for name in names:
        with backend.use_backend(name):
            results[name] = battery(train)
    return results


def save(path, results: dict) -> None:
    """Write ``{backend: {case: array}}`` to one ``.npz`` (keys ``backend:case``), atomically."""
    params.save_npz(path, {f"{name}:{case}": value for name, cases in results.items() for case, value in cases.items()})


def load(path, results: dict) -> dict:
    """Add the results written by :func:`save` at ``path`` to ``results``; returns ``results``."""
    with np.load(path) as file:
        for key in file.files:
            name, _, case = key.partition(":")
            results.setdefault(name, {})[case] = file[key]
    return results


def difference(a, b) -> float:
    """Max abs difference of two results; inf when they differ in kind (an exception's name
    against a value, or another name), shape, dtype kind, or where NaN and infinities are."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "U" or b.dtype.kind == "U":
        return 0.0 if a.dtype.kind == b.dtype.kind and a.item() == b.item() else np.inf
    if a.shape != b.shape or (a.dtype.kind == "f") != (b.dtype.kind == "f"):
        return np.inf
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[np.isinf(a)], b[np.isinf(a)])):
        return np.inf
    finite = np.isfinite(a)
    return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))


def compare(a: dict, b: dict) -> tuple[float, str, bool]:
    """(max abs diff over the keys both have, the worst key, every key within its tolerance)."""
    worst, worst_key, ok = 0.0, "", True
    for key in sorted(set(a) & set(b)):
        diff = difference(a[key], b[key])
        tol = next(t for prefix, t in TOLERANCES.items() if key.startswith(prefix))
        ok &= diff <= tol
        if diff >= worst:
            worst, worst_key = diff, key
    return worst, worst_key, ok


def report(results: dict) -> tuple[str, bool]:
    """The backend x backend max-abs-diff matrix as text, and whether every pair agrees."""
    names = list(results)
    width = max(10, *(len(n) for n in names))
    lines = [" " * width + "".join(f"{n:>{width + 2}}" for n in names)]
    failures = []
    for i, a in enumerate(names):
        cells = []
        for j, b in enumerate(names):
            diff, key, ok = compare(results[a], results[b])
            cells.append(f"{diff:>{width + 2}.1e}")
            if not ok and i < j:
                failures.append(f"{a} vs {b}: {key} differs by {diff:.2e}")
        lines.append(f"{a:<{width}}" + "".join(cells))
    lines.append(f"cases: {', '.join(f'{n}={len(results[n])}' for n in names)}; tolerances: {TOLERANCES}")
    lines += [f"DISAGREE {f}" for f in failures] or ["all backends agree within tolerance"]
    return "\n".join(lines), not failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m d2lconv.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=None, help="backends to run (default: all installed)")
    parser.add_argument("--save", metavar="PATH", help="write this run's results to an .npz and stop")
    parser.add_argument("--load", metavar="PATH", nargs="*", default=[], help="add results saved with --save")
    parser.add_argument("--train", action="store_true", help="add 3 epochs of LeNet on the offline digits")
    options = parser.parse_args(argv)
    names = [backend.canonical_name(n) for n in options.backends or backend.available_backends()]
    results = run(names, options.train)
    if options.save:
        save(options.save, results)
        print(f"saved {sum(map(len, results.values()))} results of {', '.join(names)} to {options.save}")
        return 0
    for path in options.load:
        if not os.path.exists(path):
            print(f"not compared: {path} does not exist (write it with --save in that backend's environment)")
            continue
        load(path, results)
    text, ok = report(results)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
