"""Data: the IDX reader on files made here, downloads from a loopback server, the digits set,
per-epoch shuffling. No test touches the network beyond 127.0.0.1."""

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

import d2lconv
from d2lconv import data


def write_idx(path, array, magic=None, cut=0):
    dtype_code = {np.uint8: 0x08}[array.dtype.type]
    header = magic if magic is not None else bytes([0, 0, dtype_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    with gzip.open(path, "wb") as file:
        file.write(payload[: len(payload) - cut])
    return path


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "images.gz", images)), images)
    labels = np.array([3, 1, 4], np.uint8)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "labels.gz", labels)), labels)


def test_broken_idx_files_name_the_file(tmp_path):
    images = np.zeros((2, 3, 3), np.uint8)
    truncated = write_idx(tmp_path / "truncated.gz", images, cut=5)
    with pytest.raises(ValueError, match=r"truncated.gz: truncated or padded: 13 bytes of data, 18 expected"):
        data.read_idx(truncated)
    wrong = write_idx(tmp_path / "wrong.gz", images, magic=b"\x12\x34\x08\x03")
    with pytest.raises(ValueError, match=r"wrong.gz: wrong magic number 12340803; not an IDX file"):
        data.read_idx(wrong)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"plain.gz: not a readable gzip file"):
        data.read_idx(plain)
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 40)[:-12])
    with pytest.raises(ValueError, match=r"corrupt.gz: not a readable gzip file"):
        data.read_idx(corrupt)


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    """Small IDX files served from 127.0.0.1, with their MD5s in place of the official ones."""
    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 20).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 6).astype(np.uint8),
    }
    hashes = {}
    for name, array in arrays.items():
        path = write_idx(served / name, array)
        hashes[name] = "md5:" + hashlib.md5(path.read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(data, "FASHION_MNIST_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", hashes)
    yield arrays, served
    server.shutdown()
    server.server_close()


def test_fashion_mnist_downloads_checks_and_loads(d2l, tmp_path, fake_fashion_mnist):
    arrays, _ = fake_fashion_mnist
    cache = tmp_path / "cache"
    fashion = d2l.FashionMNIST(batch_size=8, root=cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(arrays)
    assert (fashion.num_train, fashion.num_val) == (20, 6)
    X, y = next(fashion.val_dataloader())
    np.testing.assert_allclose(d2l.to_numpy(X)[:, 0], arrays["t10k-images-idx3-ubyte.gz"] / 255, rtol=1e-6)
    np.testing.assert_array_equal(d2l.to_numpy(y), arrays["t10k-labels-idx1-ubyte.gz"])
    assert fashion.text_labels([0, 9]) == ["t-shirt", "ankle boot"]


def test_fashion_mnist_from_the_environment_variable_offline(d2l, tmp_path, fake_fashion_mnist, monkeypatch):
    """Files already in $D2LCONV_DATA with the right checksums: no download is attempted."""
    arrays, served = fake_fashion_mnist
    monkeypatch.setattr(data, "FASHION_MNIST_URL", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv(data.DATA_ENV_VAR, str(served))
    assert d2l.FashionMNIST(batch_size=4).num_train == 20


def test_corrupt_download_leaves_nothing_behind(d2l, tmp_path, fake_fashion_mnist, monkeypatch):
    _, served = fake_fashion_mnist
    name = "train-labels-idx1-ubyte.gz"
    (served / name).write_bytes(b"\x1f\x8b truncated")  # the server now sends a broken file
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match=rf"{name} is not in .*cache and could not be downloaded"):
        d2l.FashionMNIST(root=cache)
    assert name not in {p.name for p in cache.iterdir()}
    assert not [p for p in cache.iterdir() if p.name.startswith("tmp")]


def test_no_network_and_no_files_says_where_to_put_them(d2l, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_URL", "http://127.0.0.1:9/")
    with pytest.raises(FileNotFoundError, match=r"Put the four official files .* in .*empty, or point D2LCONV_DATA"):
        d2l.FashionMNIST(root=tmp_path / "empty")


def test_digits_offline(d2l):
    digits = d2l.Digits(batch_size=16)
    assert (digits.num_train, digits.num_val) == (1438 * 25, 359)
    X, y = next(digits.train_dataloader())
    assert d2l.shape(X) == (16, 1, 28, 28)
    assert d2l.to_numpy(y).dtype.kind == "i"
    train = digits.train[0]
    assert abs(train.mean()) < 1e-4 and abs(train.std() - 1) < 1e-4
    assert digits.text_labels(d2l.to_numpy(y)[:2]) == [str(v) for v in d2l.to_numpy(y)[:2]]
    assert d2l.shape(next(d2l.Digits(batch_size=4, resize=(32, 32), shifts=0).val_dataloader())[0]) == (4, 1, 32, 32)


def test_shuffling_is_a_numpy_permutation_per_epoch(d2l):
    labels = np.arange(10) % 10
    module = data.ImageData((np.zeros((10, 28, 28)), labels), (np.zeros((2, 28, 28)), labels[:2]), list("0123456789"), batch_size=4, seed=7)
    for epoch in range(2):
        got = np.concatenate([d2l.to_numpy(y) for _, y in module.train_dataloader()])
        np.testing.assert_array_equal(got, labels[np.random.default_rng([7, epoch]).permutation(10)])


def test_batches_are_native_and_outlive_later_epochs(d2l):
    """Each batch is a native tensor of the dataset's values (a backend may share the fresh
    array a data loader makes instead of copying it): batches kept from the first epoch still
    hold their values after later epochs, and the dataset itself is unchanged."""
    rng = np.random.default_rng(4)
    images, labels = rng.random((10, 28, 28)), rng.integers(0, 10, 10)
    module = data.ImageData((images, labels), (images[:3], labels[:3]), list("0123456789"), batch_size=4, seed=1)
    kept = list(module.train_dataloader())
    for _ in range(3):
        list(module.train_dataloader()), list(module.val_dataloader())
    order, b = np.random.default_rng([1, 0]).permutation(10), d2lconv.backend.load(module.backend_name)
    for start, (X, y) in zip(range(0, 10, 4), kept):
        assert b.is_native(X) and b.is_native(y)
        np.testing.assert_array_equal(d2l.to_numpy(X), images[order[start:start + 4], None].astype(np.float32))
        np.testing.assert_array_equal(d2l.to_numpy(y), labels[order[start:start + 4]])
    np.testing.assert_array_equal(module.train[0][:, 0], images.astype(np.float32))


def test_validation_is_converted_once_only_where_tensors_are_immutable(d2l):
    """The validation batches hold the set in order every epoch; on TensorFlow and JAX, whose
    tensors no operation changes in place, they are the same tensors each time (converted
    once), elsewhere new ones, so a batch changed in place never reaches a later epoch."""
    rng = np.random.default_rng(5)
    images, labels = rng.random((10, 28, 28)), rng.integers(0, 10, 10)
    module = data.ImageData((images, labels), (images[:6], labels[:6]), list("0123456789"), batch_size=4)
    first, second = list(module.val_dataloader()), list(module.val_dataloader())
    for epoch in (first, second):
        np.testing.assert_array_equal(np.concatenate([d2l.to_numpy(X) for X, _ in epoch]), images[:6, None].astype(np.float32))
        np.testing.assert_array_equal(np.concatenate([d2l.to_numpy(y) for _, y in epoch]), labels[:6])
    same = [a is b for batch_a, batch_b in zip(first, second) for a, b in zip(batch_a, batch_b)]
    immutable = d2lconv.backend.load(module.backend_name).immutable_tensors
    assert same == [immutable] * 4 and immutable == (module.backend_name in ("tensorflow", "jax"))


def test_visualize_draws_a_figure(d2l):
    digits = d2l.Digits(batch_size=8, shifts=0)
    figure = digits.visualize(next(digits.val_dataloader()))
    assert len(figure.axes) == 8 and figure.axes[0].get_title() in "0123456789"


def test_bad_arguments(d2l):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        d2l.Digits(batch_size=0)
