"""Parameters by canonical name ("net.0.weight"), exported to and imported from NumPy / .npz.

Names are attribute paths, as torch's ``state_dict`` spells them; layouts are the contract's
(OIHW conv weights, (out, in) dense weights), so a file saved on one backend loads on any other.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from d2lconv import backend


def _check_model(model, op: str):
    if not hasattr(model, "d2l_layer"):
        raise TypeError(f"{op}: model must be a d2lconv layer or model, got {type(model).__name__}")
    return model.d2l_backend


def named_params(model, prefix: str = "") -> dict:
    """Canonical name -> native parameter, in forward order; parameters not yet built are absent."""
    b = _check_model(model, "named_params")
    layer = model.d2l_layer
    found = {}
    for name in layer.param_names:
        param = b.param(model, name)
        if param is not None:
            found[prefix + name] = param
    for name in layer.child_names:
        found.update(named_params(b.child(model, name), f"{prefix}{name}."))
    return found


def unbuilt_layers(model, prefix: str = "") -> list[str]:
    """Paths of the layers whose parameters wait for a first input."""
    b, layer = model.d2l_backend, model.d2l_layer
    missing = [prefix or "(model)"] if layer.param_names and b.param(model, layer.param_names[0]) is None else []
    for name in layer.child_names:
        missing += unbuilt_layers(b.child(model, name), f"{prefix}{name}")
    return missing


def _check_built(model, op: str) -> None:
    unbuilt = unbuilt_layers(model)
    if unbuilt:
        raise ValueError(
            f"{op}: layers {unbuilt} have no parameters yet; call the model once on an input "
            "(e.g. model.layer_summary((1, 1, 28, 28))) to build them"
        )


def get_params(model) -> dict[str, np.ndarray]:
    """Every parameter as a NumPy array (a copy), keyed by canonical name; the model must be built."""
    b = _check_model(model, "get_params")
    _check_built(model, "get_params")
    return {name: np.array(b.to_numpy(b.value(p))) for name, p in named_params(model).items()}


def set_params(model, params) -> None:
    """Overwrite every parameter from ``params`` (name -> array); all is checked before any write.

    The names must be exactly the model's and each shape must match; otherwise a ValueError lists
    what differs and the model is left unchanged. A lazy model must be built (called once) first.
    """
    b = _check_model(model, "set_params")
    _check_built(model, "set_params")
    current = named_params(model)
    problems = []
    missing, unexpected = sorted(set(current) - set(params)), sorted(set(params) - set(current))
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    arrays = {}
    for name in sorted(set(current) & set(params)):
        arrays[name] = np.asarray(params[name])
        expected = b.shape(b.value(current[name]))
        if arrays[name].shape != expected:
            problems.append(f"{name}: shape {arrays[name].shape}, expected {expected}")
    if problems:
        raise ValueError("set_params: parameters do not fit the model: " + "; ".join(problems))
    for name, param in current.items():
        dtype = b.dtype(b.value(param))
        b.assign(param, arrays[name].astype(dtype))


def save_npz(path, arrays: dict) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically: complete, or not at all."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def save_params(model, path) -> None:
    """Write every parameter to the ``.npz`` file ``path``, atomically (no half-written file)."""
    save_npz(path, get_params(model))


def load_params(model, path) -> None:
    """Read parameters saved by :func:`save_params` on any backend into ``model``."""
    with np.load(os.fspath(path)) as file:
        set_params(model, {name: file[name] for name in file.files})
