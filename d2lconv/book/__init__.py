"""The book's own dialect: ``from d2lconv.book import torch as d2l`` in place of ``from d2l import torch as d2l``.

Each framework module (``torch``, ``tensorflow``, ``jax``, ``mxnet``) offers the names the book's
chapter-7 code uses, with the meaning the book's ``d2l`` library gives them for that framework,
fixed to run on today's framework versions. d2lconv's own API (one dialect, NCHW everywhere,
identical numbers) stays in ``d2lconv`` and ``from d2lconv import <framework> as d2l``.

Importing this package imports no framework: ``from d2lconv.book import torch as d2l`` imports
only torch. The aliases ``pytorch``, ``tf`` and ``mx`` name the same modules.
"""

import importlib

_MODULES = {"torch": "torch", "pytorch": "torch", "tensorflow": "tensorflow", "tf": "tensorflow",
            "jax": "jax", "mxnet": "mxnet", "mx": "mxnet"}

__all__ = sorted(_MODULES)


def __getattr__(name):
    """``d2lconv.book.<framework>``, imported on first access (``from ... import`` lands here too)."""
    if name not in _MODULES:
        raise AttributeError(f"module 'd2lconv.book' has no attribute {name!r}; "
                             f"the book dialects are {', '.join(sorted(set(_MODULES.values())))}")
    module = importlib.import_module(f"d2lconv.book.{_MODULES[name]}")
    globals()[name] = module
    return module


def __dir__():
    return sorted(set(globals()) | set(_MODULES))
