"""The book's ``d2l`` library for PyTorch, as chapter 7 and the utilities it relies on use it.

    from d2lconv.book import torch as d2l     # instead of: from d2l import torch as d2l

Names and behaviour follow the book's ``d2l/torch.py``; what differs, and why:

- ``FashionMNIST`` reads the official files through :mod:`d2lconv.data` (checksummed, cached,
  offline-aware) instead of torchvision (which does not install beside current torch); batches
  are the same: a ``DataLoader`` of float32 (N, 1, H, W) images in [0, 1] and int64 labels.
  ``Digits(batch_size)`` is the same interface over scikit-learn's offline digits.
- Loaders run in the main process (``num_workers`` is kept but unused): the data sit in memory.
- ``corr2d`` is computed by d2lconv's convolution (same result as the book's loop, and
  differentiable), returned in the default float dtype like the book's.
- ``Trainer.fit`` shows a tqdm bar outside notebooks; in a notebook the ``ProgressBoard``
  redraws in place. No window opens in a terminal.
"""

import sys

import torch
from torch import nn
from torch.nn import functional as F

from d2lconv import torch as _ops
from d2lconv.book import common
# the book's framework-free names, re-exported as d2l.<name>
from d2lconv.book.common import argmax, repeat, reduce_mean, reduce_sum, reshape, swapaxes  # noqa: F401
from d2lconv.book.common import HyperParameters, ProgressBoard, add_to_class, show_images  # noqa: F401

d2l = sys.modules[__name__]
nn_Module = nn.Module

# The book's aliases (its config.ini), bound to torch.
ones_like, ones, zeros_like, zeros = torch.ones_like, torch.ones, torch.zeros_like, torch.zeros
tensor, arange, meshgrid, linspace, eye = torch.tensor, torch.arange, torch.meshgrid, torch.linspace, torch.eye
sin, sinh, cos, cosh, tanh, exp, log = torch.sin, torch.sinh, torch.cos, torch.cosh, torch.tanh, torch.exp, torch.log
normal, rand, randn = torch.normal, torch.rand, torch.randn
matmul, batch_matmul, concat, stack, abs, sigmoid = torch.matmul, torch.bmm, torch.cat, torch.stack, torch.abs, torch.sigmoid
int32, int64, float32 = torch.int32, torch.int64, torch.float32


def numpy(x, *args, **kwargs):
    return x.detach().cpu().numpy(*args, **kwargs)


def size(x, *args, **kwargs):
    return x.numel(*args, **kwargs)


def to(x, *args, **kwargs):
    return x.to(*args, **kwargs)


def astype(x, *args, **kwargs):
    return x.type(*args, **kwargs)


def transpose(x, *args, **kwargs):
    return x.t(*args, **kwargs)


def expand_dims(x, *args, **kwargs):
    return x.unsqueeze(*args, **kwargs)


# Devices
def cpu():
    """The CPU device."""
    return torch.device("cpu")


def gpu(i=0):
    """GPU ``i``."""
    return torch.device(f"cuda:{i}")


def num_gpus():
    """How many GPUs torch sees."""
    return torch.cuda.device_count()


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus():
    """Every GPU, or ``[cpu()]`` if there is none."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


# Models
class Module(nn.Module, common.ModuleBase):
    """The base class of models: a ``torch.nn.Module`` that plots its training on ``self.board``."""

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
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def apply_init(self, inputs, init=None):
        """Run ``inputs`` through the model once (materialising lazy layers), then apply ``init``
        to every submodule of ``self.net``."""
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(Module):
    """The base class of classification models: cross-entropy loss, accuracy, validation plots."""

    validation_step = common.classifier_validation_step

    def accuracy(self, Y_hat, Y, averaged=True):
        return common.classifier_accuracy(d2l, Y_hat, Y, averaged)

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = reshape(Y_hat, (-1, Y_hat.shape[-1]))
        Y = reshape(Y, (-1,))
        return F.cross_entropy(Y_hat, Y, reduction="mean" if averaged else "none")

    def layer_summary(self, X_shape):
        """Print each layer of ``self.net`` with its output shape for a random input of ``X_shape``."""
        X = randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


def init_cnn(module):
    """Xavier-uniform weights for linear and convolutional layers (use with ``apply_init``)."""
    if type(module) is nn.Linear or type(module) is nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


class LeNet(Classifier):
    """LeNet-5 as the book builds it: sigmoid activations, average pooling, lazy layers."""

    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.LazyLinear(120), nn.Sigmoid(),
            nn.LazyLinear(84), nn.Sigmoid(),
            nn.LazyLinear(num_classes),
        )


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (H, W) with ``K`` (h, w): a (H-h+1, W-w+1) tensor of the
    default float dtype, differentiable in ``X`` and ``K``."""
    dtype = torch.promote_types(X.dtype, K.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return _ops.corr2d(X.to(dtype), K.to(dtype)).to(torch.get_default_dtype())


# Data
class DataModule(common.DataModule):
    """The base class of data; ``get_tensorloader`` batches tensors with torch's DataLoader."""

    def get_tensorloader(self, tensors, train, indices=slice(0, None)):
        tensors = tuple(a[indices] for a in tensors)
        dataset = torch.utils.data.TensorDataset(*tensors)
        return torch.utils.data.DataLoader(dataset, self.batch_size, shuffle=train)


class _ImageData(common.ImageDataModule, DataModule):
    def get_dataloader(self, train):
        X, y = self.arrays(train)
        return self.get_tensorloader((torch.from_numpy(X), torch.from_numpy(y)), train)


class FashionMNIST(common.FashionMNISTData, _ImageData):
    """Fashion-MNIST: 60,000 training and 10,000 validation images, batches of float32
    (N, 1, *resize) images in [0, 1] and int64 labels."""


class Digits(common.DigitsData, _ImageData):
    """Offline stand-in for ``FashionMNIST``: scikit-learn's handwritten digits (see
    :func:`d2lconv.data.Digits` for ``options``), with the same batches and methods."""


# Training
class Trainer(common.Trainer):
    """``Trainer(max_epochs, num_gpus=0, gradient_clip_val=0).fit(model, data)``."""

    framework = d2l

    def to_device(self, x):
        return x.to(self.gpus[0])

    def model_to_device(self, model):
        model.to(self.gpus[0])

    def fit_epoch(self):
        self.model.train()
        for batch in self.train_dataloader:
            loss = self.model.training_step(self.prepare_batch(batch))
            self.optim.zero_grad()
            with torch.no_grad():
                loss.backward()
                if self.gradient_clip_val > 0:
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        self.model.eval()
        for batch in self.val_dataloader:
            with torch.no_grad():
                self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, model):
        """Scale all gradients down so that their joint norm is at most ``grad_clip_val``."""
        params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
        norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
        if norm > grad_clip_val:
            for param in params:
                param.grad[:] *= grad_clip_val / norm
