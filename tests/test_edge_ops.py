"""Hostile inputs to the operators and tensors: the edge semantics of docs/CONTRACT.md, on every
backend, against the NumPy reference or the stated error (type and message)."""

import importlib
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import d2lconv
from conftest import BACKEND
from d2lconv import args, backend, reference

NAN, INF = np.nan, np.inf
SPECIAL = np.array(
    [[1, NAN, 3, 4, -2], [5, 6, 7, 8, 0], [-INF, -INF, 1, 2, INF], [-INF, -INF, 3, 4, 1], [2, 1, 0, -1, -2]],
    np.float32,
)
HAS_FLOAT64 = BACKEND != "jax" or __import__("jax").config.jax_enable_x64
NO_FLOAT64 = "float64 on jax needs JAX_ENABLE_X64 (tested in test_tensors)"


class F32:
    """NumPy constructors in float32 (float64 NumPy arrays are float64 tensors on the numpy backend)."""

    @staticmethod
    def zeros(shape):
        return np.zeros(shape, np.float32)

    @staticmethod
    def ones(shape):
        return np.ones(shape, np.float32)


def _np(x):
    return d2lconv.to_numpy(x)


def _pool_ref(X, window, mode="max", stride=None, pads=((0, 0), (0, 0)), count=True):
    X = np.asarray(X, np.float64)
    X4 = X.reshape((1,) * (4 - X.ndim) + X.shape)
    Y = reference.pool2d(X4, window, stride or window, pads, mode, count)
    return Y.reshape(X.shape[:-2] + Y.shape[-2:])


def _same(actual, expected, dtype=np.float32, tol=1e-5):
    """Values, shape, dtype, and NaN/infinity positions exactly as expected."""
    actual = _np(actual)
    assert actual.dtype == dtype, actual.dtype
    assert actual.shape == np.shape(expected), (actual.shape, np.shape(expected))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, equal_nan=True)


# --- NaN and infinities ---------------------------------------------------------------------

@pytest.mark.parametrize("window, stride, padding", [(2, 1, 0), (2, None, 0), (3, 2, 1), (2, 1, 1), ((1, 3), 1, (0, 1))])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_propagates_nan_and_infinities_like_numpy(d2l, mode, window, stride, padding):
    Y = d2l.pool2d(SPECIAL, window, mode, stride, padding)
    w = args.int_pair(window, "w")
    s = w if stride is None else args.stride_pair(stride)
    _same(Y, _pool_ref(SPECIAL, w, mode, s, args.padding_pairs(padding, w, s)))


# 1,440 and 69,120 elements: TF reduces tiles in one step, then in two; JAX, where its max
# skips NaN, checks a small input in its graph and a large one on the host
@pytest.mark.parametrize("batch", [1, 48])
@pytest.mark.parametrize("window", [(2, 2), (4, 3), (1, 2)])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_of_tiling_windows_propagates_nan_and_infinities_like_numpy(d2l, mode, window, batch):
    """Windows that tile the input (stride = window, unpadded; TF without oneDNN pools them by
    reductions), small and large, NaN, infinities and a window of -inf included. Large inputs
    also catch jaxlib 0.10.2's CPU max, which skips NaN beyond a few thousand elements."""
    X = np.random.default_rng(batch).standard_normal((batch, 3, 20, 24)).astype(np.float32)
    X[0, 0, :4, :3] = -INF
    X[-1, 1, 5, 7], X[0, 2, 9, 0], X[-1, 2, 19, 23], X[0, 1, 0, 4] = NAN, INF, -INF, INF
    X[0, 1, 1, 5] = -INF
    _same(d2l.pool2d(X, window, mode), _pool_ref(X, window, mode))


@pytest.mark.parametrize("checked_by", ["numpy", "numpy after reading the context", "framework"])
def test_max_pool_finds_nan_by_either_check(d2l, monkeypatch, checked_by):
    """Backends whose max pooling skips NaN check the input first: through NumPy up to a size
    (MXNet: for host arrays, the context read where a GPU exists), beyond it by the framework's
    own reduction. Each must see NaN and -inf (SPECIAL is small, so the limit is lowered to reach
    the framework's check)."""
    module = importlib.import_module(f"d2lconv.backends.{BACKEND}")
    if not hasattr(module, "FINITE_IN_NUMPY_UP_TO"):
        pytest.skip(f"the {BACKEND} backend's max pooling keeps NaN without a check by size")
    if checked_by == "framework":
        monkeypatch.setattr(module, "FINITE_IN_NUMPY_UP_TO", 0)
    elif checked_by != "numpy":
        if not hasattr(module, "ALL_ON_HOST"):
            pytest.skip(f"the {BACKEND} backend checks without reading an array's context")
        monkeypatch.setattr(module, "ALL_ON_HOST", False)
    X = np.stack([SPECIAL, np.nan_to_num(SPECIAL, nan=1.0)])[:, None]
    for padding in (0, 1):
        _same(d2l.pool2d(X, 2, "max", 1, padding), _pool_ref(X, (2, 2), "max", (1, 1), ((padding,) * 2,) * 2))


def test_max_pool_of_huge_finite_values_is_exact(d2l):
    """Finite values whose squares or sums overflow float32 (a quick finiteness check may take
    them for infinities and send them down the exact path) pool to NumPy's values."""
    X = np.array([[3e38, -3e38, 1e30], [-1e20, 2e19, -np.finfo(np.float32).max], [1.0, -2.0, 5e37]], np.float32)
    for padding in (0, 1):
        _same(d2l.pool2d(X, 2, "max", 1, padding), _pool_ref(X, (2, 2), "max", (1, 1), ((padding,) * 2,) * 2))


def test_max_pool_of_neg_inf_with_padding_stays_neg_inf(d2l):
    Y = d2l.pool2d(np.full((2, 3, 3), -INF, np.float32), 2, stride=1, padding=1)
    _same(Y, np.full((2, 4, 4), -INF))
    lowest = np.finfo(np.float32).min  # a real lowest value is kept, not turned into -inf
    _same(d2l.pool2d(np.full((3, 3), lowest, np.float32), 2, stride=1, padding=1), np.full((4, 4), lowest))


def test_convolution_with_nan_and_infinities_matches_the_reference(d2l):
    W = np.ones((1, 1, 2, 2), np.float32)
    Y = d2l.conv2d(SPECIAL[None, None], W, padding=1)
    _same(Y, reference.conv2d(SPECIAL[None, None], W, None, (1, 1), ((1, 1), (1, 1))))


finite = st.floats(-100, 100, width=32, allow_subnormal=False)  # frameworks may flush subnormals to 0
specials = st.sampled_from([NAN, INF, -INF])
cells = st.one_of(finite, finite, finite, specials)


@st.composite
def pool_cases(draw):
    shape = draw(st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)))
    X = draw(hnp.arrays(np.float32, shape, elements=cells))
    window = (draw(st.integers(1, min(3, shape[2] + 1))), draw(st.integers(1, min(3, shape[3] + 1))))
    pads = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in window)
    pads = tuple(p if n + sum(p) >= k else (k - 1, k - 1) for p, n, k in zip(pads, shape[2:], window))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return X, window, stride, pads


@given(case=pool_cases(), mode=st.sampled_from(["max", "avg"]), count=st.booleans())
def test_property_pooling_with_nan_and_infinities(d2l, case, mode, count):
    X, window, stride, pads = case
    if any(n + sum(p) < k for n, p, k in zip(X.shape[2:], pads, window)):
        return  # a kernel larger than the padded input: an error, tested elsewhere
    Y = d2l.pool2d(X, window, mode, stride, pads, count)
    _same(Y, _pool_ref(X, window, mode, stride, pads, count), tol=1e-4)


@given(
    X=hnp.arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(2, 6), st.integers(2, 6)), elements=cells),
    out=st.integers(1, 2), k=st.integers(1, 2), pad=st.integers(0, 1), stride=st.integers(1, 2),
    data=st.data(),
)
def test_property_convolution_with_nan_and_infinities(d2l, X, out, k, pad, stride, data):
    W = data.draw(hnp.arrays(np.float32, (out, X.shape[1], k, k), elements=st.floats(-2, 2, width=32, allow_subnormal=False)))
    expected = reference.conv2d(X, W, None, (stride, stride), ((pad, pad), (pad, pad)))
    _same(d2l.conv2d(X, W, stride=stride, padding=pad), expected, tol=1e-3)


# --- dtypes ------------------------------------------------------------------------------------

INTS = np.arange(25).reshape(5, 5) - 12


@pytest.mark.parametrize("data", [INTS, INTS.astype(np.int32), INTS > 0, INTS.tolist()], ids=["int64", "int32", "bool", "list"])
def test_integer_and_bool_inputs_are_computed_in_float32(d2l, data):
    X = np.asarray(data, np.float64)
    _same(d2l.pool2d(data, 2, "max", 1, 1), _pool_ref(X, (2, 2), "max", (1, 1), ((1, 1), (1, 1))))
    _same(d2l.pool2d(data, 3, "avg", 2, 1, False), _pool_ref(X, (3, 3), "avg", (2, 2), ((1, 1), (1, 1)), False))
    _same(d2l.corr2d(data, [[1, 2], [3, 4]]), reference.corr2d(X, [[1, 2], [3, 4]]))
    native = d2l.tensor(data)  # an integer (or bool) native tensor is promoted the same way
    W = np.ones((1, 1, 2, 2), np.float32)
    _same(d2l.conv2d(d2l.reshape(native, (1, 1, 5, 5)), W), reference.conv2d(X[None, None], W))


def test_native_float_decides_the_dtype_of_numpy_data(d2l):
    X = d2l.ones(1, 1, 3, 3)
    if BACKEND == "numpy":  # NumPy arrays are this backend's native tensors: two float dtypes
        with pytest.raises(TypeError, match="conv2d: inputs must share one dtype, but X is float32, W is float64"):
            d2l.conv2d(X, np.ones((1, 1, 2, 2), np.float64))
    else:
        _same(d2l.conv2d(X, np.ones((1, 1, 2, 2), np.float64)), np.full((1, 1, 2, 2), 4.0))
    _same(d2l.conv2d(X, [[[[1, 1], [1, 1]]]]), np.full((1, 1, 2, 2), 4.0))  # lists follow everywhere
    if not HAS_FLOAT64:
        pytest.skip(NO_FLOAT64)
    X64 = d2l.tensor(np.ones((1, 1, 3, 3)), "float64")
    _same(d2l.conv2d(X64, np.ones((1, 1, 2, 2))), np.full((1, 1, 2, 2), 4.0), np.float64)
    _same(d2l.conv2d(X64, d2l.tensor(np.ones((1, 1, 2, 2)), "float64"), [1.0]), np.full((1, 1, 2, 2), 5.0), np.float64)
    _same(d2l.pool2d(X64, 2), np.ones((1, 1, 1, 1)), np.float64)
    _same(d2l.corr2d(d2l.reshape(X64, (3, 3)), [[1, 1]]), np.full((3, 2), 2.0), np.float64)


@pytest.mark.parametrize("as_native", [False, True], ids=["numpy", "native"])
def test_float16_is_a_type_error_naming_the_argument(d2l, as_native):
    half = d2l.tensor(SPECIAL, "float16") if as_native else SPECIAL.astype(np.float16)
    message = "has dtype float16; d2lconv's operators compute in float32 or float64"
    with pytest.raises(TypeError, match=f"corr2d: K {message}"):
        d2l.corr2d(SPECIAL, half[:2, :2])
    with pytest.raises(TypeError, match=f"pool2d: X {message}"):
        d2l.pool2d(half, 2)
    with pytest.raises(TypeError, match=f"conv2d: X {message}"):
        d2l.conv2d(d2l.reshape(half, (1, 1, 5, 5)) if as_native else half.reshape(1, 1, 5, 5), np.ones((1, 1, 2, 2)))


def test_corr2d_dtype_message_names_x_and_k(d2l):
    if not HAS_FLOAT64:
        pytest.skip(NO_FLOAT64)
    with pytest.raises(TypeError, match="corr2d: inputs must share one dtype, but X is float32, K is float64"):
        d2l.corr2d(d2l.ones(3, 3), d2l.ones(2, 2, dtype=d2l.float64))


def test_scalars_are_zero_dimensional(d2l):
    assert tuple(d2l.shape(d2l.tensor(3.0))) == ()
    assert tuple(d2l.shape(d2l.tensor(np.float32(3)))) == ()
    assert _np(d2l.tensor(3)).shape == ()


# --- empty sizes -------------------------------------------------------------------------------

def test_empty_batch_channels_and_outputs_give_empty_results(d2l):
    W = F32.ones((3, 2, 2, 2))
    _same(d2l.conv2d(F32.zeros((0, 2, 5, 5)), W, padding=1), F32.zeros((0, 3, 6, 6)))
    _same(d2l.conv2d(F32.ones((2, 2, 5, 5)), W[:0]), F32.zeros((2, 0, 4, 4)))
    bias = np.array([1.0, -2.0, 3.0], np.float32)  # no input channel: each output is its bias
    expected = np.broadcast_to(bias[None, :, None, None], (2, 3, 4, 4))
    _same(d2l.conv2d(F32.zeros((2, 0, 5, 5)), F32.zeros((3, 0, 2, 2)), bias), expected)
    _same(d2l.conv2d(F32.zeros((2, 0, 5, 5)), F32.zeros((3, 0, 2, 2))), F32.zeros((2, 3, 4, 4)))
    _same(d2l.corr2d_multi_in(F32.zeros((0, 4, 4)), F32.zeros((0, 2, 2))), F32.zeros((3, 3)))
    _same(d2l.corr2d_multi_in_out_1x1(F32.zeros((0, 4, 4)), F32.zeros((2, 0, 1, 1))), F32.zeros((2, 4, 4)))
    _same(d2l.pool2d(F32.zeros((0, 5, 5)), 2), F32.zeros((0, 2, 2)))
    _same(d2l.pool2d(F32.zeros((3, 0, 5, 5)), 2, "avg", padding=1), F32.zeros((3, 0, 3, 3)))


def test_a_zero_sized_kernel_or_pooled_plane_is_a_value_error(d2l):
    with pytest.raises(ValueError, match=re.escape("conv2d: W's kernel must be at least 1 x 1, got shape (1, 1, 0, 0)")):
        d2l.conv2d(F32.ones((1, 1, 3, 3)), F32.ones((1, 1, 0, 0)))
    with pytest.raises(ValueError, match=re.escape("corr2d: K's kernel must be at least 1 x 1, got shape (0, 2)")):
        d2l.corr2d(F32.ones((3, 3)), F32.ones((0, 2)))
    with pytest.raises(ValueError, match=re.escape("pool2d: X must have a positive height and width, got shape (1, 0, 4)")):
        d2l.pool2d(F32.zeros((1, 0, 4)), 2, padding=1)


# --- sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call",
    [
        lambda d2l: d2l.conv2d(F32.ones((1, 1, 1, 1)), F32.ones((1, 1, 1, 1)), padding=10**7),
        lambda d2l: d2l.conv2d(F32.ones((1, 1, 1, 1)), F32.ones((1, 1, 1, 1)), padding=((0, 0), (0, 3 * 10**9))),
        lambda d2l: d2l.pool2d(F32.ones((2, 2)), 10**7 + 1, stride=1, padding=10**7),
        lambda d2l: d2l.conv2d(F32.ones((1, 1, 1, 1)), F32.ones((60000, 1, 1, 1)), padding=100),
    ],
    ids=["conv", "one-side", "pool", "output"],
)
def test_huge_padding_is_refused_before_allocating(d2l, call):
    with pytest.raises(ValueError, match=r"with padding .* over the limit of 2,147,483,647 \(2\*\*31 - 1\) elements"):
        call(d2l)
    _same(d2l.conv2d(F32.ones((1, 1, 1, 1)), F32.ones((1, 1, 1, 1))), F32.ones((1, 1, 1, 1)))  # still usable


# --- the cached plans keep every check -----------------------------------------------------------

def test_a_cached_configuration_still_checks_each_call(d2l):
    X, W = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32)
    d2l.conv2d(X, W, stride=(1, 1))
    for _ in range(2):
        with pytest.raises(TypeError, match="stride must be an integer"):
            d2l.conv2d(X, W, stride=(1.0, 1))
        with pytest.raises(TypeError, match="padding must be an int"):
            d2l.conv2d(X, W, padding=True)
    with pytest.raises(TypeError, match="padding must be an int"):
        d2l.conv2d(X, W, padding={0: 1})  # unhashable: checked without the cache
    _same(d2l.conv2d(X, W, padding=[[1, 0], [0, 1]]), reference.conv2d(X, W, None, (1, 1), ((1, 0), (0, 1))))


def test_comp_conv2d_names_its_layer_argument(d2l):
    with pytest.raises(TypeError, match=r"comp_conv2d: conv2d_layer must be a layer or a function .*got 5 \(int\)"):
        d2l.comp_conv2d(5, d2l.ones(3, 3))


# --- gradients -----------------------------------------------------------------------------------

def test_value_and_grad_edges(d2l, needs_autodiff):
    x, w = d2l.ones(2, 3), d2l.ones(3)
    with pytest.raises(ValueError, match=r"value_and_grad: fn must return a scalar \(a 0-d tensor\), got shape \(2, 3\)"):
        d2l.value_and_grad(lambda a: a * 2)(x)
    value, (gx, gw) = d2l.value_and_grad(lambda a, b: d2l.reduce_sum(b * 2), (0, 1))(x, w)
    np.testing.assert_array_equal(_np(gx), np.zeros((2, 3)))
    np.testing.assert_array_equal(_np(gw), np.full(3, 2.0))
    value, g = d2l.value_and_grad(lambda a: d2l.tensor(1.0))(x)  # uses no input at all
    np.testing.assert_array_equal(_np(g), np.zeros((2, 3)))
    assert float(_np(value)) == 1.0
    with pytest.raises(ValueError, match=r"value_and_grad: argnums=\(0, 2\) asks for argument 2, but .* 2 positional"):
        d2l.value_and_grad(lambda a, b: d2l.reduce_sum(a), (0, 2))(x, w)
    with pytest.raises(ValueError, match="argnums must be non-negative"):
        d2l.value_and_grad(lambda a: d2l.reduce_sum(a), -1)
    with pytest.raises(TypeError, match="argnums must be an int or a non-empty tuple of ints"):
        d2l.value_and_grad(lambda a: d2l.reduce_sum(a), "x")
    with pytest.raises(TypeError, match=r"value_and_grad: argument 0 \(in argnums\) has dtype int"):
        d2l.value_and_grad(lambda a: d2l.reduce_sum(a))(np.arange(3))
    with pytest.raises(TypeError, match=r"value_and_grad: argument 1 \(in argnums\) has dtype bool"):
        d2l.value_and_grad(lambda a, b: d2l.reduce_sum(a), (0, 1))(x, np.ones(3, bool))
    with pytest.raises(TypeError, match="value_and_grad: fn must return a scalar tensor, got float"):
        d2l.value_and_grad(lambda a: 1.0)(x)


# --- names and selection -------------------------------------------------------------------------

def test_every_alias_is_a_namespace():
    for alias, name in backend.ALIASES.items():
        if name in d2lconv.available_backends():
            assert getattr(d2lconv, alias) is getattr(d2lconv, name)
    from d2lconv import np as d2l_np

    assert d2l_np.backend_name == "numpy"


def test_default_backend_is_resolved_once_and_follows_the_environment(monkeypatch):
    monkeypatch.setattr(backend, "_global_name", None)
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend.refresh()
    first = backend.get_backend()
    searched = []
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: searched.append(name))
    assert [backend.get_backend() for _ in range(3)] == [first] * 3
    assert searched == []  # cached: no search for installed frameworks per call
    monkeypatch.setenv(backend.ENV_VAR, "np")
    assert backend.get_backend() == "numpy"  # the variable is read at every call
    monkeypatch.delenv(backend.ENV_VAR)
    assert backend.get_backend() == first
    monkeypatch.undo()
    backend.refresh()


def test_cross_entropy_of_an_empty_batch_is_nan(d2l):
    """The mean over no examples is NaN, as NumPy's (MXNet's mean of nothing is 0)."""
    for logits in (np.zeros((0, 10), np.float32), d2l.tensor(np.zeros((0, 10), np.float32))):
        loss = d2l.cross_entropy(logits, np.zeros(0, np.int64))
        assert d2l.shape(loss) == () and np.isnan(float(d2l.to_numpy(loss)))
