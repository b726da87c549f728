"""The values the book prints in sections 7.2 to 7.5, on the backend under test."""

import numpy as np
import pytest

from conftest import assert_close


def test_corr2d_figure_7_2_1(d2l):
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    Y = d2l.corr2d(X, K)
    assert type(Y) is type(X), "operators return the backend's native tensors"
    assert_close(Y, [[19.0, 25.0], [37.0, 43.0]])


def test_edge_detector_and_its_transpose(d2l):
    image = np.ones((6, 8))
    image[:, 2:6] = 0
    X = d2l.tensor(image)
    K = d2l.tensor([[1.0, -1.0]])
    edges = np.zeros((6, 7))
    edges[:, 1], edges[:, 5] = 1, -1
    assert_close(d2l.corr2d(X, K), edges)
    # the book: the kernel K only detects vertical edges; on the transposed image it finds none
    assert_close(d2l.corr2d(d2l.transpose(X), K), np.zeros((8, 5)))


def _channels_example(d2l):
    X = d2l.tensor([[[0.0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]])
    K = d2l.tensor([[[0.0, 1], [2, 3]], [[1.0, 2], [3, 4]]])
    return X, K


def test_corr2d_multi_in(d2l):
    X, K = _channels_example(d2l)
    assert_close(d2l.corr2d_multi_in(X, K), [[56.0, 72.0], [104.0, 120.0]])


def test_corr2d_multi_in_out_three_outputs(d2l):
    X, K = _channels_example(d2l)
    K = d2l.stack((K, K + 1, K + 2), 0)
    assert d2l.shape(K) == (3, 2, 2, 2)
    expected = [
        [[56, 72], [104, 120]],
        [[76, 100], [148, 172]],
        [[96, 128], [192, 224]],
    ]
    assert_close(d2l.corr2d_multi_in_out(X, K), expected)


def test_1x1_convolution_equals_corr2d_multi_in_out(d2l):
    X = d2l.normal(3, 3, 3, seed=0)
    K = d2l.normal(2, 3, 1, 1, seed=1)
    Y1 = d2l.corr2d_multi_in_out_1x1(X, K)
    Y2 = d2l.corr2d_multi_in_out(X, K)
    assert d2l.shape(Y1) == (2, 3, 3)
    assert float(np.abs(d2l.to_numpy(Y1) - d2l.to_numpy(Y2)).sum()) < 1e-6


@pytest.mark.parametrize(
    "kernel, padding, stride, expected",
    [
        (3, 1, 1, (8, 8)),
        ((5, 3), (2, 1), 1, (8, 8)),
        (3, 1, 2, (4, 4)),
        ((3, 5), (0, 1), (3, 4), (2, 2)),
    ],
)
def test_padding_and_stride_output_shapes(d2l, kernel, padding, stride, expected):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    W = d2l.ones(1, 1, kh, kw)
    X = d2l.rand(8, 8, seed=0)
    Y = d2l.comp_conv2d(lambda x: d2l.conv2d(x, W, stride=stride, padding=padding), X)
    assert d2l.shape(Y) == expected


def test_pooling_max_and_avg(d2l):
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert_close(d2l.pool2d(X, (2, 2), stride=1), [[4.0, 5.0], [7.0, 8.0]])
    assert_close(d2l.pool2d(X, (2, 2), "avg", stride=1), [[2.0, 3.0], [5.0, 6.0]])


def test_pooling_padding_and_stride(d2l):
    X = d2l.reshape(d2l.arange(16, dtype=d2l.float32), (1, 1, 4, 4))
    assert_close(d2l.pool2d(X, 3), [[[[10.0]]]])
    assert_close(d2l.pool2d(X, 3, padding=1, stride=2), [[[[5.0, 7.0], [13.0, 15.0]]]])
    assert_close(d2l.pool2d(X, (2, 3), stride=(2, 3), padding=(0, 1)), [[[[5.0, 7.0], [13.0, 15.0]]]])


def test_pooling_two_channels(d2l):
    X = d2l.reshape(d2l.arange(16, dtype=d2l.float32), (1, 1, 4, 4))
    X = d2l.concat((X, X + 1), 1)
    Y = d2l.pool2d(X, 3, padding=1, stride=2)
    assert d2l.shape(Y) == (1, 2, 2, 2)
    assert_close(Y, [[[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]])
