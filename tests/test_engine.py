"""The NumPy GPT: cached decoding equals training mode and recompute, numerics, errors."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import maskviz
from maskviz import GPTConfig, LlamaConfig, MaskvizError, random_model
from maskviz.arch import Config
from maskviz.arch.llama import Llama3Scaling
from maskviz.compare import compare, tolerance
from maskviz.model import KVCache, attention, masked_softmax

configs = st.builds(
    lambda n_layer, n_head, head_dim, n_ctx, vocab: GPTConfig(
        n_layer, n_head, n_head * head_dim, n_ctx, vocab
    ),
    n_layer=st.integers(1, 3),
    n_head=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    n_ctx=st.integers(4, 24),
    vocab=st.integers(2, 40),
)


@settings(max_examples=40)
@given(
    cfg=configs,
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_cached_equals_training_and_recompute(
    cfg: GPTConfig, seed: int, dtype: str, data: st.DataObject
) -> None:
    model = random_model(cfg, seed=seed, dtype=dtype)  # type: ignore[arg-type]
    p = data.draw(st.integers(1, cfg.n_ctx))
    prompt = data.draw(st.lists(st.integers(0, cfg.vocab_size - 1), min_size=p, max_size=p))
    steps = data.draw(st.integers(0, cfg.n_ctx - p))
    cached = model.trace(prompt, steps=steps)
    training = model.trace(prompt, steps=steps, mode="training")
    recompute = model.trace(prompt, steps=steps, mode="recompute")
    np.testing.assert_array_equal(cached.token_ids, training.token_ids)
    np.testing.assert_array_equal(cached.token_ids, recompute.token_ids)
    assert cached.n_tokens == p + steps
    scale = float(np.abs(training.logits).max())
    for other in (training, recompute):
        assert np.abs(cached.logits - other.logits).max() <= tolerance(dtype, scale)
        assert np.abs(cached.attention - other.attention).max() <= tolerance(dtype, 1.0)
    for trace in (cached, training, recompute):
        assert trace.logits.dtype == dtype
        assert trace.attention.dtype == dtype


def test_float64_parity_is_at_rounding_level() -> None:
    model = random_model(GPTConfig(3, 4, 32, 64, 100), seed=3, dtype="float64")
    cached = model.trace(list(range(10)), steps=30)
    training = model.trace(list(range(10)), steps=30, mode="training")
    assert np.abs(cached.logits - training.logits).max() < 1e-12
    assert np.abs(cached.attention - training.attention).max() < 1e-12


@settings(max_examples=25)
@given(cfg=configs, seed=st.integers(0, 1000), dtype=st.sampled_from(["float32", "float64"]))
def test_attention_rows_are_distributions_and_masked_weights_exactly_zero(
    cfg: GPTConfig, seed: int, dtype: str
) -> None:
    model = random_model(cfg, seed=seed, dtype=dtype)  # type: ignore[arg-type]
    trace = model.trace([0] * min(3, cfg.n_ctx), steps=cfg.n_ctx - min(3, cfg.n_ctx))
    att = trace.attention
    assert (att[..., ~trace.mask] == 0).all()
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, atol=tolerance(dtype, float(cfg.n_ctx)))
    assert np.isfinite(att).all() and np.isfinite(trace.logits).all()


def test_fully_masked_rows_give_zero_weights_without_warnings() -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 3)).astype(np.float32) for _ in range(3))
    strict = maskviz.masks.strict_causal(4).to_array()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, weights = attention(q, k, v, strict)
    assert (weights[:, 0] == 0).all()
    assert (out[:, 0] == 0).all()
    np.testing.assert_allclose(weights[:, 1:].sum(-1), 1.0, rtol=1e-6)
    assert weights.dtype == np.float32 and out.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e30])
def test_extreme_scores_stay_finite(dtype: str, scale: float) -> None:
    scores = (np.array([[[0.0, 1.0, -1.0], [5.0, -5.0, 0.0]]]) * scale).astype(dtype)
    scores = np.clip(scores, np.finfo(dtype).min, np.finfo(dtype).max)
    mask = np.array([[True, True, False], [False, False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = masked_softmax(scores, mask)
    assert np.isfinite(weights).all()
    assert weights[0, 0].sum() == pytest.approx(1.0)
    assert (weights[0, 1] == 0).all()


def test_engine_never_promotes_float32() -> None:
    model = random_model(GPTConfig(2, 2, 16, 32, 300), seed=0)
    trace = model.trace([1, 2, 3], steps=3)
    assert {a.dtype for a in (trace.logits, trace.attention)} == {np.dtype(np.float32)}
    assert all(a.dtype == np.float32 for a in vars(model.weights.blocks[0]).values())


def test_kv_cache_is_allocated_once_and_reports_bytes() -> None:
    cfg = GPTConfig(2, 2, 8, 16, 20)
    cache = KVCache(cfg, capacity=10, dtype="float32")
    assert cache.nbytes == 2 * 2 * 2 * 10 * 4 * 4
    trace = random_model(cfg).trace([1, 2], steps=5)
    assert trace.kv_cache_bytes == 2 * 2 * 2 * 7 * 4 * 4
    assert trace.step_seconds.shape == (5,)


def test_layer_and_head_selection_records_only_those() -> None:
    model = random_model(GPTConfig(3, 4, 16, 16, 20), seed=1)
    full = model.trace([1, 2, 3], steps=4)
    some = model.trace([1, 2, 3], steps=4, layers=[2], heads=[1, 3])
    assert some.attention.shape == (1, 2, 7, 7)
    np.testing.assert_array_equal(some.attention[0], full.attention[2][[1, 3]])
    np.testing.assert_array_equal(some.head_attention(2, 3), full.attention[2, 3])
    half = model.trace([1, 2, 3], steps=4, record_dtype="float16")
    assert half.attention.dtype == np.float16
    off = model.trace([1, 2, 3], steps=4, record=False)
    assert off.attention.size == 0
    np.testing.assert_array_equal(off.logits, full.logits)


def test_sampling_is_reproducible_with_a_seed() -> None:
    model = random_model(GPTConfig(1, 2, 8, 64, 30), seed=2)
    a = model.trace([1], steps=40, temperature=1.5, top_k=10, seed=7)
    b = model.trace([1], steps=40, temperature=1.5, top_k=10, seed=7)
    c = model.trace([1], steps=40, temperature=1.5, top_k=10, seed=8)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    assert (a.token_ids != c.token_ids).any()
    greedy = model.trace([1], steps=40)
    assert (a.token_ids != greedy.token_ids).any()


def test_generation_stops_at_the_context_limit() -> None:
    model = random_model(GPTConfig(1, 1, 4, 8, 10))
    trace = model.trace([1, 2, 3], steps=20)
    assert trace.n_tokens == 8
    assert trace.stop_reason == "context"


def test_generation_stops_after_end_of_text() -> None:
    model = random_model(GPTConfig(1, 1, 8, 32, 257), seed=0)
    # logits = ln_f(x) @ wte.T; with only wte[256] non-zero and ln_f's bias 1,
    # token 256 (end-of-text) scores n_embd and every other token 0
    model.weights.wte[:] = 0
    model.weights.wte[256] = 1
    model.weights.ln_f_b[:] = 1
    trace = model.trace([65, 66], steps=10)
    assert trace.token_ids.tolist() == [65, 66, 256]
    assert trace.stop_reason == "end_of_text"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token_ids": []}, "empty"),
        ({"token_ids": [1, 99]}, "outside the vocabulary"),
        ({"token_ids": [1, 10]}, r"token id 10 is outside the vocabulary \[0, 10\)"),
        ({"token_ids": [1], "layers": [2]}, r"layer 2 is out of range: the model has 2 layers"),
        ({"token_ids": [1], "heads": [2]}, r"head 2 is out of range: the model has 2 heads"),
        ({"token_ids": [-1]}, "outside the vocabulary"),
        ({"token_ids": [1], "steps": -1}, "steps must be"),
        ({"token_ids": list(range(9))}, "longer than the model's context of 8 positions"),
        ({"token_ids": [1], "mode": "sideways"}, "mode must be"),
        (
            {"token_ids": [1], "layers": [5]},
            r"layer 5 is out of range: the model has 2 layers \(0..1\)",
        ),
        ({"token_ids": [1], "heads": [-1]}, "head -1 is out of range"),
        ({"token_ids": np.array([[1, 2]])}, r"token ids must be one sequence \(1-D\), got shape"),
        ({"token_ids": [1], "temperature": -1.0}, "temperature"),
        ({"token_ids": [1], "top_k": 0}, "top_k"),
        # never truncated to an integer, never a raw TypeError from NumPy
        ({"token_ids": [1.5]}, "token ids: 1.5 is not an integer"),
        ({"token_ids": [True]}, "token ids: True is not an integer"),
        ({"token_ids": 5}, "token ids must be integers"),
        ({"token_ids": [1], "layers": [0.7]}, "layers: 0.7 is not an integer"),
        ({"token_ids": [1], "temperature": "hot"}, "temperature must be a finite number"),
        ({"token_ids": [1], "temperature": 1, "top_k": 2.5}, "top_k: 2.5 is not an integer"),
        ({"token_ids": [1], "temperature": 1, "seed": -1}, "seed must be from 0 to"),
        ({"token_ids": [1], "temperature": 1, "seed": 2**63}, "seed must be from 0 to"),
        ({"token_ids": [1], "temperature": 1, "seed": 1.5}, "seed: 1.5 is not an integer"),
    ],
)
def test_bad_input_raises_the_library_error(kwargs: dict[str, object], message: str) -> None:
    model = random_model(GPTConfig(2, 2, 8, 8, 10))
    with pytest.raises(MaskvizError, match=message):
        model.trace(**kwargs)  # type: ignore[arg-type]


def test_top_k_sampling_never_picks_a_token_outside_the_k_likeliest() -> None:
    from maskviz.model import _Chooser

    logits = np.zeros(10, np.float32)
    logits[3] = -0.01  # the least likely, by a hair: sampling from all ten picks it often
    for k, seen in ((9, set(range(10)) - {3}), (10, set(range(10)))):
        choose = _Chooser(1.0, k, seed=0)
        assert {choose(logits) for _ in range(400)} == seen


def test_positions_that_are_not_integers_are_refused_not_truncated() -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    with pytest.raises(MaskvizError, match=r"positions: 0\.5 is not an integer"):
        model.forward([1, 2], positions=[0.5, 1.5])  # type: ignore[list-item]


def test_a_vanishing_temperature_samples_the_greedy_token_without_nan() -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    greedy = model.trace([1, 2], steps=6).token_ids
    # logits / 1e-310 overflows to inf for any positive logit: the largest must not
    sampled = model.trace([1, 2], steps=6, temperature=1e-310, seed=0).token_ids
    np.testing.assert_array_equal(sampled, greedy)


def test_a_negative_seed_is_refused_by_random_model() -> None:
    with pytest.raises(MaskvizError, match="seed must be from 0 to"):
        random_model(GPTConfig(1, 2, 16, 32, 50), seed=-1)


def test_a_random_model_names_ids_past_the_bytes_in_its_text_and_labels() -> None:
    # a GPT-2-sized vocabulary with the byte tokenizer: ids 257.. are no bytes
    trace = random_model(GPTConfig(1, 2, 16, 64, 300), seed=56).trace([72, 105], steps=6)
    past = [int(i) for i in trace.token_ids if i > 256]
    assert past  # this seed produces some
    for token_id in past:
        assert f"<id:{token_id}>" in trace.text
        assert trace.token_label(token_id) == f"<id:{token_id}>"  # not "\\x105"
    assert trace.text.count("<id:") == len(past)


def test_a_config_describes_one_layer_and_one_head_in_the_singular() -> None:
    assert GPTConfig(1, 1, 8, 8, 8).describe().startswith("gpt2, 1 layer, 1 head, width 8")
    llama = LlamaConfig(1, 1, 1, 4, 8, 16, 8, 8).describe()
    assert llama.startswith("llama, 1 layer, 1 head, width 8")
    assert GPTConfig(2, 2, 8, 8, 8).describe().startswith("gpt2, 2 layers, 2 heads")


def test_a_recording_too_large_for_memory_is_a_library_error_before_the_run() -> None:
    # 256 TiB: more than a 64-bit machine's address space, refused however the OS
    # commits memory
    model = random_model(LlamaConfig(8, 8, 2, 8, 32, 48, 2**20, 60))
    with pytest.raises(
        MaskvizError,
        match=r"not enough memory to record the attention of 8 layers x 8 heads over "
        r"1,048,576 positions \(262,144\.0 GiB of float32\): record fewer layers",
    ):
        model.trace([1], steps=2**20 - 1)


def test_a_kv_cache_too_large_for_memory_is_a_library_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import maskviz.model

    def no_memory(*args: object) -> None:
        raise MemoryError("Unable to allocate 4.00 TiB")

    monkeypatch.setattr(maskviz.model, "KVCache", no_memory)
    model = random_model(GPTConfig(1, 1, 8, 64, 20))
    with pytest.raises(
        MaskvizError, match=r"not enough memory for the logits and KV cache of 11 positions"
    ):
        model.trace([1], steps=10, record=False)


@pytest.mark.parametrize("vocab", [20, 257])  # ids as numbers; bytes
def test_a_tokenizer_refuses_what_is_not_text_by_name(vocab: int) -> None:
    tokenizer = random_model(GPTConfig(1, 1, 8, 8, vocab)).tokenizer
    for value in (5, b"To be", None):
        with pytest.raises(MaskvizError, match="the text must be a string, got"):
            tokenizer.encode(value)  # type: ignore[arg-type]


def test_random_model_takes_a_name_that_is_text() -> None:
    with pytest.raises(MaskvizError, match="name must be a string, got 5"):
        random_model(GPTConfig(1, 2, 16, 32, 50), name=5)  # type: ignore[arg-type]


def test_forward_accepts_mask_objects_bool_arrays_causal_and_none() -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    ids = [1, 5, 2, 7, 3]
    window = maskviz.masks.causal(5) & maskviz.masks.sliding_window(5, 2)
    for method in (model.forward, model.forward_hidden):
        by_name = method(ids, "causal")
        for same in (maskviz.masks.causal(5), maskviz.masks.causal(5).to_array()):
            out = method(ids, same)
            np.testing.assert_array_equal(out[0], by_name[0])
            np.testing.assert_array_equal(out[1], by_name[1])
        from_object, from_array = method(ids, window), method(ids, window.to_array())
        np.testing.assert_array_equal(from_object[0], from_array[0])
        assert (from_object[1][..., ~window.to_array()] == 0).all()
        unmasked = method(ids, None)
        np.testing.assert_array_equal(unmasked[0], method(ids, np.ones((5, 5), bool))[0])
        assert (unmasked[1] > 0).all()


@pytest.mark.parametrize(
    ("mask", "given"),
    [
        ("bidirectional", "the string 'bidirectional'"),
        (np.ones((3, 3)), r"a float64 array of shape \[3, 3\]"),
        (np.ones((3, 3), np.uint8), r"a uint8 array of shape \[3, 3\]"),
        (np.ones((2, 2), bool), r"a bool array of shape \[2, 2\]"),
        (maskviz.masks.causal(4), r"a Mask of shape \[4, 4\]"),
        (maskviz.masks.cached_step(past_len=2), r"a Mask of shape \[1, 3\]"),
        ([[True] * 3] * 3, "a list"),
    ],
)
def test_forward_refuses_other_masks_naming_what_was_given(mask: object, given: str) -> None:
    model = random_model(GPTConfig(1, 1, 4, 8, 10))
    for method in (model.forward, model.forward_hidden):
        with pytest.raises(MaskvizError, match=r"mask must be .*; got " + given) as info:
            method([1, 2, 3], mask)  # type: ignore[arg-type]
        assert info.value.exit_code == 2


def test_bad_configs_are_refused() -> None:
    with pytest.raises(MaskvizError, match="divisible"):
        GPTConfig(1, 3, 8, 8, 8)
    with pytest.raises(MaskvizError, match="n_layer"):
        GPTConfig(0, 1, 8, 8, 8)
    with pytest.raises(MaskvizError, match=r"n_ctx must be an integer from 1 to 1048576"):
        GPTConfig(1, 1, 8, 10**9, 8)  # not a MemoryError when its weights are made


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # "no" is truthy: it would silently mean tied
        (lambda: GPTConfig(1, 1, 8, 8, 8, tie_word_embeddings="no"),
         r"GPTConfig.tie_word_embeddings must be True or False, got 'no'"),
        (lambda: LlamaConfig(1, 2, 1, 4, 8, 16, 8, 8, qkv_bias="x"),
         r"LlamaConfig.qkv_bias must be True or False"),
        (lambda: LlamaConfig(1, 2, 1, 4, 8, 16, 8, 8, rope_scaling={"factor": 8}),  # type: ignore[arg-type]
         r"LlamaConfig.rope_scaling must be a Llama3Scaling or None"),
        # a factor of 0 divided by zero, reported as weights too large; -8 rotated silently
        (lambda: Llama3Scaling(0.0, 1.0, 4.0, 8192),
         r"Llama3Scaling.factor must be a finite number > 0, got 0\.0"),
        (lambda: Llama3Scaling(-8.0, 1.0, 4.0, 8192), r"Llama3Scaling.factor must be"),
        (lambda: Llama3Scaling(8.0, 1.0, float("nan"), 8192), r"high_freq_factor must be"),
        (lambda: Llama3Scaling(8.0, 4.0, 1.0, 8192),
         r"high_freq_factor \(1\.0\) must be greater than low_freq_factor \(4\.0\)"),
        (lambda: Llama3Scaling(8.0, 4.0, 4.0, 8192),  # the blend would divide by zero
         r"high_freq_factor \(4\.0\) must be greater than low_freq_factor \(4\.0\)"),
        (lambda: LlamaConfig(2, 2, 1, 4, 8, 16, 8, 8, windows=(3,)), "windows has 1 entry for 2 layers"),
        (lambda: Llama3Scaling(8.0, 1.0, 4.0, 0), r"original_max_position_embeddings must be"),
        # shown as the architecture's name: "gpt2" on a Llama would mislead
        (lambda: LlamaConfig(1, 2, 1, 4, 8, 16, 8, 8, model_type="gpt2"),
         r"LlamaConfig.model_type must be one of llama, mistral, ministral, qwen2, qwen3, got 'gpt2'"),
    ],
)  # fmt: skip
def test_config_fields_of_the_wrong_type_are_refused_when_the_config_is_made(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(MaskvizError, match=message):
        make()


@pytest.mark.parametrize(
    "config", [GPTConfig(2, 1, 8, 8, 8), LlamaConfig(2, 2, 1, 4, 8, 16, 8, 8, windows=(2, None))]
)
def test_layer_mask_refuses_a_layer_the_model_does_not_have(config: Config) -> None:
    for layer in (-1, 2, 99):
        with pytest.raises(MaskvizError, match=rf"layer {layer} is outside 0\.\.1"):
            config.layer_mask(layer, 4)


def test_activations_that_overflow_are_an_error_not_nan() -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    model.weights.blocks[0].c_attn_w *= np.float32(1e30)  # finite, but far too large
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no NumPy overflow warning on the way
        with pytest.raises(MaskvizError, match="activations overflowed float32"):
            model.trace([1, 2, 3], steps=2)
        with pytest.raises(MaskvizError, match="activations overflowed float32"):
            model.forward([1, 2, 3])


@pytest.mark.parametrize(
    "config", [GPTConfig(2, 2, 8, 16, 20), LlamaConfig(2, 4, 2, 4, 16, 32, 16, 20)]
)
def test_weights_holding_nan_are_named_not_called_an_overflow(config: Config) -> None:
    model = random_model(config, seed=4)
    model.weights.arrays()[-1][0] = np.nan  # as an edit of the weights can leave them
    with pytest.raises(MaskvizError, match=r"^the model's weights hold NaN or inf values$"):
        model.trace([1, 2, 3], steps=2)


def _always_flagging_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every BLAS product flags as OpenBLAS kernels can on finite products
    (numpy/numpy#24067): NumPy then raises wherever the error state says raise."""
    import maskviz.nn

    real = maskviz.nn._matmul

    def flagging(a: Any, b: Any) -> Any:
        out = real(a, b)
        if np.geterr()["over"] == "raise":
            raise FloatingPointError("overflow encountered in matmul")
        return out

    monkeypatch.setattr(maskviz.nn, "_matmul", flagging)


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(2, 2, 16, 32, 40),
        LlamaConfig(2, 2, 1, 8, 16, 32, 32, 40),
        LlamaConfig(2, 2, 1, 8, 16, 32, 32, 40, windows=(2, None)),  # a ring of 2 slots
    ],
)
def test_a_floating_point_flag_on_every_finite_product_changes_no_result(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on some CPUs the flag comes on every product, so running the pass again as it
    # was cannot help: the second run judges products by their values
    model = random_model(config, seed=3)
    clean = model.trace([1, 2, 3, 4], steps=4)
    clean_logits, clean_weights = model.forward([1, 2, 3, 4, 5])
    _always_flagging_products(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = model.trace([1, 2, 3, 4], steps=4)
        logits, weights = model.forward([1, 2, 3, 4, 5])
    np.testing.assert_array_equal(again.token_ids, clean.token_ids)
    np.testing.assert_array_equal(again.attention, clean.attention)
    np.testing.assert_array_equal(again.logits, clean.logits)
    np.testing.assert_array_equal(logits, clean_logits)
    np.testing.assert_array_equal(weights, clean_weights)


@pytest.mark.parametrize("windows", [(), (2, None)])  # full layers; a ring of 2 slots
def test_a_flag_raised_after_a_layer_wrote_its_cache_is_not_an_overflow(
    windows: tuple[int | None, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a flag after layer 1 wrote its cache and recorded rows, in the prefill (several
    # positions into the ring) and in one decoding step: the pass runs again over them
    from maskviz.arch.llama import LlamaConfig, Weights

    cfg = LlamaConfig(2, 2, 1, 8, 16, 32, 32, 40, windows=windows)
    model = random_model(cfg, seed=3)
    clean = model.trace([1, 2, 3, 4], steps=4)
    real, calls = Weights.layer, {"n": 0}

    def flagged_once(self: Weights, i: int, *args: Any) -> Any:
        out = real(self, i, *args)  # the layer ran, its cache written, then the flag
        calls["n"] += 1
        if calls["n"] in (2, 6):  # the prefill's last layer; decoding step 1's last layer
            raise FloatingPointError("invalid value encountered in matmul")
        return out

    monkeypatch.setattr(Weights, "layer", flagged_once)
    again = model.trace([1, 2, 3, 4], steps=4)
    assert calls["n"] == 5 * 2 + 2 * 2  # 5 passes of 2 layers, 2 of them run twice
    np.testing.assert_array_equal(again.token_ids, clean.token_ids)
    np.testing.assert_array_equal(again.attention, clean.attention)
    np.testing.assert_array_equal(again.logits, clean.logits)

    def flagged_always(self: Weights, i: int, *args: Any) -> Any:
        raise FloatingPointError("overflow encountered in multiply")

    monkeypatch.setattr(Weights, "layer", flagged_always)
    with pytest.raises(MaskvizError, match="activations overflowed float32"):
        model.trace([1, 2, 3, 4], steps=4)


@pytest.mark.parametrize("prompt", [[1], [1, 2, 3]])  # a decoding step's one row; many
def test_an_overflow_is_reported_when_every_product_also_flags(
    prompt: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gpt2 = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    gpt2.weights.blocks[0].c_attn_w *= np.float32(1e30)  # the product itself overflows
    llama = random_model(LlamaConfig(2, 2, 1, 8, 16, 32, 32, 40), seed=1)
    llama.weights.layers[0].down_w *= np.float32(1e30)  # a residual whose square overflows
    _always_flagging_products(monkeypatch)
    for model in (gpt2, llama):
        with pytest.raises(MaskvizError, match="activations overflowed float32"):
            model.trace(prompt, steps=2)


@pytest.mark.parametrize("prompt", [[1], [1, 2, 3]])
def test_a_llama_residual_that_overflows_is_an_error_in_one_row_and_many(
    prompt: list[int],
) -> None:
    # one row (a one-token prompt, every decoding step) takes rms_norm's dot-product path
    from maskviz.arch.llama import LlamaConfig

    cfg = LlamaConfig(
        n_layer=2, n_head=2, n_kv_head=1, head_dim=8, n_embd=16, intermediate=32, n_ctx=32,
        vocab_size=40,
    )  # fmt: skip
    model = random_model(cfg, seed=1)
    model.weights.layers[0].down_w *= np.float32(1e30)  # a residual of ~1e30: its square overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MaskvizError, match="activations overflowed float32"):
            model.trace(prompt, steps=2)


def test_logits_that_overflow_are_the_same_error() -> None:
    from maskviz.arch.llama import LlamaConfig

    cfg = LlamaConfig(
        n_layer=1, n_head=2, n_kv_head=1, head_dim=8, n_embd=16, intermediate=32, n_ctx=32,
        vocab_size=40,
    )  # fmt: skip  # untied: its own output head
    model = random_model(cfg, seed=1)
    assert model.weights.lm_head is not None
    model.weights.lm_head *= np.float32(1e38)
    for run in (
        lambda: model.trace([1, 2], steps=2),
        lambda: model.trace([1, 2], steps=2, temperature=1.0, seed=0),
        lambda: model.forward([1, 2]),
    ):
        with pytest.raises(MaskvizError, match="activations overflowed float32"):
            run()


def test_a_tokenizer_without_stop_ids_stops_at_its_end_of_text() -> None:
    class OldTokenizer:  # written to the protocol before stop_ids existed
        vocab_size, eot_id, prefix_ids = 257, 256, ()

        def encode(self, text: str) -> list[int]:
            return list(text.encode())

        def decode(self, ids: list[int]) -> str:
            return bytes(i for i in ids if i < 256).decode(errors="replace")

        def token_label(self, token_id: int) -> str:
            return str(token_id)

    model = random_model(GPTConfig(1, 1, 8, 32, 257), seed=0)
    model.tokenizer = OldTokenizer()
    model.weights.wte[:] = 0
    model.weights.wte[256] = 1
    model.weights.ln_f_b[:] = 1
    assert model.trace([65, 66], steps=10).token_ids.tolist() == [65, 66, 256]


def test_numpy_dtypes_name_the_same_float_type_and_traces_stay_saveable(tmp_path: Path) -> None:
    for name in (np.float32, np.dtype("float32"), "float32"):
        model = random_model(GPTConfig(1, 2, 8, 16, 20), seed=0, dtype=name)  # type: ignore[arg-type]
        assert model.dtype == "float32"
        trace = model.trace([1, 2], steps=2, record_dtype=np.float16)  # type: ignore[arg-type]
        assert (trace.dtype, trace.attention.dtype) == ("float32", np.float16)
        trace.save(tmp_path / "t.npz")
        trace.save(tmp_path / "t.json")
        assert maskviz.Trace.load(tmp_path / "t.npz").dtype == "float32"
    with pytest.raises(MaskvizError, match="dtype must be one of float32, float64, got None"):
        random_model(GPTConfig(1, 2, 8, 16, 20), dtype=None)  # type: ignore[arg-type]


def test_a_numpy_float64_epsilon_does_not_promote_a_float32_model() -> None:
    eps = np.float64(1e-5)
    gpt2 = GPTConfig(2, 2, 16, 32, 50, layer_norm_epsilon=eps)  # type: ignore[arg-type]
    llama = LlamaConfig(2, 2, 1, 8, 16, 32, n_ctx=32, vocab_size=50, rms_norm_eps=eps)  # type: ignore[arg-type]
    for cfg in (gpt2, llama):
        model = random_model(cfg, seed=0)
        logits, weights = model.forward([1, 2, 3])
        assert (logits.dtype, weights.dtype) == (np.float32, np.float32)
        assert model.trace([1, 2], steps=2, mode="training").logits.dtype == np.float32


def test_top_k_keeps_exactly_k_candidates_when_logits_tie() -> None:
    model = random_model(GPTConfig(1, 2, 8, 16, 20), seed=0)
    model.weights.wte[:] = 0.0  # every logit ties at 0
    picks = {int(model.trace([1], steps=1, temperature=1.0, top_k=1, seed=s).token_ids[-1])
             for s in range(20)}  # fmt: skip
    assert len(picks) == 1


def test_numpy_integers_are_accepted_in_configs_and_stored_as_python_ints() -> None:
    cfg = GPTConfig(np.int64(2), np.int32(2), np.int64(8), np.uint16(32), np.int64(10))  # type: ignore[arg-type]
    assert cfg == GPTConfig(2, 2, 8, 32, 10) and hash(cfg) == hash(GPTConfig(2, 2, 8, 32, 10))
    assert {type(getattr(cfg, f.name)) for f in fields(cfg)[:5]} == {int}
    assert repr(cfg) == repr(GPTConfig(2, 2, 8, 32, 10))


@pytest.mark.parametrize("config", [{"n_layer": 1}, None, "gpt2"])
def test_random_model_and_kv_cache_refuse_what_is_not_a_config(config: object) -> None:
    expected = (
        f"takes a model config such as GPTConfig or LlamaConfig, got a {type(config).__name__}"
    )
    with pytest.raises(MaskvizError, match=f"random_model {expected}"):
        random_model(config)  # type: ignore[arg-type]
    with pytest.raises(MaskvizError, match=f"KVCache {expected}"):
        KVCache(config, 4, "float32")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, "float32"), "capacity must be from 0 to the model's context 16, got -1"),
        ((17, "float32"), "capacity must be from 0 to the model's context 16, got 17"),
        ((2.5, "float32"), "capacity: 2.5 is not an integer"),
        ((4, "bogus"), "dtype must be one of float32, float64, got 'bogus'"),
        ((4, "int8"), "dtype must be one of float32, float64, got 'int8'"),
        ((4, np.int64), "dtype must be one of float32, float64"),
    ],
)
def test_kv_cache_arguments_are_checked(args: tuple[object, object], message: str) -> None:
    with pytest.raises(MaskvizError, match=message) as info:
        KVCache(GPTConfig(2, 2, 8, 16, 20), *args)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    for capacity in (0, 16):  # the ends of the range: no position yet, the whole context
        assert KVCache(GPTConfig(2, 2, 8, 16, 20), capacity, "float32").capacity == capacity


@pytest.mark.parametrize("windows", [(None,), (2,)])
def test_a_kv_cache_refuses_positions_past_its_capacity_instead_of_wrapping(
    windows: tuple[int | None, ...],
) -> None:
    cache = KVCache(LlamaConfig(1, 2, 1, 4, 8, 16, 8, 8, windows=windows), 4, "float32")
    kv = np.zeros((1, 1, 4), np.float32)
    cache.update(0, kv, kv, np.array([3]))  # the last slot
    for idx in ([4], [7], [-1], [2, 3, 4]):
        n = len(idx)
        with pytest.raises(MaskvizError, match=r"KVCache positions must lie in 0\.\.3"):
            cache.update(0, np.zeros((1, n, 4), np.float32), np.zeros((1, n, 4), np.float32),
                         np.array(idx))  # fmt: skip


def test_a_kv_cache_refuses_layers_shapes_and_dtypes_it_does_not_hold() -> None:
    cache = KVCache(LlamaConfig(2, 2, 1, 4, 8, 16, 8, 8, windows=(3, None)), 8, "float32")
    kv = np.ones((1, 1, 4), np.float32)
    for call, message in (
        (lambda: cache.update(5, kv, kv, np.array([0])), r"KVCache layer 5 is outside 0\.\.1"),
        (lambda: cache.update(1, np.ones((2, 1, 4), np.float32), kv, np.array([0])),
         r"must be \[1, 1, 4\] \(\[KV heads, positions, head size\]\), got \[2, 1, 4\]"),
        (lambda: cache.update(1, kv, np.ones((1, 1, 1), np.float32), np.array([0])),  # broadcasts
         r"must be \[1, 1, 4\] .*, got \[1, 1, 4\] and \[1, 1, 1\]"),
        (lambda: cache.update(1, kv.astype(np.float64) * 1e300, kv, np.array([0])),
         "KVCache keys and values must be float32, got float64"),
        (lambda: cache.update(1, kv, kv.astype(np.float64), np.array([0])),
         "KVCache keys and values must be float32, got float64"),
        (lambda: cache.update(1.5, kv, kv, np.array([0])), "KVCache layer: 1.5 is not an integer"),  # type: ignore[arg-type]
        (lambda: cache.update(1, kv, kv, [0]), "KVCache positions must be a 1-D array of integers"),  # type: ignore[arg-type]
        (lambda: cache.update(1, kv, kv, np.array([0.0])), "KVCache positions must be a 1-D"),
        (lambda: cache.update(1, kv, kv, np.array([[0]])), "KVCache positions must be a 1-D"),
    ):  # fmt: skip
        with pytest.raises(MaskvizError, match=message):
            call()
    assert (cache.k[1] == 0).all()  # nothing written, no inf


def test_public_functions_refuse_arguments_of_the_wrong_type_by_name() -> None:
    from maskviz import Trace
    from maskviz.similarity import similarity

    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=0)
    trace = model.trace([1, 2], steps=1)
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: Trace.load(3), "a path must be a str or os.PathLike, got int"),  # type: ignore[arg-type]
        (lambda: trace.save(3), "a path must be a str or os.PathLike, got int"),  # type: ignore[arg-type]
        (lambda: compare(None, "training-vs-cached", [1], 2), "compare takes a model"),  # type: ignore[arg-type]
        (lambda: similarity(model, 3, "x"), "text1 must be a str, got a int"),  # type: ignore[arg-type]
        (lambda: model.trace([1, 2], steps=1, record="no"), "record must be True or False"),  # type: ignore[arg-type]
        (lambda: model.trace([1], steps=1, record=False, layers=[99]), "layer 99 is out of range"),
        (lambda: model.forward([1, 2], padded=[2, 2]), "padded must hold True or False"),
        (lambda: trace.head_attention(True, 0), "layer: True is not an integer"),
    ]  # fmt: skip
    for call, message in calls:
        with pytest.raises(MaskvizError, match=re.escape(message)):
            call()


def test_views_pictures_and_pages_refuse_arguments_of_the_wrong_kind_by_name(
    tmp_path: Path,
) -> None:
    from maskviz.masks import causal
    from maskviz.render.html import mask_page, trace_page, write_page
    from maskviz.render.save import save_mask, save_view
    from maskviz.view import mask_view, trace_view

    trace = random_model(GPTConfig(2, 2, 8, 16, 20), seed=0).trace([1, 2], steps=1)
    view, png, mask = trace_view(trace), tmp_path / "v.png", causal(3)
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: trace_view(None), "trace must be a Trace, got NoneType"),  # type: ignore[arg-type]
        (lambda: save_view("nope", png), "view must be an AttentionView, got str"),  # type: ignore[arg-type]
        (lambda: save_mask(mask.to_array(), png), "mask must be a Mask, got ndarray"),  # type: ignore[arg-type]
        (lambda: save_mask(mask, png, labels=[1, 2, 3]), "labels must be strings, got int 1"),  # type: ignore[list-item]
        (lambda: save_mask(mask, png, labels="abc"), "labels must be one string per position, not a single string"),
        (lambda: save_mask(mask, png, index_base="1"), "index_base: '1' is not an integer"),  # type: ignore[arg-type]
        (lambda: mask_view(mask, padded=[1.7]), "padded position: 1.7 is not an integer"),  # type: ignore[list-item]
        (lambda: save_view(view, png, dpi=-5), "dpi must be from 50 to 600, got -5"),
        (lambda: save_view(view, png, dpi=True), "dpi must be from 50 to 600, got True"),
        (lambda: save_view(view, png, dpi="100"), "dpi must be from 50 to 600, got '100'"),  # type: ignore[arg-type]
        (lambda: save_view(view, png, dpi=49), "dpi must be from 50 to 600, got 49"),
        (lambda: save_view(view, png, dpi=601), "dpi must be from 50 to 600, got 601"),
        (lambda: save_view(view, png, width=20.01), "width must be a number of inches above 0 and up to 20, got 20.01"),
        (lambda: save_view(view, tmp_path / "v.svg", dpi=100), "dpi applies to .png pictures, not .svg (a vector file is sharp at any size)"),
        (lambda: save_view(view, tmp_path / "v.gif", dpi=100), "dpi applies to .png pictures, not .gif"),
        (lambda: save_view(view, tmp_path / "v.gif", width=3), "width applies to .png, .svg and .pdf pictures, not .gif"),
        (lambda: write_page(trace_page(trace), 5), "a path must be a str or os.PathLike, got int"),  # type: ignore[arg-type]
        (lambda: trace_page(None), "trace must be a Trace, got NoneType"),  # type: ignore[arg-type]
        (lambda: mask_page(None, mask), "view must be an AttentionView, got NoneType"),  # type: ignore[arg-type]
        (lambda: save_mask(mask, tmp_path / "m.html", labels="abc"), "labels must be one string per position, not a single string"),
        (lambda: trace.save(str(tmp_path / "a\0.npz")), "a path cannot hold a NUL character"),
    ]  # fmt: skip
    long_name = tmp_path / ("x" * 300 + ".npz")
    with pytest.raises(
        MaskvizError, match=f"^{re.escape(str(long_name))}: cannot read trace: File name too long"
    ):
        maskviz.Trace.load(long_name)
    for call, message in calls:
        with pytest.raises(MaskvizError, match=f"^{re.escape(message)}") as caught:  # not "--dpi"
            call()
        assert ("vector" in str(caught.value)) == message.endswith("sharp at any size)")
    assert sorted(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    from maskviz.render.sizes import check_picture

    for dpi in (50, 600):  # the ends of the documented ranges are accepted
        check_picture(".png", dpi, 20)
