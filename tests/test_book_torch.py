"""The book's torch dialect, ``from d2lconv.book import torch as d2l``, used in the book's style."""

import math

import numpy as np
import pytest

from book_support import check_training_board, imported_after, require_backend
from d2lconv import reference

require_backend("torch", "torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from d2lconv.book import torch as d2l  # noqa: E402


class TinyCNN(d2l.Classifier):
    """One convolution, ReLU, max pooling and a dense layer, for 16x16 digits."""

    def __init__(self, lr=0.1, num_classes=10, channels=4):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.LazyLinear(num_classes))


@pytest.fixture(scope="module")
def digits():
    return d2l.Digits(batch_size=64, resize=(16, 16), shifts=0)


def test_import_loads_only_torch():
    assert imported_after("from d2lconv.book import torch as d2l") == "['torch']"
    import d2lconv.book

    assert d2lconv.book.pytorch is d2l


def test_classifier_is_a_torch_module_with_its_hyperparameters():
    model = TinyCNN(lr=0.05, channels=3)
    assert isinstance(model, nn.Module) and isinstance(model, d2l.Module)
    assert model.hparams == {"lr": 0.05, "num_classes": 10, "channels": 3}
    assert (model.plot_train_per_epoch, model.plot_valid_per_epoch) == (2, 1)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.05


def test_add_to_class_and_layer_summary(capsys):
    @d2l.add_to_class(TinyCNN)
    def num_layers(self):
        return len(self.net)

    model = TinyCNN()
    assert model.num_layers() == 5
    model.layer_summary((2, 1, 16, 16))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Conv2d output shape:\t torch.Size([2, 4, 16, 16])",
        "ReLU output shape:\t torch.Size([2, 4, 16, 16])",
        "MaxPool2d output shape:\t torch.Size([2, 4, 8, 8])",
        "Flatten output shape:\t torch.Size([2, 256])",
        "Linear output shape:\t torch.Size([2, 10])",
    ]


def test_apply_init_materialises_lazy_layers_and_applies_xavier():
    torch.manual_seed(0)
    model = TinyCNN()
    model.apply_init([torch.zeros(1, 1, 16, 16)], d2l.init_cnn)
    dense = model.net[-1]
    assert type(dense) is nn.Linear and dense.weight.shape == (10, 256)
    xavier_bound = math.sqrt(6 / (256 + 10))  # torch's default would stay within 1/sqrt(256)
    assert 1 / math.sqrt(256) < dense.weight.abs().max().item() <= xavier_bound


def test_forward_without_net_is_a_clear_error():
    class Empty(d2l.Module):
        pass

    with pytest.raises(AttributeError, match="Empty has no self.net"):
        Empty()(torch.zeros(1))


def test_loss_and_accuracy_follow_the_book():
    Y_hat = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0]])
    Y = torch.tensor([0, 1, 1, 2])
    model = TinyCNN()
    assert model.accuracy(Y_hat, Y).item() == pytest.approx(0.5)
    assert model.accuracy(Y_hat, Y, averaged=False).tolist() == [1.0, 1.0, 0.0, 0.0]
    logits = Y_hat.double().numpy()
    expected = np.log(np.exp(logits).sum(1)) - logits[np.arange(4), Y.numpy()]
    assert model.loss(Y_hat, Y).item() == pytest.approx(expected.mean(), rel=1e-5)  # float32
    assert model.loss(Y_hat, Y, averaged=False).numpy() == pytest.approx(expected, rel=1e-5)


def test_digits_batches_have_the_books_torch_layout(digits):
    loader = digits.get_dataloader(train=True)
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert len(loader) == math.ceil(1438 / 64) and len(digits.val_dataloader()) == math.ceil(359 / 64)
    X, y = next(iter(loader))
    assert X.shape == (64, 1, 16, 16) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert digits.text_labels(y[:3]) == [str(int(i)) for i in y[:3]]


def test_trainer_fit_trains_and_plots_at_fractional_epochs(digits):
    torch.manual_seed(0)
    model = TinyCNN(lr=0.1)
    model.apply_init([next(iter(digits.train_dataloader()))[0]], d2l.init_cnn)
    trainer = d2l.Trainer(max_epochs=3)
    before = model.accuracy(model(torch.from_numpy(digits.arrays(False)[0])), torch.from_numpy(digits.arrays(False)[1]))
    trainer.fit(model, digits)
    check_training_board(model, trainer, min_val_acc=max(0.6, before.item() + 0.3))


def test_clip_gradients_scales_the_joint_norm():
    model = nn.Linear(3, 2)
    model.weight.grad = torch.full((2, 3), 2.0)
    model.bias.grad = torch.full((2,), 2.0)
    direction = model.weight.grad[0, 0].item()
    d2l.Trainer(max_epochs=1).clip_gradients(1.0, model)
    norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters())).item()
    assert norm == pytest.approx(1.0, rel=1e-6) and model.weight.grad[0, 0].item() < direction


def test_trainer_takes_the_gpus_that_exist():
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
    assert trainer.hparams == {"max_epochs": 1, "num_gpus": 1, "gradient_clip_val": 0}
    assert trainer.gpus == ([torch.device("cuda:0")] if torch.cuda.is_available() else [])


def test_helpers_have_the_books_signatures():
    assert d2l.float32 is torch.float32 and d2l.int32 is torch.int32 and d2l.int64 is torch.int64
    assert d2l.normal(0, 1, (3, 3, 3)).shape == (3, 3, 3)
    assert d2l.rand(2, 3).shape == (2, 3) and d2l.randn(4).shape == (4,)
    x = d2l.arange(12, dtype=d2l.float32)
    assert d2l.reshape(x, (3, 4)).shape == (3, 4) and d2l.reduce_sum(x).item() == 66.0
    assert d2l.zeros((2, 3)).sum().item() == 0 and d2l.ones((2, 3)).sum().item() == 6
    assert d2l.tensor([[1.0, 2.0]]).dtype == torch.float32
    assert d2l.concat([x, x]).shape == (24,) and d2l.stack([x, x]).shape == (2, 12)
    assert d2l.transpose(d2l.reshape(x, (3, 4))).shape == (4, 3)
    assert d2l.astype(x, d2l.int32).dtype == torch.int32 and d2l.argmax(x).item() == 11
    assert isinstance(d2l.numpy(x.requires_grad_()), np.ndarray)
    assert d2l.cpu() == torch.device("cpu") and d2l.gpu(1) == torch.device("cuda:1")
    assert d2l.num_gpus() == torch.cuda.device_count()
    assert d2l.try_gpu() == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))


def test_corr2d_gives_the_books_values():
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert d2l.corr2d(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]
    # integer and float64 inputs come back in the default float dtype, as the book's loop does
    Y = d2l.corr2d(torch.arange(9).reshape(3, 3), torch.tensor([[0, 1], [2, 3]]))
    assert Y.dtype == torch.float32 and Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]
    assert d2l.corr2d(X.double(), K.double()).dtype == torch.float32


def test_corr2d_matches_the_reference_and_is_differentiable():
    rng = np.random.default_rng(7)
    X_np, K_np = rng.normal(size=(6, 7)), rng.normal(size=(2, 3))
    X = torch.tensor(X_np, dtype=torch.float32, requires_grad=True)
    K = nn.Parameter(torch.tensor(K_np, dtype=torch.float32))
    Y = d2l.corr2d(X, K)
    np.testing.assert_allclose(Y.detach().numpy(), reference.corr2d(X_np, K_np), rtol=1e-5, atol=1e-5)
    Y.sum().backward()
    # d sum(Y) / dK[a, b] = sum of X over the window positions: corr2d(X, ones(Y.shape))
    np.testing.assert_allclose(K.grad.numpy(), reference.corr2d(X_np, np.ones(Y.shape)), rtol=1e-5, atol=1e-5)
    expected_dX = np.zeros_like(X_np)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            expected_dX[i : i + 2, j : j + 3] += K_np
    np.testing.assert_allclose(X.grad.numpy(), expected_dX, rtol=1e-5, atol=1e-5)
