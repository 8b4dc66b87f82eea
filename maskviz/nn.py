"""The math every architecture shares: norms, activations, masked softmax, attention.

Functions take and return arrays in the caller's dtype: constants are Python
floats, which NumPy 2 never uses to promote an array. Functions whose name ends
in ``_`` work in place on a temporary the caller owns: a decoding step runs them
on one row per layer, where allocations are a large part of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]


_matmul = np.matmul  # the BLAS products; tests put a kernel that always flags in its place
_checked = ContextVar("maskviz_checked_products", default=False)


def product(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b``, or under `checked_products` the same numbers judged by value.

    >>> product(np.array([[1.0, 2.0]]), np.array([[3.0], [4.0]]))
    array([[11.]])
    """
    if not _checked.get():
        out: FloatArray = _matmul(a, b)
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        out = _matmul(a, b)
    if not np.isfinite(out).all():
        raise FloatingPointError("overflow encountered in matmul")
    return out


@contextmanager
def checked_products() -> Iterator[None]:
    """Within: a `product` raises FloatingPointError only when its result is not finite.

    An overflow raises NumPy's FloatingPointError under ``np.errstate(over="raise")``,
    but OpenBLAS kernels can also leave a floating-point flag on a finite product
    (numpy/numpy#24067), and may on every product. NumPy's own loops flag only
    what happened. A pass that raised runs again in here, where a product's flags are
    ignored and its values checked, so a flag never passes for an overflow.
    """
    token = _checked.set(True)
    try:
        yield
    finally:
        _checked.reset(token)


def layer_norm(x: FloatArray, w: FloatArray, b: FloatArray, eps: float) -> FloatArray:
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * w + b.

    [n, C] -> [n, C]. ufunc reductions rather than .mean(): a decoding step runs this
    on one row per layer, where .mean()'s Python-level overhead is most of the cost.
    """
    inv_c = 1.0 / x.shape[-1]
    xc: FloatArray = x - np.add.reduce(x, axis=-1, keepdims=True) * inv_c
    # std [n, 1] in new small arrays: in-place ops with a Python scalar cost more
    std = np.sqrt(np.add.reduce(xc * xc, axis=-1, keepdims=True) * inv_c + eps)
    xc /= std
    xc *= w
    xc += b
    return xc


def rms_norm(x: FloatArray, w: FloatArray, eps: float) -> FloatArray:
    """RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * w (Llama family).

    [..., D] -> [..., D], a new array.

    >>> rms_norm(np.array([[3.0, 4.0]]), np.ones(2), 0.0).round(4)
    array([[0.8485, 1.1314]])
    """
    if x.ndim == 2 and x.shape[0] == 1:
        # a decoding step's one row, twice per layer: a dot product and scalars are 3
        # NumPy calls on arrays where the general path makes 7. A checked `product`,
        # not np.dot: np.dot in NumPy 2.0 returns an overflow as inf unreported, which
        # would scale the row to zeros
        scale = 1.0 / np.sqrt(product(x[0], x[0]) / x.shape[1] + eps)  # a NumPy scalar
        row: FloatArray = x * (w * scale)
        return row
    # [..., 1]; new small arrays rather than in-place ops: NumPy's in-place path with a
    # Python scalar costs more
    ms = np.add.reduce(x * x, axis=-1, keepdims=True)
    rms = np.sqrt(ms * (1.0 / x.shape[-1]) + eps)
    out: FloatArray = x / rms
    out *= w
    return out


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu(x: FloatArray) -> FloatArray:
    """GPT-2's GELU, tanh form ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return gelu_(np.array(x, copy=True), None)


def gelu_(x: FloatArray, bias: FloatArray | None) -> FloatArray:
    """`gelu` of ``x + bias`` computed in ``x`` (a temporary the caller owns), one more buffer."""
    if bias is not None:
        x += bias
    t: FloatArray = np.square(x)
    t *= 0.044715
    t += 1.0
    t *= x
    t *= _GELU_C
    np.tanh(t, out=t)
    t += 1.0
    x *= t
    x *= 0.5
    return x


def silu_(x: FloatArray) -> FloatArray:
    """x * sigmoid(x) = x / (1 + exp(-x)), computed in ``x`` (a temporary the caller owns).

    >>> silu_(np.array([0.0, 1.0, -100.0])).round(4)
    array([ 0.    ,  0.7311, -0.    ])
    """
    # x is clipped at -88 first: exp(88) is finite in float32, so the pass's error state
    # needs no switch, and below -88 x sigmoid(x) is under 6e-37 in size either way
    np.maximum(x, -88.0, out=x)
    t: FloatArray = np.negative(x)
    np.exp(t, out=t)
    t += 1.0
    x /= t
    return x


def masked_softmax(scores: FloatArray, mask: BoolArray | None) -> FloatArray:
    """Softmax over the last axis where ``mask`` allows; exactly 0 where it does not.

    A row with no allowed key is all zeros (never NaN): there is nothing to attend to.

    >>> s = np.zeros((2, 2), np.float32)
    >>> masked_softmax(s, np.array([[True, False], [False, False]]))
    array([[1., 0.],
           [0., 0.]], dtype=float32)
    """
    return softmax_(np.array(scores, copy=True), mask)


def softmax_(scores: FloatArray, mask: BoolArray | None) -> FloatArray:
    """`masked_softmax` computed in place in ``scores`` (a temporary the caller owns)."""
    if mask is not None:
        np.copyto(scores, -np.inf, where=~mask)  # masked keys: exp(-inf) is exactly 0
    row_max = np.maximum.reduce(scores, axis=-1, keepdims=True)
    if mask is not None:
        row_max[~np.isfinite(row_max)] = 0.0  # a row with no allowed key: -inf - 0, no NaN
    scores -= row_max
    np.exp(scores, out=scores)
    total = np.add.reduce(scores, axis=-1, keepdims=True)
    if mask is not None:
        total[total == 0] = 1.0
    scores /= total
    return scores


def attention(
    q: FloatArray, k: FloatArray, v: FloatArray, mask: BoolArray | None
) -> tuple[FloatArray, FloatArray]:
    """softmax(q k^T / sqrt(d) + mask) v for every query head.

    q [H, n_q, d], k [H_kv, n_k, d], v [H_kv, n_k, d], mask [n_q, n_k] or None
    -> output [H, n_q, d], weights [H, n_q, n_k]

    With grouped-query attention (H_kv < H) each key/value head serves a group of
    H / H_kv consecutive query heads; every query head still has its own weights.
    """
    h, n_q, d = q.shape
    h_kv, n_k = k.shape[0], k.shape[1]
    group = h // h_kv
    # [H_kv, group * n_q, d]: the queries of one group share their keys, one product each
    qg = q.reshape(h_kv, group * n_q, d)
    scores = product(qg, k.transpose(0, 2, 1))  # [H_kv, group * n_q, n_k]
    scores *= 1.0 / math.sqrt(d)  # in place, after the product as transformers scales
    scores = scores.reshape(h, n_q, n_k)
    weights = softmax_(scores, mask)
    out = product(weights.reshape(h_kv, group * n_q, n_k), v)  # [H_kv, group * n_q, d]
    return out.reshape(h, n_q, d), weights
