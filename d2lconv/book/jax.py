"""The book's ``d2l`` library for JAX, as chapter 7 uses it: ``from d2lconv.book import jax as d2l``.

Names and behaviour follow ``d2l/jax.py`` of d2l-ai/d2l-en, fixed for JAX 0.4.30+ and Flax 0.10+:

- ``get_seed()`` (a random int in [0, 10**6]) and ``get_key()`` (a ``PRNGKey`` of it).
- ``Module`` is a ``flax.linen.Module``: dataclass fields, ``setup()``, ``forward``/``__call__``,
  ``apply_init(dummy_input, key)``, ``training_step(params, batch, state)``, and
  ``configure_optimizers`` giving ``optax.sgd(self.lr)``. ``Classifier.loss`` and ``accuracy``
  take ``(params, X, Y, state, averaged=True)`` and are jitted, as in the book.
- ``Trainer`` keeps a ``flax.training.train_state.TrainState`` with ``batch_stats`` and a
  ``dropout_rng`` key; the book typed the key as ``jax.random.PRNGKeyArray``, which JAX removed
  (it is a ``jax.Array`` here).
- Data are NHWC NumPy batches, as the book's ``tfds.as_numpy`` pipeline gives: float32 images
  (N, H, W, 1) and int32 labels, read by :mod:`d2lconv.data`; no TensorFlow needed.
- ``corr2d`` is d2lconv's operator (the book's values, a float32 ``jax.Array``, jit- and
  grad-friendly, no Python loop of ``.at[].set``).
- Aliases (``tensor``, ``reshape``, ``reduce_sum``, ``float32``, ...) are ``jax.numpy``'s, with
  the book's signatures.
"""

from __future__ import annotations

import random
import sys
from dataclasses import field
from functools import partial
from types import FunctionType
from typing import Any

import jax
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state
from jax import numpy as jnp

from d2lconv import jax as _ops
from d2lconv.book import common
# the book's framework-free names, re-exported as d2l.<name>
from d2lconv.book.common import argmax, repeat, reduce_mean, reduce_sum, reshape, swapaxes  # noqa: F401
from d2lconv.book.common import DataModule, HyperParameters, ProgressBoard, add_to_class, show_images  # noqa: F401

nn_Module = nn.Module

# The book's aliases (its config.ini): jax.numpy's functions and dtypes.
to, numpy, sigmoid = jax.device_put, np.asarray, jax.nn.sigmoid
ones_like, ones, zeros_like, zeros, arange, eye = jnp.ones_like, jnp.ones, jnp.zeros_like, jnp.zeros, jnp.arange, jnp.eye
meshgrid, sin, sinh, cos, cosh, tanh = jnp.meshgrid, jnp.sin, jnp.sinh, jnp.cos, jnp.cosh, jnp.tanh
linspace, exp, log, tensor, expand_dims, matmul = jnp.linspace, jnp.exp, jnp.log, jnp.array, jnp.expand_dims, jnp.matmul
concat, stack, abs = jnp.concatenate, jnp.stack, jnp.abs
int32, int64, float32 = jnp.int32, jnp.int64, jnp.float32


def transpose(a):
    return a.T


def astype(x, *args, **kwargs):
    return x.astype(*args, **kwargs)


def get_seed():
    """A fresh random seed in [0, 10**6] (Python's ``random``, so ``random.seed`` fixes it)."""
    return random.randint(0, 10**6)


def get_key():
    """A fresh ``jax.random.PRNGKey`` from :func:`get_seed`."""
    return jax.random.PRNGKey(get_seed())


def cpu():
    return jax.devices("cpu")[0]


def gpu(i=0):
    return jax.devices("gpu")[i]


def num_gpus():
    """How many GPUs JAX sees (0 without a GPU backend)."""
    try:
        return jax.device_count("gpu")
    except RuntimeError:  # no GPU backend installed or found
        return 0


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus():
    """Every GPU, or ``[cpu()]`` without one."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (kh, kw): a (H-kh+1, W-kw+1) array in
    JAX's default float dtype (float32 unless 64-bit mode is on), as the book's ``jnp.zeros``
    result; other input dtypes are converted to it."""
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return _ops.corr2d(*(jnp.asarray(x, dtype) for x in (X, K)))


class Module(nn.Module, common.ModuleBase):
    """The base class of the book's models: a ``flax.linen.Module`` (dataclass fields, ``setup``)
    with the book's ``forward``, ``loss``, ``training_step``, ``validation_step``, ``plot``,
    ``apply_init`` and ``configure_optimizers``."""

    plot_train_per_epoch: int = field(default=2, init=False)
    plot_valid_per_epoch: int = field(default=1, init=False)
    # a new board per model (default_factory), not one shared by every instance
    board: ProgressBoard = field(default_factory=ProgressBoard, init=False)

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X, *args, **kwargs):
        if not hasattr(self, "net"):
            raise AttributeError(f"{type(self).__name__} has no self.net: define one in setup or override forward")
        return self.net(X, *args, **kwargs)

    def __call__(self, X, *args, **kwargs):
        return self.forward(X, *args, **kwargs)

    def training_step(self, params, batch, state):
        l, grads = jax.value_and_grad(self.loss)(params, batch[:-1], batch[-1], state)
        self.plot("loss", l, train=True)
        return l, grads

    def validation_step(self, params, batch, state):
        l = self.loss(params, batch[:-1], batch[-1], state)
        self.plot("loss", l, train=False)

    def apply_init(self, dummy_input, key):
        """The model's variables, initialised for the inputs ``dummy_input`` (a tuple)."""
        return self.init(key, *dummy_input)

    def configure_optimizers(self):
        return optax.sgd(self.lr)


class Classifier(Module):
    """The base class of classification models: softmax cross-entropy on logits and accuracy.
    ``loss`` returns ``(value, updated batch_stats)`` so that batch-norm models train too."""

    def training_step(self, params, batch, state):
        value, grads = self._loss_and_grads(params, tuple(batch[:-1]), batch[-1], state)
        self.plot("loss", value[0], train=True)
        return value, grads

    @partial(jax.jit, static_argnums=0)
    def _loss_and_grads(self, params, X, Y, state):
        """``((loss, aux), grads)`` of :meth:`loss`, compiled once per model."""
        return jax.value_and_grad(self.loss, has_aux=True)(params, X, Y, state)

    def validation_step(self, params, batch, state):
        l, _ = self.loss(params, batch[:-1], batch[-1], state)
        self.plot("loss", l, train=False)
        self.plot("acc", self.accuracy(params, batch[:-1], batch[-1], state), train=False)

    @partial(jax.jit, static_argnums=(0, 5))
    def accuracy(self, params, X, Y, state, averaged=True):
        """The share of examples whose largest logit is their label (or the 0/1 vector)."""
        Y_hat = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, *X)
        return common.classifier_accuracy(sys.modules[__name__], Y_hat, Y, averaged)

    @partial(jax.jit, static_argnums=(0, 5))
    def loss(self, params, X, Y, state, averaged=True):
        """Softmax cross-entropy of the model's logits on ``X`` against integer labels ``Y``
        (the mean, or per example), with the model's updated ``batch_stats``."""
        Y_hat, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, *X,
                                        mutable=["batch_stats"], rngs={"dropout": state.dropout_rng})
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        losses = optax.softmax_cross_entropy_with_integer_labels(Y_hat, Y.reshape((-1,)))
        return (losses.mean() if averaged else losses), updates

    def layer_summary(self, X_shape, key=None):
        """Print each layer of ``self.net`` with its output shape for zeros of ``X_shape``
        (initialised with ``key``, a fresh :func:`get_key` by default)."""
        X = jnp.zeros(X_shape)
        params = self.init(get_key() if key is None else key, X)
        bound_model = self.clone().bind(params, mutable=["batch_stats"])
        bound_model(X)  # runs setup, so that bound_model.net exists
        for layer in bound_model.net.layers:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


def _average_pool(x):
    return nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))


def _flatten(x):
    return x.reshape((x.shape[0], -1))


class LeNet(Classifier):
    """LeNet-5 (section 7.6) in Flax, NHWC: sigmoid convolutions and dense layers, average
    pooling, ``num_classes`` logits; every kernel from ``kernel_init()`` (Xavier uniform)."""

    lr: float = 0.1
    num_classes: int = 10
    kernel_init: FunctionType = nn.initializers.xavier_uniform

    def setup(self):
        init = self.kernel_init
        self.net = nn.Sequential([
            nn.Conv(6, kernel_size=(5, 5), padding="SAME", kernel_init=init()), nn.sigmoid, _average_pool,
            nn.Conv(16, kernel_size=(5, 5), padding="VALID", kernel_init=init()), nn.sigmoid, _average_pool,
            _flatten,
            nn.Dense(120, kernel_init=init()), nn.sigmoid,
            nn.Dense(84, kernel_init=init()), nn.sigmoid,
            nn.Dense(self.num_classes, kernel_init=init()),
        ])


class _Batches:
    """Batches of NumPy arrays, iterable again and again (as the book's ``tfds.as_numpy``
    loader): ``len`` is the number of batches; with ``shuffle`` every pass has a new order, drawn
    from a generator seeded by Python's ``random`` (as :func:`get_seed`: ``random.seed`` fixes it)."""

    def __init__(self, arrays, batch_size, shuffle):
        self.arrays, self.batch_size, self.shuffle = arrays, batch_size, shuffle
        self.size = len(arrays[0])
        self.rng = np.random.default_rng(random.getrandbits(64))

    def __len__(self):
        return -(-self.size // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        for start in range(0, self.size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(a[index] for a in self.arrays)


class _ImageData(common.ImageDataModule):
    """NumPy batches: float32 NHWC images and int32 labels, the training set reshuffled per pass."""

    layout = "NHWC"

    def get_dataloader(self, train):
        X, y = self.arrays(train)
        return _Batches((X, y.astype(np.int32)), self.batch_size, shuffle=train)


class FashionMNIST(common.FashionMNISTData, _ImageData):
    """Fashion-MNIST (60,000 training, 10,000 validation images), as in section 4.2: NumPy
    batches of float32 (N, *resize, 1) images in [0, 1] and int32 labels."""


class Digits(common.DigitsData, _ImageData):
    """Offline stand-in for ``FashionMNIST`` (see :func:`d2lconv.data.Digits` for ``options``),
    with the same batches and methods."""


class TrainState(train_state.TrainState):
    """Flax's train state plus ``batch_stats`` (batch norm) and the dropout key."""

    batch_stats: Any
    dropout_rng: jax.Array


class Trainer(common.Trainer):
    """The book's trainer on JAX: ``fit(model, data, key=None)`` initialises the model on the
    first batch and keeps parameters and optimizer in ``self.state`` (a :class:`TrainState`)."""

    init_key = None  # the key of the current fit; None: a fresh get_key()

    def find_gpus(self, num_gpus_wanted):
        return [gpu(i) for i in range(min(num_gpus_wanted, num_gpus()))]

    def to_device(self, x):
        return jax.device_put(x, self.gpus[0])

    def fit(self, model, data, key=None):
        self.init_key = key
        super().fit(model, data)

    def prepare_model(self, model):
        super().prepare_model(model)
        root_key = get_key() if self.init_key is None else self.init_key
        params_key, dropout_key = jax.random.split(root_key)
        dummy_input = tuple(self.prepare_batch(next(iter(self.train_dataloader))))[:-1]
        variables = model.apply_init(dummy_input, key={"params": params_key, "dropout": dropout_key})
        self.state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                                       batch_stats=variables.get("batch_stats", {}), dropout_rng=dropout_key,
                                       tx=model.configure_optimizers())

    def fit_epoch(self):
        model = self.model
        model.training = True
        for batch in self.train_dataloader:
            value, grads = model.training_step(self.state.params, self.prepare_batch(batch), self.state)
            self.state = self.state.apply_gradients(grads=grads)
            if self.state.batch_stats:  # batch-norm models: keep the updated statistics
                self.state = self.state.replace(batch_stats=value[1]["batch_stats"])
            self.state = self.state.replace(dropout_rng=jax.random.split(self.state.dropout_rng)[0])
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        model.training = False
        for batch in self.val_dataloader:
            model.validation_step(self.state.params, self.prepare_batch(batch), self.state)
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, grads):
        """``grads`` scaled down so that their global norm is at most ``grad_clip_val``."""
        norm = jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree_util.tree_leaves(grads)))
        scale = jnp.minimum(1.0, grad_clip_val / norm)
        return jax.tree_util.tree_map(lambda g: g * scale, grads)
