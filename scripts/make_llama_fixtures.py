#!/usr/bin/env python
"""Build the tiny Llama-family parity fixtures used by maskviz's tests.

DEV-ONLY TOOL.  The test suite never runs this script and never needs torch or
transformers: it only reads the files this script writes and commits.

What it builds (into ``tests/fixtures/<name>/`` by default), one fixture per
architecture, each a randomly initialised (seeded) Hugging Face model saved
with ``save_pretrained`` (Hugging Face layout) plus a small byte-level BPE
tokenizer and reference outputs:

* ``llama-tiny/`` -- ``LlamaForCausalLM`` (``model_type: llama``): 2 layers,
  hidden 32, 4 query heads sharing 2 key/value heads (GQA), head_dim 8,
  ``rope_parameters`` of type ``llama3`` (Llama 3.1 frequency scaling, with
  ``rope_theta`` 500 and ``original_max_position_embeddings`` 256 chosen so
  that of the 4 frequencies at head_dim 8 two are kept, one is smoothed and one
  is divided by ``factor``), untied
  output head (``lm_head.weight``), no attention bias, float32 weights in
  ``model.safetensors``.  Its tokenizer's post-processor ADDS the BOS token
  ``<|begin_of_text|>`` (TemplateProcessing, as Llama 3's does).
* ``mistral-tiny/`` -- ``MistralForCausalLM`` (``model_type: mistral``): 2
  layers, hidden 32, 4 query heads and ONE key/value head (MQA), head_dim 8,
  ``sliding_window`` 6 on every layer (shorter than the sequence), untied output
  head, weights stored as **bfloat16** in ``model.safetensors``.  All reference
  outputs are computed from the exact float32/float64 upcast of those bfloat16
  weights.  No BOS is added by its tokenizer.
* ``qwen3-tiny/`` -- ``Qwen3ForCausalLM`` (``model_type: qwen3``): 3 layers,
  hidden 32, 4 query heads / 2 key/value heads, head_dim 16 (decoupled from
  hidden/heads: q_proj is 32 -> 64), per-head q/k RMSNorm, ``layer_types``
  ``[sliding_attention, full_attention, sliding_attention]`` with
  ``use_sliding_window: true`` and ``sliding_window`` 5, tied embeddings (no
  ``lm_head.weight`` in the files), float32 weights saved **sharded**:
  ``model.safetensors.index.json`` + ``model-00001-of-00002.safetensors`` +
  ``model-00002-of-00002.safetensors``.  No BOS is added by its tokenizer.
  ``max_window_layers`` is left equal to ``num_hidden_layers`` (the legacy rule
  "layer i slides iff i >= max_window_layers" would say *no* layer slides):
  transformers ignores it when ``layer_types`` is given, and so must a reader.

Files in each fixture folder:

* ``config.json``  -- from ``save_pretrained`` (``architectures``,
  ``model_type``, ``rope_parameters``, ``sliding_window``, ``layer_types``, ...).
* ``model.safetensors`` (llama, mistral) or the sharded set (qwen3).
* ``tokenizer.json`` -- byte-level BPE (ByteLevel pre-tokenizer with
  ``add_prefix_space=False`` and decoder, GPT-2 style) trained with the
  ``tokenizers`` library on a short English text embedded below; vocabulary
  300 including the special tokens.  Llama: specials ``<|begin_of_text|>``
  (BOS, added by the post-processor) and ``<|end_of_text|>`` (EOS); Mistral:
  ``<s>``, ``</s>`` (not added); Qwen3: ``<|endoftext|>`` (not added).
* ``reference.npz`` -- reference outputs from Hugging Face transformers (eager
  attention), written with ``np.savez_compressed`` and no pickled objects
  (``np.load(path)`` works with the default ``allow_pickle=False``).  Keys:

  ``prompt``              <U..   the prompt string (0-d unicode array)
  ``prompt_ids``          int64  [P]   tokenizer.encode(prompt) WITH special
                                       tokens (so it starts with BOS for llama)
  ``token_ids``           int64  [T]   prompt + greedy continuation from
                                       ``generate`` (KV cache), T > sliding_window
  ``logits``              f64    [T, V]            one float64 pass over token_ids
  ``attentions``          f64    [L, H_q, T, T]    same pass, attention probabilities
  ``logits_float32``      f32    [T, V]            one float32 pass (stock HF)
  ``attentions_float32``  f32    [L, H_q, T, T]
  ``cached_logits``       f64    [T, V]   HF cached decoding in float64: prefill
                                          the prompt, then one token at a time
                                          with the cache (== ``logits`` to 1e-9)
  ``left_pad_logits``     f64    [T, V]   batch row with 3 pad tokens before
                                          token_ids, attention_mask 0 on the pads,
                                          position_ids = max(cumsum(mask) - 1, 0);
                                          real positions only (== ``logits`` to 1e-9)
  ``shifted_logits``      f64    [T, V]   same padded row but position_ids =
                                          0..T+2 counted from the pads (the common
                                          bug); real positions only.  For RoPE
                                          models this equals ``logits`` up to
                                          rounding: scores depend on distances only.

Float64 means float64 end to end.  Stock transformers upcasts to *float32*
inside these models (RMSNorm computes in float32, eager attention runs its
softmax with ``dtype=torch.float32``, and the rotary tables are computed in
float32 from a float32 ``inv_freq``), so a stock "float64" model is only
float32-accurate (about 1e-6 off).  For the float64 references this script
lifts exactly those three upcasts to float64 (``lift_float32_upcasts``); the
computation graph is otherwise HF's own.  The float32 references come from the
unmodified model (the script checks that the lift does not change them).

How to run (from the repository root)::

    pip install torch==2.13.0 transformers tokenizers   # plus numpy, safetensors
    python scripts/make_llama_fixtures.py              # [--out-root DIR] [--only NAME] [--seed NAME=N]

The script is deterministic (fixed seeds; all weights are drawn from a seeded
NumPy generator).  It refuses to write a fixture whose greedy steps have a
top-1/top-2 logit gap below ``MIN_GAP`` (greedy parity would not be robust in
float32), or whose continuation contains a special token or undecodable
bytes; pick another ``--seed NAME=N`` if that happens.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import sys
import types

import numpy as np

FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures"
)

VOCAB_SIZE = 300
PROMPT = "The dog and the door"
N_NEW = 12
N_PAD = 3
MIN_GAP = 1e-3
TOL = 1e-9

# Plain English training text for the tokenizer (original text written for
# these fixtures; its content does not matter beyond giving BPE something to
# merge).
CORPUS = """\
The old dog sat by the door and watched the road. A cart went by, then a
bicycle, then nothing at all for a long time. The dog did not mind. He had
seen the road every day of his life, and he knew that something would come
along sooner or later, and that most things that came along were not worth
getting up for.

Inside, the baker was shaping the last loaves of the day. Flour hung in the
air and settled on the shelves, on the window, on the old radio that played
the same three songs. She hummed along without knowing the words. When the
oven bell rang she took the bread out, set it on the rack, and opened the door
to let the heat out into the street.

The smell reached the dog before the baker did. He stood up, stretched, and
walked in as if he owned the place. The baker laughed and gave him the heel of
a loaf, which he carried back to the door and ate slowly, one eye on the road.

In the evening the lamps came on one by one. People walked home from the
station with their collars up, and a boy ran past with a kite that would not
fly. The baker counted the money, locked the till, and sat for a while by the
door with the dog. Neither of them said anything. There was nothing that
needed to be said.

A decoder reads its input from left to right. Every position may look at the
positions before it, and in a model with a sliding window only at the few
positions just before it. Whatever is further back must reach it through the
layers, passed along from one window to the next like a note handed down a
line of people.
"""

# Architecture-specific settings.  Weight scales: "qk" is the std of the
# query/key projections (large, so attention is peaky), "qk_norm" the mean gain
# of the Qwen3 q/k RMSNorms.
SPECS: dict[str, dict] = {
    "llama-tiny": dict(
        seed=1,
        model_type="llama",
        specials=["<|begin_of_text|>", "<|end_of_text|>"],
        add_bos=True,
        bf16=False,
        shards=1,
        config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            hidden_act="silu",
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
            # head_dim 8, theta 500 -> inv_freq 1, 0.211, 0.0447, 0.00946
            # (wavelengths 6.3, 29.7, 140.5, 664).  With original 256 and
            # low/high factors 1/4: high_freq_wavelen = 64, low_freq_wavelen =
            # 256, so the first two are kept, the third is smoothed (between 64
            # and 256) and the fourth is divided by `factor`.
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=256,
            ),
        ),
        qk=0.3,
        qk_norm=None,
    ),
    "mistral-tiny": dict(
        seed=1,
        model_type="mistral",
        specials=["<s>", "</s>"],
        add_bos=False,
        bf16=True,
        shards=1,
        config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            hidden_act="silu",
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            sliding_window=6,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        qk=0.3,
        qk_norm=None,
    ),
    "qwen3-tiny": dict(
        seed=1,
        model_type="qwen3",
        specials=["<|endoftext|>"],
        add_bos=False,
        bf16=False,
        shards=2,
        config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            hidden_act="silu",
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            attention_bias=False,
            tie_word_embeddings=True,
            use_sliding_window=True,
            sliding_window=5,
            max_window_layers=3,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        qk=0.3,
        qk_norm=2.0,
    ),
}

NPZ_KEYS = (
    "prompt",
    "prompt_ids",
    "token_ids",
    "logits",
    "attentions",
    "logits_float32",
    "attentions_float32",
    "cached_logits",
    "left_pad_logits",
    "shifted_logits",
)

CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
}


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


def train_tokenizer(spec):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(spec["specials"]),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    byte_level = processors.ByteLevel(trim_offsets=False)
    if spec["add_bos"]:
        bos = spec["specials"][0]
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{bos}:0 $A:0",
                    pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                    special_tokens=[(bos, bos_id)],
                ),
            ]
        )
    else:
        tok.post_processor = byte_level
    return tok


def unseen_token_ids(tok) -> list[int]:
    """Ids of single-byte tokens whose byte never occurs in the training text."""
    from tokenizers import pre_tokenizers

    seen = set()
    for piece, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(CORPUS):
        seen.update(piece)
    return sorted(
        tok.token_to_id(ch) for ch in pre_tokenizers.ByteLevel.alphabet() if ch not in seen
    )


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def make_config(spec, vocab: int, special_ids: list[int]):
    import transformers

    cfg_cls = getattr(transformers, CLASSES[spec["model_type"]][0])
    kw = copy.deepcopy(spec["config"])
    if spec["model_type"] in ("llama", "mistral"):
        bos, eos = special_ids
    else:
        bos, eos = None, special_ids[0]
    config = cfg_cls(
        vocab_size=vocab,
        bos_token_id=bos,
        eos_token_id=eos,
        attention_dropout=0.0,
        attn_implementation="eager",
        **kw,
    )
    config._attn_implementation = "eager"
    return config


def build_model(spec, config, seed: int, small_rows: list[int]):
    """A model whose every parameter is drawn from a seeded NumPy generator."""
    import torch
    import transformers

    model_cls = getattr(transformers, CLASSES[spec["model_type"]][1])
    torch.manual_seed(seed)
    model = model_cls(config).eval()

    rng = np.random.default_rng(seed)
    E, F = config.hidden_size, config.intermediate_size
    Hq, Hkv, D = config.num_attention_heads, config.num_key_value_heads, config.head_dim

    def normal(shape, std):
        return rng.standard_normal(shape) * std

    def gain(n, mean=1.0, std=0.3):
        return mean + std * rng.standard_normal(n)

    new = {}
    emb = normal((config.vocab_size, E), 1.0)
    # Bytes never seen in training (and the special tokens) get small rows, as
    # in a trained model: keeps them out of the greedy continuation, so the
    # generated text is valid UTF-8 that decodes token by token.
    emb[small_rows] *= 0.05
    new["model.embed_tokens.weight"] = emb
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        new[p + "input_layernorm.weight"] = gain(E)
        new[p + "self_attn.q_proj.weight"] = normal((Hq * D, E), spec["qk"])
        new[p + "self_attn.k_proj.weight"] = normal((Hkv * D, E), spec["qk"])
        new[p + "self_attn.v_proj.weight"] = normal((Hkv * D, E), 0.3)
        new[p + "self_attn.o_proj.weight"] = normal((E, Hq * D), 0.3 / math.sqrt(Hq))
        if spec["qk_norm"] is not None:
            new[p + "self_attn.q_norm.weight"] = gain(D, spec["qk_norm"], 0.5)
            new[p + "self_attn.k_norm.weight"] = gain(D, spec["qk_norm"], 0.5)
        new[p + "post_attention_layernorm.weight"] = gain(E)
        new[p + "mlp.gate_proj.weight"] = normal((F, E), 0.3)
        new[p + "mlp.up_proj.weight"] = normal((F, E), 0.3)
        new[p + "mlp.down_proj.weight"] = normal((E, F), 0.3)
    new["model.norm.weight"] = gain(E)
    if not config.tie_word_embeddings:
        head = normal((config.vocab_size, E), 0.3)
        head[small_rows] *= 0.05
        new["lm_head.weight"] = head

    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(new))
    extra = sorted(set(new) - set(params))
    if missing or extra:
        raise RuntimeError(f"parameter mismatch: not initialised {missing}, unknown {extra}")
    with torch.no_grad():
        for name, value in new.items():
            t = params[name]
            if tuple(t.shape) != value.shape:
                raise RuntimeError(f"{name}: shape {tuple(t.shape)} != {value.shape}")
            v = torch.from_numpy(value.astype(np.float32))
            if spec["bf16"]:
                v = v.to(torch.bfloat16).to(torch.float32)  # the weights ARE the bf16 values
            t.copy_(v)
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if tied != bool(config.tie_word_embeddings):
        raise RuntimeError(
            f"lm_head tied={tied} but tie_word_embeddings={config.tie_word_embeddings}"
        )
    return model


# --------------------------------------------------------------------------
# Float64 end to end
# --------------------------------------------------------------------------


def rope_inv_freq_f64(config) -> np.ndarray:
    """inv_freq exactly as transformers defines it, evaluated in float64."""
    rp = config.rope_parameters
    dim = config.head_dim
    base = float(rp["rope_theta"])
    inv = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    if rp["rope_type"] == "default":
        return inv
    if rp["rope_type"] != "llama3":
        raise NotImplementedError(rp["rope_type"])
    factor = float(rp["factor"])
    lo, hi = float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
    old = float(rp["original_max_position_embeddings"])
    low_freq_wavelen, high_freq_wavelen = old / lo, old / hi
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled)


def _rmsnorm_forward_f64(self, hidden_states):
    # HF: x.to(float32); x * rsqrt(mean(x^2) + eps); weight * x.to(input_dtype).
    # Here: the same in max(float32, input dtype).
    import torch

    input_dtype = hidden_states.dtype
    work = torch.promote_types(input_dtype, torch.float32)
    hs = hidden_states.to(work)
    variance = hs.pow(2).mean(-1, keepdim=True)
    hs = hs * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * hs.to(input_dtype)


def _rotary_forward_f64(self, x, position_ids):
    import torch

    inv = self.inv_freq.to(device=x.device, dtype=torch.float64)
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos() * self.attention_scaling
    sin = emb.sin() * self.attention_scaling
    return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


_PATCHED_ATTENTION = False


def _patch_eager_attention():
    """Eager attention with the softmax in max(float32, query dtype).

    Identical to HF's for float32 inputs (the original function is called)."""
    global _PATCHED_ATTENTION
    if _PATCHED_ATTENTION:
        return
    import torch
    from torch import nn
    from transformers.models.llama import modeling_llama
    from transformers.models.mistral import modeling_mistral
    from transformers.models.qwen3 import modeling_qwen3

    for mod in (modeling_llama, modeling_mistral, modeling_qwen3):
        original = mod.eager_attention_forward
        repeat_kv = mod.repeat_kv

        def eager64(
            module,
            query,
            key,
            value,
            attention_mask,
            scaling,
            dropout=0.0,
            _original=original,
            _repeat_kv=repeat_kv,
            **kwargs,
        ):
            if query.dtype != torch.float64:
                return _original(
                    module, query, key, value, attention_mask, scaling, dropout, **kwargs
                )
            key_states = _repeat_kv(key, module.num_key_value_groups)
            value_states = _repeat_kv(value, module.num_key_value_groups)
            attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
            if attention_mask is not None:
                attn_weights = attn_weights + attention_mask
            attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float64)
            attn_output = torch.matmul(attn_weights, value_states)
            attn_output = attn_output.transpose(1, 2).contiguous()
            return attn_output, attn_weights

        mod.eager_attention_forward = eager64
    _PATCHED_ATTENTION = True


def lift_float32_upcasts(model64, model32):
    """Make a float64 model compute in float64 end to end (see module docstring)."""
    import torch

    _patch_eager_attention()
    n_norm = 0
    for module in model64.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = types.MethodType(_rmsnorm_forward_f64, module)
            n_norm += 1
    rot = model64.model.rotary_emb
    inv64 = rope_inv_freq_f64(model64.config)
    inv32 = model32.model.rotary_emb.inv_freq.double().numpy()
    if not np.allclose(inv64, inv32, rtol=1e-6, atol=0):
        raise RuntimeError(f"float64 inv_freq {inv64} disagrees with HF's {inv32}")
    if rot.attention_scaling != 1.0:
        raise RuntimeError(f"unexpected rope attention_scaling {rot.attention_scaling}")
    rot.inv_freq = torch.from_numpy(inv64)
    rot.original_inv_freq = torch.from_numpy(inv64.copy())
    rot.forward = types.MethodType(_rotary_forward_f64, rot)
    return n_norm


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------


def greedy_generate(model, prompt_ids, n_new, eos_id):
    """Greedy continuation with ``generate`` (KV cache); top-1/top-2 gaps."""
    import torch

    ids = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n_new,
            do_sample=False,
            num_beams=1,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=eos_id,
            eos_token_id=eos_id,
        )
    seq = out.sequences[0].tolist()
    gaps = []
    for step in out.logits:
        top2 = torch.topk(step[0].double(), 2).values
        gaps.append(float(top2[0] - top2[1]))
    return seq, gaps


def forward(model, ids, attention_mask=None, position_ids=None, attentions=False):
    import torch

    kw = {}
    if attention_mask is not None:
        kw["attention_mask"] = torch.tensor([attention_mask], dtype=torch.long)
    if position_ids is not None:
        kw["position_ids"] = torch.tensor([position_ids], dtype=torch.long)
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([ids], dtype=torch.long),
            output_attentions=attentions,
            use_cache=False,
            **kw,
        )
    logits = out.logits[0].numpy()
    if not attentions:
        return logits
    if out.attentions is None or len(out.attentions) != model.config.num_hidden_layers:
        raise RuntimeError("model did not return attentions (is attention eager?)")
    return logits, np.stack([a[0].numpy() for a in out.attentions])


def cache_kwarg(model) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cached_pass(model, token_ids, P):
    """Prefill token_ids[:P], then feed the rest one token at a time with the cache."""
    import torch

    key = cache_kwarg(model)
    rows = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([token_ids[:P]], dtype=torch.long), use_cache=True)
        rows.append(out.logits[0].numpy())
        for t in range(P, len(token_ids)):
            past = getattr(out, "cache", None)
            if past is None:
                past = out.past_key_values
            out = model(
                input_ids=torch.tensor([[token_ids[t]]], dtype=torch.long),
                use_cache=True,
                **{key: past},
            )
            rows.append(out.logits[0].numpy())
    return np.concatenate(rows, axis=0)


def sliding_layers(config) -> list[bool]:
    """Which layers HF runs with the sliding-window mask."""
    L = config.num_hidden_layers
    if config.model_type == "mistral":
        return [getattr(config, "sliding_window", None) is not None] * L
    if config.model_type == "qwen3":
        return [t == "sliding_attention" for t in config.layer_types]
    return [False] * L


def check_attention(attn, config, label):
    """Causal zeros everywhere; window zeros exactly on sliding layers."""
    L, _, T, _ = attn.shape
    q = np.arange(T)[:, None]
    k = np.arange(T)[None, :]
    future = k > q
    if np.any(attn[:, :, future] != 0):
        raise RuntimeError(f"{label}: non-zero attention to future positions")
    slides = sliding_layers(config)
    report = []
    for layer in range(L):
        window = getattr(config, "sliding_window", None)
        if window is None:
            continue
        beyond = k <= q - window  # outside the window (past side)
        vals = attn[layer][:, beyond]
        if slides[layer]:
            if np.any(vals != 0):
                raise RuntimeError(f"{label}: layer {layer} attends beyond the sliding window")
            report.append(f"L{layer}: {vals.size} beyond-window probs all exactly 0")
        else:
            if not np.all(vals > 0):
                raise RuntimeError(f"{label}: full layer {layer} has zeros beyond the window")
            report.append(f"L{layer}: full (beyond-window mass {vals.sum(-1).mean():.3f}/head)")
    if not np.allclose(attn.sum(-1), 1.0, atol=1e-6):
        raise RuntimeError(f"{label}: attention rows do not sum to 1")
    return report


# --------------------------------------------------------------------------
# One fixture
# --------------------------------------------------------------------------


def build_fixture(name, spec, out_dir, seed):
    import torch

    tok = train_tokenizer(spec)
    vocab = tok.get_vocab_size()
    special_ids = [tok.token_to_id(s) for s in spec["specials"]]
    prompt_ids = tok.encode(PROMPT).ids
    body = prompt_ids[1:] if spec["add_bos"] else prompt_ids
    if spec["add_bos"] and prompt_ids[0] != special_ids[0]:
        raise RuntimeError("tokenizer did not add BOS")
    if not spec["add_bos"] and any(i in special_ids for i in prompt_ids):
        raise RuntimeError("tokenizer added a special token")
    if tok.decode(body) != PROMPT or tok.decode(prompt_ids) != PROMPT:
        raise RuntimeError("tokenizer does not round-trip the prompt")
    if tok.encode(PROMPT, add_special_tokens=False).ids != body:
        raise RuntimeError("post-processor changed more than the BOS")

    config = make_config(spec, vocab, special_ids)
    W = config.sliding_window if spec["model_type"] != "llama" else None
    P, T = len(prompt_ids), len(prompt_ids) + N_NEW
    if W is not None and not (P > W and T > W + 4):
        raise RuntimeError(f"sequence (P={P}, T={T}) too short for sliding_window {W}")
    if config.max_position_embeddings < T + N_PAD:
        raise RuntimeError("sequence longer than max_position_embeddings")

    small_rows = sorted(set(unseen_token_ids(tok)) | set(special_ids))
    model32 = build_model(spec, config, seed, small_rows)
    assert model32.config._attn_implementation == "eager"
    model64 = copy.deepcopy(model32).double().eval()

    # Stock HF runs (before any patching): float32 reference, and the stock
    # float64 model for the record.
    eos_id = special_ids[-1] if spec["model_type"] != "qwen3" else special_ids[0]
    token_ids32, _ = greedy_generate(model32, prompt_ids, N_NEW, eos_id)
    logits32, attn32 = forward(model32, token_ids32, attentions=True)
    stock64 = forward(model64, token_ids32)

    n_norm = lift_float32_upcasts(model64, model32)
    # The lift must not touch float32 computation.
    again32, again_attn32 = forward(model32, token_ids32, attentions=True)
    if not (np.array_equal(again32, logits32) and np.array_equal(again_attn32, attn32)):
        raise RuntimeError("float64 lift changed the float32 model's outputs")

    token_ids, gaps = greedy_generate(model64, prompt_ids, N_NEW, eos_id)
    if len(token_ids) != T or token_ids[:P] != prompt_ids:
        raise RuntimeError(
            f"generate returned {len(token_ids)} tokens, expected {T} (stopped at EOS?); "
            "pick another seed"
        )
    logits64, attn64 = forward(model64, token_ids, attentions=True)
    cached64 = cached_pass(model64, token_ids, P)
    mask = [0] * N_PAD + [1] * T
    pos = np.maximum(np.cumsum(mask) - 1, 0).tolist()
    pad_ids = [eos_id] * N_PAD + token_ids
    left_pad64 = forward(model64, pad_ids, attention_mask=mask, position_ids=pos)[N_PAD:]
    shifted64 = forward(model64, pad_ids, attention_mask=mask, position_ids=list(range(T + N_PAD)))[
        N_PAD:
    ]

    # ---- checks
    if token_ids32 != token_ids:
        raise RuntimeError("float32 greedy differs from float64 greedy")
    if logits64[P - 1 : T - 1].argmax(-1).tolist() != token_ids[P:]:
        raise RuntimeError("generate's tokens differ from the full-pass argmax")
    if logits32[P - 1 : T - 1].argmax(-1).tolist() != token_ids[P:]:
        raise RuntimeError("float32 full-pass argmax differs from greedy tokens")
    bad = [i for i in token_ids[P:] if i in special_ids]
    if bad:
        raise RuntimeError(f"greedy continuation contains special tokens {bad}; pick another seed")
    for i in token_ids[P:]:
        piece = tok.decode([i])
        if "\ufffd" in piece or not piece.isprintable():
            raise RuntimeError(
                f"greedy token {i} does not decode to printable text; pick another seed"
            )
    min_gap = min(gaps)
    if min_gap < MIN_GAP:
        raise RuntimeError(f"min top-1/top-2 gap {min_gap:.3g} < {MIN_GAP}; pick another seed")
    d_cached = float(np.abs(cached64 - logits64).max())
    d_left = float(np.abs(left_pad64 - logits64).max())
    d_shift = float(np.abs(shifted64 - logits64).max())
    if d_cached > TOL:
        raise RuntimeError(f"cached decoding differs from the masked pass: {d_cached:.3g}")
    if d_left > TOL:
        raise RuntimeError(f"left-padded row differs from the unpadded pass: {d_left:.3g}")
    att_report = check_attention(attn64, config, "float64")
    check_attention(attn32, config, "float32")
    if not np.allclose(attn32, attn64, atol=1e-4) or not np.allclose(logits32, logits64, atol=1e-3):
        raise RuntimeError("float32 and float64 passes disagree")

    scaling_effect = None
    if config.rope_parameters["rope_type"] == "llama3":
        rot = model64.model.rotary_emb
        keep = rot.inv_freq
        dim = config.head_dim
        base = float(config.rope_parameters["rope_theta"])
        rot.inv_freq = torch.from_numpy(
            1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        )
        unscaled = forward(model64, token_ids)
        rot.inv_freq = keep
        scaling_effect = float(np.abs(unscaled - logits64).max())

    # ---- write
    os.makedirs(out_dir, exist_ok=True)
    for pattern in (
        "config.json",
        "generation_config.json",
        "model*.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "reference.npz",
    ):
        for path in glob.glob(os.path.join(out_dir, pattern)):
            os.remove(path)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    to_save = model32
    if spec["bf16"]:
        to_save = copy.deepcopy(model32).to(torch.bfloat16)
    save_kw = {}
    if spec["shards"] > 1:
        n_bytes = sum(p.numel() * p.element_size() for p in to_save.parameters())
        save_kw["max_shard_size"] = int(n_bytes * 0.6)
    to_save.save_pretrained(out_dir, **save_kw)
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)

    prompt_arr = np.array(PROMPT)
    assert prompt_arr.dtype.kind == "U"
    np.savez_compressed(
        os.path.join(out_dir, "reference.npz"),
        prompt=prompt_arr,
        prompt_ids=np.asarray(prompt_ids, dtype=np.int64),
        token_ids=np.asarray(token_ids, dtype=np.int64),
        logits=logits64.astype(np.float64),
        attentions=attn64.astype(np.float64),
        logits_float32=logits32.astype(np.float32),
        attentions_float32=attn32.astype(np.float32),
        cached_logits=cached64.astype(np.float64),
        left_pad_logits=left_pad64.astype(np.float64),
        shifted_logits=shifted64.astype(np.float64),
    )
    for path in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, path), 0o644)

    # ---- verify what was written
    files = sorted(os.listdir(out_dir))
    if spec["shards"] > 1:
        want = [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
        ]
        if not all(f in files for f in want) or "model.safetensors" in files:
            raise RuntimeError(f"expected a 2-shard checkpoint, got {files}")
    elif "model.safetensors" not in files:
        raise RuntimeError(f"expected model.safetensors, got {files}")
    written = verify_written(out_dir, spec, model32, token_ids, logits64)

    return dict(
        tok=tok,
        vocab=vocab,
        prompt_ids=prompt_ids,
        token_ids=token_ids,
        P=P,
        T=T,
        gaps=gaps,
        min_gap=min_gap,
        d_cached=d_cached,
        d_left=d_left,
        d_shift=d_shift,
        d_32=float(np.abs(logits32 - logits64).max()),
        d_stock=float(np.abs(stock64 - logits64).max()),
        att_report=att_report,
        scaling_effect=scaling_effect,
        n_norm=n_norm,
        attn64=attn64,
        written=written,
        special_ids=special_ids,
    )


def verify_written(out_dir, spec, model32, token_ids, logits64):
    """Reload the files: dtypes, tensor values, npz keys, and HF from_pretrained."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    tensors = {}
    dtypes = set()
    for path in sorted(glob.glob(os.path.join(out_dir, "model*.safetensors"))):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                t = f.get_tensor(key)
                dtypes.add(str(t.dtype))
                tensors[key] = t.float()
    want_dtype = "torch.bfloat16" if spec["bf16"] else "torch.float32"
    if dtypes != {want_dtype}:
        raise RuntimeError(f"stored dtypes {dtypes}, expected {want_dtype}")
    params = dict(model32.named_parameters())
    expect = set(params)
    if model32.config.tie_word_embeddings:
        expect.discard("lm_head.weight")
    if set(tensors) != expect:
        raise RuntimeError(f"stored tensors {sorted(set(tensors) ^ expect)} mismatch")
    for key, t in tensors.items():
        if not torch.equal(t, params[key].detach()):
            raise RuntimeError(f"stored {key} is not the reference weight")
    if spec["shards"] > 1:
        with open(os.path.join(out_dir, "model.safetensors.index.json")) as f:
            index = json.load(f)
        if set(index["weight_map"]) != expect or len(set(index["weight_map"].values())) != 2:
            raise RuntimeError("bad shard index")

    ref = np.load(os.path.join(out_dir, "reference.npz"))
    if sorted(ref.files) != sorted(NPZ_KEYS):
        raise RuntimeError(f"reference.npz keys {sorted(ref.files)} != {sorted(NPZ_KEYS)}")

    loaded = AutoModelForCausalLM.from_pretrained(
        out_dir, dtype=torch.float64, attn_implementation="eager"
    ).eval()
    lift_float32_upcasts(loaded, model32)
    again = forward(loaded, token_ids)
    d_reload = float(np.abs(again - logits64).max())
    if d_reload > 1e-12:
        raise RuntimeError(f"from_pretrained(float64) reproduces logits only to {d_reload:.3g}")
    return dict(
        dtypes=sorted(dtypes), n_tensors=len(tensors), d_reload=d_reload, keys=sorted(ref.files)
    )


def summarise(name, out_dir, spec, r):
    tok, P, T = r["tok"], r["P"], r["T"]
    print(f"=== {name}  ({out_dir})")
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = json.load(f)
    print("config.json:", json.dumps(cfg, sort_keys=True))
    print(
        f"vocab {r['vocab']}; specials {dict(zip(spec['specials'], r['special_ids'], strict=True))}"
    )
    print(f"prompt {PROMPT!r}: P={P} ids {r['prompt_ids']}")
    print(f"greedy continuation {r['token_ids'][P:]} -> {tok.decode(r['token_ids'][P:])!r}; T={T}")
    print(f"min top-1/top-2 gap {r['min_gap']:.4g} (gaps {[round(g, 3) for g in r['gaps']]})")
    print(f"max|cached - logits|   = {r['d_cached']:.3g}")
    print(f"max|left_pad - logits| = {r['d_left']:.3g}")
    print(f"max|shifted - logits|  = {r['d_shift']:.3g}")
    print(
        f"max|logits32 - logits64| = {r['d_32']:.3g}; "
        f"max|stock-HF float64 - lifted float64| = {r['d_stock']:.3g} ({r['n_norm']} RMSNorms lifted)"
    )
    print(
        f"from_pretrained(float64) reload: max|Δ| = {r['written']['d_reload']:.3g}; "
        f"stored dtypes {r['written']['dtypes']}, {r['written']['n_tensors']} tensors"
    )
    if r["scaling_effect"] is not None:
        print(f"max|Δlogits| if llama3 scaling were ignored = {r['scaling_effect']:.3g}")
    for line in r["att_report"]:
        print("attention", line)
    attn = r["attn64"]
    print(f"mean max attention prob (rows >= 1): {attn.max(-1)[..., 1:].mean():.3f}")
    total = 0
    for fname in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, fname))
        total += size
        print(f"  {fname}: {size} bytes")
    print(f"  total: {total} bytes")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-root", default=FIXTURES, help="parent directory of the fixture folders")
    ap.add_argument("--only", action="append", choices=sorted(SPECS), help="build only these")
    ap.add_argument(
        "--seed", action="append", default=[], metavar="NAME=N", help="override a fixture's seed"
    )
    args = ap.parse_args(argv)
    seeds = {name: spec["seed"] for name, spec in SPECS.items()}
    for item in args.seed:
        name, _, value = item.partition("=")
        if name not in SPECS:
            ap.error(f"unknown fixture {name!r}")
        seeds[name] = int(value)

    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    for name in args.only or list(SPECS):
        out_dir = os.path.join(args.out_root, name)
        result = build_fixture(name, SPECS[name], out_dir, seeds[name])
        summarise(name, out_dir, SPECS[name], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
