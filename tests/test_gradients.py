"""Gradients of a scalar loss through corr2d, conv2d and pool2d against the float64 reference.

The reference gradient is a central difference of the NumPy reference in float64. The operators
are linear (conv) or piecewise linear (pooling) in each input, so the difference is exact up to
rounding as long as no max changes place, which random normal inputs make vanishingly unlikely.
"""

import importlib

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND, assert_close
from d2lconv import reference


def numeric_grad(loss, x, eps=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (loss(x + step) - loss(x - step)) / (2 * eps)
    return grad


def _data(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(np.float64)


# a kernel over 3 x 3 on a small image takes another kernel on torch (see its image_conv2d_fn)
@pytest.mark.parametrize("x_shape, k_shape", [((5, 6), (2, 3)), ((8, 7), (5, 4))])
def test_corr2d_gradient_wrt_input_and_kernel(d2l, needs_autodiff, x_shape, k_shape):
    out_shape = tuple(x - k + 1 for x, k in zip(x_shape, k_shape))
    X, K, G = _data(0, *x_shape), _data(1, *k_shape), _data(2, *out_shape)
    loss, (gX, gK) = d2l.value_and_grad(
        lambda x, k: d2l.reduce_sum(d2l.corr2d(x, k) * d2l.tensor(G)), argnums=(0, 1)
    )(d2l.tensor(X), d2l.tensor(K))
    assert_close(loss, (reference.corr2d(X, K) * G).sum())
    assert_close(gX, numeric_grad(lambda x: (reference.corr2d(x, K) * G).sum(), X))
    assert_close(gK, numeric_grad(lambda k: (reference.corr2d(X, k) * G).sum(), K))


@pytest.mark.parametrize("padding, stride", [(0, 1), (1, 2), (((0, 2), (1, 0)), (2, 1)), ("same", 1)])
def test_conv2d_gradient_wrt_input_weight_and_bias(d2l, needs_autodiff, padding, stride):
    X, W, bias = _data(3, 2, 2, 5, 6), _data(4, 3, 2, 3, 2), _data(5, 3)
    pads = {0: ((0, 0),) * 2, 1: ((1, 1),) * 2, "same": ((1, 1), (0, 1))}.get(padding, padding)
    strides = (stride, stride) if isinstance(stride, int) else stride

    def ref(x, w, b):
        return reference.conv2d(x, w, b, strides, pads)

    G = _data(6, *ref(X, W, bias).shape)
    fn = lambda x, w, b: d2l.reduce_sum(d2l.conv2d(x, w, b, stride, padding) * d2l.tensor(G))  # noqa: E731
    loss, (gX, gW, gb) = d2l.value_and_grad(fn, argnums=(0, 1, 2))(
        d2l.tensor(X), d2l.tensor(W), d2l.tensor(bias)
    )
    assert_close(loss, (ref(X, W, bias) * G).sum(), tol=1e-4)  # a sum of 90 float32 terms
    assert_close(gX, numeric_grad(lambda x: (ref(x, W, bias) * G).sum(), X))
    assert_close(gW, numeric_grad(lambda w: (ref(X, w, bias) * G).sum(), W))
    assert_close(gb, numeric_grad(lambda b: (ref(X, W, b) * G).sum(), bias))


# one input channel at a size from which TF (on Eigen's kernels) and JAX (on the CPU) fold the
# kernel's rows into input channels: values, and gradients checked through linearity (the weight
# gradient's entries are the loss at the kernel's unit vectors; the input gradient's dot product
# with any V is the loss at V)
@pytest.mark.parametrize("kernel, stride, pads", [((5, 5), (1, 1), ((2, 2), (2, 2))),
                                                  ((4, 3), (3, 2), ((1, 0), (2, 1)))])
def test_one_channel_conv_at_a_size_that_folds_rows(d2l, needs_autodiff, kernel, stride, pads):
    X, W = _data(10, 16, 1, 24, 23), _data(11, 6, 1, *kernel)

    def ref_loss(x, w):
        return (reference.conv2d(x, w, None, stride, pads) * G).sum()

    G = _data(12, *reference.conv2d(X, W, None, stride, pads).shape)
    assert_close(d2l.conv2d(d2l.tensor(X), d2l.tensor(W), stride=stride, padding=pads),
                 reference.conv2d(X, W, None, stride, pads), tol=2e-5)
    fn = lambda x, w: d2l.reduce_sum(d2l.conv2d(x, w, stride=stride, padding=pads) * d2l.tensor(G))  # noqa: E731
    _, (gX, gW) = d2l.value_and_grad(fn, argnums=(0, 1))(d2l.tensor(X), d2l.tensor(W))
    units = np.eye(W.size).reshape(W.size, *W.shape)
    assert_close(gW, np.array([ref_loss(X, unit) for unit in units]).reshape(W.shape), tol=1e-3)
    gX = d2lconv.to_numpy(gX).astype(np.float64)
    for seed in (13, 14):
        V = _data(seed, *X.shape)
        np.testing.assert_allclose((gX * V).sum(), ref_loss(V, W), rtol=1e-4)


# geometries TF 2.21's oneDNN float32 kernels got wrong on x86 (d2lconv rewrites them on TF):
# one channel, a stride-2+ axis with one output position beside a stride-1 axis (forward values
# uninitialised); a 1 x 1 kernel at unequal strides (the filter gradient corrupted the heap, so the
# step repeats until a corruption would show)
@pytest.mark.parametrize("x_shape, w_shape, stride, repeats", [
    ((2, 1, 4, 3), (2, 1, 2, 2), (1, 2), 1),
    ((2, 1, 3, 5), (1, 1, 2, 3), (3, 1), 1),
    ((1, 2, 8, 9), (2, 2, 1, 1), (2, 1), 200),
    ((1, 2, 8, 8), (1, 2, 1, 1), (1, 2), 200),
])
def test_strided_geometries_some_kernels_got_wrong(d2l, needs_autodiff, x_shape, w_shape, stride, repeats):
    X, W = _data(7, *x_shape), _data(8, *w_shape)
    G = _data(9, *reference.conv2d(X, W, None, stride).shape)
    grad_fn = d2l.value_and_grad(lambda x, w: d2l.reduce_sum(d2l.conv2d(x, w, stride=stride) * d2l.tensor(G)), (0, 1))
    for _ in range(repeats):
        loss, (gX, gW) = grad_fn(d2l.tensor(X), d2l.tensor(W))
    assert_close(loss, (reference.conv2d(X, W, None, stride) * G).sum(), tol=1e-4)
    assert_close(gX, numeric_grad(lambda x: (reference.conv2d(x, W, None, stride) * G).sum(), X))
    assert_close(gW, numeric_grad(lambda w: (reference.conv2d(X, w, None, stride) * G).sum(), W))
    layer = d2l.LazyConv2d(w_shape[0], w_shape[2:], stride=stride, bias=False)
    layer(d2l.tensor(X))
    d2lconv.set_params(layer, {"weight": W})
    assert_close(layer(d2l.tensor(X)), reference.conv2d(X, W, None, stride))


# JAX folds the kernel's rows into channels for one input channel and up to 16 output channels
# (XLA's CPU convolution is slow on one channel): both sides of that bound, strided and padded
@pytest.mark.parametrize("out_channels", [16, 17])
def test_one_input_channel_either_side_of_jaxs_folding_bound(d2l, needs_autodiff, out_channels):
    X, W = _data(10, 2, 1, 7, 8), _data(11, out_channels, 1, 3, 2)
    stride, pads = (2, 3), ((1, 0), (2, 1))

    def ref(x, w):
        return reference.conv2d(x, w, None, stride, pads)

    G = _data(12, *ref(X, W).shape)
    fn = lambda x, w: d2l.reduce_sum(d2l.conv2d(x, w, stride=stride, padding=pads) * d2l.tensor(G))  # noqa: E731
    loss, (gX, gW) = d2l.value_and_grad(fn, argnums=(0, 1))(d2l.tensor(X), d2l.tensor(W))
    assert_close(d2l.conv2d(d2l.tensor(X), d2l.tensor(W), stride=stride, padding=pads), ref(X, W))
    assert_close(loss, (ref(X, W) * G).sum(), tol=1e-4)
    assert_close(gX, numeric_grad(lambda x: (ref(x, W) * G).sum(), X))
    assert_close(gW, numeric_grad(lambda w: (ref(X, w) * G).sum(), W))


@pytest.mark.parametrize(
    "mode, padding, stride, count_include_pad",
    [("max", 0, None, True), ("max", 1, 2, True), ("avg", 1, 1, True), ("avg", ((1, 0), (0, 1)), 2, False)],
)
def test_pool2d_gradient(d2l, needs_autodiff, mode, padding, stride, count_include_pad):
    X = -np.abs(_data(7, 1, 2, 5, 5))  # all negative: -inf padding, never zero padding, for max
    pads = {0: ((0, 0),) * 2, 1: ((1, 1),) * 2}.get(padding, padding)
    strides = (stride or 2,) * 2

    def ref(x):
        return reference.pool2d(x, (2, 2), strides, pads, mode, count_include_pad)

    G = _data(8, *ref(X).shape)
    loss, gX = d2l.value_and_grad(
        lambda x: d2l.reduce_sum(d2l.pool2d(x, 2, mode, stride, padding, count_include_pad) * d2l.tensor(G))
    )(d2l.tensor(X))
    assert_close(loss, (ref(X) * G).sum())
    assert_close(gX, numeric_grad(lambda x: (ref(x) * G).sum(), X))


def test_value_and_grad_on_the_numpy_backend_says_why_not():
    if "numpy" not in d2lconv.available_backends():
        pytest.skip("numpy backend not installed")
    with pytest.raises(NotImplementedError, match="numpy.*no gradients"):
        d2lconv.numpy.value_and_grad(lambda x: x.sum())


@pytest.mark.skipif(BACKEND == "numpy", reason="the numpy backend has no gradients")
def test_value_and_grad_keeps_its_backend_outside_the_namespace(d2l):
    grad_fn = d2l.value_and_grad(lambda x: d2l.reduce_sum(d2l.abs(x)))
    with d2lconv.use_backend("numpy"):
        value, grad = grad_fn(np.array([-1.0, 2.0], np.float32))
    assert_close(value, 3.0)
    assert_close(grad, [-1.0, 1.0])


@pytest.mark.parametrize("tape_inside", [True, False])
def test_operator_gradients_inside_a_tf_function(d2l, tape_inside):
    """TF lowers the public operators to NCHW kernels whose CPU gradients TF lacks (conv, max):
    a traced graph, differentiated by a tape inside it or around it, must still have gradients."""
    if BACKEND != "tensorflow":
        pytest.skip(f"tf.function is TensorFlow's (backend under test: {BACKEND})")
    import tensorflow as tf

    X, W = _data(9, 2, 2, 6, 5), _data(10, 3, 2, 3, 3)
    pads = ((1, 0), (2, 1))

    def ref(x, w):
        return reference.pool2d(reference.conv2d(x, w, None, (1, 1), pads), (2, 2), (1, 1), ((1, 1),) * 2, "max")

    G = _data(11, *ref(X, W).shape)

    def loss(x, w):
        y = d2l.pool2d(d2l.conv2d(x, w, None, 1, pads), 2, "max", 1, 1)
        return d2l.reduce_sum(y * d2l.tensor(G))

    def with_tape(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            value = loss(x, w)
        return value, tape.gradient(value, [x, w])

    x, w = d2l.tensor(X), d2l.tensor(W)
    if tape_inside:
        value, (gX, gW) = tf.function(with_tape, autograph=False)(x, w)
    else:
        traced = tf.function(loss, autograph=False)
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            value = traced(x, w)
        gX, gW = tape.gradient(value, [x, w])
    assert_close(value, (ref(X, W) * G).sum(), tol=1e-4)
    assert_close(gX, numeric_grad(lambda x: (ref(x, W) * G).sum(), X), tol=1e-4)
    assert_close(gW, numeric_grad(lambda w: (ref(X, w) * G).sum(), W), tol=1e-4)


@pytest.mark.parametrize("stride, padding", [(2, 0), (1, 1)])
def test_max_pool2d_gradient_of_a_tie_goes_to_its_first_cell(d2l, needs_autodiff, stride, padding):
    """Where a window's maximum occurs more than once, its gradient goes to the first of those
    cells in row-major order, on every backend (as torch's and XLA's max pooling do)."""
    X = np.array([[[[1, 1, 0, 2], [1, 1, 2, 2], [3, 0, 0, 0], [3, 3, 0, 0]]]], np.float32)
    window, strides, pads = (2, 2), (stride, stride), ((padding, padding),) * 2
    G = _data(9, *reference.pool2d(X, window, strides, pads).shape)
    expected = np.zeros_like(X)
    Xp = np.pad(X[0, 0], padding, constant_values=-np.inf)
    for (i, j), g in np.ndenumerate(G[0, 0]):
        cells = Xp[i * stride:i * stride + 2, j * stride:j * stride + 2]
        r, c = np.unravel_index(np.argmax(cells), cells.shape)  # argmax: the first maximum
        expected[0, 0, i * stride + r - padding, j * stride + c - padding] += g
    _, gX = d2l.value_and_grad(lambda x: d2l.reduce_sum(d2l.pool2d(x, 2, "max", stride, padding) * d2l.tensor(G)))(d2l.tensor(X))
    assert_close(gX, expected)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's two pooling lowerings are tested in the jax env")
@pytest.mark.parametrize("sliced", [True, False], ids=["strided slices", "reduce_window"])
@pytest.mark.parametrize(
    "mode, stride, pads, count_include_pad",
    [("max", (2, 2), ((0, 0), (0, 0)), True), ("max", (1, 2), ((1, 1), (0, 1)), True),
     ("avg", (2, 2), ((0, 0), (0, 0)), True), ("avg", (2, 1), ((1, 0), (1, 1)), False)],
)
def test_both_jax_pooling_lowerings_give_the_reference_values_and_gradients(d2l, monkeypatch, sliced, mode, stride, pads, count_include_pad):
    """JAX pools by strided slices where XLA's CPU max skips NaN and by ``reduce_window``
    elsewhere; whichever this machine uses, the other is checked here too (finite inputs)."""
    import jax

    module = importlib.import_module("d2lconv.backends.jax")
    monkeypatch.setattr(module, "_ynnpack_reductions", lambda: sliced)
    window = (3, 2)
    if mode == "max":
        pool = module._max_pool_fn(module.NCHW, window, stride, pads)
    else:
        pool = module._avg_pool_fn(module.NCHW, window, stride, pads, count_include_pad)
    X = _data(13, 2, 2, 6, 7)

    def ref(x):
        return reference.pool2d(x, window, stride, pads, mode, count_include_pad)

    G = _data(14, *ref(X).shape)
    assert_close(pool(X.astype(np.float32)), ref(X))
    gX = jax.grad(lambda x: (pool(x) * G.astype(np.float32)).sum())(X.astype(np.float32))
    assert_close(gX, numeric_grad(lambda x: (ref(x) * G).sum(), X))
