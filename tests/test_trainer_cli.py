"""The Trainer, the fused training step and the d2lconv command."""

import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND
from d2lconv import cli, data, training
from test_layers import expected_lenet_params


def _tiny_data():
    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 28, 28)).astype(np.float32), rng.integers(0, 10, 40)
    return data.ImageData((images, labels), (images[:8], labels[:8]), list("0123456789"), batch_size=16)


def test_fit_keeps_a_history_and_plots_it(d2l, needs_autodiff, tmp_path):
    trainer = d2l.Trainer(max_epochs=2, progress=False)
    history = trainer.fit(d2l.LeNet(seed=0), _tiny_data())
    assert history["epoch"] == [1, 2]
    assert all(np.isfinite(history[key]).all() for key in ("train_loss", "val_loss", "val_acc"))
    trainer.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fused_step_equals_value_and_grad_then_sgd(d2l, needs_autodiff):
    X, y = np.random.default_rng(1).standard_normal((8, 1, 28, 28)).astype(np.float32), np.arange(8) % 10
    loss_fn = lambda m, X, y: d2l.cross_entropy(m(X), y)  # noqa: E731
    fused, separate = d2l.LeNet(seed=0), d2l.LeNet(seed=0)
    step = training.train_step(loss_fn, 0.1)
    grad_fn = d2l.value_and_grad(loss_fn)
    for _ in range(2):
        with d2lconv.use_backend(BACKEND):
            fused_loss = step(fused, d2l.tensor(X), d2l.tensor(y))
        loss, grads = grad_fn(separate, X, y)
        d2l.sgd(separate, grads, 0.1)
        assert abs(float(d2l.to_numpy(fused_loss)) - float(d2l.to_numpy(loss))) < 1e-6
    a, b = d2l.get_params(fused), d2l.get_params(separate)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


class _Batches:
    """A data module, as ``fit`` reads one, over given training and validation batches."""

    def __init__(self, train, val):
        self.train, self.val = train, val
        self.batch_size, self.num_train = len(train[0][1]), sum(len(y) for _, y in train)
        self.num_val = sum(len(y) for _, y in val)

    def train_dataloader(self):
        return iter(self.train)

    def val_dataloader(self):
        return iter(self.val)


@pytest.mark.parametrize("labels, error, message", [
    ([0, 1, 2, 10], ValueError, r"cross_entropy: labels must be class ids in \[0, 10\) .*got \[10\]"),
    ([0, 1, 2], ValueError, r"cross_entropy: labels must have shape \(4,\), got \(3,\)"),
    ([0.0, 1, 2, 3], TypeError, r"cross_entropy: labels must be integer class ids, got dtype float"),
])
def test_fit_checks_every_label_of_the_first_batch_before_a_step(d2l, needs_autodiff, labels, error, message):
    """The first batch is checked (on its first example, then all its labels) before any step."""
    X = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    model, fresh = d2l.LeNet(seed=0), d2l.LeNet(seed=0)
    batch = (d2l.tensor(X), d2l.tensor(labels))
    with pytest.raises(error, match=message):
        d2l.Trainer(max_epochs=1, progress=False).fit(model, _Batches([batch], [batch]))
    fresh(X)
    for name, value in d2l.get_params(fresh).items():
        np.testing.assert_array_equal(d2l.get_params(model)[name], value, err_msg=name)


@pytest.mark.parametrize("labels, error, message", [
    ([0, 1, 2, 10], ValueError, r"Trainer.fit: labels must be class ids in \[0, 10\) .*got \[10\]"),
    ([-1, 1, 2, 3], ValueError, r"Trainer.fit: labels must be class ids in \[0, 10\) .*got \[-1\]"),
    ([0.0, 1, 2, 3], TypeError, r"Trainer.fit: labels must be integer class ids, got dtype float"),
])
def test_fit_checks_the_labels_of_every_later_batch_before_its_step(d2l, needs_autodiff, labels, error, message):
    """A label out of range in a later batch is the same clear error on every backend (inside the
    step torch and TF raised their own errors, JAX gave NaN or read -1 as the last class, MXNet
    clamped it); the model keeps the first batch's step, as a model trained on that batch alone."""
    X = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
    good = (d2l.tensor(X), d2l.tensor([0, 1, 2, 3]))
    model, alone = d2l.LeNet(seed=0), d2l.LeNet(seed=0)
    with pytest.raises(error, match=message):
        d2l.Trainer(max_epochs=1, progress=False).fit(model, _Batches([good, (d2l.tensor(X), d2l.tensor(labels))], [good]))
    d2l.Trainer(max_epochs=1, progress=False).fit(alone, _Batches([good], [good]))
    for name, value in d2l.get_params(alone).items():
        np.testing.assert_allclose(d2l.get_params(model)[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_fit_that_fails_half_way_closes_its_progress_bar(d2l, needs_autodiff):
    from tqdm import std

    X = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
    good, bad = (d2l.tensor(X), d2l.tensor([0, 1, 2, 3])), (d2l.tensor(X), d2l.tensor([0, 1, 2, 10]))
    open_bars = len(std.tqdm._instances)
    with pytest.raises(ValueError, match="Trainer.fit: labels") as failure:
        d2l.Trainer(max_epochs=1, progress=True).fit(d2l.LeNet(seed=0), _Batches([good, bad], [good]))
    assert failure.traceback and len(std.tqdm._instances) == open_bars  # the traceback keeps the frame


def test_a_compiled_fit_trains_as_an_eager_one(d2l, needs_autodiff):
    """``Trainer(compile=True)`` (torch.compile, tf.function, jax.jit, a hybridized graph) ends
    with the parameters and history of ``compile=False``, a smaller last batch included."""
    runs = []
    for compile in (False, True):
        model = d2l.LeNet(lr=0.3, seed=0)
        history = d2l.Trainer(max_epochs=2, progress=False, compile=compile).fit(model, _tiny_data())
        runs.append((d2l.get_params(model), history))
    (eager, eager_history), (compiled, compiled_history) = runs
    for name in eager:
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(compiled_history["train_loss"], eager_history["train_loss"], rtol=1e-5)
    assert all(not np.allclose(value, eager[name]) for name, value in expected_lenet_params(0).items())


def test_compiled_steps_at_other_learning_rates_step_by_their_own(d2l, needs_autodiff):
    """A compiled step made for a second and third learning rate, on models of the same
    architecture (which may share one compiled graph), moves each model by its own rate: the
    parameters after two steps equal those of the eager step at that rate."""
    X, y = np.random.default_rng(4).random((8, 1, 28, 28)).astype(np.float32), np.arange(8) % 10
    loss_fn = lambda m, X, y: d2l.cross_entropy(m(X), y)  # noqa: E731
    with d2lconv.use_backend(BACKEND):
        X, y = d2l.tensor(X), d2l.tensor(y)
        for lr in (0.05, 0.4, 1.5):
            runs = []
            for compile in (True, False):
                model, step = d2l.LeNet(seed=1), training.train_step(loss_fn, lr, compile)
                for _ in range(2):
                    step(model, X, y)
                runs.append(d2l.get_params(model))
            for name, value in runs[1].items():
                np.testing.assert_allclose(runs[0][name], value, rtol=1e-5, atol=1e-6, err_msg=f"lr {lr}: {name}")


def test_torch_compiles_the_whole_step_as_one_graph(d2l, needs_autodiff, monkeypatch):
    """torch.compile with ``fullgraph=True`` (an error where it would break the graph) takes the
    whole step, the loss's label check included (the labels' values are unknown while it
    traces), and steps as the eager step does."""
    if BACKEND != "torch":
        pytest.skip(f"torch.compile is torch's (backend under test: {BACKEND})")
    import torch

    compile_whole = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **options: compile_whole(fn, fullgraph=True, **options))
    X, y = d2l.tensor(np.random.default_rng(6).random((8, 1, 28, 28)).astype(np.float32)), d2l.tensor(np.arange(8))
    loss_fn = lambda m, X, y: d2l.cross_entropy(m(X), y)  # noqa: E731
    runs = []
    for compile in (True, False):
        model, step = d2l.LeNet(seed=2), training.train_step(loss_fn, 0.2, compile)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the warning of a step trained eagerly
            for _ in range(2):
                step(model, X, y)
        runs.append(d2l.get_params(model))
    for name, value in runs[1].items():
        np.testing.assert_allclose(runs[0][name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_torch_trains_eagerly_with_a_warning_where_compiling_fails(d2l, needs_autodiff, monkeypatch):
    """Where torch.compile cannot compile the step (inductor finds no C++ compiler, say), a
    compiled fit warns once and trains eagerly, to the eager fit's parameters; an error of the
    step itself (the loss's) is still raised."""
    if BACKEND != "torch":
        pytest.skip(f"torch.compile is torch's (backend under test: {BACKEND})")
    import torch

    def failing_compile(fn, **options):
        def compiled(*args):
            raise RuntimeError("C++ compiler not found\n(details)")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    runs = []
    for compile in (False, True):
        model = d2l.LeNet(lr=0.3, seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d2l.Trainer(max_epochs=2, progress=False, compile=compile).fit(model, _tiny_data())
        runs.append((d2l.get_params(model), [str(w.message) for w in caught if "torch.compile" in str(w.message)]))
    (eager, eager_warnings), (fallen_back, warned) = runs
    assert not eager_warnings
    assert warned == ["torch.compile of the training step failed (RuntimeError: C++ compiler not found); training eagerly"]
    for name in eager:
        np.testing.assert_allclose(fallen_back[name], eager[name], rtol=1e-6, atol=1e-7, err_msg=name)

    def broken_loss(model, X, y):
        raise ValueError("the loss's own error")

    X, y = d2l.tensor(np.zeros((2, 1, 28, 28), np.float32)), d2l.tensor(np.arange(2))
    model = d2l.LeNet(seed=0)
    model(X)  # built: the step's first call goes straight to the (failing) compiled step
    with pytest.raises(ValueError, match="the loss's own error"):
        training.train_step(broken_loss, 0.1, True)(model, X, y)

    failures = ["the loss's own error, once"]

    def loss_failing_once(model, X, y):
        if failures:
            raise ValueError(failures.pop())
        return d2l.cross_entropy(model(X), y)

    step = training.train_step(loss_failing_once, 0.1, True)
    with pytest.raises(ValueError, match="once"):
        step(model, X, y)
    with pytest.warns(RuntimeWarning, match="training eagerly"):  # the next call falls back too
        assert np.isfinite(d2l.to_numpy(step(model, X, y)))


def test_fit_evaluates_as_evaluate_does(d2l, needs_autodiff):
    """The per-epoch validation (compiled where that pays) equals an eager ``evaluate``, with a
    smaller last validation batch."""
    rng = np.random.default_rng(2)
    X, y = rng.random((10, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 10)
    val = [(d2l.tensor(X[i:i + 4]), d2l.tensor(y[i:i + 4])) for i in (0, 4, 8)]
    data = _Batches([(d2l.tensor(X[:4]), d2l.tensor(y[:4]))], val)
    model, trainer = d2l.LeNet(seed=0), d2l.Trainer(max_epochs=2, progress=False)
    history = trainer.fit(model, data)
    val_loss, val_acc = trainer.evaluate(model, data)
    assert abs(history["val_loss"][-1] - val_loss) < 1e-6 and history["val_acc"][-1] == val_acc
    logits = d2l.to_numpy(model(X)).astype(np.float64)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    assert abs(val_loss - -log_softmax[np.arange(10), y].mean()) < 1e-5
    assert val_acc == (logits.argmax(1) == y).mean()


def test_evaluate_names_itself_on_bad_labels(d2l, needs_autodiff):
    X = np.random.default_rng(3).random((4, 1, 28, 28)).astype(np.float32)
    data = _Batches([(d2l.tensor(X), d2l.tensor(np.arange(4)))], [(d2l.tensor(X), d2l.tensor(np.array([0, 1, 12, 3])))])
    with pytest.raises(ValueError, match=r"Trainer.evaluate: labels must be class ids in \[0, 10\) .*got \[12\]"):
        d2l.Trainer(max_epochs=1, progress=False).evaluate(d2l.LeNet(seed=0), data)


def test_repeated_fits_warn_of_nothing(d2l, needs_autodiff, recwarn):
    """Six short fits of new models, each with a smaller last batch in training and validation:
    a user trying learning rates in a notebook sees no framework warning (TensorFlow's "excessive
    retracing" counts the traces of every tf.function of one Python function together)."""
    rng = np.random.default_rng(3)
    X, y = rng.random((6, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 6)
    batches = [(d2l.tensor(X[:4]), d2l.tensor(y[:4])), (d2l.tensor(X[4:]), d2l.tensor(y[4:]))]
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    loggers = [logging.getLogger(), logging.getLogger("tensorflow")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        for lr in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            model = d2l.LeNet(lr=lr, seed=0)
            d2l.Trainer(max_epochs=2, progress=False).fit(model, _Batches(batches, batches))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert [r.getMessage()[:120] for r in records] == []
    assert [str(w.message)[:120] for w in recwarn] == []


def test_asking_for_a_gpu_where_there_is_none(d2l, needs_autodiff):
    if d2lconv.backend.load(BACKEND).gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.warns(RuntimeWarning, match=f"num_gpus=1 was asked for, but {BACKEND} sees no GPU here: training on the CPU"):
        d2l.Trainer(max_epochs=1, num_gpus=1, progress=False).fit(d2l.LeNet(seed=0), _tiny_data())


def test_a_gpu_when_there_is_one_gets_the_model(d2l, needs_autodiff, monkeypatch):
    """No GPU here: the backend is told it has one, and must be handed the model to move."""
    b = d2lconv.backend.load(BACKEND)
    handed = []
    monkeypatch.setattr(b, "gpu_count", lambda: 1)
    monkeypatch.setattr(b, "use_gpu", handed.append)
    net = d2l.LeNet(seed=0)
    d2l.Trainer(max_epochs=1, num_gpus=1, progress=False).fit(net, _tiny_data())
    assert handed == [net]


def test_trainer_arguments():
    with pytest.raises(ValueError, match="max_epochs must be positive, got 0"):
        d2lconv.Trainer(0)
    with pytest.raises(ValueError, match="num_gpus must be non-negative, got -1"):
        d2lconv.Trainer(1, num_gpus=-1)


def test_info_lists_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"default backend: {d2lconv.get_backend()}" in out
    assert all(name in out for name in ("torch", "jax", "tensorflow", "mxnet", "numpy"))


def test_train_writes_weights_and_curves(needs_autodiff, tmp_path, capsys):
    code = cli.main(["train", "--backend", BACKEND, "--data", "digits", "--epochs", "1", "--out", str(tmp_path)])
    assert code == 0
    assert "final validation accuracy" in capsys.readouterr().out
    weights = tmp_path / f"lenet-{BACKEND}-digits.npz"
    net = d2lconv.numpy.LeNet()
    d2lconv.numpy.layer_summary(net, (1, 1, 28, 28))
    d2lconv.numpy.load_params(net, weights)  # loads into the reference backend's LeNet
    assert (tmp_path / f"lenet-{BACKEND}-digits.png").stat().st_size > 1000


def test_agree_command(capsys):
    assert cli.main(["agree", "--backends", BACKEND, "numpy"]) == 0
    assert "all backends agree within tolerance" in capsys.readouterr().out


def test_python_dash_m_d2lconv():
    result = subprocess.run([sys.executable, "-m", "d2lconv", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "tour" in result.stdout


def test_an_empty_batch_has_a_nan_loss_zero_gradients_and_no_effect_on_fit(d2l, needs_autodiff):
    """The mean cross-entropy over no examples is NaN, as NumPy's (MXNet's mean of nothing is 0),
    with zero gradients (MXNet raised: its loss was in no graph); ``fit`` skips empty batches, so
    a data module with an empty training and validation batch trains and reports as without
    them, and the framework still works afterwards (MXNet's kernels fail on empty arrays with
    an error that a later call raises)."""
    empty_X, empty_y = np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, np.int64)
    net = d2l.LeNet(seed=0)
    loss, grads = d2l.value_and_grad(lambda m, X, y: d2l.cross_entropy(m(X), y))(net, d2l.tensor(empty_X), d2l.tensor(empty_y))
    assert np.isnan(float(d2l.to_numpy(loss)))
    for name, grad in grads.items():
        np.testing.assert_array_equal(d2l.to_numpy(grad), 0, err_msg=name)
    rng = np.random.default_rng(2)
    batches = [(d2l.tensor(rng.random((4, 1, 28, 28), np.float32)), d2l.tensor(rng.integers(0, 10, 4))) for _ in range(2)]
    empty = (d2l.tensor(empty_X), d2l.tensor(empty_y))
    with_empty, without = d2l.LeNet(seed=0), d2l.LeNet(seed=0)
    history = d2l.Trainer(max_epochs=2, progress=False).fit(with_empty, _Batches([batches[0], empty, batches[1]], [empty, batches[1]]))
    expected = d2l.Trainer(max_epochs=2, progress=False).fit(without, _Batches(batches, [batches[1]]))
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-5, err_msg=key)
    for name, value in d2l.get_params(without).items():
        np.testing.assert_allclose(d2l.get_params(with_empty)[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
