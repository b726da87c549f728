"""Randomised agreement with the float64 NumPy reference (hypothesis), float32 within 1e-5.

The cases state padding in every accepted form next to the explicit pairs the reference takes,
so the test restates the contract instead of reusing the code under test.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from conftest import assert_close
from d2lconv import reference


def _array(seed, shape):
    """Standard-normal data, rounded to float32 so both sides see the same numbers."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(np.float64)


@st.composite
def padding_forms(draw, kernel):
    """(padding as the user writes it, the same as ((top, bottom), (left, right)))."""
    form = draw(st.sampled_from(["int", "pair", "pairs", "valid", "same"]))
    if form == "int":
        p = draw(st.integers(0, 3))
        return p, ((p, p), (p, p))
    if form == "pair":
        ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        return (ph, pw), ((ph, ph), (pw, pw))
    if form == "pairs":
        pairs = tuple(tuple(draw(st.integers(0, 3)) for _ in range(2)) for _ in range(2))
        return pairs, pairs
    if form == "valid":
        return "valid", ((0, 0), (0, 0))
    # "same" at stride 1: total k - 1, the odd cell at the end
    return "same", tuple(((k - 1) // 2, k // 2) for k in kernel)


@st.composite
def conv_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding, pads = draw(padding_forms(kernel))
    if padding == "same":
        stride = 1
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    sizes = [draw(st.integers(max(1, k - sum(p)), 9)) for k, p in zip(kernel, pads)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sizes)
    out_channels = draw(st.integers(1, 3))
    return shape, out_channels, kernel, padding, pads, stride, draw(st.integers(0, 2**16))


def _pair(stride):
    return (stride, stride) if isinstance(stride, int) else stride


@given(conv_cases(), st.booleans())
def test_conv2d(d2l, case, with_bias):
    shape, out_channels, kernel, padding, pads, stride, seed = case
    X = _array(seed, shape)
    W = _array(seed + 1, (out_channels, shape[1], *kernel))
    bias = _array(seed + 2, (out_channels,)) if with_bias else None
    Y = d2l.conv2d(
        d2l.tensor(X), d2l.tensor(W), None if bias is None else d2l.tensor(bias), stride, padding
    )
    assert_close(Y, reference.conv2d(X, W, bias, _pair(stride), pads))


@st.composite
def pool_cases(draw):
    window = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding, pads = draw(padding_forms(window))
    # every window keeps at least one input cell: padding smaller than the window
    pads = tuple((min(t, k - 1), min(b, k - 1)) for (t, b), k in zip(pads, window))
    padding = pads if padding != "same" else "same"
    if padding == "same":
        stride = 1
    else:
        stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    sizes = [draw(st.integers(max(1, k - sum(p)), 9)) for k, p in zip(window, pads)]
    rank = draw(st.sampled_from([2, 3, 4]))
    shape = (2, 3, *sizes)[4 - rank :]
    return shape, window, padding, pads, stride, draw(st.integers(0, 2**16))


@given(pool_cases(), st.sampled_from(["max", "avg"]), st.booleans())
def test_pool2d(d2l, case, mode, count_include_pad):
    shape, window, padding, pads, stride, seed = case
    X = _array(seed, shape)  # negative values too: max pooling must not pad with zeros
    Y = d2l.pool2d(d2l.tensor(X), window, mode, stride, padding, count_include_pad)
    X4 = X.reshape((1,) * (4 - len(shape)) + shape)
    expected = reference.pool2d(X4, window, _pair(stride or window), pads, mode, count_include_pad)
    assert_close(Y, expected.reshape(shape[:-2] + expected.shape[-2:]))


@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
    st.integers(0, 3), st.integers(0, 3), st.integers(0, 2**16),
)
def test_corr2d_family_matches_the_books_loops(d2l, c_in, c_out, kh, kw, extra_h, extra_w, seed):
    X = _array(seed, (c_in, kh + extra_h, kw + extra_w))
    K = _array(seed + 1, (c_out, c_in, kh, kw))
    assert_close(d2l.corr2d(d2l.tensor(X[0]), d2l.tensor(K[0, 0])), reference.corr2d(X[0], K[0, 0]))
    assert_close(d2l.corr2d_multi_in(d2l.tensor(X), d2l.tensor(K[0])), reference.corr2d_multi_in(X, K[0]))
    assert_close(d2l.corr2d_multi_in_out(d2l.tensor(X), d2l.tensor(K)), reference.corr2d_multi_in_out(X, K))
    K1 = K[:, :, :1, :1]
    assert_close(
        d2l.corr2d_multi_in_out_1x1(d2l.tensor(X), d2l.tensor(K1)), reference.corr2d_multi_in_out(X, K1)
    )


def test_reference_general_forms_agree_with_the_books_loops():
    X, K = _array(0, (2, 5, 6)), _array(1, (3, 2, 2, 3))
    np.testing.assert_allclose(reference.conv2d(X[None], K)[0], reference.corr2d_multi_in_out(X, K))
    np.testing.assert_allclose(reference.corr2d_multi_in_out_1x1(X, K[:, :, :1, :1]),
                               reference.corr2d_multi_in_out(X, K[:, :, :1, :1]))
    for mode in ("max", "avg"):
        np.testing.assert_allclose(
            reference.pool2d(X[None], (2, 3), (1, 1), mode=mode)[0, 1], reference.pool2d_book(X[1], (2, 3), mode)
        )


def test_conv2d_follows_the_kernel_of_each_call(d2l):
    """Calls of one configuration with other kernels (new tensors, a freed one's successor, or a
    TensorFlow variable changed in place) give each call's own result: no stale kernel is kept."""
    X = _array(0, (1, 2, 7, 6)).astype(np.float32)  # float32: the kernels' fast paths
    Xd = d2l.tensor(X)
    K = [_array(seed, (3, 2, 3, 3)).astype(np.float32) for seed in range(3)]
    live = [d2l.tensor(k) for k in K]
    for i in (0, 1, 0, 2, 2, 1):
        assert_close(d2l.conv2d(Xd, live[i], padding=1), reference.conv2d(X, K[i], padding=((1, 1), (1, 1))))
    del live  # the next kernels may take their memory and ids
    for k in (2 * K[0], 3 * K[0]):
        assert_close(d2l.conv2d(Xd, d2l.tensor(k), padding=1), reference.conv2d(X, k, padding=((1, 1), (1, 1))))
    if d2l.get_backend() == "tensorflow":
        import tensorflow as tf

        K = _array(4, (3, 2, 3, 3)).astype(np.float32)
        variable = tf.Variable(K)
        d2l.conv2d(Xd, variable)
        variable.assign(2 * K)
        assert_close(d2l.conv2d(Xd, variable), reference.conv2d(X, 2 * K))
