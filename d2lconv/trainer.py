"""The book's ``Trainer``: ``Trainer(max_epochs).fit(model, data)`` on any backend.

SGD at ``model.lr`` on the cross-entropy, one fused and compiled step per batch where the
framework compiles (:func:`d2lconv.training.train_step`); per epoch the mean training loss,
validation loss and validation accuracy go into ``history``. A tqdm bar shows progress; :meth:`Trainer.plot` draws the curves with matplotlib.
"""

from __future__ import annotations

import warnings

import numpy as np

from d2lconv import args, backend, tensors, training
from d2lconv.params import _check_model

#: what ``fit`` needs of a data module (d2l's DataModule interface)
DATA_INTERFACE = ("train_dataloader", "val_dataloader", "num_train", "batch_size")


def _loss(model, X, y):
    return training.cross_entropy(model(X), y)


class Trainer:
    def __init__(self, max_epochs, num_gpus=0, progress=True):
        self.max_epochs = args._check_int(max_epochs, "max_epochs", 1)
        self.num_gpus, self.progress = args._check_int(num_gpus, "num_gpus", 0), progress
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
        """Train ``model`` on ``data`` for ``max_epochs``; returns ``history``."""
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
        step = training.train_step(_loss, lr)
        with backend.use_backend(b.name):
            bar = tqdm(total=self.max_epochs * -(-data.num_train // data.batch_size), disable=not self.progress,
                       desc=f"{b.name} LeNet" if self.progress else None, unit="batch")
            for epoch in range(1, self.max_epochs + 1):
                total, count = 0.0, 0
                for X, y in data.train_dataloader():
                    loss = step(model, X, y)
                    n = b.shape(X)[0]
                    total, count = total + float(tensors.to_numpy(loss)) * n, count + n
                    bar.update(1)
                val_loss, val_acc = self.evaluate(model, data)
                self._record(epoch, total / count, val_loss, val_acc)
                bar.set_postfix(loss=f"{total / count:.3f}", val_acc=f"{val_acc:.3f}")
            bar.close()
        return self.history

    def evaluate(self, model, data) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over the validation set."""
        losses, correct, count = 0.0, 0.0, 0
        for X, y in data.val_dataloader():
            logits = model(X)
            n = len(tensors.to_numpy(y))
            losses += float(tensors.to_numpy(training.cross_entropy(logits, y))) * n
            correct += training.accuracy(logits, y) * n
            count += n
        if count == 0:
            raise ValueError("Trainer.evaluate: data.val_dataloader() gave no examples")
        return losses / count, correct / count

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
