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


def test_silu_of_extreme_values_is_finite_and_close_to_its_limits() -> None:
    from maskviz.nn import silu_

    for dtype in (np.float32, np.float64):
        big = np.finfo(dtype).max
        x = np.array([-big, -1e4, -100.0, -20.0, 0.0, 20.0, 1e4, big], dtype)
        with np.errstate(all="raise"):  # the pass runs with overflow as an error
            out = silu_(x.copy())
        assert out.dtype == dtype and np.isfinite(out).all()
        # silu(x) -> 0 below and -> x above; x sigmoid(x) where it is representable
        np.testing.assert_allclose(out[:3], 0.0, atol=1e-30)
        np.testing.assert_allclose(out[3], -20.0 / (1.0 + np.exp(20.0)), atol=1e-7)
        assert out[4] == 0.0
        np.testing.assert_allclose(out[5:], x[5:], rtol=1e-7)
