"""What the tests of the book's dialects share (tests/test_book_*.py): a real module, not conftest."""

import subprocess
import sys

import pytest

import d2lconv

DIALECT_FRAMEWORKS = ("torch", "tensorflow", "jax", "mxnet")


def require_backend(name: str, dialect: str) -> None:
    """Skip the calling test module unless the backend under test is ``name``, saying why."""
    backend = d2lconv.get_backend()
    if backend != name:
        pytest.skip(f"the book's {dialect} dialect is tested in the {name} env (backend under test: {backend})",
                    allow_module_level=True)


def imported_after(statement: str, modules=DIALECT_FRAMEWORKS) -> str:
    """The sorted list, as printed, of ``modules`` a fresh interpreter imported running ``statement``
    (the last line of its output: MXNet prints its own notices first)."""
    code = f"import sys; {statement}; print(sorted(m for m in {tuple(modules)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def check_training_board(model, trainer, min_val_acc: float) -> None:
    """A dialect's Trainer ran 3 epochs of the tests' Digits (23 training and 6 validation batches
    of 64) and drew the book's curves: 2 training points per epoch, validation at each epoch end;
    the loss fell and the last validation accuracy is above ``min_val_acc``."""
    board = model.board.data
    assert set(board) == {"train_loss", "val_loss", "val_acc"}
    assert [p.x for p in board["val_acc"]] == [1, 2, 3]
    assert trainer.train_batch_idx == 3 * 23 and trainer.val_batch_idx == 3 * 6
    assert len(board["train_loss"]) == 3 * 23 // 11  # every_n = int(23 batches / 2 points per epoch)
    assert board["train_loss"][-1].y < board["train_loss"][0].y
    assert board["val_acc"][-1].y > min_val_acc
