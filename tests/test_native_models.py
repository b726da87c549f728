"""Built models run the backend's built operators (no checks, framework calls only) after their
first call: those later calls must still equal the float64 NumPy reference, every padding form,
every layout conversion at a container's edges, and a batch size other than the first."""

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND, assert_close
from d2lconv import reference, training
from d2lconv.interface import ModelLoss
from test_gradients import numeric_grad
from test_layers import cross_entropy_reference, expected_lenet_params, lenet_reference
from test_trainer_cli import _Batches

ASYMMETRIC = ((0, 1), (1, 0))


def _twice(module, d2l, first, second):
    """Build ``module`` on ``first``, then return its output on ``second`` (the built path)."""
    module(d2l.tensor(first))
    return module(d2l.tensor(second))


def test_a_built_lenet_matches_the_reference(d2l):
    rng = np.random.default_rng(3)
    first, second = rng.standard_normal((4, 1, 28, 28)), rng.standard_normal((3, 1, 28, 28))
    net = d2l.LeNet(seed=0)
    assert_close(_twice(net, d2l, first, second), lenet_reference(expected_lenet_params(0), second), tol=1e-4)


@pytest.mark.parametrize("padding", [0, 1, ASYMMETRIC])
def test_built_pooling_matches_the_reference(d2l, padding):
    rng = np.random.default_rng(4)
    first, second = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((1, 3, 7, 6)) - 2
    reference_pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    cases = [
        (d2l.MaxPool2d(3, stride=2, padding=padding), dict(mode="max")),
        (d2l.AvgPool2d(3, stride=2, padding=padding), dict(mode="avg")),
        (d2l.AvgPool2d(3, stride=2, padding=padding, count_include_pad=False), dict(mode="avg", count_include_pad=False)),
    ]
    for layer, options in cases:
        expected = reference.pool2d(second, (3, 3), (2, 2), reference_pads, **options)
        assert_close(_twice(layer, d2l, first, second), expected)


def test_a_built_sequential_converts_layouts_only_at_its_edges(d2l):
    """Conv with asymmetric padding and stride, max pool, flatten (C-H-W order), dense."""
    rng = np.random.default_rng(5)
    first, second = rng.standard_normal((2, 2, 9, 8)), rng.standard_normal((5, 2, 9, 8))
    net = d2l.Sequential(
        d2l.LazyConv2d(4, kernel_size=3, stride=2, padding=ASYMMETRIC, seed=1), d2l.Sigmoid(),
        d2l.MaxPool2d(2, padding=((1, 0), (0, 1))), d2l.Flatten(), d2l.LazyLinear(3, seed=2),
    )
    got = _twice(net, d2l, first, second)
    p = d2l.get_params(net)
    h = reference.conv2d(second, p["0.weight"], p["0.bias"], (2, 2), ASYMMETRIC)
    h = reference.pool2d(reference.sigmoid(h), (2, 2), (2, 2), ((1, 0), (0, 1)), mode="max")
    h = h.reshape(len(h), -1)
    assert_close(got, h @ p["4.weight"].T + p["4.bias"])


def _chain_reference(p, x):
    """The float64 forward pass of the convolution chain below."""
    sigmoid = reference.sigmoid
    h = reference.conv2d(x, p["0.weight"], p["0.bias"], (1, 1), ((1, 1), (1, 1)))
    h = reference.pool2d(sigmoid(h), (2, 2), (2, 2), ((1, 0), (0, 1)), mode="max")
    h = reference.conv2d(h, p["3.weight"], None, (2, 2), ASYMMETRIC)
    h = reference.pool2d(h, (2, 2), (1, 1), mode="avg")
    return reference.conv2d(h, p["5.weight"], p["5.bias"])


def test_convolutions_chained_through_per_channel_layers_match_the_reference(d2l, needs_autodiff):
    """Convolutions chained through per-channel layers (sigmoid, asymmetric max pooling, a
    strided bias-free convolution, average pooling): outputs, gradients and a fused training step
    equal the reference's; the last convolution gives its 2 channels, and each layer called
    alone gives its own."""
    rng = np.random.default_rng(12)
    first, second = rng.standard_normal((2, 2, 11, 10)), rng.standard_normal((3, 2, 11, 10))
    net = d2l.Sequential(
        d2l.LazyConv2d(3, 3, padding=1, seed=1), d2l.Sigmoid(), d2l.MaxPool2d(2, padding=((1, 0), (0, 1))),
        d2l.LazyConv2d(5, 2, stride=2, padding=ASYMMETRIC, bias=False, seed=2), d2l.AvgPool2d(2, stride=1),
        d2l.LazyConv2d(2, 1, seed=3),
    )
    got = _twice(net, d2l, first, second)
    p = {name: value.astype(np.float64) for name, value in d2l.get_params(net).items()}
    assert_close(got, _chain_reference(p, second))
    b = net.d2l_backend
    assert d2l.shape(b.child(net, "0")(d2l.tensor(second))) == (3, 3, 11, 10)

    x = d2l.tensor(second)
    _, grads = d2l.value_and_grad(lambda m, x: d2l.reduce_sum(m(x)))(net, x)
    for name in ("0.weight", "0.bias", "3.weight", "5.weight"):
        index = tuple(int(i) for i in np.unravel_index(rng.integers(0, p[name].size), p[name].shape))
        plus, minus = dict(p), dict(p)
        plus[name], minus[name] = p[name].copy(), p[name].copy()
        plus[name][index] += 1e-6
        minus[name][index] -= 1e-6
        numeric = (_chain_reference(plus, second).sum() - _chain_reference(minus, second).sum()) / 2e-6
        assert abs(d2l.to_numpy(grads[name])[index] - numeric) <= 1e-4 * (1 + abs(numeric)), name

    loss_fn = lambda m, x: d2l.reduce_sum(m(x))  # noqa: E731
    with d2lconv.use_backend(BACKEND):
        training.train_step(loss_fn, 0.01, compile=True)(net, x)
    stepped = {name: value - 0.01 * d2l.to_numpy(grads[name]) for name, value in p.items()}
    for name, value in d2l.get_params(net).items():
        assert_close(value, stepped[name], tol=1e-4)


def _gradient_paths_reference(p, x):
    sigmoid = reference.sigmoid
    h = sigmoid(reference.conv2d(x, p["0.weight"], p["0.bias"], (2, 1), ASYMMETRIC))
    h = sigmoid(reference.conv2d(h, p["2.weight"], None, (1, 2), ((1, 1), (0, 1))))
    h = sigmoid(reference.conv2d(h, p["4.weight"], None, (2, 2)))
    return reference.conv2d(h, p["6.weight"], p["6.bias"])


def test_gradients_of_a_batch_of_37_through_every_convolution_gradient_path(d2l, needs_autodiff):
    """A batch above 32 and not a multiple of 16 (JAX sums the weight gradient over slices of
    16 examples past 32) through convolutions whose input gradients JAX computes three ways:
    a matrix product and col2im for 3 input channels (strided, padded) and for a strided 1 x 1
    kernel, XLA's own for a 2 x 2 kernel over 10 channels. Every weight and bias gradient
    equals the reference's central differences."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((37, 1, 11, 10))
    net = d2l.Sequential(
        d2l.LazyConv2d(3, 3, stride=(2, 1), padding=ASYMMETRIC, seed=1), d2l.Sigmoid(),
        d2l.LazyConv2d(9, (3, 2), stride=(1, 2), padding=((1, 1), (0, 1)), bias=False, seed=2), d2l.Sigmoid(),
        d2l.LazyConv2d(10, 1, stride=2, bias=False, seed=3), d2l.Sigmoid(), d2l.LazyConv2d(2, 2, seed=4),
    )
    net(d2l.tensor(x[:2]))
    p = {name: value.astype(np.float64) for name, value in d2l.get_params(net).items()}
    _, grads = d2l.value_and_grad(lambda m, x: d2l.reduce_sum(m(x)))(net, d2l.tensor(x))
    for name, value in p.items():
        expected = numeric_grad(lambda v: _gradient_paths_reference({**p, name: v}, x).sum(), value)
        assert_close(grads[name], expected, tol=1e-4)


def test_the_trainers_step_gives_the_reference_loss_on_batches_holding_infinities(d2l, needs_autodiff):
    """The Trainer's fused step may compute LeNet's first convolution with channels padded to
    a block (TF, MXNet: 6 become 8, read by the second with zero weights). A zero filter over an
    infinity gives NaN, where the real channels give +-inf and their sigmoid 0 or 1: a batch
    holding an infinity must still give the reference's finite loss, and finite batches before
    and after it too. (Its gradients are NaN, as the reference's: inf * sigmoid' = inf * 0; the
    parameters are put back after each step.)"""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 1, 28, 28))
    hostile = x.copy()
    hostile[0, 0, 3, 4], hostile[2, 0, 20, 10] = np.inf, -np.inf
    labels = np.array([0, 3, 7, 9])
    net = d2l.LeNet(seed=0)
    net(d2l.tensor(x))
    b = net.d2l_backend
    with d2lconv.use_backend(BACKEND):
        step, params = b.train_step(ModelLoss(b), 0.1, True), d2lconv.params.named_params(net)
        start = d2l.get_params(net)
        p = {name: value.astype(np.float64) for name, value in start.items()}
        for batch in (x, hostile, x):
            with np.errstate(over="ignore"):  # exp(-z) of z = -inf in the reference's sigmoid
                want = cross_entropy_reference(lenet_reference(p, batch), labels)
            assert np.isfinite(want)
            loss = step(net, params, b.batch_from_numpy(batch.astype(np.float32)),
                        b.batch_from_numpy(labels.astype(np.int32)))
            assert abs(float(d2l.to_numpy(loss)) - want) <= 1e-4 * (1 + abs(want))
            d2l.set_params(net, start)


def _small_net(d2l, mode, seed):
    pool = d2l.MaxPool2d(2) if mode == "max" else d2l.AvgPool2d(2)
    return d2l.Sequential(d2l.LazyConv2d(2, 3, padding=1, seed=seed), d2l.Sigmoid(), pool, d2l.Flatten(),
                          d2l.LazyLinear(3, seed=seed + 1))


def _small_net_loss(p, mode, x, labels):
    h = reference.sigmoid(reference.conv2d(x, p["0.weight"], p["0.bias"], padding=((1, 1), (1, 1))))
    h = reference.pool2d(h, (2, 2), (2, 2), mode=mode).reshape(len(x), -1)
    return cross_entropy_reference(h @ p["4.weight"].T + p["4.bias"], labels)


def test_the_trainers_step_follows_each_models_own_layers_and_parameters(d2l, needs_autodiff):
    """A backend may share one compiled Trainer step among models of one architecture (JAX
    does): each model's step must still compute its own layers on its own parameters. Three
    models in turn, with parameters of the same shapes: average pooling, max pooling, average
    pooling again with other weights; each step's loss and updated parameters against the
    float64 reference (SGD on central-difference gradients)."""
    rng = np.random.default_rng(21)
    x, labels, lr = rng.standard_normal((5, 1, 6, 6)), np.array([0, 2, 1, 1, 0]), 0.5
    for mode, seed in (("avg", 0), ("max", 0), ("avg", 7)):
        net = _small_net(d2l, mode, seed)
        net(d2l.tensor(x[:1]))
        b = net.d2l_backend
        p = {name: value.astype(np.float64) for name, value in d2l.get_params(net).items()}
        with d2lconv.use_backend(BACKEND):
            step = b.train_step(ModelLoss(b), lr, b.compile_pays_after == 0)
            loss = step(net, d2lconv.params.named_params(net), b.batch_from_numpy(x.astype(np.float32)),
                        b.batch_from_numpy(labels.astype(np.int32)))
        want = _small_net_loss(p, mode, x, labels)
        assert abs(float(d2l.to_numpy(loss)) - want) <= 1e-5 * (1 + abs(want)), mode
        for name, value in d2l.get_params(net).items():
            grad = numeric_grad(lambda v: _small_net_loss({**p, name: v}, mode, x, labels), p[name])
            assert_close(value, p[name] - lr * grad, tol=1e-5)


def _blocked_net(d2l):
    """A convolution of 3 filters reaching a second one through per-channel layers, inside a
    container that is its model's first child: where a backend pads channels to a block (TF,
    MXNet: 8), the first computes 5 zero filters and the second reads them with zero weights."""
    features = d2l.Sequential(d2l.LazyConv2d(3, 3, padding=1, seed=2), d2l.Sigmoid(), d2l.AvgPool2d(2),
                              d2l.LazyConv2d(4, 3, seed=3), d2l.Sigmoid())
    return d2l.Sequential(features, d2l.Flatten(), d2l.LazyLinear(3, seed=4))


def _blocked_net_logits(p, x):
    h = reference.sigmoid(reference.conv2d(x, p["0.0.weight"], p["0.0.bias"], padding=((1, 1), (1, 1))))
    h = reference.pool2d(h, (2, 2), (2, 2), mode="avg")
    h = reference.sigmoid(reference.conv2d(h, p["0.3.weight"], p["0.3.bias"])).reshape(len(x), -1)
    return h @ p["2.weight"].T + p["2.bias"]


def test_the_trainers_step_with_padded_channels_gives_the_reference_loss_and_update(d2l, needs_autodiff):
    """Where the backend pads convolution channels in its Trainer step (TF, MXNet), the padded
    forward pass and the Trainer's evaluation give the reference's logits, and a step on a
    finite batch the reference's loss and updated parameters (SGD on central-difference
    gradients): the zero filters and weights change no real channel, and their gradients reach
    no parameter. Elsewhere, the plain step."""
    rng = np.random.default_rng(22)
    x, labels, lr = rng.standard_normal((5, 1, 6, 6)), np.array([0, 2, 1, 1, 0]), 0.5
    net = _blocked_net(d2l)
    net(d2l.tensor(x[:1]))
    b = net.d2l_backend
    p = {name: value.astype(np.float64) for name, value in d2l.get_params(net).items()}
    forward = d2lconv.layers.blocked_forward(net)
    assert (forward is not None) == bool(b.channel_block)
    built_class = type(net)
    net.__class__ = type("Mine", (built_class,), {})  # a class of one's own: its call may do more
    assert d2lconv.layers.blocked_forward(net) is None
    net.__class__ = built_class
    with d2lconv.use_backend(BACKEND):
        if forward is not None:
            assert_close(forward(d2l.tensor(x.astype(np.float32))), _blocked_net_logits(p, x), tol=1e-5)
        with b.inference():  # the Trainer's evaluation (MXNet's pads for a finite batch)
            assert_close(b.evaluation_fn(net)(b.batch_from_numpy(x.astype(np.float32))),
                         _blocked_net_logits(p, x), tol=1e-5)
    with d2lconv.use_backend(BACKEND):
        step = b.train_step(ModelLoss(b), lr, b.compile_pays_after == 0)
        loss = step(net, d2lconv.params.named_params(net), b.batch_from_numpy(x.astype(np.float32)),
                    b.batch_from_numpy(labels.astype(np.int32)))

    def loss_of(p):
        return cross_entropy_reference(_blocked_net_logits(p, x), labels)

    want = loss_of(p)
    assert abs(float(d2l.to_numpy(loss)) - want) <= 1e-5 * (1 + abs(want))
    for name, value in d2l.get_params(net).items():
        assert_close(value, p[name] - lr * numeric_grad(lambda v: loss_of({**p, name: v}), p[name]), tol=1e-5)


def test_an_architecture_names_every_layers_configuration_and_nothing_else(d2l):
    """What a backend may share a compiled step by: equal for models that differ only in their
    weights, different where any layer computes differently, None for a class of one's own."""
    architecture = d2lconv.layers.architecture
    assert architecture(d2l.LeNet(seed=0)) == architecture(d2l.LeNet(seed=1)) is not None

    def net(pool=None, stride=1, out=3):
        return d2l.Sequential(d2l.LazyConv2d(2, 3, stride=stride), pool or d2l.AvgPool2d(2), d2l.Flatten(),
                              d2l.LazyLinear(out))

    base = architecture(net())
    assert base == architecture(net())
    assert base != architecture(net(d2l.MaxPool2d(2)))
    assert base != architecture(net(d2l.AvgPool2d(2, padding=1)))
    assert base != architecture(net(stride=2))
    assert base != architecture(net(out=4))
    model = net()
    subclass = type("Mine", (type(model),), {})
    assert architecture(subclass(model.d2l_layer)) is None


def test_jax_compiles_a_fit_once_per_architecture(d2l, needs_autodiff, caplog):
    """JAX's Trainer step and evaluation are each one jax.jit shared by the models of one
    architecture: a second LeNet (other weights, another learning rate) fits with nothing
    compiled, where each model's own step and evaluation cost 0.7-1 s of tracing and XLA
    compilation; and it trains on its own weights (its last loss differs from the first
    model's)."""
    if BACKEND != "jax":
        pytest.skip(f"the shared compiled step is JAX's (backend under test: {BACKEND})")
    rng = np.random.default_rng(5)
    x, labels = rng.standard_normal((24, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 24)
    batches = [(d2l.tensor(x[i:i + 8]), d2l.tensor(labels[i:i + 8])) for i in (0, 8)]
    data = _Batches(batches, [(d2l.tensor(x[16:]), d2l.tensor(labels[16:]))])
    histories = []

    def fit(seed, lr):
        histories.append(d2l.Trainer(max_epochs=2, progress=False).fit(d2l.LeNet(lr=lr, seed=seed), data))

    first = _jax_compile_messages(caplog, lambda: fit(0, 0.1))
    caplog.clear()
    assert any(m.startswith("Finished XLA compilation") for m in first)  # the test sees compiles
    assert not _jax_compile_messages(caplog, lambda: fit(1, 0.3))
    assert histories[0]["train_loss"][-1] != histories[1]["train_loss"][-1]


def test_a_dense_after_a_flatten_reads_c_h_w_whatever_shape_comes_in(d2l):
    """A backend may keep such a weight in its own layout's flatten order (TensorFlow: H-W-C, so
    the flatten is a reshape): the model still reads C-H-W for every input of 400 features (the
    built shape, another spatial split, other channels), the Dense alone reads its 2-D input,
    and ``set_params``/``get_params`` speak (out, C*H*W)."""
    rng = np.random.default_rng(7)
    net = d2l.Sequential(d2l.Flatten(), d2l.LazyLinear(3, seed=2))
    shapes = [(2, 16, 5, 5), (3, 16, 25, 1), (2, 400, 1, 1), (1, 4, 10, 10), (2, 16, 5, 5)]
    net(d2l.tensor(rng.standard_normal(shapes[0])))
    weight, bias = rng.standard_normal((3, 400)).astype(np.float32), np.float32([0.5, -1, 2])
    d2l.set_params(net, {"1.weight": weight, "1.bias": bias})
    np.testing.assert_array_equal(d2l.get_params(net)["1.weight"], weight)
    for shape in shapes:
        x = rng.standard_normal(shape)
        assert_close(net(d2l.tensor(x)), x.reshape(len(x), -1) @ weight.T + bias)
    flat = rng.standard_normal((2, 400))
    assert_close(net.d2l_backend.child(net, "1")(d2l.tensor(flat)), flat @ weight.T + bias)


def test_gradients_of_a_dense_after_a_flatten_are_c_h_w(d2l, needs_autodiff):
    """d sum(net(x)) / d weight[o] is the C-H-W flattened input summed over the batch, whatever
    order the backend keeps the weight in; an SGD step moves get_params' values by it."""
    rng = np.random.default_rng(8)
    net = d2l.Sequential(d2l.Flatten(), d2l.LazyLinear(3, seed=2))
    x = rng.standard_normal((2, 16, 5, 5)).astype(np.float32)
    net(d2l.tensor(x))
    before = d2l.get_params(net)["1.weight"]
    _, grads = d2l.value_and_grad(lambda m, x: d2l.reduce_sum(m(x)))(net, d2l.tensor(x))
    expected = np.tile(x.reshape(2, -1).sum(0), (3, 1))
    assert_close(grads["1.weight"], expected)
    d2l.sgd(net, grads, 0.5)
    assert_close(d2l.get_params(net)["1.weight"], before - 0.5 * expected)


def test_activations_inside_a_container_touch_no_one_elses_tensor(d2l, needs_autodiff):
    """A backend may apply a Sigmoid in place to the fresh output of a convolution or dense layer
    before it in a container (torch does): the caller's input stays as it was when a Sigmoid
    comes first, a Sigmoid after a Sigmoid still sees its own input, and the values and a
    gradient through the last (in-place) Sigmoid equal the reference's."""
    rng = np.random.default_rng(11)
    first, second = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((3, 1, 6, 6))
    net = d2l.Sequential(d2l.Sigmoid(), d2l.LazyConv2d(2, 3, seed=1), d2l.Sigmoid(), d2l.Sigmoid(),
                         d2l.Flatten(), d2l.LazyLinear(3, seed=2), d2l.Sigmoid())
    net(d2l.tensor(first))
    x = d2l.tensor(second)
    got = net(x)
    np.testing.assert_array_equal(d2l.to_numpy(x), second.astype(np.float32))
    p = d2l.get_params(net)
    sigmoid = reference.sigmoid
    h = sigmoid(sigmoid(reference.conv2d(sigmoid(second), p["1.weight"], p["1.bias"], (1, 1), ((0, 0), (0, 0)))))
    z = h.reshape(3, -1) @ p["5.weight"].T + p["5.bias"]
    assert_close(got, sigmoid(z))
    _, grads = d2l.value_and_grad(lambda m, x: d2l.reduce_sum(m(x)))(net, x)
    assert_close(grads["5.bias"], (sigmoid(z) * (1 - sigmoid(z))).sum(0))
    np.testing.assert_array_equal(d2l.to_numpy(x), second.astype(np.float32))


@pytest.mark.parametrize("padding", [1, ASYMMETRIC])
def test_a_built_max_pool_keeps_nan_and_minus_inf(d2l, padding):
    """The edge semantics hold on the built path too (TensorFlow's and MXNet's kernels skip NaN
    and start from the lowest finite float): NaN in a window gives NaN, only -inf gives -inf."""
    first = np.random.default_rng(6).standard_normal((1, 2, 5, 5))
    second = np.full((1, 2, 5, 5), -np.inf)
    second[0, 0, 1, 1] = np.nan
    second[0, 1, 3:, 3:] = 2.0
    reference_pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    expected = reference.pool2d(second, (2, 2), (2, 2), reference_pads, mode="max")
    net = d2l.Sequential(d2l.MaxPool2d(2, padding=padding))
    actual = d2l.to_numpy(_twice(net, d2l, first, second))
    np.testing.assert_array_equal(actual, expected.astype(np.float32))


def test_torch_keeps_conv_weights_channels_last(d2l):
    """On torch every conv weight is stored channels-last (channels the fastest axis), the one-
    input-channel kernel of LeNet's first layer too, so a model's activations stay NHWC in memory
    on oneDNN's kernels; shapes and values stay OIHW, as ``get_params`` and the reference see."""
    from d2lconv.params import named_params

    if BACKEND != "torch":
        pytest.skip(f"memory formats are torch's (backend under test: {BACKEND})")
    net = d2l.LeNet(seed=0)
    X = np.random.default_rng(5).standard_normal((2, 1, 28, 28))
    net(d2l.tensor(X))
    weights = [p for p in named_params(net).values() if p.dim() == 4]
    assert [tuple(w.shape) for w in weights] == [(6, 1, 5, 5), (16, 6, 5, 5)]
    assert all(w.stride()[1] == 1 and w.stride()[3] == w.shape[1] for w in weights), [w.stride() for w in weights]
    for name, value in d2l.get_params(net).items():
        assert value.flags["C_CONTIGUOUS"], name
        np.testing.assert_array_equal(value, expected_lenet_params(0)[name])


def test_tensorflow_lenet_first_called_inside_a_tf_function(d2l):
    """A TF model built inside someone's tf.function (its variables have no values while it
    traces, so its dense weight keeps the C-H-W layout) still computes the book's LeNet, and
    one built eagerly keeps that weight in the activations' H-W-C order, read back as OIHW."""
    from d2lconv.params import named_params

    if BACKEND != "tensorflow":
        pytest.skip(f"tf.function is TensorFlow's (backend under test: {BACKEND})")
    import tensorflow as tf

    X = np.random.default_rng(9).standard_normal((3, 1, 28, 28)).astype(np.float32)
    expected = lenet_reference(expected_lenet_params(0), X.astype(np.float64))
    traced = d2l.LeNet(seed=0)
    assert_close(tf.function(traced, autograph=False)(tf.constant(X)), expected, tol=1e-4)
    assert_close(traced(d2l.tensor(X)), expected, tol=1e-4)
    eager = d2l.LeNet(seed=0)
    assert_close(_twice(eager, d2l, X, X), expected, tol=1e-4)
    assert tuple(named_params(eager)["net.7.weight"].shape) == (25, 16, 120)
    np.testing.assert_array_equal(d2l.get_params(eager)["net.7.weight"], expected_lenet_params(0)["net.7.weight"])


def test_tensorflow_lenet_first_called_in_a_tf_function_of_any_batch_size(d2l):
    """A model first called (built) inside a tf.function whose signature leaves the batch size
    unknown (or that TF relaxed after a few sizes) flattens with the size read when it runs: one
    graph computes the book's LeNet for batches of 3 and 5."""
    if BACKEND != "tensorflow":
        pytest.skip(f"tf.function is TensorFlow's (backend under test: {BACKEND})")
    import tensorflow as tf

    traced = tf.function(d2l.LeNet(seed=0), input_signature=[tf.TensorSpec([None, 1, 28, 28])], autograph=False)
    for n in (3, 5):
        X = np.random.default_rng(n).standard_normal((n, 1, 28, 28)).astype(np.float32)
        assert_close(traced(X), lenet_reference(expected_lenet_params(0), X.astype(np.float64)), tol=1e-4)


def _jax_compile_messages(caplog, call):
    """What JAX logs about compiling while ``call()`` runs (skips the test on other backends)."""
    if BACKEND != "jax":
        pytest.skip(f"only JAX compiles each eager operation (backend under test: {BACKEND})")
    import logging

    import jax

    with caplog.at_level(logging.DEBUG), jax.log_compiles(True):
        call()
    return [record.getMessage() for record in caplog.records if "ompil" in record.getMessage()]


def test_jax_checks_a_models_input_without_compiling(d2l, caplog):
    """JAX compiles every eager operation once per shape (25-80 ms each here), so a model's
    checked pass is traced, not run: an input that does not fit is refused, naming the layer,
    before anything compiles."""
    net = d2l.LeNet(seed=0)
    net(d2l.tensor(np.zeros((2, 1, 28, 28), np.float32)))
    wrong = d2l.tensor(np.zeros((5, 1, 37, 37), np.float32))  # 784 features where net.7 takes 400

    def refused():
        with pytest.raises(d2lconv.layers.LayerInputError, match=r"net\.7"):
            net(wrong)

    assert not _jax_compile_messages(caplog, refused)


def test_jax_runs_a_built_model_eagerly_as_one_program_per_layer(d2l, caplog):
    """On JAX each built layer (a convolution with its bias, a pooling, a dense layer) is one
    jax.jit per configuration: an eager forward at a new batch size compiles at most one program
    per layer (and one for the input's NHWC transpose), where one per operation was ~2x that."""
    net = d2l.LeNet(seed=0)
    net(d2l.tensor(np.zeros((2, 1, 28, 28), np.float32)))
    X = d2l.tensor(np.zeros((13, 1, 28, 28), np.float32))
    messages = _jax_compile_messages(caplog, lambda: net(X))
    compiled = [m for m in messages if m.startswith("Finished XLA compilation")]
    assert len(compiled) <= len(d2lconv.layers.leaves(net)) + 1, compiled


def test_jax_builds_a_model_for_the_trainers_first_batch_without_compiling(d2l, caplog):
    """The Trainer needs only a model built and its output's shape from its first batch: on JAX
    (where LeNet's first eager call compiles one program a layer, 0.7 s in a fresh process) the
    model is built on shapes and nothing compiles; the model then computes the reference."""
    if BACKEND != "jax":
        pytest.skip(f"eager calls compile only on JAX (backend under test: {BACKEND})")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 1, 28, 28))
    net = d2l.LeNet(seed=0)
    first, outputs = d2l.tensor(np.zeros((7, 1, 28, 28), np.float32)), []  # a batch size no other test uses
    assert not _jax_compile_messages(caplog, lambda: outputs.append(d2lconv.layers.first_output(net, first)))
    assert tuple(outputs[0].shape) == (7, 10)
    assert_close(net(d2l.tensor(x)), lenet_reference(expected_lenet_params(0), x), tol=1e-4)


def _module_hooks(what):
    if BACKEND not in ("torch", "mxnet"):
        pytest.skip(f"{what} are torch's and Gluon's (backend under test: {BACKEND})")


def test_forward_hooks_inside_a_model_run_and_see_the_reference(d2l):
    """torch and Gluon run a module's hooks when it is called; a built container runs its
    children's functions without calling them, so while a module below has a hook it calls
    each child instead: the hook runs on the first call and later ones, for NumPy and native
    inputs, and sees the convolution's output as the reference computes it (not the in-place
    sigmoid that comes after it on torch's built path); the model's output is the reference's,
    and stays so once the hook is removed."""
    _module_hooks("module hooks")
    b = d2lconv.backend.load(BACKEND)
    rng = np.random.default_rng(13)
    inputs = [rng.standard_normal((2, 1, 28, 28)) for _ in range(3)]
    p = expected_lenet_params(0)
    net = d2l.LeNet(seed=0)
    conv = b.child(b.child(net, "net"), "0")
    seen = []
    handle = conv.register_forward_hook(lambda module, args, output: seen.append(d2l.to_numpy(output)))
    for X in (inputs[0], d2l.tensor(inputs[1]), inputs[1]):
        X64 = d2l.to_numpy(X).astype(np.float64)
        assert_close(net(X), lenet_reference(p, X64), tol=1e-4)
        assert_close(seen[-1], reference.conv2d(X64, p["net.0.weight"], p["net.0.bias"], padding=((2, 2), (2, 2))))
    assert len(seen) == 3
    (handle.remove if hasattr(handle, "remove") else handle.detach)()
    assert_close(net(d2l.tensor(inputs[2])), lenet_reference(p, inputs[2]), tol=1e-4)
    assert len(seen) == 3


def test_global_module_hooks_see_every_module_in_call_order(d2l):
    """torch's ``register_module_forward_pre_hook`` runs for every module called, as in
    ``nn.Sequential``: the model, its ``net``, then each layer, in order, on every call."""
    if BACKEND != "torch":
        pytest.skip(f"global module hooks are torch's (backend under test: {BACKEND})")
    import torch

    net = d2l.LeNet(seed=0)
    X = d2l.tensor(np.random.default_rng(14).standard_normal((1, 1, 28, 28)))
    net(X)
    called = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda module, args: called.append(module))
    try:
        net(X)
    finally:
        handle.remove()
    assert called == list(net.modules())


def test_a_built_model_pickles_and_deep_copies(d2l):
    """A built model pickles and deep-copies as the framework's own modules do (what building
    made, functions, is left out and made again at the copy's first call): the copy holds the
    book's LeNet weights and gives the original's output to the bit, on its first call and later."""
    import copy
    import pickle

    X = np.random.default_rng(15).standard_normal((3, 1, 28, 28)).astype(np.float32)
    net = d2l.LeNet(seed=0)
    net(X)
    expected = d2l.to_numpy(net(X))
    assert_close(expected, lenet_reference(expected_lenet_params(0), X.astype(np.float64)), tol=1e-4)
    for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        for name, value in d2l.get_params(twin).items():
            np.testing.assert_array_equal(value, expected_lenet_params(0)[name])
        np.testing.assert_array_equal(d2l.to_numpy(twin(X)), expected)
        np.testing.assert_array_equal(d2l.to_numpy(twin(X)), expected)


def test_a_pickled_model_trains_on_its_own(d2l, needs_autodiff):
    """An SGD step on an unpickled copy changes the copy's parameters and leaves the original's."""
    import pickle

    X, y = np.random.default_rng(16).standard_normal((4, 1, 28, 28)).astype(np.float32), np.arange(4)
    net = d2l.LeNet(seed=0)
    net(X)
    twin = pickle.loads(pickle.dumps(net))
    _, grads = d2l.value_and_grad(lambda m, X, y: d2l.cross_entropy(m(X), y))(twin, d2l.tensor(X), d2l.tensor(y))
    d2l.sgd(twin, grads, 0.5)
    changed = d2l.get_params(twin)
    for name, value in d2l.get_params(net).items():
        np.testing.assert_array_equal(value, expected_lenet_params(0)[name])
        assert_close(changed[name], value - 0.5 * d2l.to_numpy(grads[name]))
    assert not np.array_equal(changed["net.11.bias"], expected_lenet_params(0)["net.11.bias"])


def test_a_model_computes_integer_and_bool_images_in_float32(d2l):
    """Integer and bool images (NumPy arrays or native tensors) go through a model as the
    operators take them, converted to float32, on its first call and on later ones (the built
    functions alone would reject them: torch, TF, JAX and MXNet kernels take no integers)."""
    images = np.random.default_rng(17).integers(0, 256, (2, 1, 28, 28))
    p = expected_lenet_params(0)
    for data in (images.astype(np.uint8), images, images > 127):
        for X in (data, d2l.tensor(data)):
            net = d2l.LeNet(seed=0)
            for _ in range(2):
                got = net(X)
                assert d2l.to_numpy(got).dtype == np.float32
                assert_close(got, lenet_reference(p, data.astype(np.float64)), tol=1e-4)


def test_the_trainers_evaluation_computes_integer_images_in_float32(d2l):
    """The Trainer's evaluation of a built model (compiled or padded on some backends) takes
    integer images as the model does, in float32 (a traced graph does not cast them itself)."""
    images = np.random.default_rng(19).integers(0, 256, (3, 1, 28, 28)).astype(np.uint8)
    net = d2l.LeNet(seed=0)
    net(d2l.tensor(images[:1].astype(np.float32)))
    b = net.d2l_backend
    with d2lconv.use_backend(BACKEND), b.inference():
        got = b.evaluation_fn(net)(b.batch_from_numpy(images))
    assert_close(got, lenet_reference(expected_lenet_params(0), images.astype(np.float64)), tol=1e-4)


def test_a_model_gives_an_empty_batch_an_empty_output(d2l):
    """An empty batch gives an empty output of the right shape, unbuilt or built, and leaves the
    framework as it was: the next batch still gives the reference's output (MXNet's kernels fail
    on empty arrays with an error that a later call raises; TF's convolution gives an empty
    batch its input's shape)."""
    p = expected_lenet_params(0)
    X = np.random.default_rng(18).standard_normal((2, 1, 28, 28)).astype(np.float32)
    empty = np.zeros((0, 1, 28, 28), np.float32)
    for built in (False, True):
        net = d2l.LeNet(seed=0)
        if built:
            net(X)
        for batch in (empty, d2l.tensor(empty)):
            out = d2l.to_numpy(net(batch))
            assert out.shape == (0, 10) and out.dtype == np.float32
        assert_close(net(X), lenet_reference(p, X.astype(np.float64)), tol=1e-4)


def test_a_native_tensor_of_another_float_dtype_is_a_type_error_naming_it(d2l):
    """A float32 model (LeNet, or a dense layer first) called with a native float64 tensor (a
    NumPy float64 array on the numpy backend) raises the operators' TypeError, built or not, not
    the framework's."""
    if BACKEND == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("float64 on jax needs JAX_ENABLE_X64 (tested in test_tensors)")
    X = np.zeros((1, 1, 28, 28))
    X64 = X if BACKEND == "numpy" else d2l.tensor(X, "float64")
    for built in (False, True):
        net = d2l.LeNet(seed=0)
        if built:
            net(X.astype(np.float32))
        with pytest.raises(TypeError, match="conv2d: inputs must share one dtype, but X is float64, W is float32"):
            net(X64)
        dense = d2l.Sequential(d2l.Flatten(), d2l.LazyLinear(3))
        if built:
            dense(X.astype(np.float32))
        with pytest.raises(TypeError, match="LazyLinear: inputs must share one dtype, but x is float64, weight is float32"):
            dense(X64)


def test_models_of_each_layer_kind_compute_integer_input_in_float32(d2l):
    """Integer input to models that begin with a dense layer, a sigmoid or the book's Conv2D
    (checked and built paths alike) computes in float32 (the dense layer's checked path and the
    sigmoid did not convert: the framework's dtype error, or float64 on the numpy backend)."""
    rng = np.random.default_rng(19)
    sigmoid = reference.sigmoid
    dense = d2l.Sequential(d2l.LazyLinear(3, seed=1), d2l.Sigmoid())
    first = d2l.Sequential(d2l.Sigmoid(), d2l.Flatten(), d2l.LazyLinear(2, seed=2))
    scratch = d2l.Conv2D((1, 2), seed=3)
    cases = [
        (dense, (2, 5), lambda p, x: sigmoid(x @ p["0.weight"].T + p["0.bias"])),
        (first, (2, 3, 2, 2), lambda p, x: sigmoid(x).reshape(2, -1) @ p["2.weight"].T + p["2.bias"]),
        (scratch, (6, 8), lambda p, x: reference.corr2d(x, p["weight"]) + p["bias"]),
    ]
    for model, shape, expected in cases:
        for _ in range(2):
            X = rng.integers(-3, 4, shape)
            got = model(d2l.tensor(X))
            assert d2l.to_numpy(got).dtype == np.float32
            assert_close(got, expected(d2l.get_params(model), X.astype(np.float64)))
