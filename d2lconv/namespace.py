"""Per-backend namespaces: ``from d2lconv import jax as d2l`` gives the public API bound to JAX.

Each function of a namespace runs inside ``use_backend(<its backend>)``, whatever the global
choice is, so code written against one namespace always uses that framework.
"""

from __future__ import annotations

import functools
import types

from d2lconv import backend


class BackendNamespace(types.ModuleType):
    """The public API of ``d2lconv`` with every function bound to one backend."""

    def __init__(self, name: str, api: dict):
        super().__init__(f"d2lconv.{name}", f"d2lconv's API on the {name} backend.")
        self.backend_name = name
        self._api = api

    def __getattr__(self, attr):
        if attr.startswith("__") or attr not in self._api:
            raise AttributeError(f"d2lconv.{self.backend_name} has no attribute {attr!r}")
        value = self._api[attr]
        if callable(value) and not isinstance(value, type):  # classes (Trainer) bind through their model
            value = self._bind(value)
        setattr(self, attr, value)
        return value

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._api))

    def _bind(self, fn):
        name = self.backend_name  # checked and loaded when the namespace was made

        @functools.wraps(fn)
        def bound(*args, **kwargs):
            stack = backend.thread_stack()  # use_backend(name) without its per-call checks
            stack.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()

        return bound


_namespaces: dict[str, BackendNamespace] = {}


def namespace(name: str, api: dict) -> BackendNamespace:
    """The namespace of backend ``name`` (an error with the install hint if it is missing)."""
    name = backend.canonical_name(name)
    backend.load(name)
    if name not in _namespaces:
        _namespaces[name] = BackendNamespace(name, api)
    return _namespaces[name]
