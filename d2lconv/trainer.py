"""The book's ``Trainer``: ``Trainer(max_epochs).fit(model, data)`` on any backend.

SGD at ``model.lr`` on the cross-entropy, one fused and compiled step per batch where the
framework compiles (:func:`d2lconv.training.train_step`); per epoch the mean training loss,
validation loss and validation accuracy go into ``history``. A tqdm bar shows progress; :meth:`Trainer.plot` draws the curves with matplotlib.
"""

from __future__ import annotations

import warnings

import numpy as np

from d2lconv import args, backend, layers, training
from d2lconv.interface import ModelLoss
from d2lconv.params import _check_model, named_params

#: what ``fit`` needs of a data module (d2l's DataModule interface)
DATA_INTERFACE = ("train_dataloader", "val_dataloader", "num_train", "batch_size")


def _check_first_batch(b, model, X, y) -> int:
    """Build a lazy ``model`` and check a batch with clear errors, before any step is traced;
    return the number of classes (the logits' width).

    The checked forward pass and ``cross_entropy`` run on the batch's first example only (a
    model's checks do not depend on the batch size, and an eager pass over a whole batch of 256
    cost 20-70 ms here, up to 4% of a short run); then every label is checked against the batch.
    """
    shape = b.shape(X) if b.is_native(X) else np.shape(X)
    if len(shape) < 2 or shape[0] <= 1:  # nothing to save: the whole batch
        logits = model(X)
        training.cross_entropy(logits, y)
        return b.shape(logits)[1]
    logits, labels = layers.first_output(model, X[:1]), y[:1]
    b.abstractly(lambda logits: training.cross_entropy(logits, labels), logits)
    classes = b.shape(logits)[1]
    _check_labels(y, shape[0], classes, "cross_entropy")
    return classes


def _check_labels(y, images: int, classes: int, op: str = "Trainer.fit") -> None:
    """A batch's labels checked on the host, as ``cross_entropy`` checks them: one class id for
    each of ``images`` images, each in [0, classes). Inside the step nothing checks them, and
    the frameworks disagree on a label out of range (torch and TF raise their own errors, JAX
    gives NaN or takes -1 as the last class, MXNet clamps it), so every batch's are checked:
    4-9 us a batch here."""
    labels = training._labels(y, f"{op}: labels")
    training._check_labels(labels, (images, classes), op)


class Trainer:
    def __init__(self, max_epochs, num_gpus=0, progress=True, compile=None):
        """``compile``: compile the train step (True), run it eagerly (False), or (None) compile
        when the run is long enough to repay the compile time (see ``Backend.compile_pays_after``)."""
        self.max_epochs = args._check_int(max_epochs, "max_epochs", 1)
        self.num_gpus, self.progress = args._check_int(num_gpus, "num_gpus", 0), progress
        if compile not in (None, True, False):
            raise TypeError(f"compile must be None, True or False, got {compile!r}")
        self.compile = compile
        self.history = {"epoch": [], "train_loss": [], "val_loss": [], "val_acc": []}

    def _device(self, b, model):
        if self.num_gpus == 0:
            return
        found = b.gpu_count()
        if found == 0:
            warnings.warn(
                f"num_gpus={self.num_gpus} was asked for, but {b.name} sees no GPU here: training on the CPU",
                RuntimeWarning, stacklevel=3,
            )
        else:
            b.use_gpu(model)

    def fit(self, model, data):
        """Train ``model`` on ``data`` for ``max_epochs``; returns ``history``.

        The step is built once per fit, on the first batch (which also builds a lazy model and
        checks the batch); the losses stay on the device until each epoch's end.
        """
        from tqdm.auto import tqdm

        b = _check_model(model, "Trainer.fit")
        lr = training.check_lr(getattr(model, "lr", None), "Trainer.fit: model.lr")
        missing = [name for name in DATA_INTERFACE if not hasattr(data, name)]
        if missing:
            raise TypeError(
                f"Trainer.fit: data must be a data module such as d2lconv.Digits() or FashionMNIST() "
                f"(with {', '.join(DATA_INTERFACE)}), got {type(data).__name__} without {', '.join(missing)}"
            )
        for count in ("num_train", "num_val"):
            if getattr(data, count, 1) == 0:
                raise ValueError(f"Trainer.fit: data has no {'training' if count == 'num_train' else 'validation'} examples ({count}=0)")
        if not b.differentiable:
            raise ValueError(
                f"Trainer.fit: the {b.name} backend is forward only (no gradients); train on torch, tensorflow, jax or mxnet"
            )
        self._device(b, model)
        native_loss = ModelLoss(b)
        with backend.use_backend(b.name), tqdm(
                total=self.max_epochs * -(-data.num_train // data.batch_size), disable=not self.progress,
                desc=f"{b.name} LeNet" if self.progress else None, unit="batch") as bar:  # closed on errors too
            step = None
            for epoch in range(1, self.max_epochs + 1):
                losses, sizes = [], []
                for X, y in data.train_dataloader():
                    images = b.shape(X)[0]
                    if images == 0:  # nothing to learn from; its NaN mean loss would spoil the epoch's
                        bar.update(1)
                        continue
                    if step is None:
                        classes = _check_first_batch(b, model, X, y)
                        compile = self.compile
                        if compile is None:
                            compile = self.max_epochs * data.num_train >= b.compile_pays_after
                        step, params = b.train_step(native_loss, lr, compile), named_params(model)
                        forward = b.evaluation_fn(model)
                    else:
                        _check_labels(y, images, classes)
                    losses.append(step(model, params, X, y))
                    sizes.append(images)
                    bar.update(1)
                if not sizes:
                    raise ValueError("Trainer.fit: data.train_dataloader() gave no examples")
                train_loss = float(np.dot(b.to_numpy(b.stack(losses, 0)), sizes) / sum(sizes))
                val_loss, val_acc = self._evaluate(b, forward, data)
                self._record(epoch, train_loss, val_loss, val_acc)
                bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        return self.history

    def evaluate(self, model, data) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over the validation set."""
        return self._evaluate(_check_model(model, "Trainer.evaluate"), model, data)

    def _evaluate(self, b, forward, data) -> tuple[float, float]:
        """:meth:`evaluate` with ``forward(X)`` giving the logits (the model, or its compiled form)."""
        metrics, sizes = [], []
        with backend.use_backend(b.name), b.inference():
            for X, y in data.val_dataloader():
                images = b.shape(X)[0]
                if images == 0:  # weighs nothing; its NaN metrics would spoil the mean
                    continue
                metrics.append(training.loss_and_accuracy(forward(X), y, "Trainer.evaluate"))
                sizes.append(images)
        if not sizes:
            raise ValueError("Trainer.evaluate: data.val_dataloader() gave no examples")
        return tuple(float(value) for value in np.dot(sizes, metrics) / sum(sizes))

    def _record(self, epoch, train_loss, val_loss, val_acc):
        for key, value in zip(self.history, (epoch, train_loss, val_loss, val_acc)):
            self.history[key].append(value)

    def plot(self, path=None):
        """A matplotlib figure of the curves per epoch; also written as PNG to ``path`` if given."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5))
        ax = figure.subplots()
        epochs = np.array(self.history["epoch"])
        for key, style in (("train_loss", "-"), ("val_loss", "--"), ("val_acc", "-.")):
            ax.plot(epochs, self.history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.grid(True)
        ax.legend()
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure
