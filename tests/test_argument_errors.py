"""One clear error per mistake, raised by d2lconv before any framework call, naming the argument
and the form it expects."""

import numpy as np
import pytest

import d2lconv
from d2lconv import data


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda d2l: d2l.LazyConv2d((3, 5), 3), TypeError, r"out_channels must be an integer, got \(3, 5\)"),
        (lambda d2l: d2l.LazyConv2d(0, 3), ValueError, "out_channels must be positive, got 0"),
        (lambda d2l: d2l.LazyLinear((3, 5)), TypeError, r"out_features must be an integer, got \(3, 5\)"),
        (lambda d2l: d2l.LazyLinear(2.0), TypeError, r"out_features must be an integer, got 2\.0"),
        (lambda d2l: d2l.LeNet(lr=-1), ValueError, "lr must be a positive finite number .*got -1"),
        (lambda d2l: d2l.LeNet(lr=float("nan")), ValueError, "lr must be a positive finite number"),
        (lambda d2l: d2l.LeNet(lr="0.1"), TypeError, "lr must be a positive number .*got '0.1' \\(str\\)"),
        (lambda d2l: d2l.LeNet(num_classes=0), ValueError, "num_classes must be positive, got 0"),
        (lambda d2l: d2l.LeNet(num_classes=2.5), TypeError, "num_classes must be an integer"),
        (lambda d2l: d2l.Trainer(max_epochs=None), TypeError, "max_epochs must be an integer, got None"),
        (lambda d2l: d2l.Trainer(max_epochs=2.5), TypeError, "max_epochs must be an integer, got 2.5"),
        (lambda d2l: d2l.Trainer(max_epochs=0), ValueError, "max_epochs must be positive, got 0"),
        (lambda d2l: d2l.Trainer(1, num_gpus=-1), ValueError, "num_gpus must be non-negative, got -1"),
        (lambda d2l: d2l.Digits(batch_size=(3, 5)), TypeError, r"batch_size must be an integer, got \(3, 5\)"),
        (lambda d2l: d2l.Digits(batch_size=0), ValueError, "batch_size must be positive, got 0"),
        (lambda d2l: d2l.Digits(val_fraction=1.5), ValueError, "val_fraction must be a number strictly between 0 and 1"),
        (lambda d2l: d2l.Digits(val_fraction=0), ValueError, "val_fraction must be a number strictly between 0 and 1"),
        (lambda d2l: d2l.Digits(val_fraction="0.2"), ValueError, "val_fraction must be a number"),
        (lambda d2l: d2l.Digits(val_fraction=1e-6), ValueError, "val_fraction=1e-06 leaves an empty validation set"),
        (lambda d2l: d2l.Digits(shifts=-1), ValueError, "shifts must be non-negative, got -1"),
        (lambda d2l: d2l.Digits(shifts=1.5), TypeError, "shifts must be an integer"),
        (lambda d2l: d2l.Digits(shifts=5), ValueError, r"shifts must be at most 4 for resize=\(28, 28\)"),
    ],
)
def test_constructor_arguments(d2l, make, error, message):
    with pytest.raises(error, match=message):
        make(d2l)


def test_fashion_mnist_checks_batch_size_before_any_download(d2l, tmp_path, monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("a download was attempted"))
    with pytest.raises(TypeError, match=r"batch_size must be an integer, got \(3, 5\)"):
        d2l.FashionMNIST(batch_size=(3, 5), root=tmp_path)


def test_a_corrupt_fashion_mnist_file_is_named_and_not_downloaded_again(d2l, tmp_path, monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("a download was attempted"))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz is truncated or corrupt .*delete it to download it again"):
        d2l.FashionMNIST(root=tmp_path)


LOGITS = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], np.float32)


@pytest.mark.parametrize("labels", [[0, 3], [-1, 2]])
@pytest.mark.parametrize("native", [False, True])
def test_cross_entropy_labels_out_of_range(d2l, labels, native):
    labels = np.array(labels)
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be class ids in \[0, 3\) for logits of 3 classes"):
        d2l.cross_entropy(d2l.tensor(LOGITS), d2l.tensor(labels) if native else labels)
    with pytest.raises(ValueError, match=r"accuracy: labels must be class ids in \[0, 3\)"):
        d2l.accuracy(d2l.tensor(LOGITS), labels)


def test_accuracy_refuses_column_labels(d2l):
    with pytest.raises(ValueError, match=r"accuracy: labels must have shape \(2,\), got \(2, 1\)"):
        d2l.accuracy(d2l.tensor(LOGITS), np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"accuracy: logits must be 2-D \(N, classes\), got shape \(3,\)"):
        d2l.accuracy(d2l.tensor(LOGITS[0]), np.array([0]))


def test_lenet_built_on_28_called_on_32_names_the_dense_layer(d2l):
    net = d2l.LeNet(seed=0)
    net(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"net\.7 \(Linear\): built for in_features=400 .*got an input of shape \(1, 576\)"):
        net(np.zeros((1, 1, 32, 32), np.float32))


def test_a_conv_layer_called_with_other_channels_says_so(d2l):
    conv = d2l.Sequential(d2l.LazyConv2d(2, 3))
    conv(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"^0 \(Conv2d\): built for in_channels=1 .*got an input of shape \(1, 3, 5, 5\)"):
        conv(np.zeros((1, 3, 5, 5), np.float32))


def _tiny(d2l, val=8):
    rng = np.random.default_rng(0)
    images, labels = rng.random((16, 28, 28)).astype(np.float32), rng.integers(0, 10, 16)
    return data.ImageData((images, labels), (images[:val], labels[:val]), list("0123456789"), batch_size=8)


def test_fit_refuses_wrong_data_and_models(d2l):
    trainer = d2l.Trainer(max_epochs=1, progress=False)
    with pytest.raises(TypeError, match=r"Trainer\.fit: data must be a data module .*got list without train_dataloader"):
        trainer.fit(d2l.LeNet(seed=0), [(np.zeros((1, 1, 28, 28)), np.zeros(1))])
    with pytest.raises(TypeError, match=r"Trainer\.fit: model must be a d2lconv layer or model, got str"):
        trainer.fit("LeNet", _tiny(d2l))
    with pytest.raises(TypeError, match=r"Trainer\.fit: model\.lr must be a positive number .*got None"):
        trainer.fit(d2l.Sequential(d2l.Flatten(), d2l.LazyLinear(10)), _tiny(d2l))
    with pytest.raises(ValueError, match=r"Trainer\.fit: data has no validation examples \(num_val=0\)"):
        trainer.fit(d2l.LeNet(seed=0), _tiny(d2l, val=0))


def test_fit_on_a_forward_only_backend_says_so():
    with pytest.raises(ValueError, match=r"Trainer\.fit: the numpy backend is forward only \(no gradients\)"):
        d2lconv.numpy.Trainer(max_epochs=1, progress=False).fit(d2lconv.numpy.LeNet(seed=0), _tiny(None))


def test_image_data_labels_must_be_class_ids(d2l):
    images = np.zeros((2, 28, 28), np.float32)
    with pytest.raises(ValueError, match=r"ImageData: train labels must be integer class ids in \[0, 10\)"):
        data.ImageData((images, np.array([0, 10])), (images, np.array([0, 1])), list("0123456789"))
    assert d2lconv.Digits(batch_size=16, shifts=0).num_val == 359
