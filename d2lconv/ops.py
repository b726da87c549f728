"""The chapter's operators: checked and normalised here once, computed by the current backend.

Layout: NCHW activations, OIHW kernels. Padding and stride forms are those of
:mod:`d2lconv.args`. Every operator returns native tensors and is differentiable under the
backend's autodiff (the NumPy backend excepted).

Edge semantics, the same on every backend (docs/CONTRACT.md states them in full):

- dtypes: the native floating operands decide the dtype (float32 or float64; two different ones
  are a TypeError naming both); integer and bool operands, and data that is not a native tensor
  (NumPy arrays, lists, numbers, other frameworks' tensors), are converted to it; with no native
  floating operand it is float32. float16 and bfloat16 are a TypeError (convert to float32).
- NaN and infinities propagate as in NumPy: a NaN in a pooling window gives NaN, a window of
  ``-inf`` (padding included) gives ``-inf``; convolutions give the framework's IEEE arithmetic.
- empty sizes: a batch, channel or output-channel axis of size 0 gives the empty result of the
  right shape (zero input channels: the bias, or zeros); a kernel with a zero side, and pooling an
  input with zero height or width, are ValueErrors.
- sizes: no padded input or output over 2**31 - 1 elements (a ValueError naming the padding).

Checks and normalised arguments are computed once per configuration (operation, shapes, dtypes,
stride, padding) and cached, so a repeated call costs about what the framework's own call costs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from d2lconv import args, backend
from d2lconv.tensors import native, numpy_of, resolve_dtype
from d2lconv.training import model_value_and_grad

_CACHE_SIZE = 1024
DEFAULT_DTYPE = np.dtype(np.float32)  # the compute dtype when no operand is a native floating tensor
_dtype_plans: dict = {}  # (op, operand names, native dtypes) -> (compute dtype, casts)
_op_plans: dict = {}  # (op, shapes, dtypes, arguments) -> a checked, normalised plan


def _planned(plans: dict, key, plan, config: tuple):
    """``plan(*config)`` (an operator's function for one configuration, or its dtypes), kept in
    ``plans`` under ``key``. Called through the backend's ``outside_compiler``."""
    return _remember(plans, key, plan(*config))


def _key(value):
    """A hashable cache key for an argument; non-int scalars keep their type, so ``1.0`` or
    ``True`` never share a plan with ``1``."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    return tuple(map(_key, value)) if kind is tuple or kind is list else (kind, value)


def _remember(plans: dict, key, plan):
    """``plan``, kept under ``key`` (unless the key cannot be hashed)."""
    try:
        hash(key)
    except TypeError:
        return plan
    if len(plans) >= _CACHE_SIZE:
        plans.clear()
    plans[key] = plan
    return plan


def _dtype_name(dtype) -> str:
    try:
        return resolve_dtype(dtype).name
    except TypeError:
        return getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]


def _check_computable(dtype, where: str) -> np.dtype:
    """The NumPy dtype of an operand's ``dtype``; TypeError for float16/bfloat16 and non-numbers."""
    name = _dtype_name(dtype)
    if name in ("float16", "bfloat16"):
        raise TypeError(
            f"{where} has dtype {name}; d2lconv's operators compute in float32 or float64: "
            f"convert it first, e.g. with tensor(x, 'float32')"
        )
    try:
        resolved = np.dtype(name)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind not in "biuf":
        raise TypeError(f"{where} must hold real numbers, got data of dtype {name}")
    return resolved


def _plan_dtypes(op: str, names: tuple, keys: tuple):
    """(compute dtype, which native operands need a cast) for native operands' dtype ``keys``
    (None for data that is not a native tensor)."""
    floats, resolved = {}, []
    for name, key in zip(names, keys):
        dtype = None if key is None else _check_computable(key, f"{op}: {name}")
        resolved.append(dtype)
        if dtype is not None and dtype.kind == "f":
            floats[name] = dtype
    if len(set(floats.values())) > 1:
        listed = ", ".join(f"{name} is {dtype}" for name, dtype in floats.items())
        raise TypeError(f"{op}: inputs must share one dtype, but {listed}")
    compute = next(iter(floats.values()), DEFAULT_DTYPE)
    return compute, tuple(dtype is not None and dtype != compute for dtype in resolved)


def in_compute_dtype(b, op: str, names: tuple, operands: tuple) -> list:
    """Native ``operands`` cast to their compute dtype (the rule in the module docstring): a
    TypeError names them when two are native floats of different dtypes."""
    dtype, casts = _dtype_plan(b, op, names, tuple(x.dtype for x in operands))
    return [b.cast(x, dtype) if cast else x for x, cast in zip(operands, casts)]


def _dtype_plan(b, op: str, names: tuple, keys: tuple):
    """:func:`_plan_dtypes` of these operands' dtype ``keys``, made once per operator."""
    key = (op, names, keys)
    plan = _dtype_plans.get(key)
    if plan is None:
        plan = b.outside_compiler(_planned)(_dtype_plans, key, _plan_dtypes, key)
    return plan


def _to_natives(b, op: str, names: tuple, values: tuple) -> list:
    """``values`` with every operand that is not a native tensor converted to the compute dtype
    (the rule in the module docstring); native tensors are left for the plan to cast."""
    keys = tuple(None if x is None or not b.is_native(x) else x.dtype for x in values)
    compute, _ = _dtype_plan(b, op, names, keys)
    return [
        x if key is not None or x is None else _from_data(b, x, f"{op}: {name}", compute)
        for name, x, key in zip(names, values, keys)
    ]


def _from_data(b, x, where: str, dtype: np.dtype):
    array = numpy_of(x, where)
    _check_computable(array.dtype, where)
    return b.from_numpy(np.asarray(array, dtype=dtype, order="C"))


# per operator: (op, name of X, its layout and rank, name of the kernel, its layout and rank)
_CONV_FORMS = {
    "conv2d": ("X", "(N, C, H, W)", 4, "W", "(O, C, kh, kw)", 4),
    "corr2d": ("X", "(H, W)", 2, "K", "(kh, kw)", 2),
    "corr2d_multi_in": ("X", "(C, H, W)", 3, "K", "(C, kh, kw)", 3),
    "corr2d_multi_in_out": ("X", "(C, H, W)", 3, "K", "(O, C, kh, kw)", 4),
}


def _plan_conv(b, op, x_shape, w_shape, bias_shape, dtype_keys, stride, padding) -> Callable:
    """Check one configuration of a convolution operator and build ``fn(X, W, bias)`` for it:
    for ``conv2d`` on operands of its dtype, the backend's own built operator and nothing else."""
    x_name, x_layout, x_rank, w_name, w_layout, w_rank = _CONV_FORMS[op]
    args.check_rank(x_shape, (x_rank,), x_name, x_layout, op)
    args.check_rank(w_shape, (w_rank,), w_name, w_layout, op)
    names = (x_name, w_name) if bias_shape is None else (x_name, w_name, "bias")
    dtype, casts = _plan_dtypes(op, names, dtype_keys)
    x4 = (1,) * (4 - x_rank) + x_shape
    w4 = (1,) * (4 - w_rank) + w_shape
    if _differ(x4[1], w4[1]):
        raise ValueError(
            f"{op}: the input has {x4[1]} channels but the kernel expects {w4[1]} "
            f"(input shape {x_shape}, kernel shape {w_shape})"
        )
    if bias_shape is not None and (len(bias_shape) != 1 or _differ(bias_shape[0], w4[0])):
        raise ValueError(f"{op}: bias must have shape ({w4[0]},), got {bias_shape}")
    if 0 in w4[2:]:
        raise ValueError(f"{op}: {w_name}'s kernel must be at least 1 x 1, got shape {w_shape}")
    stride = args.stride_pair(stride)
    pads = args.padding_pairs(padding, w4[2:], stride)
    n, c_in, c_out = map(_at_least, (x4[0], x4[1], w4[0]))
    size = args.output_size(x4[2:], w4[2:], stride, pads, op, n * c_in, n * c_out)
    out4 = (x4[0], w4[0], *size)
    shape = out4[1 if w_rank == 4 and x_rank < 4 else (2 if x_rank < 4 else 0):]  # the result's axes
    if 0 in out4:
        fn = _zeros_fn(b, shape, dtype)
    elif 0 in x4[1:]:  # nothing to sum: the bias (only conv2d takes one), or zeros

        def fn(X, W, bias):
            Y = b.from_numpy(np.zeros(shape, dtype))
            return Y if bias is None else Y + b.reshape(bias, (1, out4[1], 1, 1))

    elif x4 == x_shape:  # conv2d: NCHW and OIHW already
        fn = b.nchw_conv2d_fn(stride, pads)
    else:  # the corr2d forms: one image, stride 1, no padding
        fn = b.image_conv2d_fn(x4, w4, shape)
    return _with_casts(b, fn, casts, dtype)


def _at_least(size):
    """``size``, or 1 where it is unknown (None: a size unknown while a graph is traced)."""
    return 1 if size is None else size


def _differ(size, other):
    """Whether two sizes are known and differ (an unknown one is the framework's to check)."""
    return size is not None and other is not None and size != other


def _zeros_fn(b, shape, dtype):
    """``fn(*operands)``: zeros of ``shape`` (the result of an operator with an empty side)."""
    return lambda *operands: b.from_numpy(np.zeros(shape, dtype))


def _with_casts(b, fn, casts, dtype):
    """``fn`` whose operands are first cast to ``dtype`` where ``casts`` says (integers, bool)."""
    if True not in casts:
        return fn

    def cast_first(*operands):  # operands beyond ``casts`` (an absent bias) pass as they are
        return fn(*[b.cast(x, dtype) if i < len(casts) and casts[i] else x for i, x in enumerate(operands)])

    return cast_first


def _conv(op, X, W, bias=None, stride=1, padding=0):
    """Checked cross-correlation in one of the forms of ``_CONV_FORMS``."""
    b = backend.current()
    if not (b.is_native(X) and b.is_native(W) and (bias is None or b.is_native(bias))):
        form = _CONV_FORMS[op]
        X, W, bias = _to_natives(b, op, (form[0], form[3], "bias"), (X, W, bias))
    if type(stride) is int and type(padding) is int:  # the usual call: ints are their own keys
        arguments = (stride, padding)
    else:
        arguments = (_key(stride), _key(padding))
    operand_key = b.operand_key
    if operand_key is not None:
        key = (b, op, operand_key(X), operand_key(W), bias if bias is None else operand_key(bias), arguments)
    elif bias is None:
        key = (b, op, X.shape, W.shape, X.dtype, W.dtype, arguments)
    else:
        key = (b, op, X.shape, W.shape, X.dtype, W.dtype, bias.shape, bias.dtype, arguments)
    try:
        fn = _op_plans.get(key)
    except TypeError:  # an unhashable argument: building the plan says what is wrong with it
        fn = None
    if fn is None:  # built outside the except block, so its errors carry no look-up traceback
        fn = b.outside_compiler(_planned)(_op_plans, key, _plan_conv, (
            b, op, b.shape(X), b.shape(W), None if bias is None else b.shape(bias),
            (X.dtype, W.dtype) if bias is None else (X.dtype, W.dtype, bias.dtype), stride, padding))
    return fn(X, W, bias)


def conv2d(X, W, bias=None, stride=1, padding=0):
    """Cross-correlation of a batch ``X`` (N, C, H, W) with kernels ``W`` (O, C, kh, kw).

    ``bias`` has shape (O,). Output (N, O, OH, OW) with ``OH = floor((H - kh + ph + sh) / sh)``.
    """
    return _conv("conv2d", X, W, bias, stride, padding)


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (kh, kw); output (H-kh+1, W-kw+1)."""
    return _conv("corr2d", X, K)


def corr2d_multi_in(X, K):
    """``X`` (C, H, W) with ``K`` (C, kh, kw), summed over channels; output (H', W')."""
    return _conv("corr2d_multi_in", X, K)


def corr2d_multi_in_out(X, K):
    """``X`` (C, H, W) with ``K`` (O, C, kh, kw); output (O, H', W')."""
    return _conv("corr2d_multi_in_out", X, K)


def corr2d_multi_in_out_1x1(X, K):
    """The 1x1 convolution as a matrix product: ``X`` (C, H, W), ``K`` (O, C, 1, 1) -> (O, H, W)."""
    op = "corr2d_multi_in_out_1x1"
    b = backend.current()
    X, K = _to_natives(b, op, ("X", "K"), (X, K))
    X, K = in_compute_dtype(b, op, ("X", "K"), (X, K))
    args.check_rank(b.shape(X), (3,), "X", "(C, H, W)", op)
    args.check_rank(b.shape(K), (4,), "K", "(O, C, 1, 1)", op)
    (c_i, h, w), (c_o, k_i, kh, kw) = b.shape(X), b.shape(K)
    if (kh, kw) != (1, 1):
        raise ValueError(f"{op}: K must be a 1x1 kernel (O, C, 1, 1), got shape {b.shape(K)}")
    if _differ(k_i, c_i):
        raise ValueError(f"{op}: X has {c_i} channels but K expects {k_i}")
    if None in (c_i, h, w):  # sizes unknown while a graph is traced: the same sums as a convolution
        return corr2d_multi_in_out(X, K)
    if c_i == 0 or c_o * h * w == 0:  # nothing to sum, or nothing to hold: zeros of the right shape
        return b.from_numpy(np.zeros((c_o, h, w), b.dtype(X)))
    Y = b.matmul(b.reshape(K, (c_o, c_i)), b.reshape(X, (c_i, h * w)))
    return b.reshape(Y, (c_o, h, w))


POOL_MODES = ("max", "avg")


def _plan_pool(b, shape, dtype_key, pool_size, mode, stride, padding, count_include_pad) -> Callable:
    """Check one configuration of ``pool2d`` and build ``fn(X)`` for it: for an (N, C, H, W)
    operand of its dtype, the backend's own built pooling and nothing else."""
    op = "pool2d"
    if mode not in POOL_MODES:
        raise ValueError(f"{op}: mode must be one of {POOL_MODES}, got {mode!r}")
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{op}: count_include_pad must be True or False, got {count_include_pad!r}")
    args.check_rank(shape, (2, 3, 4), "X", "(H, W), (C, H, W) or (N, C, H, W)", op)
    dtype, casts = _plan_dtypes(op, ("X",), (dtype_key,))
    window = args.int_pair(pool_size, "pool_size")
    stride = window if stride is None else args.stride_pair(stride)
    pads = args.padding_pairs(padding, window, stride)
    if any(p >= k for pair, k in zip(pads, window) for p in pair):
        raise ValueError(f"{op}: padding {pads} must be smaller than pool_size {window} on every side")
    if 0 in shape[-2:]:
        raise ValueError(f"{op}: X must have a positive height and width, got shape {shape}")
    in_shape = (1,) * (4 - len(shape)) + shape
    planes = _at_least(in_shape[0]) * _at_least(in_shape[1])
    out_shape = shape[:-2] + args.output_size(shape[-2:], window, stride, pads, op, planes, planes)
    if 0 in in_shape:
        return _with_casts(b, _zeros_fn(b, out_shape, dtype), casts, dtype)
    if mode == "max":
        fn = b.nchw_max_pool_fn(window, stride, pads)
    else:
        fn = b.nchw_avg_pool_fn(window, stride, pads, bool(count_include_pad))
    if len(shape) != 4:
        run = fn
        fn = lambda X: b.reshape(run(b.reshape(X, in_shape)), out_shape)  # noqa: E731
    return _with_casts(b, fn, casts, dtype)


def pool2d(X, pool_size, mode="max", stride=None, padding=0, count_include_pad=True):
    """Max or average pooling of each channel of ``X``: (H, W), (C, H, W) or (N, C, H, W).

    ``stride`` defaults to ``pool_size``. Max pooling pads with -inf. Average pooling divides by
    the window's area, padded zeros included, unless ``count_include_pad=False``, which divides by
    the number of input cells in each window. Every window must hold at least one input cell.
    """
    b = backend.current()
    if not b.is_native(X):
        (X,) = _to_natives(b, "pool2d", ("X",), (X,))
    # mode is checked against strings only: an invalid one never becomes a cached plan
    if b.operand_key is None:
        shape, dtype = X.shape, X.dtype
    else:
        shape, dtype = b.operand_key(X)
    if type(pool_size) is int and (stride is None or type(stride) is int) and type(padding) is int \
            and type(count_include_pad) is bool:  # the usual call: _key's values without its calls
        key = (b, shape, dtype, mode, pool_size, stride, padding, (bool, count_include_pad))
    else:
        key = (b, shape, dtype, mode, _key(pool_size), _key(stride), _key(padding), _key(count_include_pad))
    try:
        fn = _op_plans.get(key)
    except TypeError:  # an unhashable argument: building the plan says what is wrong with it
        fn = None
    if fn is None:
        fn = b.outside_compiler(_planned)(_op_plans, key, _plan_pool, (
            b, b.shape(X), X.dtype, pool_size, mode, stride, padding, count_include_pad))
    return fn(X)


def comp_conv2d(conv2d_layer, X):
    """Apply a layer or function made for NCHW batches to a 2-D ``X``; return the 2-D result.

    As in the book's padding section: ``X`` gets a batch and a channel axis of size 1, and the
    output loses them again, so the output's shape shows what padding and stride do.
    """
    if not callable(conv2d_layer):
        raise TypeError(
            f"comp_conv2d: conv2d_layer must be a layer or a function of an (N, C, H, W) batch, "
            f"got {conv2d_layer!r} ({type(conv2d_layer).__name__})"
        )
    b = backend.current()
    X = native(X, "comp_conv2d: X")
    shape = b.shape(X)
    args.check_rank(shape, (2,), "X", "(H, W)", "comp_conv2d")
    Y = conv2d_layer(b.reshape(X, (1, 1) + shape))
    return b.reshape(Y, b.shape(Y)[2:])


def _check_argnums(argnums) -> tuple[int, ...]:
    nums = (argnums,) if args._is_int(argnums) else argnums
    if not isinstance(nums, (tuple, list)) or not nums or not all(args._is_int(i) for i in nums):
        raise TypeError(f"value_and_grad: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    if any(i < 0 for i in nums):
        raise ValueError(f"value_and_grad: argnums must be non-negative positions, got {argnums!r}")
    return tuple(int(i) for i in nums)


def _scalar_loss(b, fn):
    """``fn`` with its result checked: a 0-d native floating tensor, or a clear error."""

    def checked(*inputs):
        value = fn(*inputs)
        if not b.is_native(value):
            raise TypeError(
                f"value_and_grad: fn must return a scalar tensor, got {type(value).__name__}"
            )
        if b.shape(value) != ():
            raise ValueError(
                f"value_and_grad: fn must return a scalar (a 0-d tensor), got shape {b.shape(value)}; "
                "reduce it first, e.g. with reduce_sum or .mean()"
            )
        return value

    return checked


def value_and_grad(fn, argnums=0, *, compile=True):
    """``fn``'s value and its gradient with respect to positional arguments ``argnums``.

    ``fn`` returns a scalar (0-d) tensor; anything else is a ValueError/TypeError on every backend.
    The returned function gives ``(value, grad)`` for an integer ``argnums`` and
    ``(value, (grads...))`` for a tuple, on every backend with autodiff. An input the loss does not
    use gets a gradient of zeros. ``argnums`` naming a missing argument is a ValueError; asking
    for the gradient of an integer or bool input is a TypeError. The backend in force now is the
    one the returned function uses. When the first argument is a d2lconv model, ``fn(model,
    *args)`` is differentiated with respect to the model's parameters and the gradients come as a
    dict keyed like :func:`d2lconv.get_params`; that step is compiled (``nnx.jit``,
    ``tf.function``) where the framework compiles, unless ``compile=False``.
    """
    if not callable(fn):
        raise TypeError(f"value_and_grad: fn must be callable, got {fn!r}")
    single = args._is_int(argnums)
    nums = _check_argnums(argnums)
    name = backend.get_backend()
    b = backend.load(name)
    if not b.differentiable:
        return b.value_and_grad(fn, nums)  # raises the backend's clear NotImplementedError

    model_grad = model_value_and_grad(fn, compile)
    grad_fn = b.value_and_grad(_scalar_loss(b, fn), nums)

    def wrapped(*inputs):
        if inputs and hasattr(inputs[0], "d2l_layer"):  # fn(model, *args): gradients by parameter name
            return model_grad(*inputs)
        if max(nums) >= len(inputs):
            raise ValueError(
                f"value_and_grad: argnums={argnums!r} asks for argument {max(nums)}, but the function "
                f"was called with {len(inputs)} positional argument(s)"
            )
        with backend.use_backend(name):
            inputs = [_differentiable(b, x, i) if i in nums else x for i, x in enumerate(inputs)]
            value, grads = grad_fn(*inputs)
        return value, (grads[0] if single else grads)

    return wrapped


def _differentiable(b, x, i: int):
    x = native(x, f"value_and_grad: argument {i}")
    dtype = _check_computable(x.dtype, f"value_and_grad: argument {i}")
    if dtype.kind != "f":
        raise TypeError(
            f"value_and_grad: argument {i} (in argnums) has dtype {dtype}; gradients need floating "
            "inputs: pass it as float32, or leave it out of argnums"
        )
    return x
