"""No NaN or inf anywhere: any mask kind, fully masked rows, both dtypes, extreme weights."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from maskviz import GPTConfig, masks, random_model
from tests.test_masks import random_masks


@settings(max_examples=60, deadline=None)
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
