"""No NaN or inf anywhere: any mask kind, fully masked rows, both dtypes, extreme weights."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from maskviz import GPTConfig, masks, random_model
from tests.test_masks import random_masks


@settings(max_examples=60)
@given(
    mask=random_masks(),
    dtype=st.sampled_from(["float32", "float64"]),
    scale=st.sampled_from([1.0, 30.0, 1e3]),
    seed=st.integers(0, 99),
)
def test_any_mask_gives_finite_rows_that_sum_to_one_or_zero(
    mask: masks.Mask, dtype: str, scale: float, seed: int
) -> None:
    n = mask.n_queries
    model = random_model(GPTConfig(2, 2, 8, max(n, 1), 40), seed=seed, dtype=dtype)  # type: ignore[arg-type]
    for block in model.weights.blocks:
        block.c_attn_w *= scale  # peaky or saturated attention scores
    model.weights.wte *= scale  # extreme logits
    allowed = mask.to_array()
    ids = np.random.default_rng(seed).integers(0, 40, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow or invalid-value warnings fail the test
        logits, attention = model.forward(ids, allowed)
    assert np.isfinite(logits).all()
    assert np.isfinite(attention).all()
    assert logits.dtype == dtype and attention.dtype == dtype
    assert (attention[..., ~allowed] == 0).all()
    sums = attention.sum(axis=-1)
    has_keys = allowed.any(axis=1)
    np.testing.assert_allclose(sums[..., has_keys], 1.0, rtol=1e-5)
    assert (sums[..., ~has_keys] == 0).all()


def test_silu_is_accurate_down_to_tiny_values_and_finite_at_the_extremes() -> None:
    from maskviz.nn import silu_

    for dtype in (np.float32, np.float64):
        big = np.finfo(dtype).max
        x = np.array([-big, -1e4, -100.0, -88.0, -50.0, -19.0, -2.0, 0.0, 3.0, 1e4, big], dtype)
        with np.errstate(over="raise", invalid="raise"):  # as a pass runs
            out = silu_(x.copy())
        assert out.dtype == dtype and np.isfinite(out).all()
        exact = x.astype(np.float64) / (1.0 + np.exp(-np.maximum(x.astype(np.float64), -700.0)))
        # relative accuracy where x sigmoid(x) is a normal number, and tiny below -88
        np.testing.assert_allclose(out[3:], exact[3:], rtol=2e-6 if dtype == np.float32 else 1e-14)
        assert (np.abs(out[:3]) < 6e-37).all()


@settings(max_examples=50)
@given(
    row=st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=40),
    dtype=st.sampled_from([np.float32, np.float64]),
    eps=st.sampled_from([0.0, 1e-6]),
)
def test_rms_norm_of_one_row_equals_that_row_among_others(
    row: list[float], dtype: type, eps: float
) -> None:
    from maskviz.nn import rms_norm

    # a decoding step's single row takes its own path; it must agree with the batched one
    x = np.array([row, row[::-1]], dtype)
    w = np.linspace(0.5, 1.5, len(row)).astype(dtype)
    with np.errstate(all="ignore"):  # an all-zero row with eps 0 is NaN on both paths
        one, both = rms_norm(x[:1], w, eps), rms_norm(x, w, eps)
    assert one.dtype == dtype
    # subnormal results differ in their few bits however summed: absolute below the normals
    tol = {"rtol": 1e-5 if dtype == np.float32 else 1e-12, "atol": np.finfo(dtype).tiny}
    np.testing.assert_allclose(one, both[:1], **tol)
