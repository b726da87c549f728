"""The ``d2lconv`` command: ``info``, ``tour``, ``train``, ``agree`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np

import d2lconv
from d2lconv import agreement, backend, examples
from d2lconv.data import DIGITS_BATCH_SIZE, DIGITS_LR

PACKAGES = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax", "mxnet": "mxnet", "numpy": "numpy"}
BOOK_SUMMARY_ROWS = 12


def _version(name: str) -> str:
    for candidate in (PACKAGES[name], f"{PACKAGES[name]}-cpu"):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def info(options) -> int:
    print(f"d2lconv {d2lconv.__version__}")
    installed = d2lconv.available_backends()
    print(f"default backend: {d2lconv.get_backend()}")
    for name in backend.DEFAULT_ORDER:
        if name not in installed:
            print(f"  {name:<11} not installed (pip install \"d2lconv[{backend.BACKENDS[name].extra}]\")")
            continue
        print(f"  {name:<11} {_version(name):<10} devices: {', '.join(backend.load(name).devices())}")
    return 0


def _tour_steps(d2l):
    """(description, check) pairs: each check returns None on success or raises/returns a reason."""

    def close(actual, expected, tol=1e-5):
        actual = d2l.to_numpy(actual)
        if actual.shape != np.shape(expected) or not np.allclose(actual, expected, rtol=tol, atol=tol):
            return f"got {actual.tolist()}, expected {np.asarray(expected).tolist()}"
        return None

    X = d2l.tensor([[0.0, 1, 2], [3, 4, 5], [6, 7, 8]])
    K = d2l.tensor([[0.0, 1], [2, 3]])
    X2 = d2l.tensor([[[0.0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]])
    K2 = d2l.tensor([[[0.0, 1], [2, 3]], [[1.0, 2], [3, 4]]])
    K3 = d2l.stack((K2, K2 + 1, K2 + 2), 0)
    edges = np.zeros((6, 7))
    edges[:, 1], edges[:, 5] = 1, -1
    P = d2l.reshape(d2l.arange(16, dtype=d2l.float32), (1, 1, 4, 4))

    def shape(kernel, padding, stride=1):
        W = d2l.ones(1, 1, *kernel)
        return d2l.shape(d2l.comp_conv2d(lambda x: d2l.conv2d(x, W, stride=stride, padding=padding), d2l.rand(8, 8)))

    def learn():
        kernel, _ = examples.learn_kernel(seed=0)
        return None if np.abs(kernel - [[1, -1]]).max() < 0.1 else f"learned {kernel.tolist()}"

    def summary():
        rows = d2l.LeNet(seed=0).layer_summary((1, 1, 28, 28))
        return None if len(rows) == BOOK_SUMMARY_ROWS and rows[-1].endswith("(1, 10)") else f"rows {rows}"

    def train():
        data = d2l.Digits(batch_size=DIGITS_BATCH_SIZE)
        trainer = d2l.Trainer(max_epochs=3, progress=False)
        trainer.fit(d2l.LeNet(lr=DIGITS_LR, seed=0), data)
        accuracy = trainer.history["val_acc"][-1]
        print(f"    validation accuracy after 3 epochs: {accuracy:.3f} (chance: 0.1)")
        return None if accuracy > 0.5 else f"accuracy {accuracy:.3f}"

    steps = [
        ("7.2 corr2d, Fig. 7.2.1", lambda: close(d2l.corr2d(X, K), [[19, 25], [37, 43]])),
        ("7.2 edge detection", lambda: close(d2l.corr2d(d2l.tensor(examples.edge_image()), d2l.tensor([[1.0, -1.0]])), edges)),
        ("7.3 padding and stride shapes", lambda: None if [shape((3, 3), 1), shape((5, 3), (2, 1)), shape((3, 3), 1, 2), shape((3, 5), (0, 1), (3, 4))] == [(8, 8), (8, 8), (4, 4), (2, 2)] else "wrong shapes"),
        ("7.4 multiple input channels", lambda: close(d2l.corr2d_multi_in(X2, K2), [[56, 72], [104, 120]])),
        ("7.4 multiple output channels", lambda: close(d2l.corr2d_multi_in_out(X2, K3), [[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]])),
        ("7.4 1x1 convolution as matmul", lambda: close(d2l.corr2d_multi_in_out_1x1(X2, K3[:, :, :1, :1]), d2l.to_numpy(d2l.corr2d_multi_in_out(X2, K3[:, :, :1, :1])))),
        ("7.5 max and average pooling", lambda: close(d2l.pool2d(X, 2, stride=1), [[4, 5], [7, 8]]) or close(d2l.pool2d(X, 2, "avg", stride=1), [[2, 3], [5, 6]])),
        ("7.5 pooling with padding and stride", lambda: close(d2l.pool2d(P, 3, padding=1, stride=2), [[[[5, 7], [13, 15]]]])),
        ("7.2.4 learning a kernel", learn),
        ("7.6 LeNet layer summary", summary),
        ("7.6 LeNet on the offline digits", train),
    ]
    return steps


def tour(options) -> int:
    name = backend.canonical_name(options.backend) if options.backend else d2lconv.get_backend()
    d2l = getattr(d2lconv, name)
    print(f"d2lconv tour of chapter 7 on {name}")
    failed = 0
    for description, check in _tour_steps(d2l):
        start = time.perf_counter()
        try:
            reason = check()
        except Exception as error:  # a tour reports every step, whatever one of them raises
            reason = f"{type(error).__name__}: {error}"
        status = "PASS" if reason is None else "FAIL"
        failed += reason is not None
        print(f"{status}  {description}  ({time.perf_counter() - start:.1f} s)" + (f"  {reason}" if reason else ""))
    print(f"{'all steps passed' if not failed else f'{failed} step(s) failed'} on {name}")
    return 1 if failed else 0


def train(options) -> int:
    name = backend.canonical_name(options.backend) if options.backend else d2lconv.get_backend()
    d2l = getattr(d2lconv, name)
    fashion = options.data == "fashion-mnist"
    batch_size = options.batch_size if options.batch_size is not None else (128 if fashion else DIGITS_BATCH_SIZE)
    lr = options.lr if options.lr is not None else (0.1 if fashion else DIGITS_LR)
    data = (d2l.FashionMNIST if fashion else d2l.Digits)(batch_size=batch_size, seed=options.seed)
    model = d2l.LeNet(lr=lr, seed=options.seed)
    trainer = d2l.Trainer(max_epochs=options.epochs, num_gpus=options.num_gpus)
    history = trainer.fit(model, data)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    weights, curves = out / f"lenet-{name}-{options.data}.npz", out / f"lenet-{name}-{options.data}.png"
    d2l.save_params(model, weights)
    trainer.plot(curves)
    print(f"{name}: final validation accuracy {history['val_acc'][-1]:.4f}, loss {history['val_loss'][-1]:.4f}")
    print(f"saved weights to {weights} and training curves to {curves}")
    return 0


def agree(options) -> int:
    argv = ["--backends", *options.backends] if options.backends else []
    argv += ["--load", *options.load] if options.load else []
    return agreement.main(argv + (["--train"] if options.train else []))


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="d2lconv", description="Chapter 7 of Dive into Deep Learning on any framework.")
    main.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = main.add_subparsers(dest="command", required=True)
    command = commands.add_parser("info", help="installed backends, versions, default backend, devices")
    command.set_defaults(run=info)
    command = commands.add_parser("tour", help="the whole chapter on one backend, a pass/fail line per step")
    command.add_argument("--backend", help="default: the current backend (D2LCONV_BACKEND, else the first installed)")
    command.set_defaults(run=tour)
    command = commands.add_parser("train", help="train LeNet, save its weights (.npz) and training curves (.png)")
    command.add_argument("--backend")
    command.add_argument("--data", choices=["fashion-mnist", "digits"], default="fashion-mnist")
    command.add_argument("--epochs", type=int, default=10)
    command.add_argument("--batch-size", type=int, help="default: 128 (the book's) for fashion-mnist, 32 for digits")
    command.add_argument("--lr", type=float, help="default: 0.1 (the book's) for fashion-mnist, 0.3 for digits")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--num-gpus", type=int, default=0)
    command.add_argument("--out", default=".", help="folder for the weights and the plot")
    command.set_defaults(run=train)
    command = commands.add_parser("agree", help="the cross-framework agreement matrix over the installed backends")
    command.add_argument("--backends", nargs="+")
    command.add_argument("--load", nargs="*", help="results saved by `python -m d2lconv.agreement --save`")
    command.add_argument("--train", action="store_true", help="add 3 epochs of LeNet on the offline digits")
    command.set_defaults(run=agree)
    command = commands.add_parser("bench", help="d2lconv against each framework's own code: operators, corr2d, LeNet training")
    from d2lconv import bench

    bench.add_arguments(command)
    command.set_defaults(run=bench.run)
    return main


#: mistakes of the user or of the setup: one line on stderr and exit status 2, no traceback
EXPECTED_ERRORS = (ValueError, TypeError, OSError, ModuleNotFoundError)


def main(argv=None) -> int:
    """Run a subcommand; an expected error prints ``d2lconv: error: ...`` (one line) to stderr
    and returns 2, as argparse does for bad arguments; ``--debug`` shows the traceback instead."""
    options = parser().parse_args(argv)
    try:
        return options.run(options)
    except EXPECTED_ERRORS as error:
        if options.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"d2lconv: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
