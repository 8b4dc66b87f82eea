"""GPT-2: learned absolute positions, pre-LayerNorm blocks, fused q|k|v, GELU MLP.

Names follow the checkpoint (wte, wpe, ln_1, c_attn, c_proj, ln_2, c_fc, ln_f);
Linear weights are stored (in, out), as GPT-2's Conv1D stores them. Every layer is
causal: GPT-2 has no sliding windows.

>>> from maskviz.model import random_model
>>> model = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
>>> model.config.layer_mask(0, 3).to_array().astype(int)
array([[1, 0, 0],
       [1, 1, 0],
       [1, 1, 1]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from maskviz._text import plural
from maskviz.arch import Attend, FloatArray, IntArray
from maskviz.arch._config import (
    boolean,
    check_allowed,
    check_causal,
    flag,
    integers,
    layer_index,
    positive_float,
    positive_int,
    positive_number,
    unsupported,
)
from maskviz.arch._tensors import Tensors, cast, output_head
from maskviz.errors import MaskvizError, usage_error
from maskviz.masks import Mask, causal
from maskviz.nn import gelu_, layer_norm, product


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT-2 model.

    >>> GPTConfig(n_layer=4, n_head=4, n_embd=160, n_ctx=256, vocab_size=257).head_dim
    40
    """

    n_layer: int
    n_head: int
    n_embd: int
    n_ctx: int
    vocab_size: int
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True  # False: the checkpoint must hold lm_head.weight

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "n_ctx", "vocab_size"):
            positive_int(self, name)
        if self.n_embd % self.n_head:
            raise usage_error(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        positive_float(self, "layer_norm_epsilon")
        boolean(self, "tie_word_embeddings")

    architecture = "gpt2"
    position_encoding = "learned"  # wpe: one embedding per absolute position

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_kv_head(self) -> int:
        return self.n_head  # every query head has its own keys and values

    @property
    def windows(self) -> tuple[int | None, ...]:
        return (None,) * self.n_layer

    @property
    def n_params(self) -> int:
        """Parameters, counting a tied output projection once and an untied one apart."""
        c, v = self.n_embd, self.vocab_size
        per_block = (
            4 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c)
        )
        head = 0 if self.tie_word_embeddings else v * c
        return v * c + head + self.n_ctx * c + self.n_layer * per_block + 2 * c

    def describe(self) -> str:
        return (
            f"gpt2, {plural(self.n_layer, 'layer')}, {plural(self.n_head, 'head')}, "
            f"width {self.n_embd}, "
            f"context {self.n_ctx}, vocabulary {self.vocab_size}"
        )

    def layer_mask(self, layer: int, n: int) -> Mask:
        layer_index(self, layer)
        return causal(n)

    def pass_macs(
        self, n_queries: int, n_keys: int, logits_rows: int, *, cached: bool = False
    ) -> int:
        """Per layer and token 12 C^2 for the projections (q|k|v 3 C^2, output C^2, MLP
        8 C^2) plus 2 C n_k for attention over n_k keys, and V C per logits row.

        >>> GPTConfig(1, 1, 2, 8, 3).pass_macs(n_queries=1, n_keys=4, logits_rows=1)
        70
        """
        c = self.n_embd
        per_layer = 12 * c * c * n_queries + 2 * c * n_queries * n_keys
        return self.n_layer * per_layer + self.vocab_size * c * logits_rows


@dataclass
class Block:
    """One transformer block's weights, GPT-2 layout: Linear weights are (in, out)."""

    ln_1_w: FloatArray  # [C]
    ln_1_b: FloatArray  # [C]
    c_attn_w: FloatArray  # [C, 3C]  fused q|k|v
    c_attn_b: FloatArray  # [3C]
    attn_c_proj_w: FloatArray  # [C, C]
    attn_c_proj_b: FloatArray  # [C]
    ln_2_w: FloatArray  # [C]
    ln_2_b: FloatArray  # [C]
    c_fc_w: FloatArray  # [C, 4C]
    c_fc_b: FloatArray  # [4C]
    mlp_c_proj_w: FloatArray  # [4C, C]
    mlp_c_proj_b: FloatArray  # [C]


@dataclass
class Weights:
    """A GPT-2's weights and its math: `embed`, `layer`, `final_norm`, `logits`."""

    config: GPTConfig
    wte: FloatArray  # [vocab, C] (kept column-major for decoding: `decoding_layout`)
    wpe: FloatArray  # [n_ctx, C]
    blocks: list[Block]
    ln_f_w: FloatArray  # [C]
    ln_f_b: FloatArray  # [C]
    lm_head: FloatArray | None = None  # [vocab, C]; None = tied to wte

    def astype(self, dtype: str) -> Weights:
        blocks = [Block(**{k: cast(v, dtype) for k, v in vars(b).items()}) for b in self.blocks]
        head = None if self.lm_head is None else cast(self.lm_head, dtype)
        return Weights(
            self.config,
            cast(self.wte, dtype),
            cast(self.wpe, dtype),
            blocks,
            cast(self.ln_f_w, dtype),
            cast(self.ln_f_b, dtype),
            head,
        )

    def decoding_layout(self) -> Weights:
        """Store each matrix in the memory order its decoding product streams fastest.

        A decoding step multiplies one row vector by every weight matrix once, so its
        speed is how fast BLAS streams each matrix from memory (docs/performance.md):

        - the output head [vocab, C] goes column-major: ``x @ head.T`` is then a product
          with a row-major [C, vocab] matrix, which OpenBLAS streams far faster than the
          transposed product over the row-major head;
        - the two output projections, attention [C, C] and MLP [4C, C], go column-major
          too: their products become dot products along contiguous columns, and each
          BLAS thread streams one contiguous part of the matrix.

        q|k|v [C, 3C] and the MLP input [C, 4C] stream fastest row-major and stay so.
        Only the layout changes: the arrays keep their shapes and stay the ones in
        ``self`` (the tied head is still ``self.wte``), so edits reach the model.
        """
        if self.lm_head is None:
            self.wte = np.asfortranarray(self.wte)
        else:
            self.lm_head = np.asfortranarray(self.lm_head)
        for block in self.blocks:
            block.attn_c_proj_w = np.asfortranarray(block.attn_c_proj_w)
            block.mlp_c_proj_w = np.asfortranarray(block.mlp_c_proj_w)
        return self

    def arrays(self) -> list[FloatArray]:
        arrays = [self.wte, self.wpe, self.ln_f_w, self.ln_f_b]
        arrays += [a for b in self.blocks for a in vars(b).values()]
        return arrays if self.lm_head is None else [*arrays, self.lm_head]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays())

    # -- the math ------------------------------------------------------------------

    def embed(self, ids: IntArray, positions: IntArray) -> FloatArray:
        x: FloatArray = self.wte[ids]  # [n, C]: a fresh copy (fancy indexing), updated in place
        x += self.wpe[positions]  # learned absolute positions
        return x

    def layer(self, i: int, x: FloatArray, positions: IntArray, attend: Attend) -> FloatArray:
        x += self._attention(i, x, attend)
        x += self._mlp(i, x)
        return x

    def _attention(self, i: int, x: FloatArray, attend: Attend) -> FloatArray:
        blk, cfg = self.blocks[i], self.config
        n, h, d = x.shape[0], cfg.n_head, cfg.head_dim
        qkv = product(layer_norm(x, blk.ln_1_w, blk.ln_1_b, cfg.layer_norm_epsilon), blk.c_attn_w)
        qkv += blk.c_attn_b  # [n, 3C]: q | k | v, each H blocks of d
        q, k, v = qkv.reshape(n, 3, h, d).transpose(1, 2, 0, 3)  # 3 x [H, n, d] views
        out = attend(i, q, k, v)  # [H, n, d]
        y = product(out.transpose(1, 0, 2).reshape(n, h * d), blk.attn_c_proj_w)
        y += blk.attn_c_proj_b
        return y

    def _mlp(self, i: int, x: FloatArray) -> FloatArray:
        blk, eps = self.blocks[i], self.config.layer_norm_epsilon
        hidden = gelu_(product(layer_norm(x, blk.ln_2_w, blk.ln_2_b, eps), blk.c_fc_w), blk.c_fc_b)
        y = product(hidden, blk.mlp_c_proj_w)
        y += blk.mlp_c_proj_b
        return y

    def final_norm(self, x: FloatArray) -> FloatArray:
        return layer_norm(x, self.ln_f_w, self.ln_f_b, self.config.layer_norm_epsilon)

    def logits(self, hidden: FloatArray) -> FloatArray:
        head = self.wte if self.lm_head is None else self.lm_head
        out: FloatArray = hidden @ head.T  # [n, vocab]; head.T is C-contiguous [C, vocab]
        return out

    def weight_bytes_per_step(self) -> int:
        blocks = sum(a.nbytes for b in self.blocks for a in vars(b).values())
        head = self.wte if self.lm_head is None else self.lm_head  # read whole for the logits
        rows = self.wpe.nbytes // self.wpe.shape[0]  # this position's embedding
        if self.lm_head is not None:
            rows += self.wte.nbytes // self.wte.shape[0]  # untied: the token's row of wte too
        return int(blocks + self.ln_f_w.nbytes + self.ln_f_b.nbytes + head.nbytes + rows)


# ---------------------------------------------------------------- loading

# Settings whose other values this engine does not implement: refused, never run wrong.
# None among the allowed values: the field may also be absent or null.
_REQUIRED: dict[str, tuple[Any, ...]] = {
    "model_type": ("gpt2",),
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "add_cross_attention": (False, None),
    "scale_attn_by_inverse_layer_idx": (False, None),
    "reorder_and_upcast_attn": (False, None),
    "scale_attn_weights": (True, None),
    "tie_word_embeddings": (True, False, None),
}


def config_from_hf(data: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """A `GPTConfig` from Hugging Face GPT-2 config fields, refusing what the engine lacks.

    >>> config_from_hf({"n_layer": 1, "n_head": 1, "n_embd": 8, "n_positions": 4,
    ...                 "vocab_size": 5, "n_inner": 32}).n_embd
    8
    >>> config_from_hf({"is_causal": False})
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: config.json: is_causal = false is not supported (maskviz runs GPT-2 causally)
    """
    check_allowed(data, _REQUIRED, source)
    check_causal(data, source, "GPT-2")
    fields = integers(
        data,
        source,
        n_layer="n_layer",
        n_head="n_head",
        n_embd="n_embd",
        n_ctx=("n_positions", "n_ctx"),
        vocab_size="vocab_size",
    )
    eps = positive_number(data, "layer_norm_epsilon", 1e-5, source)  # GPT2Config's default
    n_inner = data.get("n_inner")
    if n_inner is not None and (isinstance(n_inner, bool) or n_inner != 4 * fields["n_embd"]):
        why = f"this engine implements n_inner = 4 x n_embd = {4 * fields['n_embd']}"
        raise unsupported(source, "n_inner", n_inner, why)
    tied = flag(data, "tie_word_embeddings", True, source)  # transformers ties by default
    try:
        return GPTConfig(layer_norm_epsilon=eps, tie_word_embeddings=tied, **fields)
    except MaskvizError as exc:
        raise MaskvizError(f"{source}: {exc}") from None


def weights_from_tensors(tensors: dict[str, FloatArray], cfg: GPTConfig, source: str) -> Weights:
    """Arrange checkpoint tensors (with or without the ``transformer.`` prefix)."""
    t = Tensors(tensors, source, prefix="transformer.")
    t.check_layers("h.", cfg.n_layer, "n_layer")
    c, v = cfg.n_embd, cfg.vocab_size
    blocks = []
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        blocks.append(
            Block(
                t.take(p + "ln_1.weight", (c,)),
                t.take(p + "ln_1.bias", (c,)),
                t.take(p + "attn.c_attn.weight", (c, 3 * c)),
                t.take(p + "attn.c_attn.bias", (3 * c,)),
                t.take(p + "attn.c_proj.weight", (c, c)),
                t.take(p + "attn.c_proj.bias", (c,)),
                t.take(p + "ln_2.weight", (c,)),
                t.take(p + "ln_2.bias", (c,)),
                t.take(p + "mlp.c_fc.weight", (c, 4 * c)),
                t.take(p + "mlp.c_fc.bias", (4 * c,)),
                t.take(p + "mlp.c_proj.weight", (4 * c, c)),
                t.take(p + "mlp.c_proj.bias", (c,)),
            )
        )
    wte = t.take("wte.weight", (v, c))
    lm_head = output_head(t, wte, cfg.tie_word_embeddings)
    weights = Weights(
        replace(cfg, tie_word_embeddings=lm_head is None),
        wte=wte,
        wpe=t.take("wpe.weight", (cfg.n_ctx, c)),
        blocks=blocks,
        ln_f_w=t.take("ln_f.weight", (c,)),
        ln_f_b=t.take("ln_f.bias", (c,)),
        lm_head=lm_head,
    )
    t.warn_unused()
    return weights


def random_weights(config: GPTConfig, rng: np.random.Generator) -> Weights:
    """Weights scaled so that activations stay of order one and attention is not uniform."""
    c = config.n_embd

    def mat(rows: int, cols: int) -> FloatArray:
        return rng.standard_normal((rows, cols)) / math.sqrt(rows)

    def vec(size: int, center: float = 0.0) -> FloatArray:
        return center + 0.1 * rng.standard_normal(size)

    blocks = [
        Block(
            vec(c, 1.0),
            vec(c),
            mat(c, 3 * c),
            vec(3 * c),
            mat(c, c),
            vec(c),
            vec(c, 1.0),
            vec(c),
            mat(c, 4 * c),
            vec(4 * c),
            mat(4 * c, c),
            vec(c),
        )
        for _ in range(config.n_layer)
    ]
    return Weights(
        config,
        wte=rng.standard_normal((config.vocab_size, c)) * 0.5,
        wpe=rng.standard_normal((config.n_ctx, c)) * 0.5,
        blocks=blocks,
        ln_f_w=vec(c, 1.0),
        ln_f_b=vec(c),
    )
