"""Parameters by canonical name ("net.0.weight"), exported to and imported from NumPy / .npz.

Names are attribute paths, as torch's ``state_dict`` spells them; layouts are the contract's
(OIHW conv weights, (out, in) dense weights), so a file saved on one backend loads on any other.

Every update is transactional: :func:`set_params`, :func:`load_params` (and
:func:`d2lconv.sgd`) check every name, shape and dtype, and convert every value to its
parameter's dtype, before the first write; on any error the model is left bit-for-bit unchanged.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from collections.abc import Mapping

import numpy as np

from d2lconv import backend
from d2lconv.tensors import numpy_of

#: the dtype layers create their parameters in (see d2lconv.layers' initialisers)
PARAM_DTYPE = np.dtype(np.float32)


def _check_model(model, op: str):
    if not hasattr(model, "d2l_layer"):
        raise TypeError(f"{op}: model must be a d2lconv layer or model, got {type(model).__name__}")
    return model.d2l_backend


def _layers_with_params(model, path: str = ""):
    """``(path, module)`` for every module of ``model`` that holds parameters, in forward order."""
    b, layer = model.d2l_backend, model.d2l_layer
    if layer.param_names:
        yield path, model
    for name in layer.child_names:
        yield from _layers_with_params(b.child(model, name), f"{path}.{name}" if path else name)


def _is_built(b, module) -> bool:
    return b.param(module, module.d2l_layer.param_names[0]) is not None


def named_params(model, prefix: str = "") -> dict:
    """Canonical name -> native parameter, in forward order; parameters not yet built are absent."""
    b = _check_model(model, "named_params")
    found = {}
    for path, module in _layers_with_params(model):
        for name in module.d2l_layer.param_names:
            param = b.param(module, name)
            if param is not None:
                found[prefix + (f"{path}.{name}" if path else name)] = param
    return found


def unbuilt_layers(model) -> list[str]:
    """Paths of the layers whose parameters wait for a first input ("(model)" for a lone layer)."""
    b = model.d2l_backend
    return [path or "(model)" for path, module in _layers_with_params(model) if not _is_built(b, module)]


def _check_built(model, op: str) -> None:
    unbuilt = unbuilt_layers(model)
    if unbuilt:
        raise ValueError(
            f"{op}: layers {unbuilt} have no parameters yet; call the model once on an input "
            "(e.g. model.layer_summary((1, 1, 28, 28))) to build them"
        )


def get_params(model) -> dict[str, np.ndarray]:
    """Every parameter as a C-contiguous NumPy array (a copy, whatever the framework's memory
    layout), keyed by canonical name; the model must be built."""
    b = _check_model(model, "get_params")
    _check_built(model, "get_params")
    return {name: np.array(b.to_numpy(b.value(p)), order="C") for name, p in named_params(model).items()}


def _built_shapes(layer, given: dict) -> dict:
    """The shapes ``layer`` gives its parameters when built to fit the ``given`` shapes (name ->
    shape): a weighted layer's input size is read from the weight's second axis. A shape that
    cannot be inferred is a string saying the expected form."""
    if hasattr(layer, "weight_shape"):  # conv and dense: (out, in, *kernel) and (out,)
        weight = given.get("weight", ())
        try:
            shapes = {"weight": tuple(layer.weight_shape((1, *weight[1:])))}
        except (IndexError, TypeError, ValueError):
            shapes = {"weight": f"a {layer.kind} weight ({layer.out}, in, ...)"}
        if "bias" in layer.param_names:
            shapes["bias"] = (layer.out,)
        return shapes
    return {name: value.shape for name, value in layer.initial_values(np.random.default_rng(0), None).items()}


def _expected(model):
    """Canonical name -> (module, attribute, existing native parameter or None, shape, dtype or None)."""
    b = model.d2l_backend
    slots = {}
    for path, module in _layers_with_params(model):
        for name in module.d2l_layer.param_names:
            param = b.param(module, name)
            value = None if param is None else b.value(param)
            shape, dtype = (None, None) if value is None else (b.shape(value), b.dtype(value))
            slots[f"{path}.{name}" if path else name] = (module, name, param, shape, dtype)
    return slots


def prepare(b, targets: dict, values, op: str, what: str, keep_native: bool = False) -> dict:
    """Check ``values`` (name -> array-like) against ``targets`` (name -> (shape, dtype)) and
    convert each to its target dtype; nothing is written here. ``keep_native``: tensors of
    backend ``b`` stay native (cast on the framework), others become NumPy arrays.

    Raises a ValueError listing every missing/unexpected name and wrong shape, or a TypeError
    listing every value that is not real numbers (strings, complex, objects, booleans).
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"{op}: {what} must be a mapping (dict) of parameter name -> array, got {type(values).__name__}")
    shape_problems, type_problems, ready = [], [], {}
    missing, unexpected = sorted(set(targets) - set(values)), sorted(set(values) - set(targets))
    if missing:
        shape_problems.append(f"missing {missing}")
    if unexpected:
        shape_problems.append(f"unexpected {unexpected}")
    for name in [n for n in targets if n in values]:
        shape, dtype = targets[name]
        value, label = values[name], f"{what}[{name!r}]"
        native = b.is_native(value) and not isinstance(value, np.ndarray)
        if native:
            got_shape, got_dtype = b.shape(value), b.dtype(value)
        else:
            try:
                value = numpy_of(value, f"{op}: {label}")
            except ValueError as error:  # ragged nested lists
                shape_problems.append(f"{name}: not an array ({error})")
                continue
            got_shape, got_dtype = value.shape, value.dtype
        if isinstance(shape, str) or tuple(got_shape) != tuple(shape):
            shape_problems.append(f"{name}: shape {tuple(got_shape)}, expected {shape}")
            continue
        if got_dtype.kind not in "iuf":
            type_problems.append(f"{name}: dtype {got_dtype} (must be real numbers, convertible to {dtype})")
            continue
        if native and keep_native:
            ready[name] = value if got_dtype == dtype else b.cast(value, dtype)
            continue
        array = b.to_numpy(value) if native else value
        with np.errstate(over="ignore", invalid="ignore"):
            converted = np.ascontiguousarray(array, dtype=dtype)
        if (np.isinf(converted) & np.isfinite(array)).any():
            shape_problems.append(f"{name}: values overflow {dtype}")
            continue
        ready[name] = b.from_numpy(converted) if keep_native else converted
    if shape_problems:
        raise ValueError(f"{op}: {what} do not fit the model: " + "; ".join(shape_problems + type_problems))
    if type_problems:
        raise TypeError(f"{op}: {what} cannot be converted: " + "; ".join(type_problems))
    return ready


def _set(model, values, op: str, what: str) -> None:
    """Check ``values`` against every parameter of ``model`` (built or not), then write them all."""
    b = _check_model(model, op)
    slots = _expected(model)
    targets = {}
    by_layer = {}  # an unbuilt layer's shapes come from the values given for it
    for name, (module, attribute, param, shape, dtype) in slots.items():
        if param is None:
            by_layer.setdefault(id(module), (module, name[: -len(attribute)], []))[2].append(attribute)
        else:
            targets[name] = (shape, dtype)
    for module, prefix, attributes in by_layer.values():
        given = {}
        if isinstance(values, Mapping):
            for a in attributes:
                value = values.get(prefix + a)
                try:
                    given[a] = tuple(b.shape(value) if b.is_native(value) else np.shape(value))
                except ValueError:  # ragged nested lists: prepare() reports them
                    continue
        shapes = _built_shapes(module.d2l_layer, given)
        for attribute in attributes:
            targets[prefix + attribute] = (shapes[attribute], PARAM_DTYPE)
    with backend.use_backend(b.name):
        ready = prepare(b, targets, values, op, what, keep_native=not by_layer)
        for name, value in ready.items():
            module, attribute, param, _, _ = slots[name]
            if param is None:
                b.add_param(module, attribute, value)
            else:
                b.assign(param, value)


def set_params(model, params) -> None:
    """Overwrite every parameter from ``params`` (a mapping name -> array); all is checked before
    any write.

    The names must be exactly the model's and each shape must match; otherwise a ValueError lists
    what differs (a TypeError for values that are not real numbers) and the model is left
    unchanged. Values are converted to each parameter's dtype. A lazy model not yet called is
    built from the given shapes (as torch's lazy modules load a state dict).
    """
    _set(model, params, "set_params", "params")


def save_npz(path, arrays: dict) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically: complete, or not at all.

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file
    it replaces, else 0o666 less the umask.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        if os.path.exists(path):
            os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def save_params(model, path) -> None:
    """Write every parameter to the ``.npz`` file ``path``, atomically (no half-written file)."""
    save_npz(path, get_params(model))


def read_npz(path, op: str = "load_params") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``; a ValueError naming the file if it is not one
    (a FileNotFoundError if it does not exist)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{op}: no such file: {path!r}")
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise ValueError(
                f"{op}: {path!r} is a .npy file holding one array, not an .npz of named parameters "
                "written by save_params"
            )
        with loaded as file:
            arrays = {name: file[name] for name in file.files}
        for name, array in arrays.items():
            if not isinstance(array, np.ndarray):  # NpzFile gives a member without .npy header as bytes
                raise ValueError(f"its member {name!r} is not a .npy array")
        return arrays
    except unreadable as error:
        if str(error).startswith(op):
            raise
        raise ValueError(
            f"{op}: {path!r} is not a readable .npz file written by save_params "
            f"(truncated or another format: {type(error).__name__}: {error})"
        ) from None


def load_params(model, path) -> None:
    """Read parameters saved by :func:`save_params` on any backend into ``model``, as
    :func:`set_params` does: all or nothing, a model not yet called is built from the file."""
    _check_model(model, "load_params")
    _set(model, read_npz(path), "load_params", f"the parameters in {os.fspath(path)!r}")
