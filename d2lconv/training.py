"""The pieces of a training loop, written once: loss, accuracy, gradients of a model, SGD."""

from __future__ import annotations

import math
import numbers

import numpy as np

from d2lconv import backend
from d2lconv.params import _check_built, _check_model, named_params, prepare
from d2lconv.tensors import native, numpy_of, tensor


def check_lr(lr, name: str = "lr") -> float:
    """``lr`` as a float; a TypeError unless a real number, a ValueError unless finite and > 0."""
    if not isinstance(lr, numbers.Real) or isinstance(lr, bool):
        raise TypeError(f"{name} must be a positive number (a learning rate such as 0.1), got {lr!r} ({type(lr).__name__})")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{name} must be a positive finite number (a learning rate such as 0.1), got {lr!r}")
    return float(lr)


def _labels(labels, name="labels"):
    array = numpy_of(labels, name)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class ids, got dtype {array.dtype}")
    return array


def _check_labels(labels: np.ndarray | None, shape, op: str, label_shape: tuple = ()) -> None:
    """Labels of shape (N,) with class ids in [0, classes) for logits of ``shape`` (N, classes).
    ``labels`` None: their values are unknown (traced), only their ``label_shape`` is checked."""
    label_shape = tuple(label_shape if labels is None else labels.shape)
    if label_shape != tuple(shape[:1]):
        raise ValueError(f"{op}: labels must have shape ({shape[0]},), got {label_shape} (one class id per row of logits)")
    if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= shape[1]):
        wrong = labels[(labels < 0) | (labels >= shape[1])]
        raise ValueError(
            f"{op}: labels must be class ids in [0, {shape[1]}) for logits of {shape[1]} classes, got {wrong[:5].tolist()}"
        )


def cross_entropy(logits, labels):
    """Mean over the batch of ``-log softmax(logits)[label]``; labels are integer class ids in
    [0, classes), checked wherever their values are known (not inside a compiled step). The mean
    over an empty batch is NaN, as NumPy's (MXNet's mean of nothing is 0), with zero gradients."""
    b = backend.current()
    logits = native(logits, "cross_entropy: logits")
    shape = b.shape(logits)
    if len(shape) != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, classes), got shape {shape}")
    if b.is_native(labels) and not isinstance(labels, np.ndarray):
        if b.dtype(labels).kind not in "iu":
            raise TypeError(f"cross_entropy: labels must be integer class ids, got dtype {b.dtype(labels)}")
        try:
            values = b.to_numpy(labels)
        except Exception:  # symbolic (traced) labels: their values are unknown here
            values = None
        _check_labels(values, shape, "cross_entropy", b.shape(labels))
    else:
        values = _labels(labels, "cross_entropy: labels")
        _check_labels(values, shape, "cross_entropy")
        labels = tensor(values)
    if shape[0] == 0:
        return b.from_numpy(np.array(np.nan, b.dtype(logits)))
    return b.cross_entropy(logits, labels)


def _on_host(logits, labels, op: str) -> tuple[np.ndarray, np.ndarray]:
    """``logits`` (N, classes) and their labels as checked NumPy arrays."""
    scores = numpy_of(logits, f"{op}: logits")
    if scores.ndim != 2:
        raise ValueError(f"{op}: logits must be 2-D (N, classes), got shape {scores.shape}")
    labels = _labels(labels, f"{op}: labels")
    _check_labels(labels, scores.shape, op)
    return scores, labels


def accuracy(logits, labels) -> float:
    """The fraction of rows whose largest logit is at the label; labels have shape (N,)."""
    return _fraction_correct(*_on_host(logits, labels, "accuracy"))


def _fraction_correct(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(axis=1) == labels).mean())


def loss_and_accuracy(logits, labels, op: str = "loss_and_accuracy") -> tuple[float, float]:
    """A batch's mean cross-entropy and accuracy, both from one copy of the logits on the host
    (NumPy's cross-entropy, the reference backend's): what evaluation reports, with no
    framework call per batch beyond the forward pass (TensorFlow's eager cross-entropy of 1,024
    rows: 0.3-1 ms, against one transfer of the logits that accuracy makes anyway)."""
    scores, labels = _on_host(logits, labels, op)
    loss = backend.load("numpy").cross_entropy(scores, labels)
    return float(loss), _fraction_correct(scores, labels)


def _per_model_backend(loss_fn, make):
    """A function of ``(model, *args)`` that calls ``make(backend)(model, params, *args)``.

    ``make(backend)`` (a compiled function, say) is called once per backend; lazily created
    parameters are built by one eager call of ``loss_fn`` first, outside any trace.
    """
    per_backend = {}

    def wrapped(model, *args):
        b = model.d2l_backend
        with backend.use_backend(b.name):
            if model.d2l_fn is None:  # build lazily created parameters outside any trace
                loss_fn(model, *args)
            if b.name not in per_backend:
                per_backend[b.name] = make(b)
            return per_backend[b.name](model, named_params(model), *args)

    return wrapped


def model_value_and_grad(loss_fn, compile=True):
    """A function of ``(model, *args)`` giving ``(loss_fn(model, *args), {name: gradient})``,
    names as :func:`get_params`; compiled where the framework compiles unless ``compile=False``."""
    return _per_model_backend(loss_fn, lambda b: b.model_value_and_grad(loss_fn, compile))


def train_step(loss_fn, lr, compile=None):
    """A function of ``(model, *args)`` that takes one SGD step on ``loss_fn(model, *args)`` in
    place and returns the loss: ``value_and_grad`` then ``sgd``, fused into one step, compiled if
    ``compile``; by default where compiling is cheap (not torch's ``torch.compile``, which pays
    only over long runs: :class:`d2lconv.Trainer` decides it from the run's length)."""

    def make(b):
        return b.train_step(loss_fn, lr, b.compile_pays_after == 0 if compile is None else compile)

    return _per_model_backend(loss_fn, make)


def sgd(model, grads: dict, lr: float) -> None:
    """One step of plain SGD in place: ``param -= lr * grads[name]`` for every parameter.

    Every gradient's name, exact shape (no broadcasting) and dtype is checked, and each is
    converted to its parameter's dtype, before the first update; on an error nothing changes.
    """
    b = _check_model(model, "sgd")
    lr = check_lr(lr)
    _check_built(model, "sgd")
    params = named_params(model)
    targets = {name: (b.shape(b.value(p)), b.dtype(b.value(p))) for name, p in params.items()}
    with backend.use_backend(b.name):
        grads = prepare(b, targets, grads, "sgd", "grads", keep_native=True)
        b.sgd_update(params, grads, lr)
