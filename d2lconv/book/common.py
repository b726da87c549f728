"""The framework-independent half of the book dialect; each ``d2lconv.book.<framework>`` builds on it.

What it offers (names as the book's ``d2l`` library spells them):

- ``HyperParameters`` (``save_hyperparameters(ignore=[])`` from the caller's arguments),
  ``add_to_class(Class)``: the book's object-oriented glue (section 3.2).
- ``ProgressBoard``: the book's live matplotlib figure. ``draw(x, y, label, every_n)`` averages
  every ``every_n`` points of a label into one point of that label's line. In a notebook the
  figure is redrawn in place (one IPython display handle); elsewhere (a terminal, Agg) nothing is
  shown or popped up, the points are kept and ``board.render()`` draws the figure on demand.
- ``ModuleBase``: the framework-free part of the book's ``Module``/``Classifier``: ``plot(key,
  value, train)`` (points at fractional epochs, as the book's), ``training_step``,
  ``validation_step``; ``classifier_accuracy(d2l, Y_hat, Y, averaged)`` is the book's
  ``Classifier.accuracy`` written against a framework module's aliases.
- ``DataModule`` (``root``, ``num_workers``, ``train_dataloader``/``val_dataloader`` over
  ``get_dataloader(train)``) and ``ImageDataModule``, the shared part of ``FashionMNIST`` and
  ``Digits`` (``FashionMNISTData`` and ``DigitsData`` fix its data set and the book's signature): the arrays come from :mod:`d2lconv.data` (checksummed, cached, offline-aware),
  ``layout`` ("NCHW" or "NHWC") says how a framework's batches are laid out, ``arrays(train)``
  gives them as NumPy, ``text_labels`` and ``visualize`` work on any framework's batch.
- ``Trainer``: the book's ``Trainer(max_epochs, num_gpus=0, gradient_clip_val=0)`` with
  ``prepare_data``, ``prepare_model``, ``fit`` and ``prepare_batch``; ``fit`` shows a tqdm bar
  over the training batches outside notebooks (``D2LCONV_PROGRESS=0`` turns it off). A framework subclass writes ``fit_epoch`` and
  ``clip_gradients``, sets ``framework`` (its module, whose ``gpu``/``num_gpus`` give
  ``find_gpus``) and the device hooks ``to_device(x)`` and ``model_to_device(model)``.

How a framework module uses it::

    from d2lconv.book import common
    from d2lconv.book.common import HyperParameters, ProgressBoard, add_to_class  # re-exported

    class Module(torch.nn.Module, common.ModuleBase):
        def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
            super().__init__()
            self.save_hyperparameters()
            self.board = ProgressBoard()

    class _ImageData(common.ImageDataModule):   # layout = "NCHW" or "NHWC"
        def get_dataloader(self, train): ...     # native loader over self.arrays(train)

    class FashionMNIST(common.FashionMNISTData, _ImageData):
        pass                                     # likewise Digits(common.DigitsData, _ImageData)

    class Trainer(common.Trainer):
        def fit_epoch(self): ...

Tests: one file per framework, ``tests/test_book_<framework>.py``, each skipping (with the reason)
unless ``D2LCONV_BACKEND`` names its framework; the framework-free parts here are tested once, in
``tests/test_book_common.py`` (runs in every env, imports no framework).
"""

from __future__ import annotations

import collections
import inspect
import io
import numbers
import os
import sys

import numpy as np

Point = collections.namedtuple("Point", ["x", "y"])


def in_notebook() -> bool:
    """Whether we run in a Jupyter kernel (where figures can be displayed and redrawn in place):
    Jupyter's and Colab's shells have a kernel, IPython's terminal shell has none."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def add_to_class(Class):
    """Decorator: register the decorated function as a method of ``Class`` (the book's way of
    writing a class across several notebook cells)."""

    def wrapper(obj):
        setattr(Class, obj.__name__, obj)

    return wrapper



# --- the book's method-call aliases, the same on torch, JAX and MXNet tensors -------------------
def reshape(x, *args, **kwargs):
    return x.reshape(*args, **kwargs)


def reduce_sum(x, *args, **kwargs):
    return x.sum(*args, **kwargs)


def reduce_mean(x, *args, **kwargs):
    return x.mean(*args, **kwargs)


def argmax(x, *args, **kwargs):
    return x.argmax(*args, **kwargs)


def swapaxes(x, *args, **kwargs):
    return x.swapaxes(*args, **kwargs)


def repeat(x, *args, **kwargs):
    return x.repeat(*args, **kwargs)


class HyperParameters:
    """The base class of objects that keep their constructor's arguments."""

    def save_hyperparameters(self, ignore=()):
        """Store the calling function's arguments (all but ``self``, names in ``ignore`` and names
        starting with ``_``) as attributes, and as the dict ``self.hparams``."""
        frame = inspect.currentframe().f_back
        try:
            arguments = inspect.getargvalues(frame).locals
            skipped = set(ignore) | {"self"}
            self.hparams = {k: v for k, v in arguments.items() if k not in skipped and not k.startswith("_")}
        finally:
            del frame  # frames in locals keep reference cycles alive
        for key, value in self.hparams.items():
            setattr(self, key, value)


class ProgressBoard(HyperParameters):
    """The board that plots data points as they come (the book's live training figure)."""

    def __init__(self, xlabel=None, ylabel=None, xlim=None, ylim=None, xscale="linear", yscale="linear",
                 ls=("-", "--", "-.", ":"), colors=("C0", "C1", "C2", "C3"), fig=None, axes=None,
                 figsize=(3.5, 2.5), display=True):
        self.save_hyperparameters()
        self.raw_points = collections.OrderedDict()
        self.data = collections.OrderedDict()
        self._handle = None

    def draw(self, x, y, label, every_n=1):
        """Add the point ``(x, y)`` to ``label``; every ``every_n`` points, their mean becomes one
        point of the line, and in a notebook the figure is redrawn."""
        points = self.raw_points.setdefault(label, [])
        line = self.data.setdefault(label, [])
        points.append(Point(float(x), float(y)))
        if len(points) < max(int(every_n), 1):
            return
        line.append(Point(float(np.mean([p.x for p in points])), float(np.mean([p.y for p in points]))))
        points.clear()
        if self.display and in_notebook():
            self._show()

    def render(self):
        """The figure (a matplotlib ``Figure``, made without pyplot so no window opens) with one
        line per label."""
        if self.axes is None:
            if self.fig is None:
                from matplotlib.figure import Figure

                self.fig = Figure(figsize=self.figsize)
            self.axes = self.fig.gca()
        axes = self.axes
        axes.cla()
        lines, labels = [], []
        for (label, points), ls, color in zip(self.data.items(), self.ls, self.colors):
            lines.append(axes.plot([p.x for p in points], [p.y for p in points], linestyle=ls, color=color)[0])
            labels.append(label)
        if self.xlim:
            axes.set_xlim(self.xlim)
        if self.ylim:
            axes.set_ylim(self.ylim)
        axes.set_xlabel(self.xlabel or "x")
        axes.set_ylabel(self.ylabel)
        axes.set_xscale(self.xscale)
        axes.set_yscale(self.yscale)
        if lines:
            axes.legend(lines, labels)
        return axes.figure

    def _show(self):
        if self._handle is None:
            self._handle = display_figure(self.render(), "svg")
        else:
            display_figure(self.render(), "svg", self._handle)


class ModuleBase(HyperParameters):
    """The book's ``Module`` methods that no framework changes; mixed into a framework's module
    class, which sets ``self.board`` and the hyperparameters ``plot_train_per_epoch`` and
    ``plot_valid_per_epoch``."""

    def plot(self, key, value, train):
        """Plot ``value`` of ``key`` on the board at the current fractional epoch: training points
        are averaged ``plot_train_per_epoch`` times per epoch, validation points once per epoch."""
        if not hasattr(self, "trainer"):
            raise RuntimeError("plot needs a trainer: call Trainer.fit(model, data) first")
        trainer = self.trainer
        self.board.xlabel = "epoch"
        if train:
            x = trainer.train_batch_idx / trainer.num_train_batches
            n = trainer.num_train_batches / self.plot_train_per_epoch
        else:
            x = trainer.epoch + 1
            n = trainer.num_val_batches / self.plot_valid_per_epoch
        self.board.draw(x, float(np.asarray(to_numpy(value))), ("train_" if train else "val_") + key,
                        every_n=int(n))

    def training_step(self, batch):
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=True)
        return loss

    def validation_step(self, batch):
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=False)


def classifier_validation_step(model, batch):
    """The book's ``Classifier.validation_step``: validation loss and accuracy on the board."""
    Y_hat = model(*batch[:-1])
    model.plot("loss", model.loss(Y_hat, batch[-1]), train=False)
    model.plot("acc", model.accuracy(Y_hat, batch[-1]), train=False)


def classifier_accuracy(d2l, Y_hat, Y, averaged=True):
    """The book's ``Classifier.accuracy`` with framework module ``d2l``'s aliases: the share (or,
    with ``averaged=False``, the 0/1 vector) of rows of ``Y_hat`` whose argmax is ``Y``."""
    Y_hat = d2l.reshape(Y_hat, (-1, Y_hat.shape[-1]))
    preds = d2l.astype(d2l.argmax(Y_hat, axis=1), Y.dtype)
    compare = d2l.astype(preds == d2l.reshape(Y, -1), d2l.float32)
    return d2l.reduce_mean(compare) if averaged else compare


def to_numpy(x) -> np.ndarray:
    """A NumPy array of a tensor of any of the four frameworks (or of a NumPy value)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "asnumpy"):  # MXNet
        return x.asnumpy()
    if hasattr(x, "detach"):  # torch, possibly on a GPU and recording gradients
        return x.detach().cpu().numpy()
    return np.asarray(x)  # TensorFlow, JAX, Python numbers


class DataModule(HyperParameters):
    """The base class of data: ``train_dataloader()`` and ``val_dataloader()`` come from
    ``get_dataloader(train)``. ``root`` and ``num_workers`` are kept for the book's signature."""

    def __init__(self, root="../data", num_workers=4):
        self.save_hyperparameters()

    def get_dataloader(self, train):
        raise NotImplementedError

    def train_dataloader(self):
        return self.get_dataloader(train=True)

    def val_dataloader(self):
        return self.get_dataloader(train=False)


class ImageDataModule(DataModule):
    """An image classification set from :mod:`d2lconv.data` in the book's data-module shape.

    ``name`` is the :mod:`d2lconv.data` set ("FashionMNIST" or "Digits", which takes
    ``options`` such as ``shifts=0`` for its 1,438 unshifted training images). A subclass sets
    ``layout`` ("NCHW": images (N, 1, H, W); "NHWC": (N, H, W, 1)) and writes
    ``get_dataloader(train)`` over ``self.arrays(train)`` (float32 images, int64 labels)."""

    layout = "NCHW"

    def __init__(self, name, batch_size=64, resize=(28, 28), **options):
        super().__init__()
        self.batch_size, self.resize = batch_size, resize
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        self.source = image_data(name, batch_size, resize, **options)
        self.labels = self.source.labels

    @property
    def num_train(self) -> int:
        return self.source.num_train

    @property
    def num_val(self) -> int:
        return self.source.num_val

    def arrays(self, train):
        """(images, labels) of the training or validation set as NumPy arrays in ``layout``."""
        X, y = self.source.train if train else self.source.val
        if self.layout == "NHWC":
            X = np.ascontiguousarray(X.transpose(0, 2, 3, 1))
        return X, y

    def text_labels(self, indices):
        """The names of the classes ``indices`` (a tensor, array or list of ints)."""
        return [self.labels[int(i)] for i in to_numpy(indices).reshape(-1)]

    def visualize(self, batch, nrows=1, ncols=8, labels=()):
        """Show the first ``nrows * ncols`` images of ``batch`` with their labels."""
        X, y = batch
        if not labels:
            labels = self.text_labels(y)
        images = to_numpy(X)
        images = images[:, 0] if self.layout == "NCHW" else images[..., 0]
        return show_images(images, nrows, ncols, titles=labels)


class FashionMNISTData(ImageDataModule):
    """Fashion-MNIST (60,000 training and 10,000 validation images); a framework module's
    ``FashionMNIST`` is this plus its ``get_dataloader``."""

    def __init__(self, batch_size=64, resize=(28, 28)):
        super().__init__("FashionMNIST", batch_size, resize)
        self.save_hyperparameters()


class DigitsData(ImageDataModule):
    """Offline stand-in for Fashion-MNIST: scikit-learn's handwritten digits (``options`` as
    :func:`d2lconv.data.Digits`), with the same batches and methods."""

    def __init__(self, batch_size=64, resize=(28, 28), **options):
        super().__init__("Digits", batch_size, resize, **options)
        self.save_hyperparameters()


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):
    """Plot a grid of images (the book's ``d2l.show_images``); returns the axes. In a notebook the
    figure is displayed; elsewhere it is made without pyplot, so no window opens."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(num_cols * scale, num_rows * scale))
    axes = figure.subplots(num_rows, num_cols, squeeze=False).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(imgs):
            ax.imshow(to_numpy(imgs[i]), cmap="gray")
            if titles is not None and i < len(titles):
                ax.set_title(titles[i])
    if in_notebook():
        display_figure(figure, "png")
    return axes


def display_figure(figure, fmt="png", handle=None):
    """Show a pyplot-free ``figure`` in the notebook as an image (whatever matplotlib's backend):
    a new display, or an update of ``handle`` in place; returns the display handle."""
    from IPython import display

    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, bbox_inches="tight")
    image = display.SVG(buffer.getvalue()) if fmt == "svg" else display.Image(buffer.getvalue(), format=fmt)
    if handle is None:
        return display.display(image, display_id=True)
    handle.update(image)
    return handle


def image_data(name, batch_size, resize, **kwargs):
    """The d2lconv data set ``name`` ("FashionMNIST" or "Digits") as NumPy arrays; no framework
    is involved (d2lconv's numpy backend is in force while it is made)."""
    from d2lconv import backend, data

    if name not in ("FashionMNIST", "Digits"):
        raise ValueError(f"name must be 'FashionMNIST' or 'Digits', got {name!r}")
    with backend.use_backend("numpy"):
        return getattr(data, name)(batch_size=batch_size, resize=resize, **kwargs)


class _Progress:
    """A data loader that advances a progress bar per batch; ``len`` as the loader's."""

    def __init__(self, loader, bar):
        self.loader, self.bar = loader, bar

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            self.bar.update(1)


class Trainer(HyperParameters):
    """The book's trainer: ``fit(model, data)`` runs ``fit_epoch`` ``max_epochs`` times."""

    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0):
        if not isinstance(max_epochs, numbers.Integral) or max_epochs < 0:
            raise ValueError(f"max_epochs must be a non-negative int, got {max_epochs!r}")
        if not isinstance(num_gpus, numbers.Integral) or num_gpus < 0:
            raise ValueError(f"num_gpus must be a non-negative int, got {num_gpus!r}")
        self.save_hyperparameters()
        self.gpus = self.find_gpus(num_gpus)

    #: the framework's book module (its ``gpu(i)`` and ``num_gpus()``), set by its Trainer
    framework = None

    # device hooks: a framework subclass overrides these
    def find_gpus(self, num_gpus):
        """The first ``num_gpus`` GPUs that exist (fewer if fewer exist)."""
        if self.framework is None:
            return []
        return [self.framework.gpu(i) for i in range(min(num_gpus, self.framework.num_gpus()))]

    def to_device(self, x):
        return x

    def model_to_device(self, model):
        pass

    def prepare_data(self, data):
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = len(self.train_dataloader)
        self.num_val_batches = len(self.val_dataloader) if self.val_dataloader is not None else 0

    def prepare_model(self, model):
        model.trainer = self
        model.board.xlim = [0, self.max_epochs]
        if self.gpus:
            self.model_to_device(model)
        self.model = model

    def prepare_batch(self, batch):
        if self.gpus:
            batch = [self.to_device(a) for a in batch]
        return batch

    def fit(self, model, data):
        self.prepare_data(data)
        self.prepare_model(model)
        self.optim = model.configure_optimizers()
        self.epoch = 0
        self.train_batch_idx = 0
        self.val_batch_idx = 0
        bar = self._progress_bar(model)
        if bar is not None:
            self.train_dataloader = _Progress(self.train_dataloader, bar)
        try:
            for self.epoch in range(self.max_epochs):
                self.fit_epoch()
                if bar is not None:
                    bar.set_postfix({k: f"{v[-1].y:.3f}" for k, v in model.board.data.items() if v})
        finally:
            if bar is not None:
                bar.close()
                self.train_dataloader = self.train_dataloader.loader

    def _progress_bar(self, model):
        """A tqdm bar over all training batches outside notebooks (in one, the board shows progress)."""
        if in_notebook() or os.environ.get("D2LCONV_PROGRESS", "1") == "0":
            return None
        from tqdm import tqdm

        return tqdm(total=self.max_epochs * self.num_train_batches, unit="batch",
                    desc=f"{type(model).__name__}", leave=True)

    def fit_epoch(self):
        raise NotImplementedError

    def clip_gradients(self, grad_clip_val, model):
        raise NotImplementedError
