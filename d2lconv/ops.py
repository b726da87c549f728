"""The chapter's operators: checked and normalised here once, computed by the current backend.

Layout: NCHW activations, OIHW kernels. Padding and stride forms are those of
:mod:`d2lconv.args`. Every operator returns native tensors and is differentiable under the
backend's autodiff (the NumPy backend excepted).
"""

from __future__ import annotations

import numpy as np

from d2lconv import args, backend
from d2lconv.tensors import native
from d2lconv.training import model_value_and_grad


def _natives(op: str, **named):
    b = backend.current()
    return b, [native(x, f"{op}: {name}") for name, x in named.items()]


def _check_same_dtype(b, op: str, **named) -> None:
    dtypes = {name: b.dtype(x) for name, x in named.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: inputs must share one dtype, but {listed}")


def _conv(b, X, W, bias, stride, padding, op: str):
    """Checked NCHW x OIHW cross-correlation on native tensors."""
    x_shape, w_shape = b.shape(X), b.shape(W)
    if x_shape[1] != w_shape[1]:
        raise ValueError(
            f"{op}: the input has {x_shape[1]} channels but the kernel expects {w_shape[1]} "
            f"(input shape {x_shape}, kernel shape {w_shape})"
        )
    if bias is not None:
        if b.shape(bias) != (w_shape[0],):
            raise ValueError(f"{op}: bias must have shape ({w_shape[0]},), got {b.shape(bias)}")
        _check_same_dtype(b, op, X=X, W=W, bias=bias)
    else:
        _check_same_dtype(b, op, X=X, W=W)
    stride = args.stride_pair(stride)
    pads = args.padding_pairs(padding, w_shape[2:], stride)
    args.output_size(x_shape[2:], w_shape[2:], stride, pads, op)
    return b.conv2d(X, W, bias, stride, pads)


def conv2d(X, W, bias=None, stride=1, padding=0):
    """Cross-correlation of a batch ``X`` (N, C, H, W) with kernels ``W`` (O, C, kh, kw).

    ``bias`` has shape (O,). Output (N, O, OH, OW) with ``OH = floor((H - kh + ph + sh) / sh)``.
    """
    b, (X, W) = _natives("conv2d", X=X, W=W)
    args.check_rank(b.shape(X), (4,), "X", "(N, C, H, W)", "conv2d")
    args.check_rank(b.shape(W), (4,), "W", "(O, C, kh, kw)", "conv2d")
    if bias is not None:
        bias = native(bias, "conv2d: bias")
    return _conv(b, X, W, bias, stride, padding, "conv2d")


def _corr(X, K, x_rank: int, k_rank: int, x_layout: str, k_layout: str, op: str):
    """``X`` and ``K`` lifted to NCHW/OIHW, correlated, and the result's leading 1s dropped."""
    b, (X, K) = _natives(op, X=X, K=K)
    x_shape, k_shape = b.shape(X), b.shape(K)
    args.check_rank(x_shape, (x_rank,), "X", x_layout, op)
    args.check_rank(k_shape, (k_rank,), "K", k_layout, op)
    X4 = b.reshape(X, (1,) * (4 - x_rank) + x_shape)
    K4 = b.reshape(K, (1,) * (4 - k_rank) + k_shape)
    Y = _conv(b, X4, K4, None, 1, 0, op)
    kept = 1 if k_rank == 4 else 2  # an output-channel axis survives only for OIHW kernels
    return b.reshape(Y, b.shape(Y)[kept:])


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (kh, kw); output (H-kh+1, W-kw+1)."""
    return _corr(X, K, 2, 2, "(H, W)", "(kh, kw)", "corr2d")


def corr2d_multi_in(X, K):
    """``X`` (C, H, W) with ``K`` (C, kh, kw), summed over channels; output (H', W')."""
    return _corr(X, K, 3, 3, "(C, H, W)", "(C, kh, kw)", "corr2d_multi_in")


def corr2d_multi_in_out(X, K):
    """``X`` (C, H, W) with ``K`` (O, C, kh, kw); output (O, H', W')."""
    return _corr(X, K, 3, 4, "(C, H, W)", "(O, C, kh, kw)", "corr2d_multi_in_out")


def corr2d_multi_in_out_1x1(X, K):
    """The 1x1 convolution as a matrix product: ``X`` (C, H, W), ``K`` (O, C, 1, 1) -> (O, H, W)."""
    op = "corr2d_multi_in_out_1x1"
    b, (X, K) = _natives(op, X=X, K=K)
    args.check_rank(b.shape(X), (3,), "X", "(C, H, W)", op)
    args.check_rank(b.shape(K), (4,), "K", "(O, C, 1, 1)", op)
    (c_i, h, w), (c_o, k_i, kh, kw) = b.shape(X), b.shape(K)
    if (kh, kw) != (1, 1):
        raise ValueError(f"{op}: K must be a 1x1 kernel (O, C, 1, 1), got shape {b.shape(K)}")
    if k_i != c_i:
        raise ValueError(f"{op}: X has {c_i} channels but K expects {k_i}")
    _check_same_dtype(b, op, X=X, K=K)
    Y = b.matmul(b.reshape(K, (c_o, c_i)), b.reshape(X, (c_i, h * w)))
    return b.reshape(Y, (c_o, h, w))


POOL_MODES = ("max", "avg")


def pool2d(X, pool_size, mode="max", stride=None, padding=0, count_include_pad=True):
    """Max or average pooling of each channel of ``X``: (H, W), (C, H, W) or (N, C, H, W).

    ``stride`` defaults to ``pool_size``. Max pooling pads with -inf. Average pooling divides by
    the window's area, padded zeros included, unless ``count_include_pad=False``, which divides by
    the number of input cells in each window. Every window must hold at least one input cell.
    """
    op = "pool2d"
    if mode not in POOL_MODES:
        raise ValueError(f"{op}: mode must be one of {POOL_MODES}, got {mode!r}")
    b, (X,) = _natives(op, X=X)
    shape = b.shape(X)
    args.check_rank(shape, (2, 3, 4), "X", "(H, W), (C, H, W) or (N, C, H, W)", op)
    window = args.int_pair(pool_size, "pool_size")
    stride = window if stride is None else args.stride_pair(stride)
    pads = args.padding_pairs(padding, window, stride)
    if any(p >= k for pair, k in zip(pads, window) for p in pair):
        raise ValueError(f"{op}: padding {pads} must be smaller than pool_size {window} on every side")
    args.output_size(shape[-2:], window, stride, pads, op)
    X4 = b.reshape(X, (1,) * (4 - len(shape)) + shape)
    if mode == "max":
        Y = b.max_pool(X4, window, stride, pads)
    else:
        Y = b.avg_pool(X4, window, stride, pads)
        if not count_include_pad and pads != ((0, 0), (0, 0)):
            inside = b.from_numpy(np.ones((1, 1) + shape[-2:], b.dtype(X)))
            Y = Y / b.avg_pool(inside, window, stride, pads)
    return b.reshape(Y, shape[:-2] + b.shape(Y)[-2:])


def comp_conv2d(conv2d_layer, X):
    """Apply a layer or function made for NCHW batches to a 2-D ``X``; return the 2-D result.

    As in the book's padding section: ``X`` gets a batch and a channel axis of size 1, and the
    output loses them again, so the output's shape shows what padding and stride do.
    """
    b, (X,) = _natives("comp_conv2d", X=X)
    shape = b.shape(X)
    args.check_rank(shape, (2,), "X", "(H, W)", "comp_conv2d")
    Y = conv2d_layer(b.reshape(X, (1, 1) + shape))
    return b.reshape(Y, b.shape(Y)[2:])


def value_and_grad(fn, argnums=0, *, compile=True):
    """``fn``'s value and its gradient with respect to positional arguments ``argnums``.

    ``fn`` returns a scalar tensor. The returned function gives ``(value, grad)`` for an integer
    ``argnums`` and ``(value, (grads...))`` for a tuple, on every backend with autodiff. The
    backend in force now is the one the returned function uses. When the first argument is a
    d2lconv model, ``fn(model, *args)`` is differentiated with respect to the model's parameters
    and the gradients come as a dict keyed like :func:`d2lconv.get_params`; that step is
    compiled (``nnx.jit``, ``tf.function``) where the framework compiles, unless ``compile=False``.
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    name = backend.get_backend()
    b = backend.load(name)
    if not b.differentiable:
        return b.value_and_grad(fn, nums)  # raises the backend's clear NotImplementedError

    model_grad = model_value_and_grad(fn, compile)

    def wrapped(*inputs):
        if inputs and hasattr(inputs[0], "d2l_layer"):  # fn(model, *args): gradients by parameter name
            return model_grad(*inputs)
        with backend.use_backend(name):
            inputs = [native(x, f"argument {i}") if i in nums else x for i, x in enumerate(inputs)]
            value, grads = b.value_and_grad(fn, nums)(*inputs)
        return value, (grads[0] if single else grads)

    return wrapped
