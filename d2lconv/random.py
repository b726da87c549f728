"""The one random source: a NumPy generator, so equal seeds give equal numbers on every backend.

No framework's own RNG is used; random tensors are drawn here, then copied into the framework.
"""

from __future__ import annotations

import numpy as np

_global = np.random.default_rng()


def seed(n: int) -> None:
    """Reseed the global generator used when no ``seed=`` is given."""
    global _global
    _global = np.random.default_rng(n)


def generator(seed: int | None = None) -> np.random.Generator:
    """A fresh generator for ``seed``, or the global one when ``seed`` is None."""
    return _global if seed is None else np.random.default_rng(seed)
