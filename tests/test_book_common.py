"""The framework-free half of the book dialect (d2lconv.book.common); runs in every env."""

import numpy as np
import pytest

from book_support import imported_after
from d2lconv.book import common


class Point3(common.HyperParameters):
    def __init__(self, x, y=2, z=3, _hidden=4, skipped=5):
        self.save_hyperparameters(ignore=["skipped"])


def test_save_hyperparameters_keeps_the_callers_arguments():
    p = Point3(1, z=30)
    assert p.hparams == {"x": 1, "y": 2, "z": 30}
    assert (p.x, p.y, p.z) == (1, 2, 30)
    assert not hasattr(p, "_hidden") and not hasattr(p, "skipped")


def test_add_to_class_registers_a_method_later():
    class Counter:
        def __init__(self):
            self.n = 0

    @common.add_to_class(Counter)
    def bump(self, by=1):
        self.n += by
        return self.n

    counter = Counter()
    assert counter.bump(3) == 3 and counter.bump() == 4


def test_progress_board_averages_every_n_points_per_label():
    board = common.ProgressBoard(xlabel="step")
    for i in range(7):
        board.draw(i, 10 * i, "a", every_n=3)
        board.draw(i, -i, "b", every_n=1)
    # the 7th point of "a" waits for two more before it becomes a point of the line
    assert board.data["a"] == [(1.0, 10.0), (4.0, 40.0)]
    assert [p.y for p in board.data["b"]] == [0, -1, -2, -3, -4, -5, -6]
    assert board.raw_points["a"] == [(6.0, 60.0)]


def test_progress_board_shows_nothing_outside_notebooks_and_renders_on_demand():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    before = plt.get_fignums()
    board = common.ProgressBoard(ylim=(0, 1))
    board.draw(0.5, 0.25, "train_loss", every_n=1)
    board.draw(1.0, 0.75, "val_acc", every_n=1)
    assert plt.get_fignums() == before, "drawing in a terminal must not make pyplot figures"
    figure = board.render()
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["train_loss", "val_acc"]
    assert axes.get_ylim() == (0, 1)
    assert plt.get_fignums() == before


class _Images(common.ImageDataModule):
    layout = "NHWC"

    def get_dataloader(self, train):
        X, y = self.arrays(train)
        return [(X[i : i + self.batch_size], y[i : i + self.batch_size]) for i in range(0, len(y), self.batch_size)]


def test_image_data_module_gives_digits_in_its_layout():
    data = _Images("Digits", batch_size=100, resize=(16, 16), shifts=0)
    X, y = data.train_dataloader()[0]
    assert X.shape == (100, 16, 16, 1) and X.dtype == np.float32 and y.dtype == np.int64
    assert data.num_train == 1438 and data.num_val == 359
    assert data.text_labels(np.array([3, 0])) == ["3", "0"]
    axes = data.visualize((X, y), nrows=2, ncols=3)
    assert len(axes) == 6 and axes[0].get_title() == str(y[0])


def test_image_data_module_rejects_unknown_sets_and_layouts():
    with pytest.raises(ValueError, match="'FashionMNIST' or 'Digits'"):
        _Images("MNIST")

    class Sideways(_Images):
        layout = "HWNC"

    with pytest.raises(ValueError, match="layout must be"):
        Sideways("Digits", shifts=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_epochs": -1}, "max_epochs must be a non-negative int"),
    ({"max_epochs": 1.5}, "max_epochs must be a non-negative int"),
    ({"max_epochs": 1, "num_gpus": -2}, "num_gpus must be a non-negative int"),
])
def test_trainer_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        common.Trainer(**kwargs)


def test_importing_the_book_package_imports_no_framework():
    assert imported_after("import d2lconv.book", ("torch", "tensorflow", "jax", "flax", "mxnet")) == "[]"


def test_unknown_dialect_is_a_clear_error():
    import d2lconv.book

    with pytest.raises(AttributeError, match="the book dialects are jax, mxnet, tensorflow, torch"):
        d2lconv.book.chainer  # noqa: B018


def test_progress_board_redraws_one_display_in_place_in_a_notebook(monkeypatch):
    display = pytest.importorskip("IPython.display", reason="IPython is needed to display in notebooks")
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", type(obj).__name__))

    def fake_display(obj, display_id=False):
        shown.append(("display", type(obj).__name__, display_id))
        return Handle()

    monkeypatch.setattr(common, "in_notebook", lambda: True)
    monkeypatch.setattr(display, "display", fake_display)
    board = common.ProgressBoard()
    for x in range(3):
        board.draw(x, x, "train_loss", every_n=1)
    assert shown == [("display", "SVG", True), ("update", "SVG"), ("update", "SVG")]


def _write_idx(path, array):
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_d2lconvs_files_in_the_books_shape(tmp_path, monkeypatch):
    from d2lconv import data

    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.array([9, 0, 1, 2, 3]),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.array([4, 5, 6]),
    }
    for name, array in arrays.items():
        _write_idx(tmp_path / name, array)
    # the checksummed download is d2lconv.data's (tested there); here its files are stand-ins
    monkeypatch.setattr(data, "fetch_fashion_mnist", lambda root=None: {n: tmp_path / n for n in arrays})

    class Fashion(common.FashionMNISTData, _Images):
        pass

    fashion = Fashion(batch_size=2)
    X, y = fashion.get_dataloader(train=False)[0]
    assert X.shape == (2, 28, 28, 1) and X.dtype == np.float32 and y.tolist() == [4, 5]
    np.testing.assert_allclose(X[..., 0], arrays["t10k-images-idx3-ubyte.gz"][:2] / 255, rtol=1e-6)
    assert fashion.text_labels(fashion.arrays(True)[1]) == ["ankle boot", "t-shirt", "trouser", "pullover", "dress"]
    assert fashion.hparams == {"batch_size": 2, "resize": (28, 28)}  # as the book's FashionMNIST saves them
    assert (fashion.root, fashion.num_workers) == ("../data", 4)
    assert Fashion(batch_size=2, resize=(32, 32)).arrays(True)[0].shape == (5, 32, 32, 1)


def test_in_notebook_needs_a_kernel(monkeypatch):
    IPython = pytest.importorskip("IPython", reason="IPython is needed to tell notebooks apart")

    class TerminalShell:
        pass

    class KernelShell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert not common.in_notebook()
    monkeypatch.setattr(IPython, "get_ipython", TerminalShell)
    assert not common.in_notebook()
    monkeypatch.setattr(IPython, "get_ipython", KernelShell)
    assert common.in_notebook()
