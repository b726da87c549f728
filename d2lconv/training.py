"""The pieces of a training loop, written once: loss, accuracy, gradients of a model, SGD."""

from __future__ import annotations

import numpy as np

from d2lconv import backend
from d2lconv.params import named_params
from d2lconv.tensors import native, numpy_of, tensor


def _labels(labels, name="labels"):
    array = numpy_of(labels, name)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class ids, got dtype {array.dtype}")
    return array


def cross_entropy(logits, labels):
    """Mean over the batch of ``-log softmax(logits)[label]``; labels are integer class ids."""
    b = backend.current()
    logits = native(logits, "cross_entropy: logits")
    shape = b.shape(logits)
    if len(shape) != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, classes), got shape {shape}")
    if b.is_native(labels) and not isinstance(labels, np.ndarray):
        if b.dtype(labels).kind not in "iu":
            raise TypeError(f"cross_entropy: labels must be integer class ids, got dtype {b.dtype(labels)}")
    else:
        labels = tensor(_labels(labels, "cross_entropy: labels"))
    if b.shape(labels) != shape[:1]:
        raise ValueError(f"cross_entropy: labels must have shape ({shape[0]},), got {b.shape(labels)}")
    return b.cross_entropy(logits, labels)


def accuracy(logits, labels) -> float:
    """The fraction of rows whose largest logit is at the label."""
    predicted = numpy_of(logits, "accuracy: logits").argmax(axis=1)
    return float((predicted == _labels(labels, "accuracy: labels")).mean())


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
    """One step of plain SGD in place: ``param -= lr * grads[name]`` for every parameter."""
    params = named_params(model)
    if set(grads) != set(params):
        raise ValueError(f"sgd: grads must have the model's parameter names {sorted(params)}, got {sorted(grads)}")
    b = model.d2l_backend
    with backend.use_backend(b.name):
        b.sgd_update(params, {name: native(g, f"sgd: grads[{name!r}]") for name, g in grads.items()}, lr)
