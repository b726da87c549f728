"""The book's JAX dialect, ``from d2lconv.book import jax as d2l``, used in the book's style."""

import math
import random

import numpy as np
import pytest

from book_support import check_training_board, imported_after, require_backend
from d2lconv import reference

require_backend("jax", "JAX")
pytest.importorskip("flax", reason="the book's JAX dialect needs flax (pip install 'd2lconv[jax]')")

import jax  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402
from jax import numpy as jnp  # noqa: E402

from d2lconv.book import jax as d2l  # noqa: E402


class TinyCNN(d2l.Classifier):
    """One convolution, ReLU, max pooling and a dense layer, for 16x16 NHWC digits."""

    lr: float = 0.1
    num_classes: int = 10
    channels: int = 4

    def setup(self):
        self.net = nn.Sequential([
            nn.Conv(self.channels, kernel_size=(3, 3), padding="SAME"), nn.relu,
            lambda x: nn.max_pool(x, window_shape=(2, 2), strides=(2, 2)),
            lambda x: x.reshape((x.shape[0], -1)),
            nn.Dense(self.num_classes),
        ])


@pytest.fixture(scope="module")
def digits():
    return d2l.Digits(batch_size=64, resize=(16, 16), shifts=0)


def test_import_loads_only_jax():
    assert imported_after("from d2lconv.book import jax as d2l") == "['jax']"


def test_classifier_is_a_flax_module_with_dataclass_fields():
    model = TinyCNN(lr=0.05, channels=3)
    assert isinstance(model, nn.Module) and isinstance(model, d2l.Module)
    assert (model.lr, model.num_classes, model.channels) == (0.05, 10, 3)
    assert (model.plot_train_per_epoch, model.plot_valid_per_epoch) == (2, 1)
    assert model.board is not TinyCNN().board  # one board per model
    with pytest.raises(TypeError):
        TinyCNN(board=None)  # not a constructor argument (init=False), as in the book
    assert isinstance(model.configure_optimizers(), optax.GradientTransformation)


def test_save_hyperparameters_for_plain_classes():
    class Scaler(d2l.HyperParameters):
        def __init__(self, factor, offset=1, _private=2):
            self.save_hyperparameters(ignore=["offset"])

    scaler = Scaler(3)
    assert scaler.hparams == {"factor": 3} and scaler.factor == 3 and not hasattr(scaler, "offset")


def test_get_seed_and_get_key():
    seeds = {d2l.get_seed() for _ in range(20)}
    assert all(isinstance(s, int) and 0 <= s <= 10**6 for s in seeds) and len(seeds) > 1
    key = d2l.get_key()
    assert jax.random.normal(key, (2,)).shape == (2,)


def test_apply_init_and_add_to_class():
    @d2l.add_to_class(TinyCNN)
    def num_params(self, variables):
        return sum(p.size for p in jax.tree_util.tree_leaves(variables))

    model = TinyCNN()
    variables = model.apply_init((jnp.zeros((1, 16, 16, 1)),), key=jax.random.PRNGKey(0))
    assert model.num_params(variables) == 3 * 3 * 4 + 4 + 256 * 10 + 10
    assert variables["params"]["net"]["layers_4"]["kernel"].shape == (256, 10)


def test_lenet_layer_summary_prints_the_books_shapes(capsys):
    d2l.LeNet().layer_summary((1, 28, 28, 1))
    assert capsys.readouterr().out.splitlines() == [
        f"{name} output shape:\t {shape}" for name, shape in [
            ("Conv", (1, 28, 28, 6)), ("PjitFunction", (1, 28, 28, 6)), ("function", (1, 14, 14, 6)),
            ("Conv", (1, 10, 10, 16)), ("PjitFunction", (1, 10, 10, 16)), ("function", (1, 5, 5, 16)),
            ("function", (1, 400)), ("Dense", (1, 120)), ("PjitFunction", (1, 120)),
            ("Dense", (1, 84)), ("PjitFunction", (1, 84)), ("Dense", (1, 10))]]


def test_forward_without_net_is_a_clear_error():
    class Empty(d2l.Module):
        def __call__(self, X):
            return self.forward(X)

    with pytest.raises(AttributeError, match="Empty has no self.net"):
        Empty().init(jax.random.PRNGKey(0), jnp.zeros(1))


def test_loss_and_accuracy_follow_the_book():
    Y_hat = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0]])
    Y = jnp.array([0, 1, 1, 2])

    class Fixed(d2l.Classifier):  # a model whose logits are its input
        def __call__(self, X):
            return X

    model = Fixed()
    state = d2l.TrainState.create(apply_fn=model.apply, params={}, batch_stats={},
                                  dropout_rng=jax.random.PRNGKey(0), tx=optax.sgd(0.1))
    assert float(model.accuracy({}, (Y_hat,), Y, state)) == pytest.approx(0.5)
    assert model.accuracy({}, (Y_hat,), Y, state, False).tolist() == [1.0, 1.0, 0.0, 0.0]
    logits = np.asarray(Y_hat, np.float64)
    expected = np.log(np.exp(logits).sum(1)) - logits[np.arange(4), np.asarray(Y)]
    loss, aux = model.loss({}, (Y_hat,), Y, state)
    assert float(loss) == pytest.approx(expected.mean(), rel=1e-5) and not aux.get("batch_stats")
    assert np.asarray(model.loss({}, (Y_hat,), Y, state, False)[0]) == pytest.approx(expected, rel=1e-5)


def test_digits_batches_have_the_books_jax_layout(digits):
    loader = digits.get_dataloader(train=True)
    assert len(loader) == math.ceil(1438 / 64) and len(digits.val_dataloader()) == math.ceil(359 / 64)
    X, y = next(iter(loader))
    assert isinstance(X, np.ndarray) and X.shape == (64, 16, 16, 1) and X.dtype == np.float32
    assert y.dtype == np.int32
    assert digits.text_labels(y[:3]) == [str(int(i)) for i in y[:3]]
    # the same loader again is the next epoch, in a new order; validation keeps its order
    firsts = [next(iter(loader))[1] for _ in range(3)]
    assert any((a != firsts[0]).any() for a in firsts[1:])
    X_val = np.concatenate([X for X, _ in digits.val_dataloader()])
    np.testing.assert_array_equal(X_val, digits.arrays(False)[0])
    assert len(digits.visualize((X, y), nrows=1, ncols=4)) == 4


def test_trainer_fit_trains_and_plots_at_fractional_epochs(digits):
    random.seed(0)  # the shuffled batch order (unseeded, it made this test flaky)
    model = TinyCNN(lr=0.1)
    trainer = d2l.Trainer(max_epochs=3, num_gpus=1)
    assert trainer.gpus == jax.devices("gpu")[:1] if d2l.num_gpus() else trainer.gpus == []
    trainer.fit(model, digits, key=jax.random.PRNGKey(0))
    assert isinstance(trainer.state.dropout_rng, jax.Array) and trainer.state.batch_stats == {}
    check_training_board(model, trainer, min_val_acc=0.6)


def test_clip_gradients_scales_the_joint_norm():
    grads = {"w": jnp.full((2, 3), 2.0), "b": jnp.full((2,), 2.0)}
    clipped = d2l.Trainer(max_epochs=1).clip_gradients(1.0, grads)
    norm = np.sqrt(sum((np.asarray(g, np.float64) ** 2).sum() for g in clipped.values()))
    assert norm == pytest.approx(1.0, rel=1e-6)
    kept = d2l.Trainer(max_epochs=1).clip_gradients(100.0, grads)
    assert all((kept[k] == grads[k]).all() for k in grads)


def test_helpers_have_the_books_signatures():
    assert d2l.float32 is jnp.float32 and d2l.int32 is jnp.int32 and d2l.int64 is jnp.int64
    x = d2l.arange(12, dtype=d2l.float32)
    assert d2l.reshape(x, (3, 4)).shape == (3, 4) and float(d2l.reduce_sum(x)) == 66.0
    assert float(d2l.reduce_mean(x)) == 5.5 and int(d2l.argmax(x)) == 11
    assert float(d2l.reduce_sum(d2l.zeros((2, 3)))) == 0 and float(d2l.reduce_sum(d2l.ones((2, 3)))) == 6
    assert d2l.tensor([[1.0, 2.0]]).dtype == jnp.float32
    assert d2l.concat([x, x]).shape == (24,) and d2l.stack([x, x], 0).shape == (2, 12)
    assert d2l.transpose(d2l.reshape(x, (3, 4))).shape == (4, 3)
    assert d2l.astype(x, d2l.int32).dtype == jnp.int32
    assert isinstance(d2l.numpy(x), np.ndarray)
    assert d2l.cpu() == jax.devices("cpu")[0] and d2l.to(x, d2l.cpu()).devices() == {d2l.cpu()}
    assert d2l.try_gpu() == (d2l.gpu() if d2l.num_gpus() else d2l.cpu())


def test_corr2d_gives_the_books_values():
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    Y = d2l.corr2d(X, K)
    assert Y.dtype == jnp.float32 and Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]
    X = jnp.ones((6, 8)).at[:, 2:6].set(0)
    assert d2l.corr2d(X, d2l.tensor([[1.0, -1.0]])).tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]] * 6
    assert not d2l.corr2d(d2l.transpose(X), d2l.tensor([[1.0, -1.0]])).any()
    assert d2l.corr2d(jnp.arange(9).reshape(3, 3), jnp.array([[0, 1], [2, 3]])).dtype == jnp.float32


def test_corr2d_matches_the_reference_and_is_differentiable():
    rng = np.random.default_rng(7)
    X_np, K_np = rng.normal(size=(6, 7)), rng.normal(size=(2, 3))
    X, K = jnp.asarray(X_np, jnp.float32), jnp.asarray(K_np, jnp.float32)
    Y = jax.jit(d2l.corr2d)(X, K)
    np.testing.assert_allclose(Y, reference.corr2d(X_np, K_np), rtol=1e-5, atol=1e-5)
    dX, dK = jax.grad(lambda X, K: d2l.corr2d(X, K).sum(), argnums=(0, 1))(X, K)
    # d sum(Y) / dK[a, b] = sum of X over the window positions: corr2d(X, ones(Y.shape))
    np.testing.assert_allclose(dK, reference.corr2d(X_np, np.ones(Y.shape)), rtol=1e-5, atol=1e-5)
    expected_dX = np.zeros_like(X_np)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            expected_dX[i : i + 2, j : j + 3] += K_np
    np.testing.assert_allclose(dX, expected_dX, rtol=1e-5, atol=1e-5)
