"""The command line: an expected error is one line on stderr, ``d2lconv: error: ...``, and exit
status 2; ``--debug`` shows the traceback. Run as subprocesses; no test touches the network: the
data folder is empty and every HTTP(S) request goes to a closed local port."""

import os
import subprocess
import sys

import pytest

import d2lconv
from conftest import BACKEND

CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def _run(*argv, data_root):
    env = dict(os.environ, D2LCONV_DATA=str(data_root), D2LCONV_BACKEND=BACKEND, NO_PROXY="", no_proxy="")
    env.update({key: CLOSED_PORT for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")})
    return subprocess.run([sys.executable, "-m", "d2lconv", *argv], capture_output=True, text=True, env=env, timeout=300, check=False)


def _assert_one_line_error(result, message):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()  # before it, pooch may log its download attempt
    assert lines[-1].startswith("d2lconv: error: ") and result.stderr.count("d2lconv: error") == 1, result.stderr
    assert message in lines[-1], lines[-1]


def test_offline_fashion_mnist_is_one_line_and_status_2(tmp_path):
    result = _run("train", "--data", "fashion-mnist", "--epochs", "1", "--out", str(tmp_path / "out"), data_root=tmp_path)
    _assert_one_line_error(result, f"Fashion-MNIST file train-images-idx3-ubyte.gz is not in {tmp_path}")
    assert not (tmp_path / "out").exists()
    debug = _run("--debug", "train", "--data", "fashion-mnist", "--epochs", "1", data_root=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def test_a_corrupt_fashion_mnist_file_is_one_line(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    result = _run("train", "--epochs", "1", "--out", str(tmp_path), data_root=tmp_path)
    _assert_one_line_error(result, "t10k-images-idx3-ubyte.gz is truncated or corrupt")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "digits", "--epochs", "0"], "max_epochs must be positive, got 0"),
        (["train", "--data", "digits", "--batch-size", "0"], "batch_size must be positive, got 0"),
        (["train", "--data", "digits", "--lr", "-1"], "lr must be a positive finite number"),
        (["train", "--backend", "nosuch"], "unknown backend 'nosuch'"),
        (["tour", "--backend", "nosuch"], "unknown backend 'nosuch'"),
    ],
)
def test_argument_mistakes_are_one_line(tmp_path, argv, message):
    _assert_one_line_error(_run(*argv, data_root=tmp_path), message)


def test_a_missing_framework_is_one_line(tmp_path):
    missing = [name for name in ("torch", "jax", "tensorflow", "mxnet") if name not in d2lconv.available_backends()]
    if not missing:
        pytest.skip("every framework is installed here: none is missing")
    result = _run("train", "--data", "digits", "--backend", missing[0], data_root=tmp_path)
    _assert_one_line_error(result, f'pip install "d2lconv[{missing[0]}]"')


def test_argparse_mistakes_keep_status_2(tmp_path):
    result = _run("train", "--epochs", "many", data_root=tmp_path)
    assert result.returncode == 2 and "d2lconv train: error: argument --epochs: invalid int value: 'many'" in result.stderr
