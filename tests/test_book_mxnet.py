"""The book's MXNet dialect, ``from d2lconv.book import mxnet as d2l``, used in the book's style."""

import math

import numpy as onp
import pytest

from book_support import check_training_board, imported_after, require_backend
from d2lconv import reference

require_backend("mxnet", "MXNet")

from mxnet import autograd, gluon, init, np, npx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from d2lconv.book import mxnet as d2l  # noqa: E402


class TinyCNN(d2l.Classifier):
    """One convolution with ReLU, max pooling and a dense layer, for 16x16 digits."""

    def __init__(self, lr=0.1, num_classes=10, channels=4):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential()
        self.net.add(nn.Conv2D(channels, kernel_size=3, padding=1, activation="relu"), nn.MaxPool2D(2),
                     nn.Dense(num_classes))
        self.net.initialize(init.Xavier())


@pytest.fixture(scope="module")
def digits():
    return d2l.Digits(batch_size=64, resize=(16, 16), shifts=0)


def test_import_loads_only_mxnet():
    assert imported_after("from d2lconv.book import mxnet as d2l") == "['mxnet']"
    import d2lconv.book

    assert d2lconv.book.mx is d2l


def test_classifier_is_a_gluon_block_with_its_hyperparameters():
    model = TinyCNN(lr=0.05, channels=3)
    assert isinstance(model, nn.Block) and isinstance(model, d2l.Module)
    assert model.hparams == {"lr": 0.05, "num_classes": 10, "channels": 3}
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, gluon.Trainer) and optimizer.learning_rate == 0.05


def test_add_to_class_and_layer_summary(capsys):
    @d2l.add_to_class(TinyCNN)
    def num_layers(self):
        return len(self.net)

    model = TinyCNN()
    assert model.num_layers() == 3
    model.layer_summary((2, 1, 16, 16))
    assert capsys.readouterr().out.splitlines() == [
        "Conv2D output shape:\t (2, 4, 16, 16)",
        "MaxPool2D output shape:\t (2, 4, 8, 8)",
        "Dense output shape:\t (2, 10)",
    ]


def test_loss_and_accuracy_follow_the_book():
    Y_hat = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0]])
    Y = np.array([0, 1, 1, 2], dtype="int32")
    model = TinyCNN()
    assert float(model.accuracy(Y_hat, Y)) == pytest.approx(0.5)
    assert model.accuracy(Y_hat, Y, averaged=False).tolist() == [1.0, 1.0, 0.0, 0.0]
    logits = Y_hat.asnumpy().astype(onp.float64)
    expected = onp.log(onp.exp(logits).sum(1)) - logits[onp.arange(4), Y.asnumpy()]
    assert float(model.loss(Y_hat, Y)) == pytest.approx(expected.mean(), rel=1e-5)  # float32
    assert model.loss(Y_hat, Y, averaged=False).asnumpy() == pytest.approx(expected, rel=1e-5)


def test_digits_batches_have_the_books_mxnet_layout(digits):
    loader = digits.get_dataloader(train=True)
    assert isinstance(loader, gluon.data.DataLoader)
    assert len(loader) == math.ceil(1438 / 64) and len(digits.val_dataloader()) == math.ceil(359 / 64)
    X, y = next(iter(loader))
    assert isinstance(X, np.ndarray) and X.shape == (64, 1, 16, 16)
    assert X.dtype == onp.float32 and y.dtype == onp.int32
    assert digits.text_labels(y[:3]) == [str(int(i)) for i in y[:3].asnumpy()]


def test_trainer_fit_trains_and_plots_at_fractional_epochs(digits):
    npx.random.seed(0)
    onp.random.seed(0)  # Gluon's DataLoader shuffles with NumPy's global RNG (unseeded, this test was flaky)
    model = TinyCNN(lr=0.1)
    trainer = d2l.Trainer(max_epochs=3)
    trainer.fit(model, digits)
    check_training_board(model, trainer, min_val_acc=0.6)


def test_clip_gradients_scales_the_joint_norm():
    model = TinyCNN()
    X = np.ones((2, 1, 16, 16))
    with autograd.record():
        loss = (model(X) ** 2).sum()
    loss.backward()
    params = [p.data() for p in model.parameters().values()]
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert norm > 0.1
    d2l.Trainer(max_epochs=1).clip_gradients(0.1, model)
    clipped = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert clipped == pytest.approx(0.1, rel=1e-4)


def test_trainer_takes_the_gpus_that_exist():
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
    assert trainer.hparams == {"max_epochs": 1, "num_gpus": 1, "gradient_clip_val": 0}
    assert trainer.gpus == ([npx.gpu(0)] if npx.num_gpus() else [])


def test_helpers_have_the_books_signatures():
    assert d2l.float32 is np.float32 and d2l.int32 is np.int32
    assert d2l.normal(0, 1, (3, 3, 3)).shape == (3, 3, 3)
    assert d2l.rand(2, 3).shape == (2, 3) and d2l.randn(4).shape == (4,)
    x = d2l.arange(12, dtype=d2l.float32)
    assert d2l.reshape(x, (3, 4)).shape == (3, 4) and float(d2l.reduce_sum(x)) == 66.0
    assert float(d2l.zeros((2, 3)).sum()) == 0 and float(d2l.ones((2, 3)).sum()) == 6
    assert isinstance(d2l.tensor([[1.0, 2.0]]), np.ndarray)
    assert d2l.concat([x, x]).shape == (24,) and d2l.stack([x, x]).shape == (2, 12)
    assert d2l.transpose(d2l.reshape(x, (3, 4))).shape == (4, 3)
    assert d2l.astype(x, d2l.int32).dtype == onp.int32 and int(d2l.argmax(x)) == 11
    assert isinstance(d2l.numpy(x), onp.ndarray)
    assert d2l.cpu() == npx.cpu() and d2l.gpu(1) == npx.gpu(1)
    assert d2l.try_gpu() == (npx.gpu(0) if npx.num_gpus() else npx.cpu())


def test_corr2d_gives_the_books_values():
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert d2l.corr2d(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]
    Y = d2l.corr2d(np.arange(9).reshape(3, 3), np.array([[0, 1], [2, 3]], dtype="int32"))
    assert Y.dtype == onp.float32 and Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_corr2d_matches_the_reference_and_is_differentiable():
    rng = onp.random.default_rng(7)
    X_np, K_np = rng.normal(size=(6, 7)), rng.normal(size=(2, 3))
    X, K = np.array(X_np, dtype="float32"), np.array(K_np, dtype="float32")
    X.attach_grad()
    K.attach_grad()
    with autograd.record():
        Y = d2l.corr2d(X, K)
    Y.backward()
    onp.testing.assert_allclose(Y.asnumpy(), reference.corr2d(X_np, K_np), rtol=1e-5, atol=1e-5)
    onp.testing.assert_allclose(K.grad.asnumpy(), reference.corr2d(X_np, onp.ones(Y.shape)), rtol=1e-5, atol=1e-5)
    expected_dX = onp.zeros_like(X_np)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            expected_dX[i : i + 2, j : j + 3] += K_np
    onp.testing.assert_allclose(X.grad.asnumpy(), expected_dX, rtol=1e-5, atol=1e-5)
