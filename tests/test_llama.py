"""The Llama family (Llama 3, Mistral, Qwen2, Qwen3): parity with transformers, masks,
the KV cache, config reading, and cached == training on random models.

The fixtures in tests/fixtures/{llama,mistral,qwen3}-tiny were written by
scripts/make_llama_fixtures.py with transformers (eager attention, float64 end to
end for the float64 references); this test needs neither torch nor transformers.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskviz import MaskvizError, load_model, random_model
from maskviz.arch.llama import Llama3Scaling, LlamaConfig, config_from_hf
from maskviz.compare import compare, tolerance
from maskviz.model import GPT, DType, KVCache
from maskviz.similarity import similarity
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("llama", "mistral", "qwen3")
MODES = ("training", "cached")


def folder(name: str) -> Path:
    return FIXTURES / f"{name}-tiny"


def edited_llama(copy: Path, config: dict[str, Any]) -> Path:
    """A copy of the llama fixture at ``copy`` with ``config`` merged into its config.json."""
    shutil.copytree(folder("llama"), copy)
    data = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**data, **config}))
    return copy


@cache
def reference(name: str) -> dict[str, Any]:
    with np.load(folder(name) / "reference.npz", allow_pickle=False) as ref:
        return {key: ref[key] for key in ref.files}


@cache
def model(name: str, dtype: DType) -> GPT:
    return load_model(folder(name), dtype=dtype)


def run(name: str, dtype: DType, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits [T, V], attention [L, H, T, T] and tokens [T] of the fixture's sequence:
    one masked pass (training), or prefill + one cached step per token (cached)."""
    ref, m = reference(name), model(name, dtype)
    if mode == "training":
        logits, attention = m.forward(ref["token_ids"])
        return logits, attention, ref["token_ids"]
    prompt = ref["prompt_ids"].tolist()
    trace = m.trace(prompt, steps=len(ref["token_ids"]) - len(prompt), mode="cached")
    assert trace.step_masks == 0  # no cached step needed a mask
    return trace.logits, trace.attention, trace.token_ids


# ---------------------------------------------------------------- the tokenizer


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_encodes_the_prompt_as_transformers_prompts_the_model(name: str) -> None:
    ref, tok = reference(name), model(name, "float64").tokenizer
    ids = tok.encode(str(ref["prompt"]))
    assert ids == ref["prompt_ids"].tolist()
    if name == "llama":  # Llama 3's post-processor adds the BOS, shown as its own token
        assert tok.prefix_ids == (ids[0],)
        assert tok.token_label(ids[0]) == "<|begin_of_text|>"
    else:
        assert tok.prefix_ids == ()


def test_tokens_that_are_pieces_of_a_character_are_labelled_by_their_bytes() -> None:
    from maskviz.tokenizer import _piece_bytes

    tok = model("qwen3", "float64").tokenizer  # byte-level BPE, as GPT-2's and Llama 3's
    ids = tok.encode("中文 a")
    assert [tok.token_label(i) for i in ids] == [
        *("\\xe4", "\\xb8", "\\xad", "\\xe6", "\\x96", "\\x87"),  # each would decode to U+FFFD
        " a",
    ]
    # text cut inside a character is written with its bytes escaped too, not as U+FFFD
    assert tok.decode([ids[0], ids[1], *ids[3:]]) == "\\xe4\\xb8文 a"
    assert tok.decode(ids) == "中文 a"
    assert _piece_bytes("<0xE4>", byte_level=False) == b"\xe4"  # SentencePiece's byte fallback
    assert _piece_bytes("<0xZZ>", byte_level=True) is None
    assert _piece_bytes("\u2581a", byte_level=True) is None  # not bytes
    assert _piece_bytes("é", byte_level=True) == b"\xe9"  # a byte-level vocabulary's 0xE9
    assert _piece_bytes("é", byte_level=False) is None  # elsewhere, the letter


def test_a_sentencepiece_tokenizer_decodes_a_character_cut_short_as_its_escaped_bytes(
    tmp_path: Path,
) -> None:
    from tokenizers import Tokenizer, decoders, models

    from maskviz.tokenizer import HFTokenizer

    pieces = ["<unk>", "\u2581the", "<0xE4>", "<0xB8>", "<0xAD>", "\u2581a", "é"]
    tok = Tokenizer(
        models.BPE({p: i for i, p in enumerate(pieces)}, [], unk_token="<unk>", byte_fallback=True)
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )  # as Llama 2's and Mistral's tokenizer.json decode
    tok.save(str(tmp_path / "tokenizer.json"))
    hf = HFTokenizer(tmp_path / "tokenizer.json")
    assert hf.decode([1, 2, 3, 5, 6]) == "the\\xe4\\xb8 aé"  # the word's space kept, é a letter
    assert hf.decode([1, 2, 3, 4, 5]) == "the中 a"  # whole: as the tokenizer decodes it
    assert hf.decode([2, 1]) == "\\xe4 the"
    assert hf.token_label(2) == "\\xe4" and hf.token_label(6) == "é"


def test_similarity_puts_the_bos_once_at_the_start_of_each_ordering() -> None:
    m = model("llama", "float64")
    bos = m.tokenizer.prefix_ids[0]
    result = similarity(m, "the dog", "a door")
    for order, first, second in (
        (result.forward, "the dog", "a door"),
        (result.backward, "a door", "the dog"),
    ):
        ids = order.token_ids.tolist()
        delimiter = m.tokenizer.encode("$")[1:]  # one token after the BOS
        assert ids == [*m.tokenizer.encode(first), *delimiter, *m.tokenizer.encode(second)[1:]]
        assert ids.count(bos) == 1 and ids[0] == bos
        assert order.segments[0] == 1  # the first text starts after the BOS


# ---------------------------------------------------------------- parity with transformers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_float64_matches_transformers_to_1e9(name: str, mode: str) -> None:
    ref = reference(name)
    logits, attention, tokens = run(name, "float64", mode)
    np.testing.assert_array_equal(tokens, ref["token_ids"])
    assert np.abs(logits - ref["logits"]).max() <= 1e-9
    assert np.abs(attention - ref["attentions"]).max() <= 1e-9
    if mode == "cached":  # and HF's own cached decoding
        assert np.abs(logits - ref["cached_logits"]).max() <= 1e-9


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_transformers_float32(name: str, mode: str) -> None:
    # Both sides round to float32 (eps 1.2e-7) in a different order, and HF computes
    # its rotary angles from a float32 inv_freq; 256 eps of the largest magnitude
    # (1 for attention, max |logit| up to 22 here) is the bound test_engine uses for
    # reordered float32 sums. HF's own float32 pass is 3e-5 off its float64 one on qwen3.
    ref = reference(name)
    logits, attention, tokens = run(name, "float32", mode)
    assert logits.dtype == np.float32 and attention.dtype == np.float32
    np.testing.assert_array_equal(tokens, ref["token_ids"])
    eps = float(np.finfo(np.float32).eps)
    scale = float(np.abs(ref["logits_float32"]).max())
    assert np.abs(logits - ref["logits_float32"]).max() <= 256 * eps * scale
    assert np.abs(attention - ref["attentions_float32"]).max() <= 256 * eps


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_and_shifted_rows_match_transformers_and_agree_with_cached(
    name: str,
) -> None:
    ref, m = reference(name), model(name, "float64")
    prompt = ref["prompt_ids"].tolist()
    steps = len(ref["token_ids"]) - len(prompt)
    left = compare(m, "padded-vs-cached", prompt, steps, side="left")
    shifted = compare(m, "shifted-vs-cached", prompt, steps)
    for result, key in ((left, "left_pad_logits"), (shifted, "shifted_logits")):
        assert result.agree, (result.pair, result.max_abs_diff_logits)
        assert np.abs(result.a.logits - ref[key]).max() <= 1e-9
    # positions counted from the pads change no score under RoPE: only distances count


@pytest.mark.parametrize(
    "args", [["padded-vs-cached", "--side", "left"], ["shifted-vs-cached"]], ids=lambda a: a[0]
)
@pytest.mark.parametrize("name", NAMES)
def test_cli_compare_of_left_padding_exits_0(name: str, args: list[str]) -> None:
    ref = reference(name)
    steps = str(len(ref["token_ids"]) - len(ref["prompt_ids"]))
    result = run_cli(
        "compare",
        *args,
        "--model",
        str(folder(name)),
        "--prompt",
        str(ref["prompt"]),
        "--steps",
        steps,
        "--plain",
    )
    assert result.exit_code == 0, result.stdout[-500:] + result.stderr


# ---------------------------------------------------------------- windows and the KV cache


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_sliding_layers_attend_exactly_0_outside_their_window(name: str, mode: str) -> None:
    _, attention, _ = run(name, "float64", mode)
    t = attention.shape[-1]
    q, k = np.arange(t)[:, None], np.arange(t)[None, :]
    windows = model(name, "float64").config.windows
    for layer, w in enumerate(windows):
        if w is None:  # full: every causal key gets some weight
            assert (attention[layer][:, k <= q] > 0).all()
        else:
            outside = k <= q - w
            assert outside.any()  # the sequence is longer than the window
            assert (attention[layer][:, outside] == 0).all()
            assert (attention[layer][:, (k <= q) & ~outside] > 0).all()
    assert (name == "llama") == all(w is None for w in windows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_kv_cache_holds_kv_heads_and_a_ring_of_w_slots_per_sliding_layer(
    name: str, dtype: DType
) -> None:
    ref, m = reference(name), model(name, dtype)
    cfg, t = m.config, len(ref["token_ids"])
    itemsize = np.dtype(dtype).itemsize
    cache = KVCache(cfg, t, dtype)
    for layer, w in enumerate(cfg.windows):
        slots = t if w is None else w
        assert cache.k[layer].shape == cache.v[layer].shape == (cfg.n_kv_head, slots, cfg.head_dim)
        # a group of queries reads its keys fastest as one row per dimension over the slots
        grouped = cfg.n_head > cfg.n_kv_head
        assert (cache.k[layer].mT if grouped else cache.k[layer]).flags.c_contiguous
    expected = sum(
        2 * cfg.n_kv_head * (t if w is None else w) * cfg.head_dim * itemsize for w in cfg.windows
    )
    prompt = ref["prompt_ids"].tolist()
    trace = m.trace(prompt, steps=t - len(prompt))
    assert trace.kv_cache_bytes == cache.nbytes == expected
    # grouped-query attention and windows make it smaller than one full cache per query head
    assert expected < 2 * cfg.n_layer * cfg.n_head * t * cfg.head_dim * itemsize


def _with_biases(root: Path, name: str, config: dict[str, Any], biases: dict[str, Any]) -> GPT:
    """The llama fixture with ``config`` changes and extra tensors, in float64."""
    from safetensors.numpy import load_file, save_file

    copy = edited_llama(root / name, config)
    tensors = load_file(str(copy / "model.safetensors"))
    save_file({**tensors, **biases}, str(copy / "model.safetensors"))
    return load_model(copy, dtype="float64")


def test_biases_load_where_transformers_puts_them(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    ref, ids = reference("llama"), reference("llama")["token_ids"]
    sizes = {"q": 4 * 8, "k": 2 * 8, "v": 2 * 8, "o": 32}  # H d, H_kv d, H_kv d, C
    zeros = {
        f"model.layers.{i}.self_attn.{p}_proj.bias": np.zeros(n, np.float32)
        for i in (0, 1)
        for p, n in sizes.items()
    }
    # zero biases: Llama with attention_bias (q, k, v, o) and Qwen2 (q, k, v) find them
    llama = _with_biases(tmp_path, "llama", {"attention_bias": True}, zeros)
    no_o = {k: v for k, v in zeros.items() if "o_proj" not in k}
    qwen2 = _with_biases(tmp_path, "qwen2", {"model_type": "qwen2"}, no_o)
    for m in (llama, qwen2):
        assert np.abs(m.forward(ids)[0] - ref["logits"]).max() <= 1e-9
    # attention rows sum to 1, so a bias b on v comes out of attention as b and out of
    # o_proj as o_proj.weight @ b: the same model as that o bias (b on q or k would not be)
    a = "model.layers.0.self_attn."
    o_weight = load_file(str(folder("llama") / "model.safetensors"))[a + "o_proj.weight"]
    b = np.random.default_rng(0).standard_normal(sizes["v"]).astype(np.float32)
    per_query_head = np.repeat(b.reshape(2, 8), 2, axis=0).reshape(-1)  # 2 query heads per KV
    on_v = _with_biases(tmp_path, "on_v", {"attention_bias": True}, {**zeros, a + "v_proj.bias": b})
    on_o = _with_biases(
        tmp_path,
        "on_o",
        {"attention_bias": True},
        {
            **zeros,
            a + "o_proj.bias": (o_weight.astype(np.float64) @ per_query_head).astype(np.float32),
        },
    )
    logits_v, logits_o = on_v.forward(ids)[0], on_o.forward(ids)[0]
    assert np.abs(logits_v - ref["logits"]).max() > 1e-2  # the bias is read
    # o's bias was rounded to float32 (relative 6e-8) on its way into the file
    assert np.abs(logits_v - logits_o).max() <= 1e-5


# ---------------------------------------------------------------- reading config.json


def test_fixture_configs_are_read_as_transformers_builds_them() -> None:
    cfg = {name: model(name, "float64").config for name in NAMES}
    assert isinstance(cfg["llama"], LlamaConfig) and isinstance(cfg["qwen3"], LlamaConfig)
    assert cfg["llama"].rope_scaling == Llama3Scaling(8.0, 1.0, 4.0, 256)
    assert cfg["llama"].windows == (None, None)
    assert (cfg["llama"].n_kv_head, cfg["mistral"].n_kv_head) == (2, 1)
    assert cfg["mistral"].windows == (6, 6)
    # layer_types decides, not the legacy max_window_layers (3: no layer would slide)
    assert cfg["qwen3"].windows == (5, None, 5)
    assert cfg["qwen3"].qk_norm and cfg["qwen3"].tie_word_embeddings
    assert cfg["qwen3"].head_dim == 16


BASE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 30,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "vocab_size": 10,
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # an absent sliding_window is MistralConfig's default, 4096; null is none
        ({"model_type": "mistral"}, {"windows": (4096,) * 30}),
        ({"model_type": "mistral", "sliding_window": None}, {"windows": (None,) * 30}),
        # with layer_types, transformers' AutoConfig loads a mistral config as Ministral,
        # which follows them layer by layer
        (
            {"model_type": "mistral", "sliding_window": 4, "layer_types": ["full_attention"] * 30},
            {"windows": (None,) * 30},
        ),
        (
            {
                "model_type": "ministral",
                "sliding_window": 4,
                "layer_types": ["full_attention", "sliding_attention"] * 15,
            },
            {"windows": (None, 4) * 15},
        ),
        ({"model_type": "ministral", "sliding_window": 4}, {"windows": (4,) * 30}),
        ({"model_type": "mistral", "attention_bias": True}, {"qkv_bias": False, "o_bias": False}),
        # Qwen: sliding only with use_sliding_window, from max_window_layers (default 28) on
        ({"model_type": "qwen2", "sliding_window": 4}, {"windows": (None,) * 30}),
        (
            {"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 4},
            {"windows": (None,) * 28 + (4, 4)},
        ),
        ({"model_type": "qwen2"}, {"qkv_bias": True, "o_bias": False, "qk_norm": False}),
        ({"model_type": "qwen3", "attention_bias": True}, {"qkv_bias": True, "o_bias": True}),
        ({"model_type": "qwen3"}, {"head_dim": 128, "qk_norm": True}),
        ({"model_type": "llama"}, {"head_dim": 8, "qkv_bias": False}),
        ({"model_type": "llama", "attention_bias": True}, {"qkv_bias": True, "o_bias": True}),
        (
            {
                "model_type": "llama",
                "rope_scaling": {
                    "type": "llama3",
                    "factor": 8,
                    "low_freq_factor": 1,
                    "high_freq_factor": 4,
                    "original_max_position_embeddings": 8192,
                },
                "rope_theta": 500000,
            },
            {"rope_theta": 500000.0, "rope_scaling": Llama3Scaling(8.0, 1.0, 4.0, 8192)},
        ),
        # both spellings: transformers takes rope_scaling (and the top-level theta)
        (
            {
                "rope_parameters": {"rope_type": "default", "rope_theta": 100.0},
                "rope_scaling": {"rope_type": "llama3", "factor": 2, "low_freq_factor": 1,
                                 "high_freq_factor": 4, "original_max_position_embeddings": 32},
            },
            {"rope_theta": 10000.0, "rope_scaling": Llama3Scaling(2.0, 1.0, 4.0, 32)},
        ),
        # llama3's pretraining context: top level, then the parameters', then the config's
        (
            {"rope_parameters": {"rope_type": "llama3", "factor": 2, "low_freq_factor": 1,
                                 "high_freq_factor": 4}},
            {"rope_scaling": Llama3Scaling(2.0, 1.0, 4.0, 64)},
        ),
        (
            {"original_max_position_embeddings": 16,
             "rope_parameters": {"rope_type": "llama3", "factor": 2, "low_freq_factor": 1,
                                 "high_freq_factor": 4, "original_max_position_embeddings": 32}},
            {"rope_scaling": Llama3Scaling(2.0, 1.0, 4.0, 16)},
        ),
        # transformers' Llama has no sliding window: the field changes nothing
        ({"model_type": "llama", "sliding_window": 4}, {"windows": (None,) * 30}),
        ({"model_type": "qwen3", "is_causal": True}, {"qk_norm": True}),
    ],
)  # fmt: skip
def test_hf_fields_are_read_with_transformers_defaults(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    cfg = config_from_hf({**BASE, **fields})
    assert {key: getattr(cfg, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # transformers fails on these too ("Could not find a sliding_window argument")
        (
            {"model_type": "qwen3", "sliding_window": 4, "use_sliding_window": False,
             "layer_types": ["sliding_attention"] * 30},
            "sliding_attention layers but no sliding window",
        ),
        (
            {"model_type": "mistral", "sliding_window": None,
             "layer_types": ["sliding_attention"] * 30},
            "sliding_attention layers but no sliding window",
        ),
        ({"num_key_value_heads": 3}, r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"),
        (
            {"rope_parameters": {"rope_type": "llama3", "factor": 2, "low_freq_factor": 4,
                                 "high_freq_factor": 1}},
            r"^config\.json: llama3 rope scaling: high_freq_factor \(1\.0\) must be greater "
            r"than low_freq_factor \(4\.0\)$",
        ),
    ],
)  # fmt: skip
def test_contradictory_configs_are_refused_naming_their_fields(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(MaskvizError, match=message):
        config_from_hf({**BASE, "model_type": "llama", **fields})


def test_a_stored_head_that_differs_is_used_even_when_the_config_says_tied(
    tmp_path: Path,
) -> None:
    untied = load_model(folder("llama"), dtype="float64")
    assert untied.weights.lm_head is not None  # the fixture has its own head
    # transformers: "we will NOT tie them"
    copy = edited_llama(tmp_path / "ckpt", {"tie_word_embeddings": True})
    ids = untied.tokenizer.encode("The dog")
    model = load_model(copy, dtype="float64")
    np.testing.assert_array_equal(model.forward(ids)[0], untied.forward(ids)[0])
    assert model.config.n_params == untied.config.n_params  # the head is counted


def test_generation_config_end_tokens_stop_generation_as_generate_reads_them(
    tmp_path: Path,
) -> None:
    copy = edited_llama(tmp_path / "ckpt", {})
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 7]}))
    assert load_model(copy).tokenizer.stop_ids == {1, 7}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope type"),
        (
            {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}},
            "partial_rotary_factor",
        ),
        ({"rope_parameters": {"full_attention": {"rope_type": "default"}}}, "rope_parameters"),
        ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
        ({"final_logit_softcapping": 30.0}, "final_logit_softcapping"),
        ({"num_local_experts": 8}, "num_local_experts"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "rope type"),
        ({"model_type": "gemma3_text"}, "model_type"),
        ({"is_causal": False}, "is_causal"),  # transformers would attend both ways
        ({"head_dim": "eight"}, "head_dim"),
    ],
)
def test_unimplemented_config_fields_are_refused_by_name(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    copy = edited_llama(tmp_path / "ckpt", change)
    with pytest.raises(
        MaskvizError, match=rf"config.json: {named}\b.*(not supported|must be)"
    ) as info:
        load_model(copy)
    assert str(info.value).count("config.json") == 1  # the file is named once


# ---------------------------------------------------------------- random models


@st.composite
def llama_configs(draw: st.DrawFn) -> LlamaConfig:
    n_layer = draw(st.integers(1, 3))
    n_kv_head = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))  # query heads per KV head: 1 is MHA, n_head with 1 KV is MQA
    scaling = draw(
        st.none()
        | st.builds(
            Llama3Scaling,
            factor=st.floats(1.5, 8.0),
            low_freq_factor=st.just(1.0),
            high_freq_factor=st.sampled_from([2.0, 4.0]),
            original_max_position_embeddings=st.integers(4, 64),
        )
    )
    # per layer: full, or a window shorter or longer than the sequence (at most 18)
    windows = draw(st.lists(st.none() | st.integers(1, 24), min_size=n_layer, max_size=n_layer))
    return LlamaConfig(
        n_layer=n_layer,
        n_head=n_kv_head * group,
        n_kv_head=n_kv_head,
        head_dim=draw(st.sampled_from([2, 4, 8])),
        n_embd=draw(st.integers(4, 24)),
        intermediate=draw(st.integers(4, 32)),
        n_ctx=24,
        vocab_size=draw(st.integers(5, 60)),
        rope_theta=draw(st.sampled_from([10.0, 500.0, 10000.0])),
        rope_scaling=scaling,
        qkv_bias=draw(st.booleans()),
        o_bias=draw(st.booleans()),
        qk_norm=draw(st.booleans()),
        tie_word_embeddings=draw(st.booleans()),
        windows=tuple(windows),
    )


def _sequence(cfg: LlamaConfig, data: st.DataObject) -> tuple[list[int], int]:
    p = data.draw(st.integers(1, 8))
    prompt = data.draw(st.lists(st.integers(0, cfg.vocab_size - 1), min_size=p, max_size=p))
    return prompt, data.draw(st.integers(1, 10))


@settings(max_examples=60)
@given(
    cfg=llama_configs(),
    seed=st.integers(0, 999),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_cached_equals_training_and_recompute_on_random_llama_models(
    cfg: LlamaConfig, seed: int, dtype: DType, data: st.DataObject
) -> None:
    m = random_model(cfg, seed=seed, dtype=dtype)
    prompt, steps = _sequence(cfg, data)
    cached = m.trace(prompt, steps=steps)
    training = m.trace(prompt, steps=steps, mode="training")
    recompute = m.trace(prompt, steps=steps, mode="recompute")
    assert cached.step_masks == 0
    scale = float(np.abs(training.logits).max())
    for other in (training, recompute):
        np.testing.assert_array_equal(cached.token_ids, other.token_ids)
        assert np.abs(cached.logits - other.logits).max() <= tolerance(dtype, scale)
        assert np.abs(cached.attention - other.attention).max() <= tolerance(dtype)
    t = cached.n_tokens
    q, k = np.arange(t)[:, None], np.arange(t)[None, :]
    for layer, w in enumerate(cfg.windows):
        hidden = k > q if w is None else (k > q) | (k <= q - w)
        for trace in (cached, training, recompute):
            assert (trace.attention[layer][:, hidden] == 0).all()
    for trace in (cached, training, recompute):
        assert trace.logits.dtype == dtype and trace.attention.dtype == dtype


@settings(max_examples=40)
@given(
    cfg=llama_configs(),
    seed=st.integers(0, 999),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_every_pair_but_unmasked_agrees_on_random_llama_models(
    cfg: LlamaConfig, seed: int, dtype: DType, data: st.DataObject
) -> None:
    m = random_model(cfg, seed=seed, dtype=dtype)
    prompt, steps = _sequence(cfg, data)
    pairs = [
        ("training-vs-cached", "right"),
        ("recompute-vs-cached", "right"),
        ("padded-vs-cached", "right"),
        ("padded-vs-cached", "left"),
        ("shifted-vs-cached", "left"),
    ]
    for pair, side in pairs:
        result = compare(m, pair, prompt, steps, side=side)  # type: ignore[arg-type]
        assert result.agree, (pair, side, result.max_abs_diff_attention, result.max_abs_diff_logits)
    unmasked = compare(m, "unmasked-vs-cached", prompt, steps)
    # without the mask row 0 attends to keys after it, unless peaky random weights give
    # them (almost) nothing: the difference must show exactly where that weight does
    future = float(unmasked.a.attention[:, :, 0, 1:].max())
    if future > unmasked.tolerance_attention:
        assert not unmasked.agree
        assert unmasked.first_differing_row == 0


def test_generation_stops_at_any_of_the_configs_end_of_sequence_tokens(tmp_path: Path) -> None:
    # as Llama 3 instruct lists its end-of-turn token second
    copy = edited_llama(tmp_path / "ckpt", {"eos_token_id": [7, 1]})
    model = load_model(copy, dtype="float64")
    assert model.tokenizer.eot_id == 7 and model.tokenizer.stop_ids == {7, 1}
    model.weights.lm_head[1] = 50 * model.weights.norm  # the second id wins everywhere
    trace = model.trace(model.tokenizer.encode("The dog"), steps=5)
    assert trace.stop_reason == "end_of_text" and int(trace.token_ids[-1]) == 1


def test_generation_stops_at_the_configs_end_of_sequence_token() -> None:
    model = load_model(FIXTURES / "llama-tiny", dtype="float64")
    eos = model.tokenizer.eot_id
    assert eos == 1 and model.tokenizer.token_label(eos) == "<|end_of_text|>"
    # force the end token: make it the most likely next token everywhere
    model.weights.lm_head[eos] = 50 * model.weights.norm
    trace = model.trace(model.tokenizer.encode("The dog"), steps=5)
    assert trace.stop_reason == "end_of_text" and int(trace.token_ids[-1]) == eos


def test_each_tensor_comes_from_the_shard_the_index_names(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "qwen3"
    shutil.copytree(folder("qwen3"), copy)
    index = json.loads((copy / "model.safetensors.index.json").read_text())["weight_map"]
    name = "model.layers.0.input_layernorm.weight"
    listed = index[name]
    other = next(shard for shard in set(index.values()) if shard != listed)
    stray = load_file(copy / other)
    stray[name] = np.zeros_like(load_file(copy / listed)[name])  # a stale copy elsewhere
    save_file(stray, str(copy / other))
    expected, _ = load_model(folder("qwen3")).forward([1, 2, 3])
    logits, _ = load_model(copy).forward([1, 2, 3])
    np.testing.assert_array_equal(logits, expected)
    moved = {k: v for k, v in load_file(copy / listed).items() if k != name}
    save_file(moved, str(copy / listed))  # now only in the shard the index does not name
    with pytest.raises(
        MaskvizError, match=f"tensor '{name}' is not in {listed}, where it is listed"
    ):
        load_model(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rms_norm_eps": 10**400}, "rms_norm_eps must be a finite number > 0, got 1000"),
        ({"layer_types": [{"a": 1}] * 2, "sliding_window": 4, "model_type": "qwen3",
          "use_sliding_window": True}, "a value of an unusable type or size"),
        ({"model_type": "mistral", "sliding_window": 2**40 + 1}, "sliding_window must be an integer from 1 to"),
    ],
)  # fmt: skip
def test_config_values_of_unusable_types_or_sizes_name_the_file(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    copy = edited_llama(tmp_path / "m", {})
    data = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(MaskvizError, match=message) as info:
        load_model(copy)
    assert str(copy / "config.json") in str(info.value)
    (copy / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MaskvizError, match=r"config\.json: not valid JSON"):
        load_model(copy)


def test_a_tokenizer_id_past_the_model_s_vocabulary_is_refused_at_load(tmp_path: Path) -> None:
    copy = edited_llama(tmp_path / "m", {})
    tok = json.loads((copy / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zz"] = 100_000
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(MaskvizError, match="the tokenizer's ids reach 100000 but the model's"):
        load_model(copy)
    # one past: an id equal to the vocabulary's size has no row in the embedding
    vocab = json.loads((copy / "config.json").read_text())["vocab_size"]
    tok["model"]["vocab"]["zz"] = vocab
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(MaskvizError, match=f"the tokenizer's ids reach {vocab} but the model's"):
        load_model(copy)
    tok["model"]["vocab"]["zz"] = vocab - 1  # the last id the model has
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    assert load_model(copy).tokenizer.vocab_size == vocab


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attention_bias": "false"}, 'attention_bias must be true or false, got "false"'),
        ({"tie_word_embeddings": 1}, "tie_word_embeddings must be true or false, got 1"),
        ({"rms_norm_eps": 1e400}, "rms_norm_eps must be a finite number > 0"),
        ({"num_hidden_layers": 1}, "holds layer 1 but config.json's num_hidden_layers is 1"),
    ],
)
def test_flags_must_be_booleans_epsilons_finite_and_every_stored_layer_run(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(MaskvizError, match=message):
        load_model(edited_llama(tmp_path / "m", change))


@pytest.mark.parametrize("shard", [["x"], 5, "", "../x.safetensors"])
def test_an_index_naming_a_shard_that_is_not_a_file_name_is_refused(
    tmp_path: Path, shard: object
) -> None:
    copy = tmp_path / "qwen3"
    shutil.copytree(folder("qwen3"), copy)
    index = json.loads((copy / "model.safetensors.index.json").read_text())
    index["weight_map"][next(iter(index["weight_map"]))] = shard
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(MaskvizError, match=r"shard .* is not a file name"):
        load_model(copy)


def test_a_cache_holding_keys_its_rule_forbids_gets_the_rules_mask_and_is_counted() -> None:
    # the driver never builds such a cache (a ring holds exactly its window); one made
    # for full layers, decoding a window-3 layer, shows the check is live and right
    import dataclasses

    cfg = LlamaConfig(
        n_layer=2, n_head=2, n_kv_head=1, head_dim=8, n_embd=16, intermediate=32, n_ctx=32,
        vocab_size=40, windows=(3, None),
    )  # fmt: skip
    m = random_model(cfg, seed=0, dtype="float64")
    ids = np.array([1, 5, 7, 2, 9, 4, 3])
    positions = np.arange(ids.size)
    cache = KVCache(dataclasses.replace(cfg, windows=(None, None)), ids.size, "float64")
    rows = [
        m._hidden(ids[t : t + 1], start=t, positions=positions[t : t + 1], cache=cache,
                  mask="rules", record=None)
        for t in range(ids.size)
    ]  # fmt: skip
    # layer 0 at steps 3..6 held keys older than its window; layer 1 never did
    assert cache.step_masks == 4
    np.testing.assert_allclose(np.concatenate(rows), m.final_hidden(ids), rtol=0, atol=1e-12)


def _config(**changes: Any) -> LlamaConfig:
    return LlamaConfig(2, 2, 1, 4, 8, 16, 32, 10, **changes)


@pytest.mark.parametrize(
    ("windows", "expected"),
    [([4, None], (4, None)), ((np.int64(4), None), (4, None)), (np.array([4, 2]), (4, 2))],
)
def test_windows_given_as_any_sequence_are_stored_as_a_hashable_tuple_of_ints(
    windows: Any, expected: tuple[int | None, ...]
) -> None:
    cfg = _config(windows=windows)
    assert cfg.windows == expected
    assert {type(w) for w in cfg.windows} <= {int, type(None)}
    assert hash(cfg) == hash(_config(windows=expected))
    random_model(cfg).trace([1, 2], steps=1)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ((2.5, None), r"must hold None or integers >= 1, got \[2\.5, None\]"),
        (("3", None), r"must hold None or integers >= 1, got \['3', None\]"),
        ((True, None), r"must hold None or integers >= 1, got \[True, None\]"),
        (3, "must be a sequence of None or integers >= 1, got 3"),
        ("33", "must be a sequence of None or integers >= 1, got '33'"),
        (np.array([[2, 2]]), r"must be 1-D, got shape \[1, 2\]"),
    ],
)
def test_windows_that_are_not_none_or_positive_integers_are_refused(
    windows: object, message: str
) -> None:
    with pytest.raises(MaskvizError, match=r"LlamaConfig\.windows " + message) as info:
        _config(windows=windows)
    assert info.value.exit_code == 2


def test_numpy_integers_are_accepted_in_llama_configs_and_stored_as_python_ints() -> None:
    cfg = LlamaConfig(*(np.int64(v) for v in (2, 2, 1, 4, 8, 16, 32, 10)))  # type: ignore[arg-type]
    assert cfg == _config() and repr(cfg) == repr(_config())
    assert all(type(getattr(cfg, name)) is int for name in ("n_layer", "n_kv_head", "vocab_size"))


# ---------------------------------------------------------------- odd configs, read as
# transformers reads them (checked against transformers 5.24's config classes)


def save_checkpoint(cfg: LlamaConfig, path: Path, config: dict[str, Any]) -> GPT:
    """A random model of shape ``cfg`` saved in Hugging Face layout at ``path`` with
    ``config`` as its config.json and the llama fixture's tokenizer (300 ids); returns
    the model, in float64, that the files hold."""
    from safetensors.numpy import save_file

    from maskviz.arch.llama import random_weights

    w = random_weights(cfg, np.random.default_rng(0))
    q, kv, inter = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim, cfg.intermediate
    tensors = {"model.embed_tokens.weight": w.embed_tokens, "model.norm.weight": w.norm}
    if w.lm_head is not None:
        tensors["lm_head.weight"] = w.lm_head
    for i, lay in enumerate(w.layers):
        p = f"model.layers.{i}."
        tensors |= {  # Linear weights (out, in), as torch stores them
            p + "input_layernorm.weight": lay.attn_norm,
            p + "post_attention_layernorm.weight": lay.mlp_norm,
            p + "self_attn.q_proj.weight": lay.qkv_w[:, :q].T,
            p + "self_attn.k_proj.weight": lay.qkv_w[:, q : q + kv].T,
            p + "self_attn.v_proj.weight": lay.qkv_w[:, q + kv :].T,
            p + "self_attn.o_proj.weight": lay.o_w.T,
            p + "mlp.gate_proj.weight": lay.gate_up_w[:, :inter].T,
            p + "mlp.up_proj.weight": lay.gate_up_w[:, inter:].T,
            p + "mlp.down_proj.weight": lay.down_w.T,
        }
    path.mkdir()
    save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "model.safetensors")
    )
    (path / "config.json").write_text(json.dumps(config))
    shutil.copy(folder("llama") / "tokenizer.json", path / "tokenizer.json")
    return GPT(w, model("llama", "float64").tokenizer, name="saved", dtype="float64")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # float(true) is 1.0: a norm that silently changes every logit
        ({"rms_norm_eps": True}, "rms_norm_eps must be a finite number > 0, got true"),
        ({"rms_norm_eps": "1e-5"}, 'rms_norm_eps must be a finite number > 0, got "1e-5"'),
        ({"rms_norm_eps": None}, "rms_norm_eps must be a finite number > 0, got null"),
        ({"rms_norm_eps": 0}, "rms_norm_eps must be a finite number > 0, got 0"),
        ({"rope_theta": True}, "rope_theta must be a finite number > 0, got true"),
        ({"rope_parameters": {"rope_theta": "1e4"}}, 'rope_theta must be a finite number > 0, got "1e4"'),
        ({"rope_parameters": {"rope_type": "llama3", "factor": True, "low_freq_factor": 1,
                              "high_freq_factor": 4}}, "factor must be a finite number > 0, got true"),
        ({"rope_parameters": {"rope_type": "llama3", "factor": 8, "low_freq_factor": "1",
                              "high_freq_factor": 4}}, 'low_freq_factor must be a finite number > 0, got "1"'),
        ({"rope_parameters": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                              "high_freq_factor": 4, "original_max_position_embeddings": "8192"}},
         "original_max_position_embeddings must be an integer from 1 to"),
        ({"rope_parameters": {"rope_type": "linear", "factor": True}}, "factor must be a finite number > 0, got true"),
        ({"partial_rotary_factor": True}, "partial_rotary_factor = true is not supported"),
        # named once, as JSON spells it, and cut short
        ({"tie_word_embeddings": 1}, "tie_word_embeddings must be true or false, got 1$"),
        ({"num_hidden_layers": True}, "num_hidden_layers must be an integer from 1 to 1048576, got true$"),
        ({"rope_theta": 10**400}, "rope_theta must be a finite number > 0, got 1000000000[0-9]{49}…$"),
    ],
)  # fmt: skip
def test_numeric_fields_that_are_bools_strings_or_out_of_range_are_refused_by_name(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(MaskvizError, match=f"^config.json: {message}"):
        config_from_hf({**BASE, **fields})


def test_rms_norm_eps_true_is_refused_when_loading_not_run_as_eps_1(tmp_path: Path) -> None:
    copy = edited_llama(tmp_path / "m", {"rms_norm_eps": True})
    with pytest.raises(MaskvizError) as info:
        load_model(copy)
    assert str(info.value) == (
        f"{copy / 'config.json'}: rms_norm_eps must be a finite number > 0, got true"
    )


@pytest.mark.parametrize("model_type", ["llama", "mistral", "ministral", "qwen2", "qwen3"])
@pytest.mark.parametrize("key", ["head_dim", "num_key_value_heads"])
def test_zero_head_dims_and_kv_heads_are_refused_not_read_as_absent(
    model_type: str, key: str
) -> None:
    with pytest.raises(MaskvizError, match=f"{key} must be an integer from 1 to .*, got 0$"):
        config_from_hf({**BASE, "model_type": model_type, key: 0})


@pytest.mark.parametrize(
    ("model_type", "key", "expected"),
    [
        # typed `int | None` and derived by transformers: num_attention_heads (4), or
        # hidden_size / num_attention_heads (8)
        ("llama", "num_key_value_heads", 4),
        ("llama", "head_dim", 8),
        ("mistral", "head_dim", 8),
        ("qwen2", "num_key_value_heads", 4),
        ("qwen3", "num_key_value_heads", 4),
        # refused by transformers' strict types (Qwen3's head_dim is an int, 128 when
        # absent), or failing in its attention (Qwen2 reads head_dim with getattr)
        ("mistral", "num_key_value_heads", None),
        ("ministral", "num_key_value_heads", None),
        ("qwen2", "head_dim", None),
        ("qwen3", "head_dim", None),
    ],
)
def test_null_head_dims_and_kv_heads_are_read_as_transformers_reads_them(
    model_type: str, key: str, expected: int | None
) -> None:
    fields = {**BASE, "model_type": model_type, key: None}
    ours = {"num_key_value_heads": "n_kv_head", "head_dim": "head_dim"}[key]
    if expected is None:
        with pytest.raises(MaskvizError, match=f"{key} must be an integer from 1 to .*, got null"):
            config_from_hf(fields)
    else:
        assert getattr(config_from_hf(fields), ours) == expected


SHAPE_32_HEADS = {**BASE, "hidden_size": 64, "num_attention_heads": 32}  # head_dim 2


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("llama", {"n_kv_head": 32, "n_ctx": 2048, "head_dim": 2}),
        ("mistral", {"n_kv_head": 8, "n_ctx": 131072, "windows": (4096,) * 30}),
        ("ministral", {"n_kv_head": 8, "n_ctx": 131072}),
        ("qwen2", {"n_kv_head": 32, "n_ctx": 32768, "head_dim": 2}),
        ("qwen3", {"n_kv_head": 32, "n_ctx": 32768, "head_dim": 128}),
    ],
)
def test_absent_fields_take_transformers_defaults_for_the_model_type(
    model_type: str, expected: dict[str, Any]
) -> None:
    absent = ("num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps")
    fields = {k: v for k, v in SHAPE_32_HEADS.items() if k not in absent}
    cfg = config_from_hf({**fields, "model_type": model_type})
    assert {key: getattr(cfg, key) for key in expected} == expected
    assert (cfg.rope_theta, cfg.rms_norm_eps) == (10000.0, 1e-6)


def test_a_mistral_checkpoint_without_num_key_value_heads_loads_with_8_as_transformers_does(
    tmp_path: Path,
) -> None:
    cfg = LlamaConfig(2, 16, 8, 4, 64, 96, 32, 300, windows=(4096, 4096), model_type="mistral")
    fields = {
        "model_type": "mistral",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 16,
        "max_position_embeddings": 32,
        "vocab_size": 300,
    }
    expected = save_checkpoint(cfg, tmp_path / "m", fields)
    loaded = load_model(tmp_path / "m", dtype="float64")
    assert loaded.config.n_kv_head == 8
    ids = loaded.tokenizer.encode("The old dog")
    np.testing.assert_allclose(loaded.forward(ids)[0], expected.forward(ids)[0], atol=1e-12)
    # a default that cannot be right is named as transformers' default, not as the file's
    with pytest.raises(
        MaskvizError,
        match=r"num_attention_heads \(4\) must be a multiple of num_key_value_heads "
        r"\(8, transformers' mistral default\)",
    ):
        config_from_hf({**fields, "num_attention_heads": 4})


@pytest.mark.parametrize(
    "change",
    [
        {"pretraining_tp": 2},  # transformers 5 ignores it; 4.x split the same products
        {"hidden_act": "swish"},  # transformers' ACT2FN: nn.SiLU
        {"rope_scaling": {"rope_type": "linear", "factor": 1.0}, "rope_theta": 500.0},
        {"rope_parameters": {"type": "linear", "factor": 1, "rope_theta": 500.0}},
    ],
)
def test_settings_transformers_runs_as_the_default_math_load_with_the_same_logits(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    ids = reference("llama")["token_ids"]
    plain = edited_llama(tmp_path / "plain", {"rope_parameters": {"rope_theta": 500.0}})
    same = edited_llama(tmp_path / "same", {"rope_parameters": {"rope_theta": 500.0}, **change})
    logits = load_model(same, dtype="float64").forward(ids)[0]
    np.testing.assert_array_equal(logits, load_model(plain, dtype="float64").forward(ids)[0])


def test_mlp_bias_adds_biases_to_gate_up_and_down_as_llama_s_mlp_does(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    rng = np.random.default_rng(1)
    m = "model.layers.0.mlp."
    biases = {m + "gate_proj.bias": 64, m + "up_proj.bias": 64, m + "down_proj.bias": 32}
    zeros = {
        f"model.layers.{i}.mlp.{p}.bias": np.zeros(n, np.float32)
        for i in (0, 1)
        for p, n in (("gate_proj", 64), ("up_proj", 64), ("down_proj", 32))
    }
    ref = reference("llama")
    flat = _with_biases(tmp_path, "zero", {"mlp_bias": True}, zeros)
    assert np.abs(flat.forward(ref["token_ids"])[0] - ref["logits"]).max() <= 1e-9
    b = {k: rng.standard_normal(n).astype(np.float32) for k, n in biases.items()}
    model = _with_biases(tmp_path, "random", {"mlp_bias": True}, {**zeros, **b})
    assert model.config.mlp_bias and model.config.n_params == flat.config.n_params
    # transformers' LlamaMLP: down(silu(gate x + b_g) * (up x + b_u)) + b_d, on the normed x
    t = {
        k: v.astype(np.float64)
        for k, v in load_file(str(folder("llama") / "model.safetensors")).items()
    }
    x = rng.standard_normal((3, 32))
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5)
    normed *= t["model.layers.0.post_attention_layernorm.weight"]
    gate = normed @ t[m + "gate_proj.weight"].T + b[m + "gate_proj.bias"]
    up = normed @ t[m + "up_proj.weight"].T + b[m + "up_proj.bias"]
    expected = (gate / (1 + np.exp(-gate)) * up) @ t[m + "down_proj.weight"].T
    expected += b[m + "down_proj.bias"]
    np.testing.assert_allclose(model.weights._mlp(0, x), expected, rtol=0, atol=1e-12)
    # Mistral and Qwen have no MLP biases: transformers ignores the field there
    assert not config_from_hf({**BASE, "model_type": "qwen2", "mlp_bias": True}).mlp_bias


def test_a_malformed_generation_config_warns_and_stops_at_config_json_s_ids(
    tmp_path: Path,
) -> None:
    copy = edited_llama(tmp_path / "ckpt", {"eos_token_id": [1, 2]})
    generation = copy / "generation_config.json"
    for text, why in (
        ('{"eos_token_id": [1, "a"]}', "eos_token_id must be a token id (an integer >= 0)"),
        ('{"eos_token_id": [1, 2,\n', "not valid JSON"),
        ("[7]", "expected a JSON object"),  # the last: the command line's warning below
    ):
        generation.write_text(text)
        with pytest.warns(UserWarning, match="generation_config.json") as caught:
            model = load_model(copy)
        assert model.tokenizer.stop_ids == {1, 2}
        [warning] = caught
        assert str(warning.message).startswith(f"{generation}: {why}")
        assert str(warning.message).endswith(
            "generation stops at config.json's eos_token_id instead"
        )
    result = run_cli("trace", "The dog", "--model", str(copy), "--steps", "1", "--plain")
    assert result.exit_code == 0
    [line] = result.stderr.splitlines()
    assert line.startswith(f"maskviz: warning: {generation}: expected a JSON object;")


def test_a_missing_tensor_is_named_as_the_file_stores_its_neighbours(tmp_path: Path) -> None:
    n = json.loads((folder("llama") / "config.json").read_text())["num_hidden_layers"]
    copy = edited_llama(tmp_path / "ckpt", {"num_hidden_layers": n + 1})
    with pytest.raises(
        MaskvizError, match=rf"missing tensor 'model\.layers\.{n}\.self_attn\.q_proj\.weight'"
    ):
        load_model(copy)


def test_weights_the_config_s_model_does_not_use_are_a_warning_naming_them(
    tmp_path: Path,
) -> None:
    # a Qwen3 checkpoint read as a Llama: its q/k norms would be dropped in silence
    copy = tmp_path / "ckpt"
    shutil.copytree(folder("qwen3"), copy)
    data = json.loads((copy / "config.json").read_text())
    data.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (copy / "config.json").write_text(json.dumps(data))
    result = run_cli("trace", "hello", "--model", str(copy), "--steps", "1", "--plain")
    assert result.exit_code == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("maskviz: warning: ")
    assert "tensors the model does not use ('model.layers.0.self_attn.k_norm.weight'" in line
    assert line.endswith("the checkpoint may be of another model type")
    assert run_cli("trace", "hello", "--model", str(folder("qwen3")), "--steps", "1").stderr == ""


def test_a_tokenizer_that_cannot_encode_the_prompt_is_named_not_an_internal_error(
    tmp_path: Path,
) -> None:
    # it encodes "a" (the probe when loading) and nothing else: no unknown token
    copy = edited_llama(tmp_path / "ckpt", {})
    word_level = {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "[UNK]"}
    (copy / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": word_level}))
    result = run_cli("trace", "hello", "--model", str(copy))
    assert result.exit_code == 1
    # the tokenizers package's own words follow, as its version says them
    assert result.stderr.startswith(
        f"maskviz: error: {copy / 'tokenizer.json'}: cannot encode the text ("
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("eos", ["x", -5, 1.5, True, [1, "a"], {"id": 1}])
def test_an_end_of_sequence_id_that_is_no_id_is_refused_by_name(
    tmp_path: Path, eos: object
) -> None:
    # it was dropped in silence, and generation never stopped at an end of text
    copy = edited_llama(tmp_path / "ckpt", {"eos_token_id": eos})
    with pytest.raises(MaskvizError, match=r"config\.json: eos_token_id must be a token id"):
        load_model(copy)
    assert load_model(edited_llama(tmp_path / "null", {"eos_token_id": None})).tokenizer


@pytest.mark.parametrize(
    ("name", "architectures"),
    [("llama", ["LlamaForCausalLM"]), ("mistral", ["MistralForCausalLM"]), ("qwen3", ["Qwen3ForCausalLM"])],
)  # fmt: skip
def test_a_config_without_model_type_is_read_by_its_architectures_class(
    tmp_path: Path, name: str, architectures: list[str]
) -> None:
    copy = tmp_path / name
    shutil.copytree(folder(name), copy)
    data = json.loads((copy / "config.json").read_text())
    del data["model_type"]
    (copy / "config.json").write_text(json.dumps({**data, "architectures": architectures}))
    ids = reference(name)["token_ids"]
    loaded = load_model(copy, dtype="float64")
    assert loaded.config == model(name, "float64").config
    np.testing.assert_array_equal(loaded.forward(ids)[0], model(name, "float64").forward(ids)[0])
    for other, why in (
        (
            ["BertForMaskedLM"],
            ' \\(and architectures = \\["BertForMaskedLM"\\] names no model class',
        ),
        (None, "$"),
    ):
        (copy / "config.json").write_text(json.dumps({**data, "architectures": other}))
        with pytest.raises(MaskvizError, match=f"config.json: missing field 'model_type'{why}"):
            load_model(copy)


def test_ids_past_the_tokenizer_s_vocabulary_are_labelled_and_decoded_as_their_ids(
    tmp_path: Path,
) -> None:
    # a model vocabulary padded past the tokenizer's 300 ids, as Qwen2.5's is
    cfg = LlamaConfig(2, 4, 2, 8, 32, 64, 64, 320, tie_word_embeddings=False)
    fields = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 64, "vocab_size": 320, "rms_norm_eps": 1e-6}  # fmt: skip
    save_checkpoint(cfg, tmp_path / "m", fields)
    m = load_model(tmp_path / "m", dtype="float64")
    tok = m.tokenizer
    assert tok.token_label(310) == "<id:310>" and tok.token_label(299) != ""
    prompt = tok.encode("The dog")
    text = tok.decode(prompt)  # "<|begin_of_text|>The dog"
    assert tok.decode([*prompt, 310, 311, *prompt]) == f"{text}<id:310><id:311>{text}"
    assert m.weights.lm_head is not None
    m.weights.lm_head[310] = 50 * m.weights.norm  # the padded id wins everywhere
    trace = m.trace(prompt, steps=2)
    assert trace.text == f"{text}<id:310><id:310>"
    assert trace.labels[-2:] == ["<id:310>", "<id:310>"]
