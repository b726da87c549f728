"""Which framework runs the operators: the registry, the selection rules, the backend interface.

Precedence, highest first: an explicit namespace (``from d2lconv import jax as d2l``) or a
``use_backend(...)`` context (per thread) > ``set_backend(...)`` (process-wide) > the
``D2LCONV_BACKEND`` environment variable > the first installed of torch, jax, tensorflow, mxnet,
else the NumPy reference backend.

``import d2lconv`` imports no framework: a backend module, and with it its framework, is imported
the first time that backend is used.

The default (no context, no ``set_backend``) is resolved once and cached: the installed frameworks
are searched only the first time. ``D2LCONV_BACKEND`` is read on every call (one dictionary
look-up), so changing it in ``os.environ`` takes effect at the next call; installing a framework
while the process runs is noticed after ``set_backend``/``use_backend`` or :func:`refresh`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass

ENV_VAR = "D2LCONV_BACKEND"


@dataclass(frozen=True)
class BackendInfo:
    """What is known about a backend without importing its framework."""

    name: str
    modules: tuple[str, ...]  # importable modules the backend needs
    extra: str  # the pip extra that installs them
    tensor_modules: tuple[str, ...]  # top-level modules whose types are this framework's tensors


BACKENDS = {
    "torch": BackendInfo("torch", ("torch",), "torch", ("torch",)),
    "jax": BackendInfo("jax", ("jax", "flax"), "jax", ("jax", "jaxlib")),
    "tensorflow": BackendInfo("tensorflow", ("tensorflow",), "tensorflow", ("tensorflow", "keras")),
    "mxnet": BackendInfo("mxnet", ("mxnet",), "mxnet", ("mxnet",)),
    "numpy": BackendInfo("numpy", ("numpy",), "", ("numpy",)),
}
ALIASES = {"pytorch": "torch", "tf": "tensorflow", "mx": "mxnet", "np": "numpy"}
DEFAULT_ORDER = ("torch", "jax", "tensorflow", "mxnet", "numpy")

_loaded: dict[str, object] = {}
_global_name: str | None = None
class _ThreadState(threading.local):
    """Per thread: the stack of backends chosen by contexts and namespaces (innermost last)."""

    def __init__(self):
        self.stack: list[str] = []  # always there: a missing attribute costs 10x a present one


_local = _ThreadState()
_installed_cache: dict[str, bool] = {}  # backend name -> its framework is importable
_default_cache: dict = {}  # D2LCONV_BACKEND's raw value (None if unset) -> the backend it selects


def framework_of(x) -> str | None:
    """The backend whose framework made tensor ``x``, from its type's module (no import)."""
    module = type(x).__module__.split(".")[0]
    return next((b.name for b in BACKENDS.values() if module in b.tensor_modules), None)


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or one of its aliases; ValueError for unknown names."""
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        known = ", ".join(sorted(set(BACKENDS) | set(ALIASES)))
        raise ValueError(
            f"unknown backend {name!r}; known names: {known}. "
            f"Installed here: {', '.join(available_backends())}"
        )
    return key


def _installed(info: BackendInfo) -> bool:
    found = _installed_cache.get(info.name)
    if found is None:
        # through the builtin map: see load() on AutoGraph
        found = _installed_cache[info.name] = None not in map(importlib.util.find_spec, info.modules)
    return found


def refresh() -> None:
    """Forget what was found installed and the resolved default (``set_backend`` does this too)."""
    _installed_cache.clear()
    _default_cache.clear()


def available_backends() -> list[str]:
    """Names of the backends whose frameworks are installed, in default order (no import)."""
    return [name for name in DEFAULT_ORDER if _installed(BACKENDS[name])]


def _check_installed(name: str) -> None:
    info = BACKENDS[name]
    if not _installed(info):
        raise ModuleNotFoundError(
            f"backend {name!r} needs {' and '.join(info.modules)}, which is not installed; "
            f'install it with: pip install "d2lconv[{info.extra}]". '
            f"Installed backends: {', '.join(available_backends())}"
        )


def load(name: str):
    """The backend object for ``name``, importing its module (and framework) on first use."""
    name = canonical_name(name)
    if name not in _loaded:
        _check_installed(name)
        module = f"d2lconv.backends.{name}"
        # through the builtin map: a first call made while a tf.function traces runs this
        # under AutoGraph, which converts every Python function it calls (importlib's included,
        # with a warning for each it cannot read) but none that a builtin calls; torch.compile's
        # tracer steps over importlib's functions (but warns about the builtin __import__)
        try:
            next(map(importlib.import_module, (module,)))
        except ModuleNotFoundError as error:
            if error.name != "d2lconv.backends":
                raise
            raise ModuleNotFoundError(f"d2lconv.backends is missing: reinstall d2lconv ({error})") from None
        _loaded[name] = sys.modules[module].BACKEND
    return _loaded[name]


def _register_checkout_backends() -> None:
    """Register a source checkout's top-level ``backends/`` as ``d2lconv.backends`` where no
    ``d2lconv.backends`` is found (at import: no framework is imported).

    Installs map it there (pyproject's package-dir); this covers ``d2lconv`` imported straight
    from a checkout, e.g. ``python -m d2lconv...`` run in the repository root.
    """
    if importlib.util.find_spec("d2lconv.backends") is not None:
        return
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "backends")
    init = os.path.join(folder, "__init__.py")
    if not os.path.exists(init):
        return  # load() says what is missing
    spec = importlib.util.spec_from_file_location("d2lconv.backends", init, submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules["d2lconv.backends"] = package
    spec.loader.exec_module(package)


_register_checkout_backends()


def set_backend(name: str) -> None:
    """Make ``name`` the process-wide backend (a ``use_backend`` context still wins)."""
    global _global_name
    refresh()
    name = canonical_name(name)
    _check_installed(name)
    _global_name = name


def _environment_reader(name: str):
    """``read()``: the raw value of environment variable ``name`` (None when unset), as fast as a
    dict look-up: ``os.environ.get`` of an unset variable costs ~0.8 us (a KeyError raised and
    caught), the whole cost of a call's backend look-up. Reads ``os.environ``'s own mapping, which
    every change through ``os.environ`` updates; elsewhere falls back to ``os.environ.get``."""
    data, encode = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if not isinstance(data, dict) or encode is None:  # pragma: no cover - not CPython's os.environ
        return lambda: os.environ.get(name)
    key = encode(name)
    return lambda: data.get(key)


_read_env_var = _environment_reader(ENV_VAR)


def _default_name() -> str:
    raw = _read_env_var()  # read at every call: a change of os.environ takes effect at once
    name = _default_cache.get(raw)
    if name is None:
        name = _default_cache[raw] = _resolve_default(os.environ.get(ENV_VAR, "").strip())
    return name


def _resolve_default(from_env: str) -> str:
    if from_env:
        try:
            return canonical_name(from_env)
        except ValueError as error:
            raise ValueError(f"{ENV_VAR}={from_env!r}: {error}") from None
    return available_backends()[0]


def get_backend() -> str:
    """The name of the backend in force in this thread."""
    stack = _local.stack
    if stack:
        return stack[-1]
    return _global_name or _default_name()


def thread_stack() -> list[str]:
    """This thread's stack of backends chosen by contexts and namespaces (innermost last)."""
    return _local.stack


@contextlib.contextmanager
def use_backend(name: str):
    """Use ``name`` inside the ``with`` block, in this thread only; restores the previous one."""
    name = canonical_name(name)
    if name not in _loaded:
        refresh()
        _check_installed(name)
    stack = thread_stack()
    stack.append(name)
    try:
        yield load(name)
    finally:
        stack.pop()


def current():
    """The backend object in force in this thread (the hot path: get_backend() inlined)."""
    stack = _local.stack
    name = stack[-1] if stack else (_global_name or _default_name())
    found = _loaded.get(name)
    return found if found is not None else load(name)
