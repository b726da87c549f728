"""Seconds per LeNet training step (batch 128), eager against compiled, on each backend given.

    python benchmarks/step_speed.py torch tensorflow jax

Prints one row per backend: eager s/step, compiled s/step, and the ratio eager / compiled.
Backends whose framework has no compiler used by d2lconv show the eager time twice.
"""

import sys
import time

import numpy as np

import d2lconv


def seconds_per_step(d2l, compile, steps=50):
    net = d2l.LeNet(seed=0)
    X = d2l.tensor(np.random.default_rng(0).standard_normal((128, 1, 28, 28)))
    y = np.random.default_rng(1).integers(0, 10, 128)
    step = d2l.value_and_grad(lambda m, X, y: d2l.cross_entropy(m(X), y), compile=compile)
    for _ in range(3):  # build, trace and warm up
        loss, grads = step(net, X, y)
        d2l.sgd(net, grads, 0.1)
    start = time.perf_counter()
    for _ in range(steps):
        loss, grads = step(net, X, y)
        d2l.sgd(net, grads, 0.1)
    float(d2l.to_numpy(loss))  # wait for asynchronous frameworks
    return (time.perf_counter() - start) / steps


if __name__ == "__main__":
    print(f"{'backend':<12}{'eager s/step':>14}{'compiled s/step':>17}{'eager/compiled':>16}")
    for name in sys.argv[1:] or d2lconv.available_backends():
        if name == "numpy":
            continue
        d2l = getattr(d2lconv, name)
        eager, compiled = seconds_per_step(d2l, False), seconds_per_step(d2l, True)
        print(f"{name:<12}{eager:>14.4f}{compiled:>17.4f}{eager / compiled:>16.2f}")
