"""The book's ``d2l`` library for MXNet, as chapter 7 and the utilities it relies on use it.

    from d2lconv.book import mxnet as d2l     # instead of: from d2l import mxnet as d2l

MXNet 1.9.1 (its last release) in NumPy mode: importing this module calls ``npx.set_np()``, as
the book's cells do. Names and behaviour follow the book's ``d2l/mxnet.py``; what differs:

- ``FashionMNIST`` reads the official files through :mod:`d2lconv.data` (checksummed, cached,
  offline-aware); batches are the book's: a Gluon ``DataLoader`` of float32 (N, 1, H, W) images
  in [0, 1] and int32 labels (Gluon's own label dtype). ``Digits(batch_size)`` is the same
  interface over scikit-learn's offline digits. Loaders run in the main process.
- ``corr2d`` is computed by d2lconv's convolution (same result as the book's loop, and
  differentiable under ``autograd.record()``, which the book's element assignment is not).
- ``Trainer.fit`` shows a tqdm bar outside notebooks; in a notebook the ``ProgressBoard``
  redraws in place.
"""

import math
import sys

import numpy as _onp
from mxnet import autograd, gluon, init, np, npx
from mxnet.gluon import nn

from d2lconv import mxnet as _ops
from d2lconv.book import common
# the book's framework-free names, re-exported as d2l.<name>
from d2lconv.book.common import argmax, repeat, reduce_mean, reduce_sum, reshape, swapaxes  # noqa: F401
from d2lconv.book.common import HyperParameters, ProgressBoard, add_to_class, show_images  # noqa: F401

npx.set_np()

d2l = sys.modules[__name__]
nn_Module = nn.Block

# The book's aliases (its config.ini), bound to MXNet's NumPy interface.
ones_like, ones, zeros_like, zeros = np.ones_like, np.ones, np.zeros_like, np.zeros
tensor, arange, meshgrid, linspace, eye = np.array, np.arange, np.meshgrid, np.linspace, np.eye
sin, sinh, cos, cosh, tanh, exp, log = np.sin, np.sinh, np.cos, np.cosh, np.tanh, np.exp, np.log
normal, rand, randn = np.random.normal, np.random.rand, np.random.randn
matmul, batch_matmul, concat, stack, abs = np.dot, npx.batch_dot, np.concatenate, np.stack, np.abs
sigmoid, expand_dims = npx.sigmoid, np.expand_dims
int32, int64, float32 = np.int32, np.int64, np.float32


def size(a):
    return a.size


def transpose(a):
    return a.T


def numpy(x, *args, **kwargs):
    return x.asnumpy(*args, **kwargs)


def to(x, *args, **kwargs):
    return x.as_in_context(*args, **kwargs)


def astype(x, *args, **kwargs):
    return x.astype(*args, **kwargs)


# Devices
def cpu():
    """The CPU context."""
    return npx.cpu()


def gpu(i=0):
    """GPU ``i``'s context."""
    return npx.gpu(i)


def num_gpus():
    """How many GPUs MXNet sees."""
    return npx.num_gpus()


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus():
    """Every GPU, or ``[cpu()]`` if there is none."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


# Models
class SGD(HyperParameters):
    """Minibatch SGD on arrays with attached gradients (models without Gluon parameters)."""

    def __init__(self, params, lr):
        self.save_hyperparameters()

    def step(self, _):
        for param in self.params:
            param -= self.lr * param.grad


class Module(nn.Block, common.ModuleBase):
    """The base class of models: a Gluon ``Block`` that plots its training on ``self.board``."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X):
        if not hasattr(self, "net"):
            raise AttributeError(f"{type(self).__name__} has no self.net: define it or override forward")
        return self.net(X)

    def configure_optimizers(self):
        params = self.parameters()
        if isinstance(params, list):
            return SGD(params, self.lr)
        return gluon.Trainer(params, "sgd", {"learning_rate": self.lr})

    def get_scratch_params(self):
        """The model's own arrays (and its submodules'), for models built without Gluon layers."""
        params = []
        for attr in dir(self):
            a = getattr(self, attr)
            if isinstance(a, np.ndarray):
                params.append(a)
            if isinstance(a, Module):
                params.extend(a.get_scratch_params())
        return params

    def parameters(self):
        """Gluon's parameters if the model has any, else its scratch arrays."""
        params = self.collect_params()
        if isinstance(params, (dict, gluon.parameter.ParameterDict)) and len(params.keys()):
            return params
        return self.get_scratch_params()

    def set_scratch_params_device(self, device):
        for attr in dir(self):
            a = getattr(self, attr)
            if isinstance(a, np.ndarray):
                with autograd.record():
                    setattr(self, attr, a.as_in_ctx(device))
                getattr(self, attr).attach_grad()
            if isinstance(a, Module):
                a.set_scratch_params_device(device)
            if isinstance(a, list):
                for elem in a:
                    elem.set_scratch_params_device(device)


class Classifier(Module):
    """The base class of classification models: cross-entropy loss, accuracy, validation plots."""

    validation_step = common.classifier_validation_step

    def accuracy(self, Y_hat, Y, averaged=True):
        return common.classifier_accuracy(d2l, Y_hat, Y, averaged)

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = reshape(Y_hat, (-1, Y_hat.shape[-1]))
        Y = reshape(Y, (-1,))
        losses = gluon.loss.SoftmaxCrossEntropyLoss()(Y_hat, Y)
        return losses.mean() if averaged else losses

    def layer_summary(self, X_shape):
        """Print each layer of ``self.net`` with its output shape for a random input of ``X_shape``."""
        X = randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class LeNet(Classifier):
    """LeNet-5 as the book builds it: sigmoid activations, average pooling, Xavier initialisation."""

    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential()
        self.net.add(
            nn.Conv2D(channels=6, kernel_size=5, padding=2, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=5, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation="sigmoid"),
            nn.Dense(84, activation="sigmoid"),
            nn.Dense(num_classes),
        )
        self.net.initialize(init.Xavier())


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (h, w): a float32 (H-h+1, W-w+1) array,
    differentiable in ``X`` and ``K`` under ``autograd.record()``."""
    dtype = _onp.result_type(X.dtype, K.dtype)
    if not _onp.issubdtype(dtype, _onp.floating):
        dtype = _onp.float32
    return _ops.corr2d(X.astype(dtype), K.astype(dtype)).astype(_onp.float32)


# Data
class DataModule(common.DataModule):
    """The base class of data; ``get_tensorloader`` batches arrays with Gluon's DataLoader."""

    def get_tensorloader(self, tensors, train, indices=slice(0, None)):
        tensors = tuple(a[indices] for a in tensors)
        dataset = gluon.data.ArrayDataset(*tensors)
        return gluon.data.DataLoader(dataset, self.batch_size, shuffle=train)


class _ImageData(common.ImageDataModule, DataModule):
    def get_dataloader(self, train):
        X, y = self.arrays(train)
        return self.get_tensorloader((np.array(X, dtype=X.dtype), np.array(y, dtype=_onp.int32)), train)


class FashionMNIST(common.FashionMNISTData, _ImageData):
    """Fashion-MNIST: 60,000 training and 10,000 validation images, batches of float32
    (N, 1, *resize) images in [0, 1] and int32 labels."""


class Digits(common.DigitsData, _ImageData):
    """Offline stand-in for ``FashionMNIST``: scikit-learn's handwritten digits (see
    :func:`d2lconv.data.Digits` for ``options``), with the same batches and methods."""


# Training
class Trainer(common.Trainer):
    """``Trainer(max_epochs, num_gpus=0, gradient_clip_val=0).fit(model, data)``."""

    framework = d2l

    def to_device(self, x):
        return x.as_in_context(self.gpus[0])

    def model_to_device(self, model):
        model.collect_params().reset_ctx(self.gpus[0])
        model.set_scratch_params_device(self.gpus[0])

    def fit_epoch(self):
        for batch in self.train_dataloader:
            with autograd.record():
                loss = self.model.training_step(self.prepare_batch(batch))
            loss.backward()
            if self.gradient_clip_val > 0:
                self.clip_gradients(self.gradient_clip_val, self.model)
            self.optim.step(1)
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        for batch in self.val_dataloader:
            self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, model):
        """Scale all gradients down so that their joint norm is at most ``grad_clip_val``."""
        params = model.parameters()
        if not isinstance(params, list):
            params = [p.data() for p in params.values()]
        norm = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
        if norm > grad_clip_val:
            for param in params:
                param.grad[:] *= grad_clip_val / norm
