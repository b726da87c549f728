"""Layers, LeNet, parameters and training steps on the backend under test.

Ground truth: the initialisation contract restated with NumPy, a NumPy forward of LeNet built on
the float64 reference, central differences of that forward, and the book's printed rows.
"""

import math

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND, assert_close
from d2lconv import reference

BOOK_SUMMARY = [
    "Conv2d output shape:\t (1, 6, 28, 28)",
    "Sigmoid output shape:\t (1, 6, 28, 28)",
    "AvgPool2d output shape:\t (1, 6, 14, 14)",
    "Conv2d output shape:\t (1, 16, 10, 10)",
    "Sigmoid output shape:\t (1, 16, 10, 10)",
    "AvgPool2d output shape:\t (1, 16, 5, 5)",
    "Flatten output shape:\t (1, 400)",
    "Linear output shape:\t (1, 120)",
    "Sigmoid output shape:\t (1, 120)",
    "Linear output shape:\t (1, 84)",
    "Sigmoid output shape:\t (1, 84)",
    "Linear output shape:\t (1, 10)",
]
LENET_SHAPES = {
    "net.0.weight": (6, 1, 5, 5), "net.0.bias": (6,), "net.3.weight": (16, 6, 5, 5), "net.3.bias": (16,),
    "net.7.weight": (120, 400), "net.7.bias": (120,), "net.9.weight": (84, 120), "net.9.bias": (84,),
    "net.11.weight": (10, 84), "net.11.bias": (10,),
}
NATIVE_MODULE = {
    "torch": "torch.nn.Module", "tensorflow": "tensorflow.Module", "jax": "flax.nnx.Module",
    "mxnet": "mxnet.gluon.Block",
}


def expected_lenet_params(seed):
    """Xavier-uniform weights drawn in forward order from default_rng(seed); zero biases."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in LENET_SHAPES.items():
        if name.endswith("weight"):
            receptive = int(np.prod(shape[2:]))
            bound = math.sqrt(6 / ((shape[0] + shape[1]) * receptive))
            params[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:
            params[name] = np.zeros(shape, np.float32)
    return params


def lenet_reference(p, X):
    """LeNet's forward in float64 NumPy on the reference operators."""
    sigmoid = reference.sigmoid
    pool = lambda z: reference.pool2d(z, (2, 2), (2, 2), mode="avg")  # noqa: E731
    h = pool(sigmoid(reference.conv2d(X, p["net.0.weight"], p["net.0.bias"], padding=((2, 2), (2, 2)))))
    h = pool(sigmoid(reference.conv2d(h, p["net.3.weight"], p["net.3.bias"])))
    h = h.reshape(len(X), -1)
    h = sigmoid(h @ p["net.7.weight"].T + p["net.7.bias"])
    h = sigmoid(h @ p["net.9.weight"].T + p["net.9.bias"])
    return h @ p["net.11.weight"].T + p["net.11.bias"]


def cross_entropy_reference(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def _batch(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


def _built_lenet(d2l, seed=0):
    net = d2l.LeNet(seed=seed)
    net(np.zeros((1, 1, 28, 28), np.float32))
    return net


def test_lenet_is_a_native_model(d2l):
    if BACKEND == "numpy":
        pytest.skip("the numpy backend's modules are plain Python objects (forward only)")
    module_path, _, class_name = NATIVE_MODULE[BACKEND].rpartition(".")
    native_class = getattr(__import__(module_path, fromlist=[class_name]), class_name)
    net = d2l.LeNet()
    assert isinstance(net, native_class)
    assert net.lr == 0.1


def test_layer_summary_prints_the_books_rows(d2l, capsys):
    rows = d2l.LeNet(seed=0).layer_summary((1, 1, 28, 28))
    assert rows == BOOK_SUMMARY
    assert capsys.readouterr().out.splitlines() == BOOK_SUMMARY


def test_same_seed_same_weights(d2l):
    params = d2l.get_params(_built_lenet(d2l, seed=3))
    expected = expected_lenet_params(3)
    assert list(params) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(params[name], expected[name], err_msg=name)


def test_global_seed(d2l):
    d2lconv.seed(5)
    first = d2l.get_params(_built_lenet(d2l, seed=None))
    d2lconv.seed(5)
    second = d2l.get_params(_built_lenet(d2l, seed=None))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_lenet_forward_matches_the_reference(d2l):
    net = _built_lenet(d2l)
    X, _ = _batch()
    assert_close(net(d2l.tensor(X)), lenet_reference(expected_lenet_params(0), X.astype(np.float64)), tol=1e-4)


def test_lenet_gradients_match_central_differences(d2l, needs_autodiff):
    net = _built_lenet(d2l)
    X, y = _batch()
    params = {k: v.astype(np.float64) for k, v in expected_lenet_params(0).items()}
    loss, grads = d2l.value_and_grad(lambda m, X, y: d2l.cross_entropy(m(X), y))(net, d2l.tensor(X), y)
    assert sorted(grads) == sorted(LENET_SHAPES)
    X64 = X.astype(np.float64)
    assert_close(loss, cross_entropy_reference(lenet_reference(params, X64), y), tol=1e-5)
    rng = np.random.default_rng(0)
    for name, shape in LENET_SHAPES.items():
        grad = d2lconv.to_numpy(grads[name])
        assert grad.shape == shape
        for _ in range(3):  # a few coordinates of every parameter
            index = tuple(int(rng.integers(0, n)) for n in shape)
            eps = 1e-5
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = params[name].copy(), params[name].copy()
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric = (
                cross_entropy_reference(lenet_reference(plus, X64), y)
                - cross_entropy_reference(lenet_reference(minus, X64), y)
            ) / (2 * eps)
            assert abs(grad[index] - numeric) <= 1e-4 + 1e-4 * abs(numeric), (name, index)


def test_five_sgd_steps_lower_the_loss_from_the_reference_start(d2l, needs_autodiff):
    net = _built_lenet(d2l)
    X, y = _batch(8)
    step = d2l.value_and_grad(lambda m, X, y: d2l.cross_entropy(m(X), y))
    losses = []
    for _ in range(5):
        loss, grads = step(net, X, y)
        d2l.sgd(net, grads, net.lr)
        losses.append(float(d2lconv.to_numpy(loss)))
    start = cross_entropy_reference(lenet_reference(expected_lenet_params(0), X.astype(np.float64)), y)
    assert abs(losses[0] - start) < 1e-5
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_save_on_one_backend_load_on_another(d2l, tmp_path):
    """A file written by NumPy stands for any other backend's: canonical names and layouts."""
    params = expected_lenet_params(11)
    path = tmp_path / "lenet.npz"
    np.savez(path, **params)
    net = _built_lenet(d2l, seed=0)
    d2l.load_params(net, path)
    X, _ = _batch()
    assert_close(net(d2l.tensor(X)), lenet_reference(params, X.astype(np.float64)), tol=1e-4)
    d2l.save_params(net, tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as again:
        for name in params:
            np.testing.assert_array_equal(again[name], params[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.npz", "lenet.npz"]  # no temporary left


def test_mismatched_params_leave_the_model_unchanged(d2l):
    net = _built_lenet(d2l, seed=0)
    before = d2l.get_params(net)
    wrong_shape = dict(expected_lenet_params(1), **{"net.7.weight": np.zeros((120, 399), np.float32)})
    with pytest.raises(ValueError, match=r"net.7.weight: shape \(120, 399\), expected \(120, 400\)"):
        d2l.set_params(net, wrong_shape)
    renamed = dict(expected_lenet_params(1))
    renamed["net.7.kernel"] = renamed.pop("net.7.weight")
    with pytest.raises(ValueError, match=r"missing \['net.7.weight'\]; unexpected \['net.7.kernel'\]"):
        d2l.set_params(net, renamed)
    after = d2l.get_params(net)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_unbuilt_model_says_how_to_build_it(d2l):
    with pytest.raises(ValueError, match=r"have no parameters yet; call the model once"):
        d2l.get_params(d2l.LeNet())
    with pytest.raises(TypeError, match="model must be a d2lconv layer or model"):
        d2l.get_params(object())


def test_single_layers_match_the_reference(d2l):
    X = np.random.default_rng(2).standard_normal((2, 3, 7, 6)).astype(np.float32)
    conv = d2l.LazyConv2d(4, kernel_size=3, stride=2, padding=(1, 0), seed=0)
    Y = conv(d2l.tensor(X))
    p = d2l.get_params(conv)
    bound = 1 / math.sqrt(3 * 3 * 3)  # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert p["weight"].shape == (4, 3, 3, 3) and np.abs(p["weight"]).max() <= bound
    assert_close(Y, reference.conv2d(X, p["weight"], p["bias"], (2, 2), ((1, 1), (0, 0))))
    assert_close(d2l.MaxPool2d(3, padding=1, stride=2)(d2l.tensor(X)), reference.pool2d(X, (3, 3), (2, 2), ((1, 1), (1, 1))))
    assert_close(d2l.AvgPool2d(2)(d2l.tensor(X)), reference.pool2d(X, (2, 2), (2, 2), mode="avg"))
    flat = d2l.Flatten()(d2l.tensor(X))
    assert_close(flat, X.reshape(2, -1))  # C-H-W order
    dense = d2l.LazyLinear(5, seed=1)
    out = dense(flat)
    q = d2l.get_params(dense)
    assert q["weight"].shape == (5, 126)
    assert_close(out, X.reshape(2, -1).astype(np.float64) @ q["weight"].T + q["bias"])
    assert_close(d2l.Sigmoid()(d2l.tensor([0.0, 2.0])), reference.sigmoid(np.array([0.0, 2.0])))
    seq = d2l.Sequential(d2l.Flatten(), d2l.LazyLinear(2, bias=False, seed=0))
    seq(d2l.tensor(X))
    assert list(d2l.get_params(seq)) == ["1.weight"]


def test_scratch_conv2d_is_trainable(d2l, needs_autodiff):
    layer = d2l.Conv2D((1, 2), seed=0)
    X = d2l.tensor(np.arange(12.0).reshape(3, 4))
    Y = layer(X)
    p = d2l.get_params(layer)
    assert p["bias"].tolist() == [0.0] and ((p["weight"] >= 0) & (p["weight"] < 1)).all()
    assert_close(Y, reference.corr2d(np.arange(12.0).reshape(3, 4), p["weight"]))
    _, grads = d2l.value_and_grad(lambda m, X: d2l.reduce_sum(m(X)))(layer, X)
    assert_close(grads["bias"], [9.0])  # one per output cell
    assert_close(grads["weight"], [[0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11]])


def test_learning_a_kernel(d2l, needs_autodiff, capsys):
    from d2lconv.examples import learn_kernel

    with d2lconv.use_backend(BACKEND):
        kernel, losses = learn_kernel(seed=0)
    assert np.abs(kernel - [[1.0, -1.0]]).max() < 0.1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("epoch 2, loss ") and len(printed) == 5
    assert losses[-1] < losses[0] / 100


def test_cross_entropy_and_accuracy(d2l):
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], np.float32)
    labels = np.array([0, 2])
    assert_close(d2l.cross_entropy(d2l.tensor(logits), labels), cross_entropy_reference(logits.astype(np.float64), labels))
    assert_close(d2l.cross_entropy(d2l.tensor(logits), d2l.tensor(labels)), cross_entropy_reference(logits.astype(np.float64), labels))
    assert d2l.accuracy(d2l.tensor(logits), labels) == 0.5
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        d2l.cross_entropy(d2l.tensor(logits), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        d2l.cross_entropy(d2l.tensor(logits), np.array([0, 1, 2]))
