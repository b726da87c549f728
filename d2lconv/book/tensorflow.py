"""The book's ``d2l`` library for TensorFlow, as chapter 7 uses it: ``from d2lconv.book import tensorflow as d2l``.

Names and behaviour follow ``d2l/tensorflow.py`` of d2l-ai/d2l-en, fixed for TensorFlow 2.16+
with Keras 3:

- ``Module`` is a Keras 3 ``Model``. Keras's own ``Trainer.__init__`` and ``compile`` store
  compile's loss argument as ``self.loss`` (``None`` at first), which hid the book's ``loss``
  method and made ``trainer.fit`` fail with ``'NoneType' object is not callable``. Here that
  attribute is kept as ``keras_loss``, so ``model.loss(Y_hat, Y)`` is always the book's method.
- ``call(X, training=None)`` records Keras's ``training`` flag in ``self.training``, as the
  book's ``call`` does; ``configure_optimizers`` is a Keras ``SGD`` at ``self.lr``.
- Data are NHWC: ``FashionMNIST``/``Digits`` give ``tf.data.Dataset`` batches of float32 images
  (N, H, W, 1) and int32 labels, read by :mod:`d2lconv.data` (checksummed, cached, offline-aware).
- ``corr2d`` is d2lconv's operator: the book's values and float32 result, but a ``tf.Tensor``
  that gradients flow through (the book's ``tf.Variable`` element assignment stops them).
- Aliases (``normal``, ``rand``, ``reshape``, ``float32``, ...) are TensorFlow's own functions
  and dtype objects, with TensorFlow's signatures (``normal(shape, mean, stddev)``).

``tf.keras`` follows ``KERAS_BACKEND``; the book's TensorFlow code needs Keras on TensorFlow,
so importing this module under another Keras backend is an ImportError saying so.
"""

from __future__ import annotations

import os
import sys


def _check_keras_backend(name):
    if name != "tensorflow":
        raise ImportError(
            f"d2lconv.book.tensorflow needs Keras on TensorFlow, but Keras runs on {name!r} "
            "(KERAS_BACKEND or ~/.keras/keras.json): unset KERAS_BACKEND or set it to "
            "'tensorflow' before Keras is first imported"
        )


if "keras" not in sys.modules:  # say so before Keras tries to import another framework
    _check_keras_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2lconv import tensorflow as _ops  # noqa: E402
from d2lconv.book import common  # noqa: E402
# the book's framework-free names, re-exported as d2l.<name>
from d2lconv.book.common import DataModule, HyperParameters, ProgressBoard, add_to_class, show_images  # noqa: E402,F401

_check_keras_backend(keras.backend.backend())

# The book's aliases (its config.ini): TensorFlow's own functions and dtypes.
reshape, ones_like, ones, zeros_like, zeros = tf.reshape, tf.ones_like, tf.ones, tf.zeros_like, tf.zeros
meshgrid, sin, sinh, cos, cosh, tanh = tf.meshgrid, tf.sin, tf.sinh, tf.cos, tf.cosh, tf.tanh
linspace, exp, log, sigmoid = tf.linspace, tf.exp, tf.math.log, tf.sigmoid
normal, rand = tf.random.normal, tf.random.uniform
matmul = batch_matmul = tf.matmul
reduce_sum, reduce_mean, argmax = tf.reduce_sum, tf.reduce_mean, tf.argmax
tensor, arange, astype, transpose = tf.constant, tf.range, tf.cast, tf.transpose
concat, stack, abs, eye, expand_dims, repeat = tf.concat, tf.stack, tf.abs, tf.eye, tf.expand_dims, tf.repeat
int32, int64, float32 = tf.int32, tf.int64, tf.float32


def size(a):
    """The number of elements of ``a``, as a NumPy integer."""
    return tf.size(a).numpy()


def numpy(x, *args, **kwargs):
    """``x`` as a NumPy array (``x.numpy()``)."""
    return x.numpy(*args, **kwargs)


def cpu():
    """The CPU device, as a context manager: ``with d2l.cpu(): ...``."""
    return tf.device("/CPU:0")


def gpu(i=0):
    """GPU ``i``, as a context manager."""
    return tf.device(f"/GPU:{i}")


def num_gpus():
    """How many GPUs TensorFlow sees."""
    return len(tf.config.list_physical_devices("GPU"))


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus():
    """Every GPU, or ``[cpu()]`` without one."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (kh, kw): a float32 (H-kh+1, W-kw+1)
    tensor, as the book's, but differentiable in ``X`` and ``K``. Other dtypes are taken as
    float32 (the book's result is always a float32 variable)."""
    return _ops.corr2d(*(tf.cast(x, tf.float32) for x in (X, K)))


class Module(keras.Model, common.ModuleBase):
    """The base class of the book's models: a Keras 3 ``Model`` with the book's ``forward``,
    ``loss``, ``training_step``, ``validation_step``, ``plot`` and ``configure_optimizers``."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()
        self.training = None

    def __setattr__(self, name, value):
        # Keras's Trainer keeps compile()'s loss argument in ``self.loss`` (None from __init__):
        # as an instance attribute it would hide the book's ``loss`` method, so it lives here.
        if name == "loss":
            name = "keras_loss"
        super().__setattr__(name, value)

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X):
        if not hasattr(self, "net"):
            raise AttributeError(f"{type(self).__name__} has no self.net: define one or override forward")
        return self.net(X)

    def call(self, X, *args, training=None):
        if training is not None:
            self.training = training
        return self.forward(X, *args)

    def configure_optimizers(self):
        return keras.optimizers.SGD(self.lr)


class Classifier(Module):
    """The base class of classification models: cross-entropy loss on logits and accuracy."""

    def validation_step(self, batch):
        common.classifier_validation_step(self, batch)

    def accuracy(self, Y_hat, Y, averaged=True):
        """The share of rows of ``Y_hat`` whose argmax is ``Y`` (or the 0/1 vector)."""
        return common.classifier_accuracy(sys.modules[__name__], Y_hat, Y, averaged)

    def loss(self, Y_hat, Y, averaged=True):
        """Softmax cross-entropy of logits ``Y_hat`` against integer labels ``Y``: the mean, or
        one value per example with ``averaged=False``."""
        Y_hat = tf.reshape(Y_hat, (-1, Y_hat.shape[-1]))
        losses = keras.losses.sparse_categorical_crossentropy(tf.reshape(Y, (-1,)), Y_hat, from_logits=True)
        return tf.reduce_mean(losses) if averaged else losses

    def layer_summary(self, X_shape):
        """Print each layer of ``self.net`` with its output shape for an input of ``X_shape``."""
        X = normal(X_shape)
        for layer in self.net.layers:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class LeNet(Classifier):
    """LeNet-5 (section 7.6) in Keras layers, NHWC: sigmoid convolutions and dense layers,
    average pooling, ``num_classes`` logits."""

    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        layers = keras.layers
        self.net = keras.Sequential([
            layers.Conv2D(6, kernel_size=5, padding="same", activation="sigmoid"),
            layers.AvgPool2D(pool_size=2, strides=2),
            layers.Conv2D(16, kernel_size=5, activation="sigmoid"),
            layers.AvgPool2D(pool_size=2, strides=2),
            layers.Flatten(),
            layers.Dense(120, activation="sigmoid"),
            layers.Dense(84, activation="sigmoid"),
            layers.Dense(num_classes),
        ])


class _ImageData(common.ImageDataModule):
    """Batches as ``tf.data``: float32 NHWC images and int32 labels, training batches
    reshuffled on every pass."""

    layout = "NHWC"

    def get_dataloader(self, train):
        X, y = self.arrays(train)
        X, y = tf.constant(X), tf.constant(y, tf.int32)
        order = tf.data.Dataset.range(len(y))
        if train:
            order = order.shuffle(len(y), reshuffle_each_iteration=True)
        return order.batch(self.batch_size).map(lambda i: (tf.gather(X, i), tf.gather(y, i)))


class FashionMNIST(common.FashionMNISTData, _ImageData):
    """Fashion-MNIST (60,000 training, 10,000 validation images), as in section 4.2: ``tf.data``
    batches of float32 (N, *resize, 1) images in [0, 1] and int32 labels."""


class Digits(common.DigitsData, _ImageData):
    """Offline stand-in for ``FashionMNIST`` (see :func:`d2lconv.data.Digits` for ``options``),
    with the same batches and methods."""


class Trainer(common.Trainer):
    """The book's trainer on TensorFlow: per batch a ``GradientTape`` over ``training_step``
    and the optimizer's ``apply_gradients``. Device placement is TensorFlow's own (the book
    trains inside ``with d2l.try_gpu():``); ``num_gpus`` is accepted and not needed."""

    def fit_epoch(self):
        model = self.model
        model.training = True
        for batch in self.train_dataloader:
            with tf.GradientTape() as tape:
                loss = model.training_step(self.prepare_batch(batch))
            grads = tape.gradient(loss, model.trainable_variables)
            if self.gradient_clip_val > 0:
                grads = self.clip_gradients(self.gradient_clip_val, grads)
            self.optim.apply_gradients(zip(grads, model.trainable_variables))
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        model.training = False
        for batch in self.val_dataloader:
            model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, grads):
        """``grads`` scaled down so that their global norm is at most ``grad_clip_val``."""
        return tf.clip_by_global_norm(grads, grad_clip_val)[0]
