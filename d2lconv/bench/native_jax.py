"""JAX as its users write it: ``jax.jit``-ed ``lax`` calls (NCHW/OIHW, lax's default layout),
and LeNet with ``flax.linen`` on NHWC, a ``jax.jit`` step and ``optax.sgd``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax import lax

from d2lconv.bench.loop import sum_method as loop_sum  # noqa: F401

PACKAGES = ("jax", "flax", "optax")
KERAS_BACKEND = "jax"
OPS_LAYOUT = "jax.jit of lax.conv_general_dilated / lax.reduce_window on NCHW (lax's default layout)"


def to_native(array):
    return jnp.asarray(array)


def sync(x):
    return x.block_until_ready()


@jax.jit
def _conv(X, W):
    return lax.conv_general_dilated(X, W, (1, 1), ((2, 2), (2, 2)))


@jax.jit
def _max_pool(X):
    return lax.reduce_window(X, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


@jax.jit
def _avg_pool(X):
    return lax.reduce_window(X, 0.0, lax.add, (1, 1, 2, 2), (1, 1, 2, 2), "VALID") / 4


def operator_calls(X, W, P):
    X, W, P = to_native(X), to_native(W), to_native(P)
    return {
        "conv2d": lambda: _conv(X, W),
        "max_pool": lambda: _max_pool(P),
        "avg_pool": lambda: _avg_pool(P),
    }


def loop_zeros(shape):
    return jnp.zeros(shape)


def loop_put(Y, i, j, value):
    return Y.at[i, j].set(value)


class LeNet(nn.Module):
    @nn.compact
    def __call__(self, X):
        xavier = nn.initializers.xavier_uniform()
        X = nn.sigmoid(nn.Conv(6, (5, 5), padding=2, kernel_init=xavier)(X))
        X = nn.avg_pool(X, (2, 2), strides=(2, 2))
        X = nn.sigmoid(nn.Conv(16, (5, 5), padding="VALID", kernel_init=xavier)(X))
        X = nn.avg_pool(X, (2, 2), strides=(2, 2))
        X = X.reshape((X.shape[0], -1))
        X = nn.sigmoid(nn.Dense(120, kernel_init=xavier)(X))
        X = nn.sigmoid(nn.Dense(84, kernel_init=xavier)(X))
        return nn.Dense(10, kernel_init=xavier)(X)


def _compiled(model, optimizer):
    """The ``jax.jit``-ed training step and evaluation of a linen ``model`` with an optax
    ``optimizer``."""

    def loss_of(params, X, y):
        logits = model.apply(params, X)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, X, y):
        (loss, _), grads = jax.value_and_grad(loss_of, has_aux=True)(params, X, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    @jax.jit
    def evaluate(params, X, y):
        loss, logits = loss_of(params, X, y)
        return loss, (logits.argmax(1) == y).mean()

    return step, evaluate


def _train(model, optimizer, compiled, batches, val, epochs, mark, lr=None):
    step, evaluate = compiled

    def nhwc(X):  # the data's one channel makes NCHW -> NHWC a reshape; a Flax user's data is NHWC
        return X.reshape(X.shape[0], X.shape[2], X.shape[3], X.shape[1])

    params = model.init(jax.random.key(0), nhwc(batches[0][0]))
    state = optimizer.init(params)
    if lr is not None:  # an optimizer of optax.inject_hyperparams
        state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    X_val, y_val = to_native(nhwc(val[0])), to_native(val[1])
    for _ in range(epochs):
        mark()
        total = jnp.zeros(())
        for X, y in batches:  # NumPy batches straight into the jitted step, which transfers them
            params, state, loss = step(params, state, nhwc(X), y)
            total += loss
        train_loss = float(total) / len(batches)
        loss, acc = evaluate(params, X_val, y_val)
        float(loss), float(acc)
    return train_loss


def fit(batches, val, epochs, lr, mark):
    """A new model and optimizer, and their jitted step, per fit: as Flax's examples write it (a
    module-level ``jax.jit`` of a ``TrainState`` compiles again for each new state too: its
    ``apply_fn`` and ``tx`` are static and differ per model)."""
    model, optimizer = LeNet(), optax.sgd(lr)
    return _train(model, optimizer, _compiled(model, optimizer), batches, val, epochs, mark)


_ONCE_MODEL = LeNet()
_ONCE_OPTIMIZER = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)  # lr set per fit, traced
_ONCE = _compiled(_ONCE_MODEL, _ONCE_OPTIMIZER)


def fit_compiled_once(batches, val, epochs, lr, mark):
    """The same loop with its step and evaluation jitted once per process (module-level, the
    learning rate a traced hyperparameter): only a process's first fit compiles."""
    return _train(_ONCE_MODEL, _ONCE_OPTIMIZER, _ONCE, batches, val, epochs, mark, lr)


def training_loops():
    return {
        "flax.linen + jit": ("flax.linen on NHWC, jax.jit step, optax.sgd; jitted per fit", fit),
        "flax.linen + jit once": ("the same, jitted once per process (lr a traced hyperparameter)", fit_compiled_once),
    }
