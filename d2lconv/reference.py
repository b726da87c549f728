"""The NumPy reference: float64 ground truth for every backend, and the ``numpy`` backend's engine.

Two kinds of definition live here. The book's own loop definitions (``corr2d``,
``corr2d_multi_in``, ``corr2d_multi_in_out``, ``corr2d_multi_in_out_1x1``, ``pool2d_book``) are
kept as written in the chapter. The general ``conv2d`` and ``pool2d`` take explicit arguments only
(stride pairs, padding pairs) and compute on sliding windows; no framework is involved.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def corr2d(X, K):
    """2-D cross-correlation, the book's loop (section 7.2)."""
    X, K = np.asarray(X, np.float64), np.asarray(K, np.float64)
    h, w = K.shape
    Y = np.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y


def corr2d_multi_in(X, K):
    """Sum over input channels of ``corr2d`` (section 7.4)."""
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X, K):
    """One ``corr2d_multi_in`` per output channel, stacked (section 7.4)."""
    return np.stack([corr2d_multi_in(X, k) for k in K], 0)


def corr2d_multi_in_out_1x1(X, K):
    """The 1x1 convolution as a matrix product (section 7.4)."""
    X, K = np.asarray(X, np.float64), np.asarray(K, np.float64)
    c_i, h, w = X.shape
    c_o = K.shape[0]
    return (K.reshape(c_o, c_i) @ X.reshape(c_i, h * w)).reshape(c_o, h, w)


def sigmoid(X):
    """The logistic function ``1 / (1 + exp(-X))``, elementwise."""
    return 1 / (1 + np.exp(-X))


def pool2d_book(X, pool_size, mode="max"):
    """Stride-1, unpadded pooling of a 2-D array, the book's loop (section 7.5)."""
    X = np.asarray(X, np.float64)
    p_h, p_w = pool_size
    Y = np.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i : i + p_h, j : j + p_w]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


def _windows(X, window, stride, pads, fill):
    """Strided windows of padded NCHW ``X``: shape (N, C, OH, OW, kh, kw)."""
    X = np.pad(np.asarray(X, np.float64), ((0, 0), (0, 0), *pads), constant_values=fill)
    view = sliding_window_view(X, window, axis=(2, 3))
    return view[:, :, :: stride[0], :: stride[1]]


def conv2d(X, W, bias=None, stride=(1, 1), padding=((0, 0), (0, 0))):
    """NCHW ``X`` cross-correlated with OIHW ``W``, zero padding given as explicit pairs."""
    W = np.asarray(W, np.float64)
    Y = np.einsum("nchwij,ocij->nohw", _windows(X, W.shape[2:], stride, padding, 0.0), W)
    if bias is not None:
        Y = Y + np.asarray(bias, np.float64)[None, :, None, None]
    return Y


def pool2d(X, window, stride, padding=((0, 0), (0, 0)), mode="max", count_include_pad=True):
    """Max or average pooling of NCHW ``X``, each channel separately.

    Max pooling pads with -inf; average pooling pads with zeros and divides by the window's area
    when ``count_include_pad`` is true, else by the number of unpadded cells in the window.
    """
    if mode == "max":
        return _windows(X, window, stride, padding, -np.inf).max(axis=(-2, -1))
    total = _windows(X, window, stride, padding, 0.0).sum(axis=(-2, -1))
    if count_include_pad:
        return total / (window[0] * window[1])
    ones = np.ones((1, 1) + np.shape(X)[2:])
    return total / _windows(ones, window, stride, padding, 0.0).sum(axis=(-2, -1))
