"""The book's TensorFlow dialect, ``from d2lconv.book import tensorflow as d2l``, used in the book's style."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from book_support import check_training_board, imported_after, require_backend
from d2lconv import reference

require_backend("tensorflow", "TensorFlow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2lconv.book import tensorflow as d2l  # noqa: E402


class TinyCNN(d2l.Classifier):
    """One convolution, ReLU, max pooling and a dense layer, for 16x16 NHWC digits."""

    def __init__(self, lr=0.1, num_classes=10, channels=4):
        super().__init__()
        self.save_hyperparameters()
        self.net = keras.Sequential([
            keras.layers.Conv2D(channels, kernel_size=3, padding="same", activation="relu"),
            keras.layers.MaxPool2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ])


@pytest.fixture(scope="module")
def digits():
    return d2l.Digits(batch_size=64, resize=(16, 16), shifts=0)


def test_import_loads_only_tensorflow():
    assert imported_after("from d2lconv.book import tensorflow as d2l") == "['tensorflow']"
    import d2lconv.book

    assert d2lconv.book.tf is d2l


def test_classifier_is_a_keras_model_with_its_hyperparameters():
    model = TinyCNN(lr=0.05, channels=3)
    assert isinstance(model, keras.Model) and isinstance(model, d2l.Module)
    assert model.hparams == {"lr": 0.05, "num_classes": 10, "channels": 3}
    assert (model.plot_train_per_epoch, model.plot_valid_per_epoch) == (2, 1)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_keras_loss_attribute_does_not_hide_the_books_loss():
    # Keras 3 sets self.loss = None in Model.__init__ and self.loss = <arg> in compile()
    model = TinyCNN()
    assert callable(model.loss) and model.keras_loss is None
    model.compile(optimizer="sgd", loss="mse")
    assert model.keras_loss == "mse"
    Y_hat, Y = tf.constant([[0.0, 0.0]]), tf.constant([1])
    assert float(model.loss(Y_hat, Y)) == pytest.approx(math.log(2), rel=1e-6)


def test_call_records_kerass_training_flag():
    model = TinyCNN()
    assert model.training is None
    model(tf.zeros((1, 16, 16, 1)), training=True)
    assert model.training is True
    model(tf.zeros((1, 16, 16, 1)), training=False)
    assert model.training is False


def test_add_to_class_and_layer_summary(capsys):
    @d2l.add_to_class(TinyCNN)
    def num_layers(self):
        return len(self.net.layers)

    model = TinyCNN()
    assert model.num_layers() == 4
    model.layer_summary((2, 16, 16, 1))
    assert capsys.readouterr().out.splitlines() == [
        "Conv2D output shape:\t (2, 16, 16, 4)",
        "MaxPooling2D output shape:\t (2, 8, 8, 4)",
        "Flatten output shape:\t (2, 256)",
        "Dense output shape:\t (2, 10)",
    ]


def test_lenet_layer_summary_prints_the_books_shapes(capsys):
    d2l.LeNet().layer_summary((1, 28, 28, 1))
    shapes = [line.split("\t ")[1] for line in capsys.readouterr().out.splitlines()]
    assert shapes == ["(1, 28, 28, 6)", "(1, 14, 14, 6)", "(1, 10, 10, 16)", "(1, 5, 5, 16)",
                      "(1, 400)", "(1, 120)", "(1, 84)", "(1, 10)"]


def test_forward_without_net_is_a_clear_error():
    class Empty(d2l.Module):
        pass

    with pytest.raises(AttributeError, match="Empty has no self.net"):
        Empty()(tf.zeros((1, 2)))


def test_loss_and_accuracy_follow_the_book():
    Y_hat = tf.constant([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0]])
    Y = tf.constant([0, 1, 1, 2])
    model = TinyCNN()
    assert float(model.accuracy(Y_hat, Y)) == pytest.approx(0.5)
    assert model.accuracy(Y_hat, Y, averaged=False).numpy().tolist() == [1.0, 1.0, 0.0, 0.0]
    logits = Y_hat.numpy().astype(np.float64)
    expected = np.log(np.exp(logits).sum(1)) - logits[np.arange(4), Y.numpy()]
    assert float(model.loss(Y_hat, Y)) == pytest.approx(expected.mean(), rel=1e-5)  # float32
    assert model.loss(Y_hat, Y, averaged=False).numpy() == pytest.approx(expected, rel=1e-5)


def test_digits_batches_have_the_books_tensorflow_layout(digits):
    loader = digits.get_dataloader(train=True)
    assert isinstance(loader, tf.data.Dataset)
    assert len(loader) == math.ceil(1438 / 64) and len(digits.val_dataloader()) == math.ceil(359 / 64)
    X, y = next(iter(loader))
    assert X.shape == (64, 16, 16, 1) and X.dtype == tf.float32 and y.dtype == tf.int32
    assert digits.text_labels(y[:3]) == [str(int(i)) for i in y[:3]]
    # training batches are reshuffled on every pass, validation batches keep their order
    firsts = [next(iter(loader))[1].numpy() for _ in range(3)]
    assert any((a != firsts[0]).any() for a in firsts[1:])
    X_val = np.concatenate([X.numpy() for X, _ in digits.val_dataloader()])
    np.testing.assert_array_equal(X_val, digits.arrays(False)[0])
    assert len(digits.visualize((X, y), nrows=1, ncols=4)) == 4


def test_trainer_fit_trains_and_plots_at_fractional_epochs(digits):
    keras.utils.set_random_seed(0)
    model = TinyCNN(lr=0.1)
    X_val, y_val = digits.arrays(False)
    before = float(model.accuracy(model(X_val), tf.constant(y_val)))
    trainer = d2l.Trainer(max_epochs=3)
    trainer.fit(model, digits)
    check_training_board(model, trainer, min_val_acc=max(0.6, before + 0.3))


def test_clip_gradients_scales_the_joint_norm():
    grads = [tf.fill((2, 3), 2.0), tf.fill((2,), 2.0)]
    clipped = d2l.Trainer(max_epochs=1).clip_gradients(1.0, grads)
    assert float(tf.sqrt(sum(tf.reduce_sum(g**2) for g in clipped))) == pytest.approx(1.0, rel=1e-6)
    kept = d2l.Trainer(max_epochs=1).clip_gradients(100.0, grads)
    assert all((k.numpy() == g.numpy()).all() for k, g in zip(kept, grads))


def test_helpers_have_the_books_signatures():
    assert d2l.float32 is tf.float32 and d2l.int32 is tf.int32 and d2l.int64 is tf.int64
    assert d2l.normal((3, 3, 3), 0, 1).shape == (3, 3, 3)  # TensorFlow's (shape, mean, stddev)
    assert d2l.rand((2, 3)).shape == (2, 3)
    x = d2l.arange(12, dtype=d2l.float32)
    assert d2l.reshape(x, (3, 4)).shape == (3, 4) and float(d2l.reduce_sum(x)) == 66.0
    assert float(d2l.reduce_sum(d2l.zeros((2, 3)))) == 0 and float(d2l.reduce_sum(d2l.ones((2, 3)))) == 6
    assert d2l.tensor([[1.0, 2.0]]).dtype == tf.float32
    assert d2l.concat([x, x], 0).shape == (24,) and d2l.stack([x, x], 0).shape == (2, 12)
    assert d2l.transpose(d2l.reshape(x, (3, 4))).shape == (4, 3)
    assert d2l.astype(x, d2l.int32).dtype == tf.int32 and int(d2l.argmax(x)) == 11
    assert isinstance(d2l.numpy(x), np.ndarray) and d2l.size(x) == 12
    assert d2l.num_gpus() == len(tf.config.list_physical_devices("GPU"))
    with d2l.try_gpu():  # the book trains inside this context
        y = tf.ones(2)
    assert ("GPU" if d2l.num_gpus() else "CPU") in y.device
    with d2l.cpu():
        assert "CPU" in tf.ones(1).device


def test_keras_on_another_backend_is_a_clear_import_error():
    code = "from d2lconv.book import tensorflow"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "needs Keras on TensorFlow, but Keras runs on 'jax'" in run.stderr


def test_corr2d_gives_the_books_values():
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    Y = d2l.corr2d(X, K)
    assert Y.dtype == tf.float32 and Y.numpy().tolist() == [[19.0, 25.0], [37.0, 43.0]]
    # the book's edge detector: a vertical edge gives 1 and -1, its transpose nothing
    X = tf.Variable(tf.ones((6, 8)))
    X[:, 2:6].assign(tf.zeros((6, 4)))
    Y = d2l.corr2d(X, d2l.tensor([[1.0, -1.0]]))
    assert Y.numpy().tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]] * 6
    assert not d2l.corr2d(d2l.transpose(X), d2l.tensor([[1.0, -1.0]])).numpy().any()
    assert d2l.corr2d(tf.reshape(tf.range(9), (3, 3)), tf.constant([[0, 1], [2, 3]])).dtype == tf.float32


def test_corr2d_matches_the_reference_and_is_differentiable():
    rng = np.random.default_rng(7)
    X_np, K_np = rng.normal(size=(6, 7)), rng.normal(size=(2, 3))
    X, K = tf.Variable(X_np, dtype=tf.float32), tf.Variable(K_np, dtype=tf.float32)
    with tf.GradientTape() as tape:
        Y = d2l.corr2d(X, K)
        total = tf.reduce_sum(Y)
    np.testing.assert_allclose(Y.numpy(), reference.corr2d(X_np, K_np), rtol=1e-5, atol=1e-5)
    dX, dK = tape.gradient(total, [X, K])
    # d sum(Y) / dK[a, b] = sum of X over the window positions: corr2d(X, ones(Y.shape))
    np.testing.assert_allclose(dK.numpy(), reference.corr2d(X_np, np.ones(Y.shape)), rtol=1e-5, atol=1e-5)
    expected_dX = np.zeros_like(X_np)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            expected_dX[i : i + 2, j : j + 3] += K_np
    np.testing.assert_allclose(dX.numpy(), expected_dX, rtol=1e-5, atol=1e-5)
