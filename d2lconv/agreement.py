"""Do the frameworks agree? One fixed battery of cases, run on each backend, compared pairwise.

The battery: the operators on fixed random inputs (padding and stride forms, both pool modes),
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
#: sums), whole training curves 1e-3 (float32 rounding compounds over 3,400 SGD steps)
TOLERANCES = {"op/": 1e-5, "lenet/": 1e-4, "kernel/": 1e-4, "digits/": 1e-3}

CONV_CASES = [  # (padding, stride)
    (0, 1), (1, 1), ((2, 1), 1), (((0, 2), (1, 0)), (2, 3)), ("same", 1), (1, 2),
]
POOL_CASES = [  # (mode, window, stride, padding, count_include_pad)
    ("max", 2, None, 0, True), ("max", 3, 2, 1, True), ("avg", (2, 3), 1, (1, 0), True),
    ("avg", 3, 2, ((1, 0), (0, 2)), False),
]


def _data(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


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


def compare(a: dict, b: dict) -> tuple[float, str, bool]:
    """(max abs diff over the keys both have, the worst key, every key within its tolerance)."""
    worst, worst_key, ok = 0.0, "", True
    for key in sorted(set(a) & set(b)):
        diff = float(np.max(np.abs(np.asarray(a[key], np.float64) - np.asarray(b[key], np.float64))))
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
