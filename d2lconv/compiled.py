"""Compiled steps kept per model: a backend compiles one function per model it is called with,
closed over that model's parameters, so a call passes only the batch (no per-call walk of the
model or of its parameter list)."""

from __future__ import annotations

import weakref


def per_model(make):
    """``get(model, params)``: ``make(model, params)`` on a model's first call, the same result
    on every later call while the model lives (a result that refers to its model, as a
    ``tf.function`` closed over it does, keeps it alive as long as ``get`` lives). ``params`` maps
    canonical names to the model's native parameters (a built model's parameters are fixed
    objects, so the first call's hold)."""
    made = weakref.WeakKeyDictionary()

    def get(model, params):
        fn = made.get(model)
        if fn is None:
            fn = made[model] = make(model, params)
        return fn

    return get
