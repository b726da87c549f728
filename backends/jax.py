"""JAX: lax.conv_general_dilated and lax.reduce_window, NCHW natively through dimension numbers.

float64 needs ``jax_enable_x64`` (``JAX_ENABLE_X64=1``); without it a float64 request is an error
rather than a silent float32. Convolutions ask for full precision so GPUs do not use TF32.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from d2lconv.interface import Backend
from d2lconv.layers import LayerModule, run

NCHW = ("NCHW", "OIHW", "NCHW")


class Module(LayerModule, nnx.Module):
    """A d2lconv layer as a Flax NNX module: ``nnx.Param`` attributes, child modules by name."""

    backend_name = "jax"

    def __init__(self, layer):
        self.d2l_layer = layer

    def __call__(self, x):
        return run(self, x)


class JaxBackend(Backend):
    name = "jax"
    xp = jnp

    def devices(self):
        return [str(device) for device in jax.devices()]

    def gpu_count(self):
        return sum(device.platform == "gpu" for device in jax.devices())

    def use_gpu(self, model):
        pass  # JAX's default device is the first GPU when there is one

    def from_numpy(self, array):
        if array.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
            if array.dtype.kind == "f":
                raise TypeError(
                    "float64 on the jax backend needs 64-bit mode: set JAX_ENABLE_X64=1 "
                    "or jax.config.update('jax_enable_x64', True) before using jax"
                )
            array = array.astype(array.dtype.kind + "4")  # int64 -> int32, jax's own default
        return jnp.asarray(array)

    def is_native(self, x):
        return isinstance(x, jax.Array)

    def sigmoid(self, x):
        return jax.nn.sigmoid(x)

    def conv2d(self, x, w, bias, stride, pads):
        y = lax.conv_general_dilated(
            x, w, stride, pads, dimension_numbers=NCHW, precision=lax.Precision.HIGHEST
        )
        return y if bias is None else y + bias[None, :, None, None]

    def _pool(self, x, init, op, window, stride, pads):
        # a NumPy init value stays concrete under jit, so JAX sees a differentiable max/sum monoid
        return lax.reduce_window(
            x, np.array(init, x.dtype), op, (1, 1, *window), (1, 1, *stride), ((0, 0), (0, 0), *pads)
        )

    def max_pool(self, x, window, stride, pads):
        return self._pool(x, -np.inf, lax.max, window, stride, pads)

    def avg_pool(self, x, window, stride, pads):
        return self._pool(x, 0, lax.add, window, stride, pads) / (window[0] * window[1])

    def value_and_grad(self, fn, argnums):
        return jax.value_and_grad(fn, argnums=argnums)

    def cross_entropy(self, logits, labels):
        log_probs = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

    Module = Module

    def new_param(self, name, array):
        return nnx.Param(jnp.asarray(array))

    def value(self, param):
        return param[...]

    def assign(self, param, value):
        param[...] = jnp.asarray(value, param[...].dtype)

    def model_value_and_grad(self, loss_fn, compile):
        """Compiled once with nnx.jit; gradients keyed by the parameters' attribute paths."""
        step = nnx.value_and_grad(loss_fn)
        step = nnx.jit(step) if compile else step

        def wrapped(model, params, *args):
            loss, grads = step(model, *args)
            flat = {".".join(map(str, path)): value[...] for path, value in nnx.to_flat_state(grads)}
            return loss, {name: flat[name] for name in params}

        return wrapped

    def train_step(self, loss_fn, lr, compile):
        def step(model, *args):
            loss, grads = nnx.value_and_grad(loss_fn)(model, *args)
            params = nnx.state(model, nnx.Param)
            nnx.update(model, jax.tree.map(lambda p, g: p - lr * g, params, grads))
            return loss

        step = nnx.jit(step) if compile else step
        return lambda model, params, *args: step(model, *args)


BACKEND = JaxBackend()
