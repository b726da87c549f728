"""Argument normalisation and shape arithmetic, done once for every backend.

Padding forms: ``int`` (all sides), ``(ph, pw)`` (each side), ``((top, bottom), (left, right))``,
``"valid"`` (none) and ``"same"`` (stride 1 only; output size equals input size; when the total
is odd the extra row/column goes at the end). Strides: ``int`` or ``(sh, sw)``, positive.
Output size along one axis: ``floor((n - k + p_total + s) / s)``.

Size limit: no padded input and no output may hold more than :data:`MAX_ELEMENTS` elements
(2**31 - 1, the largest size every framework indexes); a larger padding is a ValueError raised
before any framework allocates memory.
"""

from __future__ import annotations

import math
import numbers

Pair = tuple[int, int]
Pads = tuple[Pair, Pair]

MAX_ELEMENTS = 2**31 - 1


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(value, name: str, minimum: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {what}, got {value}")
    return int(value)


def int_pair(value, name: str, minimum: int = 1) -> Pair:
    """``n`` or ``(a, b)`` as ``(a, b)`` of integers >= ``minimum``."""
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}")
    return (_check_int(value[0], name, minimum), _check_int(value[1], name, minimum))


def stride_pair(stride) -> Pair:
    """``stride`` as ``(sh, sw)``; zero, negative or non-integer strides are errors."""
    return int_pair(stride, "stride", minimum=1)


def padding_pairs(padding, kernel: Pair, stride: Pair) -> Pads:
    """``padding`` in any accepted form as ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(f'padding="same" needs stride 1, got stride={stride}')
            return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
        raise ValueError(f'padding must be an int, a pair, two pairs, "valid" or "same"; got {padding!r}')
    if _is_int(padding):
        p = _check_int(padding, "padding", 0)
        return ((p, p), (p, p))
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(_is_int(p) for p in padding):
            ph, pw = int_pair(padding, "padding", minimum=0)
            return ((ph, ph), (pw, pw))
        if all(isinstance(p, (tuple, list)) for p in padding):
            return (int_pair(padding[0], "padding", 0), int_pair(padding[1], "padding", 0))
    raise TypeError(
        "padding must be an int, (ph, pw), ((top, bottom), (left, right)), \"valid\" or \"same\"; "
        f"got {padding!r}"
    )


def output_size(
    size: Pair, kernel: Pair, stride: Pair, pads: Pads, op: str, in_planes: int = 1, out_planes: int = 1
) -> Pair:
    """Spatial output size; a kernel larger than the padded input is an error, and so is a padded
    input (``in_planes`` planes) or an output (``out_planes`` planes) over :data:`MAX_ELEMENTS`.
    A size unknown while a graph is traced (None) gives None, its checks left to the framework."""
    padded = tuple(None if n is None else n + sum(p) for n, p in zip(size, pads))
    if any(n is not None and k > n for k, n in zip(kernel, padded)):
        raise ValueError(
            f"{op}: kernel {tuple(kernel)} is larger than the padded input {padded} "
            f"(input {tuple(size)}, padding {pads})"
        )
    out = tuple(None if n is None else (n - k + s) // s for n, k, s in zip(padded, kernel, stride))
    for what, planes, plane in (("padded input", in_planes, padded), ("output", out_planes, out)):
        if None in plane:
            continue
        if planes * plane[0] * plane[1] > MAX_ELEMENTS or plane[0] * plane[1] > MAX_ELEMENTS:
            raise ValueError(
                f"{op}: with padding {pads} the {what} would be {plane[0]} x {plane[1]} per plane "
                f"({max(planes, 1) * plane[0] * plane[1]:,} elements), over the limit of "
                f"{MAX_ELEMENTS:,} (2**31 - 1) elements per tensor; use a smaller padding or input"
            )
    return out


def flattened_shape(shape: tuple) -> tuple[int, int]:
    """(N, C*H*W) for an (N, C, H, W) ``shape`` (any rank from 1); a batch size unknown while a
    graph is traced (None) as -1, for the reshape to infer. Not -1 otherwise: an empty batch has
    no size to divide."""
    n, *rest = shape
    return (-1 if n is None else n, math.prod(rest))


def check_rank(shape: tuple[int, ...], ranks: tuple[int, ...], name: str, layout: str, op: str) -> None:
    if len(shape) not in ranks:
        wanted = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{op}: {name} must be {wanted}-D {layout}, got shape {shape}")
