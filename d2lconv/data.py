"""Data for the chapter: Fashion-MNIST from its official IDX files, and an offline digits set.

Images are kept as NumPy float32 arrays in [0, 1], shape (N, 1, H, W); labels as int64. Batches
come out as native tensors of the backend in force when the data module was made. Training
batches are shuffled per epoch by ``numpy.random.default_rng([seed, epoch])``, so the same seed
gives the same batches on every backend.
"""

from __future__ import annotations

import gzip
import numbers
import os
from pathlib import Path

import numpy as np

from d2lconv import args, backend, tensors

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: the official files and their MD5 sums, as published with the data set
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_LABELS = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
DATA_ENV_VAR = "D2LCONV_DATA"
#: what the sigmoid LeNet needs to leave its plateau within 3 epochs of Digits() (measured)
DIGITS_LR, DIGITS_BATCH_SIZE = 0.3, 32
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """The array stored in a gzipped IDX file; a ValueError naming the file if it is broken."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: wrong magic number {raw[:4].hex() or '(empty)'}; not an IDX file")
    ndim, dtype = raw[3], np.dtype(IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, {header} expected)")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: truncated or padded: {len(raw) - header} bytes of data, {expected} expected for shape {shape}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def data_root(root=None) -> Path:
    """Where Fashion-MNIST lives: ``root``, else ``$D2LCONV_DATA``, else the user's cache dir."""
    if root is None:
        root = os.environ.get(DATA_ENV_VAR)
    if root is None:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("d2lconv")) / "fashion-mnist"
    return Path(root)


def _check_present_files(folder: Path) -> None:
    """A ValueError naming the first official file in ``folder`` whose MD5 sum is wrong
    (truncated or corrupt): pooch would silently try to download it again."""
    import pooch

    for name, md5 in FASHION_MNIST_FILES.items():
        path = folder / name
        if path.is_file() and not pooch.file_hash(str(path), alg="md5") == md5.partition(":")[2]:
            raise ValueError(
                f"Fashion-MNIST file {path} is truncated or corrupt (its MD5 sum is not the official "
                f"{md5.partition(':')[2]}): delete it to download it again, or replace it with the official file"
            )


def fetch_fashion_mnist(root=None) -> dict[str, Path]:
    """Paths of the four official files in ``root``, downloading those missing (with MD5 checks,
    a progress bar and atomic writes, by pooch). A file already there with a wrong MD5 sum: a
    ValueError naming it (no download). Without network and without the files: a
    FileNotFoundError saying where to put them."""
    import pooch

    folder = data_root(root)
    _check_present_files(folder)
    paths = {}
    for name, md5 in FASHION_MNIST_FILES.items():
        try:
            paths[name] = Path(
                pooch.retrieve(FASHION_MNIST_URL + name, md5, fname=name, path=folder, progressbar=True)
            )
        except Exception as error:  # requests' network errors, pooch's checksum errors, ...
            raise FileNotFoundError(
                f"Fashion-MNIST file {name} is not in {folder} and could not be downloaded "
                f"({type(error).__name__}: {error}). Put the four official files "
                f"({', '.join(FASHION_MNIST_FILES)}) in {folder}, or point {DATA_ENV_VAR} or root= "
                "at the folder that holds them."
            ) from None
    return paths


def resize_images(images: np.ndarray, size) -> np.ndarray:
    """(N, H, W) images resized to ``size`` by bilinear interpolation (scipy.ndimage.zoom)."""
    height, width = args.int_pair(size, "resize")
    if images.shape[1:] == (height, width):
        return images
    from scipy import ndimage

    zoom = (1, height / images.shape[1], width / images.shape[2])
    return ndimage.zoom(images, zoom, order=1, grid_mode=True, mode="nearest")


def _loader_args(batch_size, resize) -> tuple[int, tuple[int, int]]:
    """``batch_size`` as one positive integer and ``resize`` as (height, width), checked."""
    return args._check_int(batch_size, "batch_size", 1), args.int_pair(resize, "resize")


class ValidationBatches:
    """A data module's validation batches, ``make()`` giving them converted: made again on every
    call, except on a backend with immutable tensors (``Backend.immutable_tensors``), where the
    first call's batches are kept and handed out again each epoch, as a hand-written loop
    converts its validation set once (TensorFlow, 1,024 images: 4.2 ms an epoch saved)."""

    def __init__(self, backend_name: str, make):
        self.backend_name, self.make, self.kept = backend_name, make, None

    def __call__(self):  # the framework is imported at the first batch, not when data is made
        if not backend.load(self.backend_name).immutable_tensors:
            return self.make()
        if self.kept is None:
            self.kept = list(self.make())
        return iter(self.kept)


class ImageData:
    """d2l's data-module interface over NumPy arrays: ``train_dataloader()``,
    ``val_dataloader()``, ``text_labels(indices)``, ``visualize(batch)``."""

    def __init__(self, train, val, labels, batch_size=64, resize=(28, 28), seed=0):
        self.batch_size, self.resize = _loader_args(batch_size, resize)
        self.seed, self.epoch, self.labels = seed, 0, list(labels)
        self.backend_name = backend.get_backend()
        self.train = (self._images(train[0]), self._labels(train[1], "train"))
        self.val = (self._images(val[0]), self._labels(val[1], "val"))
        self._val_batches = ValidationBatches(self.backend_name, lambda: self._batches(*self.val, np.arange(self.num_val)))

    def _labels(self, labels, part):
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.size and (labels.min() < 0 or labels.max() >= len(self.labels)):
            raise ValueError(f"ImageData: {part} labels must be integer class ids in [0, {len(self.labels)})")
        return labels.astype(np.int64)

    def _images(self, images):
        images = resize_images(np.asarray(images, np.float32), self.resize)
        return images[:, None, :, :]

    @property
    def num_train(self) -> int:
        return len(self.train[1])

    @property
    def num_val(self) -> int:
        return len(self.val[1])

    def _batches(self, X, y, order):
        """Batches of the float32 images and int64 labels; each is a fresh array (fancy indexing
        copies), which the backend may share rather than copy again."""
        b = backend.load(self.backend_name)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield b.batch_from_numpy(X[index]), b.batch_from_numpy(y[index])

    def train_dataloader(self):
        """One epoch of shuffled training batches; each call is the next epoch."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_train)
        self.epoch += 1
        return self._batches(*self.train, order)

    def val_dataloader(self):
        """The validation batches in order; on TensorFlow and JAX the same tensors every call
        (converted from ``self.val`` at the first call)."""
        return self._val_batches()

    def get_dataloader(self, train: bool):
        return self.train_dataloader() if train else self.val_dataloader()

    def text_labels(self, indices) -> list[str]:
        return [self.labels[int(i)] for i in tensors.numpy_of(indices).reshape(-1)]

    def visualize(self, batch, nrows=1, ncols=8, labels=()):
        """A matplotlib figure of the first ``nrows * ncols`` images of ``batch`` with their labels."""
        from matplotlib.figure import Figure

        X, y = (tensors.numpy_of(t) for t in batch)
        labels = list(labels) or self.text_labels(y)
        figure = Figure(figsize=(1.5 * ncols, 1.7 * nrows))
        for i, ax in enumerate(figure.subplots(nrows, ncols, squeeze=False).reshape(-1)):
            ax.axis("off")
            if i < len(X):
                ax.imshow(X[i, 0], cmap="gray")
                ax.set_title(labels[i], fontsize=8)
        return figure


def FashionMNIST(batch_size=64, resize=(28, 28), root=None, seed=0):
    """Fashion-MNIST (60,000 training, 10,000 validation images) as in section 4.2 of the book."""
    _loader_args(batch_size, resize)
    paths = fetch_fashion_mnist(root)
    images = {name: read_idx(path) for name, path in paths.items()}
    train = (images["train-images-idx3-ubyte.gz"] / np.float32(255), images["train-labels-idx1-ubyte.gz"])
    val = (images["t10k-images-idx3-ubyte.gz"] / np.float32(255), images["t10k-labels-idx1-ubyte.gz"])
    return ImageData(train, val, FASHION_MNIST_LABELS, batch_size, resize, seed)


def shifted_copies(images: np.ndarray, size, shifts: int) -> np.ndarray:
    """Each image scaled into a box of 20/28 of ``size`` (MNIST's proportions) and placed on a
    blank canvas of ``size`` at every offset within ``shifts`` pixels of the centre:
    ``(2 * shifts + 1) ** 2`` copies, offset-major."""
    height, width = args.int_pair(size, "resize")
    box_h, box_w = round(height * 20 / 28), round(width * 20 / 28)
    boxes = resize_images(images, (box_h, box_w))
    top, left = (height - box_h) // 2, (width - box_w) // 2
    copies = []
    for dy in range(-shifts, shifts + 1):
        for dx in range(-shifts, shifts + 1):
            canvas = np.zeros((len(images), height, width), np.float32)
            canvas[:, top + dy : top + dy + box_h, left + dx : left + dx + box_w] = boxes
            copies.append(canvas)
    return np.concatenate(copies)


def Digits(batch_size=64, resize=(28, 28), seed=0, shifts=2, val_fraction=0.2):
    """The UCI handwritten digits that scikit-learn ships (1,797 8x8 images): offline, no download.

    A fixed permutation puts the last ``val_fraction`` aside for validation (centred images).
    Each training digit appears at every shift within ``shifts`` pixels of the centre (25 copies
    by default, 35,950 images), and all images are standardised with the training mean and
    standard deviation: on the 1,438 raw [0, 1] images the book's sigmoid LeNet stays on its
    initial plateau (loss 2.31) for 25 epochs of SGD.
    """
    from sklearn.datasets import load_digits

    _, size = _loader_args(batch_size, resize)
    if not isinstance(val_fraction, numbers.Real) or isinstance(val_fraction, bool) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1 (e.g. 0.2), got {val_fraction!r}")
    shifts = args._check_int(shifts, "shifts", 0)
    room = min(size[0] - round(size[0] * 20 / 28), size[1] - round(size[1] * 20 / 28)) // 2
    if shifts > room:
        raise ValueError(f"shifts must be at most {room} for resize={size} (the digit must stay on the canvas), got {shifts}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(round(len(images) * (1 - val_fraction)))
    if not 0 < cut < len(images):
        raise ValueError(
            f"val_fraction={val_fraction!r} leaves an empty {'training' if cut == 0 else 'validation'} set "
            f"of the {len(images)} digits; use a fraction such as 0.2"
        )
    train, val = order[:cut], order[cut:]
    X_train = shifted_copies(images[train], size, shifts)
    y_train = np.tile(digits.target[train], (2 * shifts + 1) ** 2)
    X_val = shifted_copies(images[val], size, 0)
    mean, std = X_train.mean(), X_train.std()
    return ImageData(
        ((X_train - mean) / std, y_train), ((X_val - mean) / std, digits.target[val]),
        [str(d) for d in range(10)], batch_size, size, seed,
    )
