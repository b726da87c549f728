"""The book's way to compute ``corr2d``: a Python double loop over the output cells.

A native module gives three things in its framework's idiom: ``loop_zeros(shape)``,
``loop_put(Y, i, j, value)`` (returns Y) and ``loop_sum(x)``; frameworks whose arrays take item
assignment and have ``.sum()`` use :func:`put_in_place` and :func:`sum_method`.
"""

from __future__ import annotations


def python_loop_corr2d(X, K, native):
    """Cross-correlation cell by cell: one slice, product and sum per output cell, written into
    the output with the framework's own assignment."""
    kh, kw = K.shape
    Y = native.loop_zeros((X.shape[0] - kh + 1, X.shape[1] - kw + 1))
    for i in range(X.shape[0] - kh + 1):
        for j in range(X.shape[1] - kw + 1):
            Y = native.loop_put(Y, i, j, native.loop_sum(X[i : i + kh, j : j + kw] * K))
    return Y


def put_in_place(Y, i, j, value):
    Y[i, j] = value
    return Y


def sum_method(x):
    return x.sum()
