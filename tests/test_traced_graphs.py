"""The operators inside a user's own compiled function, against the NumPy reference at two input
shapes: TensorFlow's ``tf.function`` with sizes unknown until the graph runs (an
``input_signature`` with None, or ``reduce_retracing=True`` after a few shapes), and d2lconv's
first call on TensorFlow made while such a function traces; ``torch.compile``, whose tracer
cannot run d2lconv's planning of a new configuration (it runs as Python between two graphs);
``jax.jit`` and ``jax.vmap``; and MXNet's hybridized blocks, whose symbols the operators refuse."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import BACKEND, assert_close
from d2lconv import reference
from test_layers import expected_lenet_params, lenet_reference

rng = np.random.default_rng(5)
W = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
BIAS = rng.standard_normal(4).astype(np.float32)
SHAPES = [(2, 3, 9, 7), (1, 3, 6, 11)]  # batch, channels, height, width: one function serves both

CASES = {  # name: (rank of the input, the operator of (d2l, x, weights, bias), its reference)
    "conv2d, stride 2, uneven pads, bias": (
        4, lambda d2l, x, w, b: d2l.conv2d(x, w, b, 2, ((1, 0), (2, 1))),
        lambda X: reference.conv2d(X, W, BIAS, (2, 2), ((1, 0), (2, 1)))),
    "conv2d, padding 'same'": (4, lambda d2l, x, w, b: d2l.conv2d(x, w[:, :, :, :1], padding="same"),
                               lambda X: reference.conv2d(X, W[:, :, :, :1], None, (1, 1), ((1, 1), (0, 0)))),
    "max pooling, padded": (4, lambda d2l, x, w, b: d2l.pool2d(x, 3, stride=1, padding=1),
                            lambda X: reference.pool2d(X, (3, 3), (1, 1), ((1, 1), (1, 1)))),
    "average pooling, padding not counted": (
        4, lambda d2l, x, w, b: d2l.pool2d(x, 3, "avg", stride=2, padding=1, count_include_pad=False),
        lambda X: reference.pool2d(X, (3, 3), (2, 2), ((1, 1), (1, 1)), mode="avg", count_include_pad=False)),
    "tiling max pooling": (4, lambda d2l, x, w, b: d2l.pool2d(x, 2), lambda X: reference.pool2d(X, (2, 2), (2, 2))),
    "pooling of (C, H, W)": (3, lambda d2l, x, w, b: d2l.pool2d(x, 2, "avg"),
                             lambda X: reference.pool2d(X[None], (2, 2), (2, 2), mode="avg")[0]),
    "corr2d": (2, lambda d2l, x, w, b: d2l.corr2d(x, w[0, 0]), lambda X: reference.corr2d(X, W[0, 0])),
    "corr2d_multi_in_out": (3, lambda d2l, x, w, b: d2l.corr2d_multi_in_out(x, w),
                            lambda X: reference.corr2d_multi_in_out(X, W)),
    "corr2d_multi_in_out_1x1": (3, lambda d2l, x, w, b: d2l.corr2d_multi_in_out_1x1(x, w[:, :, :1, :1]),
                                lambda X: reference.corr2d_multi_in_out_1x1(X, W[:, :, :1, :1])),
}


def _inputs(rank):
    for shape in SHAPES:
        yield rng.standard_normal(shape).astype(np.float32)[(0,) * (4 - rank)]


def _needs(backend, what):
    if BACKEND != backend:
        pytest.skip(f"{what} is {backend}'s (backend under test: {BACKEND})")


@pytest.mark.parametrize("name", CASES)
def test_operators_in_a_tf_function_whose_sizes_are_known_only_when_it_runs(d2l, name):
    _needs("tensorflow", "tf.function")
    import tensorflow as tf

    rank, op, expected = CASES[name]
    spec = tf.TensorSpec([None, 3, None, None][4 - rank:])  # only the channels known
    traced = tf.function(lambda x: op(d2l, x, W, BIAS), input_signature=[spec], autograph=False)
    for X in _inputs(rank):
        assert_close(traced(X), expected(X))


@pytest.mark.parametrize("name", CASES)
def test_operators_inside_torch_compile(d2l, name):
    """A configuration first seen while torch.compile traces (its planning runs as Python between
    two graphs), then another input shape (torch recompiles, its sizes now symbolic)."""
    _needs("torch", "torch.compile")
    import torch

    rank, op, expected = CASES[name]
    w, bias = d2l.tensor(W), d2l.tensor(BIAS)
    compiled = torch.compile(lambda x: op(d2l, x, w, bias))
    for X in _inputs(rank):
        assert_close(compiled(d2l.tensor(X)), expected(X))


def test_a_model_first_called_inside_torch_compile(d2l):
    """Its first call (which builds it: parameters made from NumPy) runs outside the graph, and
    so does the check of an input shape it has not seen; then the built forward pass compiles."""
    _needs("torch", "torch.compile")
    import torch

    compiled = torch.compile(d2l.LeNet(seed=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in (3, 5):
            X = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
            assert_close(compiled(d2l.tensor(X)), lenet_reference(expected_lenet_params(0), X.astype(np.float64)),
                         tol=1e-4)
    # what the tracer said of building through NumPy: torch.tensor of a traced tensor, per parameter
    assert not [w.message for w in caught if "copy construct" in str(w.message)]


@pytest.mark.parametrize("name", CASES)
def test_operators_inside_jax_jit(d2l, name):
    _needs("jax", "jax.jit")
    import jax

    rank, op, expected = CASES[name]
    w, bias = d2l.tensor(W), d2l.tensor(BIAS)
    compiled = jax.jit(lambda x: op(d2l, x, w, bias))
    for X in _inputs(rank):
        assert_close(compiled(X), expected(X))


def test_corr2d_mapped_by_jax_vmap(d2l):
    """The book's corr2d of one image and one kernel, mapped over a stack of both."""
    _needs("jax", "jax.vmap")
    import jax

    images, kernels = rng.standard_normal((4, 6, 8)).astype(np.float32), W[:, 0]
    expected = np.stack([reference.corr2d(x, k) for x, k in zip(images, kernels)])
    assert_close(jax.vmap(d2l.corr2d)(images, kernels), expected)


def test_a_first_call_made_while_a_tf_function_traces_leaves_no_graph_tensor_behind(tmp_path):
    """The TF backend loads at d2lconv's first call on it; made inside a trace, the tensors it
    keeps must still be eager, or every later graph fails (\"defined in FuncGraph ... which is
    out of scope\"), and AutoGraph (on by default) must find nothing to warn about while the
    backend is looked for and imported. A fresh interpreter (this one has loaded the backend)
    running a file (AutoGraph converts only functions whose source it can read)."""
    _needs("tensorflow", "tf.function")
    script = tmp_path / "first_call_in_a_trace.py"
    script.write_text("""import numpy as np, tensorflow as tf, d2lconv


@tf.function
def first(x):
    return d2lconv.pool2d(x, 2)


@tf.function
def second(x):
    return d2lconv.pool2d(x, 2, padding=1, stride=1)


X = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
print(float(tf.reduce_sum(first(X))), float(tf.reduce_sum(second(X))))
""")
    env = {**os.environ, "D2LCONV_BACKEND": "tensorflow"}  # no set_backend: the first call looks
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AutoGraph" not in done.stderr + done.stdout, done.stderr[-2000:]
    X = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    expected = [reference.pool2d(X, (2, 2), (2, 2)).sum(),
                reference.pool2d(X, (2, 2), (1, 1), ((1, 1), (1, 1))).sum()]
    np.testing.assert_allclose([float(v) for v in done.stdout.split()], expected, rtol=1e-6)


def test_operators_on_a_hybridized_blocks_symbols_say_mxnet_cannot(d2l):
    """MXNet traces a hybridized block with symbols, which have no shapes for d2lconv to plan
    with: a block of the user's own that calls the operators runs eagerly and says so when
    hybridized (d2lconv's layers hybridize; see README's support table)."""
    _needs("mxnet", "hybridize")
    import mxnet as mx
    from mxnet.gluon import nn

    class ConvThenPool(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return d2l.pool2d(d2l.conv2d(x, W, BIAS, 2, ((1, 0), (2, 1))), 2)

    block, X = ConvThenPool(), next(_inputs(4))
    expected = reference.pool2d(reference.conv2d(X, W, BIAS, (2, 2), ((1, 0), (2, 1))), (2, 2), (2, 2))
    assert_close(block(mx.np.array(X)), expected)
    block.hybridize()
    with pytest.raises(NotImplementedError, match="backend 'mxnet'.*symbols of a hybridized block"):
        block(mx.np.array(X))
