"""The operators inside a user's own ``tf.function``: sizes unknown until the graph runs (an
``input_signature`` with None, or ``reduce_retracing=True`` after a few shapes), and d2lconv's
first call on TensorFlow made while such a function traces. Compared with the NumPy reference at
two input shapes through one traced graph."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, assert_close
from d2lconv import reference

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason=f"tf.function is TensorFlow's (backend under test: {BACKEND})")

rng = np.random.default_rng(5)
W = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
BIAS = rng.standard_normal(4).astype(np.float32)
SHAPES = [(2, 3, 9, 7), (1, 3, 6, 11)]  # batch, channels, height, width: one graph serves both

CASES = {  # name: (rank of the traced input, the operator, its reference)
    "conv2d, stride 2, uneven pads, bias": (4, lambda d2l, x: d2l.conv2d(x, W, BIAS, 2, ((1, 0), (2, 1))),
                                            lambda X: reference.conv2d(X, W, BIAS, (2, 2), ((1, 0), (2, 1)))),
    "conv2d, padding 'same'": (4, lambda d2l, x: d2l.conv2d(x, W[:, :, :, :1], padding="same"),
                               lambda X: reference.conv2d(X, W[:, :, :, :1], None, (1, 1), ((1, 1), (0, 0)))),
    "max pooling, padded": (4, lambda d2l, x: d2l.pool2d(x, 3, stride=1, padding=1),
                            lambda X: reference.pool2d(X, (3, 3), (1, 1), ((1, 1), (1, 1)))),
    "average pooling, padding not counted": (
        4, lambda d2l, x: d2l.pool2d(x, 3, "avg", stride=2, padding=1, count_include_pad=False),
        lambda X: reference.pool2d(X, (3, 3), (2, 2), ((1, 1), (1, 1)), mode="avg", count_include_pad=False)),
    "tiling max pooling": (4, lambda d2l, x: d2l.pool2d(x, 2), lambda X: reference.pool2d(X, (2, 2), (2, 2))),
    "pooling of (C, H, W)": (3, lambda d2l, x: d2l.pool2d(x, 2, "avg"),
                             lambda X: reference.pool2d(X[None], (2, 2), (2, 2), mode="avg")[0]),
    "corr2d": (2, lambda d2l, x: d2l.corr2d(x, W[0, 0]), lambda X: reference.corr2d(X, W[0, 0])),
    "corr2d_multi_in_out": (3, lambda d2l, x: d2l.corr2d_multi_in_out(x, W),
                            lambda X: reference.corr2d_multi_in_out(X, W)),
    "corr2d_multi_in_out_1x1": (3, lambda d2l, x: d2l.corr2d_multi_in_out_1x1(x, W[:, :, :1, :1]),
                                lambda X: reference.corr2d_multi_in_out_1x1(X, W[:, :, :1, :1])),
}


@pytest.mark.parametrize("name", CASES)
def test_operators_in_a_graph_whose_sizes_are_known_only_when_it_runs(d2l, name):
    import tensorflow as tf

    rank, op, expected = CASES[name]
    spec = tf.TensorSpec([None, 3, None, None][4 - rank:])  # only the channels known
    traced = tf.function(lambda x: op(d2l, x), input_signature=[spec], autograph=False)
    for shape in SHAPES:
        X = rng.standard_normal(shape).astype(np.float32)[(0,) * (4 - rank)]
        assert_close(traced(X), expected(X))


def test_a_first_call_made_while_a_tf_function_traces_leaves_no_graph_tensor_behind(tmp_path):
    """The TF backend loads at d2lconv's first call on it; made inside a trace, the tensors it
    keeps must still be eager, or every later graph fails (\"defined in FuncGraph ... which is
    out of scope\"), and AutoGraph (on by default) must find nothing to warn about while the
    backend is looked for and imported. A fresh interpreter (this one has loaded the backend)
    running a file (AutoGraph converts only functions whose source it can read)."""
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
