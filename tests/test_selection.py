"""Choosing a backend: precedence, aliases, thread-locality, lazy imports and clear errors."""

import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND
from d2lconv import backend

MISSING = [name for name in backend.BACKENDS if name not in d2lconv.available_backends()]


def _run(code, **env):
    """Run ``code`` in a fresh interpreter (so import side effects are visible) and return stdout."""
    environment = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR} | env
    result = subprocess.run(  # outside the checkout, so the installed package is the one imported
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=False,
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_imports_no_framework():
    code = "import sys, d2lconv; d2lconv.available_backends(); d2lconv.get_backend(); " \
           "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'mxnet', 'flax') if m in sys.modules))"
    assert _run(code) == "[]"


def test_framework_imported_on_first_use_only():
    code = f"import sys, d2lconv; d2lconv.set_backend({BACKEND!r}); before = {BACKEND!r} in sys.modules; " \
           f"d2lconv.ones(2); print(before, {BACKEND!r} in sys.modules)"
    assert _run(code) == ("False True" if BACKEND != "numpy" else "True True")


def test_environment_variable_then_default_order():
    assert _run("import d2lconv; print(d2lconv.get_backend())", D2LCONV_BACKEND="numpy") == "numpy"
    first_installed = d2lconv.available_backends()[0]
    assert _run("import d2lconv; print(d2lconv.get_backend())") == first_installed
    assert first_installed == next(
        n for n in ("torch", "jax", "tensorflow", "mxnet", "numpy") if n in d2lconv.available_backends()
    )


def test_bad_environment_variable_names_it():
    code = "import d2lconv\ntry:\n    d2lconv.get_backend()\nexcept ValueError as e:\n    print(e)"
    assert _run(code, D2LCONV_BACKEND="caffe").startswith("D2LCONV_BACKEND='caffe': unknown backend 'caffe'")


def test_precedence_context_over_set_over_env(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, BACKEND)
    monkeypatch.setattr(backend, "_global_name", None)
    assert d2lconv.get_backend() == BACKEND
    d2lconv.set_backend("np")
    assert d2lconv.get_backend() == "numpy"
    with d2lconv.use_backend(BACKEND) as active:
        assert d2lconv.get_backend() == BACKEND
        assert active.name == BACKEND
        with d2lconv.use_backend("numpy"):
            assert isinstance(d2lconv.ones(2), np.ndarray)
        assert d2lconv.get_backend() == BACKEND
    assert d2lconv.get_backend() == "numpy"


@pytest.mark.parametrize(
    "alias, name", [("pytorch", "torch"), ("TF", "tensorflow"), ("mx", "mxnet"), ("jax", "jax"), ("np", "numpy")]
)
def test_aliases(alias, name):
    assert backend.canonical_name(alias) == name


def test_unknown_name_lists_what_is_installed():
    with pytest.raises(ValueError, match=r"unknown backend 'caffe'; known names: .*torch.*Installed here: .*numpy"):
        d2lconv.set_backend("caffe")


def test_missing_framework_gives_the_install_hint():
    if not MISSING:
        pytest.skip("every framework is installed in this environment")
    name = MISSING[0]
    with pytest.raises(ModuleNotFoundError, match=rf'pip install "d2lconv\[{name}\]".*Installed backends: '):
        d2lconv.set_backend(name)
    with pytest.raises(ModuleNotFoundError, match=rf'pip install "d2lconv\[{name}\]"'):
        getattr(d2lconv, name)


def test_context_is_thread_local():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        with d2lconv.use_backend("numpy"):
            entered.set()
            release.wait(5)
            seen["worker"] = d2lconv.get_backend()

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(5)
    seen["main"] = d2lconv.get_backend()
    release.set()
    thread.join()
    assert seen == {"worker": "numpy", "main": BACKEND}


def test_namespace_is_bound_whatever_the_global_choice(d2l):
    from d2lconv import numpy as d2l_numpy

    with d2lconv.use_backend(BACKEND):
        assert isinstance(d2l_numpy.ones(2), np.ndarray)
    with d2lconv.use_backend("numpy"):
        assert backend.load(BACKEND).is_native(d2l.ones(2))
    assert "corr2d" in dir(d2l)
    assert d2l.Trainer is d2lconv.Trainer  # classes pass through, so isinstance works
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        d2l.nope
