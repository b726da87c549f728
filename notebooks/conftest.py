"""Notebook runs (``pytest --nbmake notebooks``): a framework's own notebook, named
``*-<framework>.ipynb`` (the book dialect's ``book-dialect-torch.ipynb`` ...), runs only in the env
whose D2LCONV_BACKEND is that framework; elsewhere it is skipped with the reason printed."""

import os
from pathlib import Path

import pytest

FRAMEWORKS = ("torch", "tensorflow", "jax", "mxnet")


def pytest_collection_modifyitems(config, items):
    backend = os.environ.get("D2LCONV_BACKEND", "")
    for item in items:
        stem = Path(str(item.fspath)).stem
        framework = next((f for f in FRAMEWORKS if stem.endswith(f"-{f}")), None)
        if framework is not None and framework != backend:
            item.add_marker(pytest.mark.skip(
                reason=f"{stem} is written in {framework}'s book dialect; backend under test: {backend or 'unset'}"))
