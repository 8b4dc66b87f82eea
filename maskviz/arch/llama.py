"""The Llama family: Llama 3, Mistral, Qwen2 and Qwen3, one architecture set by config.

What differs from GPT-2, and why it matters for masks:

- rotary positions (RoPE) instead of learned ones: q and k are rotated by angles
  proportional to their positions, so a score depends only on the *distance*
  between query and key. A left-padded row gives the same scores whether its
  positions skip the pads or count them (GPT-2's learned positions do not);
- grouped-query attention: ``n_kv_head`` key/value heads, each shared by
  ``n_head / n_kv_head`` query heads, so the KV cache is that much smaller while
  every query head keeps its own weights;
- sliding-window layers (Mistral: every layer; Qwen: chosen by ``layer_types``):
  causal & sliding window W, whose KV cache is a ring buffer of W positions;
- RMSNorm, a SwiGLU MLP (down(silu(gate x) * up x)), no biases except Qwen2's
  q/k/v (and those ``attention_bias``/``mlp_bias`` ask for), and Qwen3's RMSNorm of
  each head's q and k before the rotation.

Linear weights are stored (in, out), q|k|v and gate|up fused, so that a decoding
step makes one product per fused matrix.

>>> from maskviz.model import random_model
>>> cfg = LlamaConfig(n_layer=2, n_head=4, n_kv_head=2, head_dim=8, n_embd=32,
...                   intermediate=64, n_ctx=64, vocab_size=50, windows=(4, None))
>>> cfg.layer_mask(0, 6).allowed_keys(5), cfg.layer_mask(1, 6).allowed_keys(5)
([(2, 5)], [(0, 5)])
>>> model = random_model(cfg, seed=0)
>>> model.trace([1, 2, 3], steps=5).attention.shape  # [L, H (query heads), T, T]
(2, 4, 8, 8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from maskviz._text import plural
from maskviz.arch import Attend, FloatArray, IntArray
from maskviz.arch._config import (
    MAX_SIZE,
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
from maskviz.errors import MaskvizError, as_integer, usage_error
from maskviz.masks import Mask, causal, sliding_window
from maskviz.nn import product, rms_norm, silu_

MODEL_TYPES = ("llama", "mistral", "ministral", "qwen2", "qwen3")


@dataclass(frozen=True)
class Llama3Scaling:
    """Llama 3.1's frequency scaling of RoPE (``rope_type: llama3``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self) -> None:
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            positive_float(self, name)
        positive_int(self, "original_max_position_embeddings")
        if not self.high_freq_factor > self.low_freq_factor:  # else the blend divides by <= 0
            raise usage_error(
                f"llama3 rope scaling: high_freq_factor ({self.high_freq_factor}) must be greater "
                f"than low_freq_factor ({self.low_freq_factor})"
            )


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a Llama-family model.

    ``windows`` holds each layer's sliding window W (None: full attention); empty
    means every layer is full. ``qkv_bias``/``o_bias``: Qwen2 has q/k/v biases,
    ``attention_bias: true`` adds all four; ``mlp_bias``: gate, up and down biases
    (Llama's ``mlp_bias: true``); ``qk_norm``: Qwen3.
    """

    n_layer: int
    n_head: int
    n_kv_head: int
    head_dim: int
    n_embd: int
    intermediate: int
    n_ctx: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Llama3Scaling | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    windows: tuple[int | None, ...] = field(default=())
    model_type: str = "llama"

    architecture = "llama"
    position_encoding = "rotary"  # RoPE: scores depend on the distance between positions

    def __post_init__(self) -> None:
        sizes = ("n_layer", "n_head", "n_kv_head", "head_dim", "n_embd", "intermediate")
        for name in (*sizes, "n_ctx", "vocab_size"):
            positive_int(self, name)
        if self.n_head % self.n_kv_head:
            raise usage_error(
                f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})"
            )
        if self.head_dim % 2:
            raise usage_error(f"head_dim must be even for rotary positions, got {self.head_dim}")
        object.__setattr__(self, "windows", _windows_tuple(self.windows, self.n_layer))
        positive_float(self, "rms_norm_eps")
        positive_float(self, "rope_theta")
        for name in ("qkv_bias", "o_bias", "mlp_bias", "qk_norm", "tie_word_embeddings"):
            boolean(self, name)
        if self.model_type not in MODEL_TYPES:  # shown as the architecture's name
            raise usage_error(
                f"LlamaConfig.model_type must be one of {', '.join(MODEL_TYPES)}, "
                f"got {self.model_type!r}"
            )
        if not isinstance(self.rope_scaling, Llama3Scaling | None):
            raise usage_error(
                f"LlamaConfig.rope_scaling must be a Llama3Scaling or None, got {self.rope_scaling!r}"
            )

    @property
    def n_params(self) -> int:
        c, d, i = self.n_embd, self.head_dim, self.intermediate
        q, kv = self.n_head * d, self.n_kv_head * d
        per_layer = 2 * c + c * (q + 2 * kv) + q * c + 3 * c * i
        per_layer += (q + 2 * kv) * self.qkv_bias + c * self.o_bias + 2 * d * self.qk_norm
        per_layer += (2 * i + c) * self.mlp_bias
        heads = 1 if self.tie_word_embeddings else 2
        return heads * self.vocab_size * c + self.n_layer * per_layer + c

    def describe(self) -> str:
        kv = f" ({plural(self.n_kv_head, 'KV head')})" if self.n_kv_head != self.n_head else ""
        return (
            f"{self.model_type}, {plural(self.n_layer, 'layer')}, "
            f"{plural(self.n_head, 'head')}{kv}, width "
            f"{self.n_embd}, context {self.n_ctx}, vocabulary {self.vocab_size}"
        )

    def layer_mask(self, layer: int, n: int) -> Mask:
        w = self.windows[layer_index(self, layer)]
        return causal(n) if w is None else causal(n) & sliding_window(n, w)

    def pass_macs(
        self, n_queries: int, n_keys: int, logits_rows: int, *, cached: bool = False
    ) -> int:
        """Per layer and token: q|k|v C (H + 2 H_kv) d, output H d C, MLP 3 C I; attention
        2 H d per key (scores and weighted sum); V C per logits row.

        >>> LlamaConfig(1, 2, 1, 2, 4, 8, 16, 10).pass_macs(1, 3, 1)  # 144 + 24 + 40
        208
        """
        c, d = self.n_embd, self.head_dim
        q, kv = self.n_head * d, self.n_kv_head * d
        proj = c * (q + 2 * kv) + q * c + 3 * c * self.intermediate
        total = 0
        for w in self.windows:
            keys = n_keys if (w is None or not cached) else min(n_keys, w)
            total += n_queries * proj + 2 * q * n_queries * keys
        return total + self.vocab_size * c * logits_rows

    def inv_freq(self) -> FloatArray:
        """RoPE's angular frequencies [head_dim / 2] in float64 (Llama 3 scaling applied)."""
        d = self.head_dim
        inv = 1.0 / self.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
        s = self.rope_scaling
        if s is None:
            return inv
        # long wavelengths are slowed by `factor`, short ones kept, the band between blended
        wavelen = 2 * math.pi / inv
        low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
        high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
        smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
            s.high_freq_factor - s.low_freq_factor
        )
        blended = (1 - smooth) * inv / s.factor + smooth * inv
        out: FloatArray = np.where(
            wavelen < high_wavelen, inv, np.where(wavelen > low_wavelen, inv / s.factor, blended)
        )
        return out


def _windows_tuple(windows: object, n_layer: int) -> tuple[int | None, ...]:
    """``LlamaConfig.windows`` as a tuple (hashable, as a frozen config must be) of Python
    ints and None; empty: every layer full."""
    if isinstance(windows, str | bytes) or not isinstance(windows, Sequence | np.ndarray):
        raise usage_error(
            f"LlamaConfig.windows must be a sequence of None or integers >= 1, got {windows!r}"
        )
    if isinstance(windows, np.ndarray) and windows.ndim != 1:
        raise usage_error(f"LlamaConfig.windows must be 1-D, got shape {list(windows.shape)}")
    if len(windows) == 0:
        return (None,) * n_layer
    if len(windows) != n_layer:
        raise usage_error(
            f"windows has {plural(len(windows), 'entry')} for {plural(n_layer, 'layer')}"
        )
    out: list[int | None] = []
    for w in windows:
        try:
            number = None if w is None else as_integer(w, "windows")
        except MaskvizError:
            number = 0  # refused below, naming the whole field
        if number is not None and number < 1:
            raise usage_error(
                f"LlamaConfig.windows must hold None or integers >= 1, got {list(windows)}"
            )
        out.append(number)
    return tuple(out)


@dataclass
class Layer:
    """One block's weights; Linear weights (in, out)."""

    attn_norm: FloatArray  # [C]
    qkv_w: FloatArray  # [C, (H + 2 H_kv) d]  fused q | k | v
    qkv_b: FloatArray | None  # [(H + 2 H_kv) d]
    q_norm: FloatArray | None  # [d]  Qwen3
    k_norm: FloatArray | None  # [d]
    o_w: FloatArray  # [H d, C]
    o_b: FloatArray | None  # [C]
    mlp_norm: FloatArray  # [C]
    gate_up_w: FloatArray  # [C, 2 I]  fused gate | up
    down_w: FloatArray  # [I, C]
    gate_up_b: FloatArray | None = None  # [2 I]  Llama's mlp_bias
    down_b: FloatArray | None = None  # [C]


def _cast(a: FloatArray | None, dtype: str) -> Any:
    return None if a is None else cast(a, dtype)


@dataclass
class Weights:
    """A Llama-family model's weights and its math."""

    config: LlamaConfig
    embed_tokens: FloatArray  # [V, C]
    layers: list[Layer]
    norm: FloatArray  # [C]
    lm_head: FloatArray | None = None  # [V, C]; None = tied to embed_tokens
    _rope: tuple[IntArray, FloatArray, FloatArray] | None = field(default=None, repr=False)
    _rope_table: tuple[FloatArray, FloatArray] | None = field(default=None, repr=False)

    def astype(self, dtype: str) -> Weights:
        layers = [
            Layer(**{k: _cast(v, dtype) for k, v in vars(lay).items()}) for lay in self.layers
        ]
        return Weights(
            self.config,
            _cast(self.embed_tokens, dtype),
            layers,
            _cast(self.norm, dtype),
            _cast(self.lm_head, dtype),
        )

    def decoding_layout(self) -> Weights:
        """The output head and the two output projections column-major, as GPT-2's
        (`maskviz.arch.gpt2.Weights.decoding_layout` says why)."""
        if self.lm_head is None:
            self.embed_tokens = np.asfortranarray(self.embed_tokens)
        else:
            self.lm_head = np.asfortranarray(self.lm_head)
        for layer in self.layers:
            layer.o_w = np.asfortranarray(layer.o_w)
            layer.down_w = np.asfortranarray(layer.down_w)
        return self

    def arrays(self) -> list[FloatArray]:
        arrays = [self.embed_tokens, self.norm]
        arrays += [a for lay in self.layers for a in vars(lay).values() if a is not None]
        return arrays if self.lm_head is None else [*arrays, self.lm_head]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays())

    # -- the math ------------------------------------------------------------------

    def embed(self, ids: IntArray, positions: IntArray) -> FloatArray:
        x: FloatArray = self.embed_tokens[ids]  # [n, C]; positions enter each layer's rotation
        return x

    def layer(self, i: int, x: FloatArray, positions: IntArray, attend: Attend) -> FloatArray:
        x += self._attention(i, x, positions, attend)
        x += self._mlp(i, x)
        return x

    def _rotation(self, positions: IntArray) -> tuple[FloatArray, FloatArray]:
        """cos and sin of each position's angles as `_rotate` reads them, [n, 1, 2, d/2]
        each: cos twice, (-sin, sin) along the pair axis.

        Looked up once per pass (every layer of a pass gets the same positions array)
        in a table of positions 0..P-1, rebuilt when a pass asks beyond it at twice its
        size or more (at most the context, unless asked for more): a decoding step then
        costs two lookups, not the trigonometry of its position.
        """
        if self._rope is None or self._rope[0] is not positions:
            table = self._rope_table
            top = int(positions.max()) + 1
            if table is None or table[0].shape[0] < top:
                held = 0 if table is None else table[0].shape[0]
                size = max(top, min(2 * held, self.config.n_ctx))
                angles = np.arange(size, dtype=np.float64)[:, None] * self.config.inv_freq()
                cos, sin = np.cos(angles), np.sin(angles)  # [P, d/2]
                dtype = self.norm.dtype
                table = (
                    np.stack([cos, cos], axis=1)[:, None].astype(dtype),  # [P, 1, 2, d/2]
                    np.stack([-sin, sin], axis=1)[:, None].astype(dtype),
                )
                self._rope_table = table
            self._rope = (positions, table[0][positions], table[1][positions])
        return self._rope[1], self._rope[2]

    def _attention(self, i: int, x: FloatArray, positions: IntArray, attend: Attend) -> FloatArray:
        lay, cfg = self.layers[i], self.config
        n, h, h_kv, d = x.shape[0], cfg.n_head, cfg.n_kv_head, cfg.head_dim
        normed = rms_norm(x, lay.attn_norm, cfg.rms_norm_eps)
        qkv = product(normed, lay.qkv_w)  # [n, (H + 2 H_kv) d]
        if lay.qkv_b is not None:
            qkv += lay.qkv_b
        # q and k side by side [n, H + H_kv, d]: normed (Qwen3) and rotated together
        qk: FloatArray = qkv[:, : (h + h_kv) * d].reshape(n, h + h_kv, d)
        v = qkv[:, (h + h_kv) * d :].reshape(n, h_kv, d).transpose(1, 0, 2)  # [H_kv, n, d]
        if lay.q_norm is not None and lay.k_norm is not None:
            eps = cfg.rms_norm_eps
            qk = np.concatenate(
                [rms_norm(qk[:, :h], lay.q_norm, eps), rms_norm(qk[:, h:], lay.k_norm, eps)],
                axis=1,
            )
        qk = _rotate(qk, *self._rotation(positions))
        q, k = qk[:, :h].transpose(1, 0, 2), qk[:, h:].transpose(1, 0, 2)  # [H | H_kv, n, d]
        out = attend(i, q, k, v)  # [H, n, d]
        y = product(out.transpose(1, 0, 2).reshape(n, h * d), lay.o_w)
        if lay.o_b is not None:
            y += lay.o_b
        return y

    def _mlp(self, i: int, x: FloatArray) -> FloatArray:
        lay, inter = self.layers[i], self.config.intermediate
        normed = rms_norm(x, lay.mlp_norm, self.config.rms_norm_eps)
        gate_up = product(normed, lay.gate_up_w)  # [n, 2 I]
        if lay.gate_up_b is not None:
            gate_up += lay.gate_up_b
        hidden = silu_(gate_up[:, :inter])
        hidden *= gate_up[:, inter:]
        y = product(hidden, lay.down_w)  # [n, C]
        if lay.down_b is not None:
            y += lay.down_b
        return y

    def final_norm(self, x: FloatArray) -> FloatArray:
        return rms_norm(x, self.norm, self.config.rms_norm_eps)

    def logits(self, hidden: FloatArray) -> FloatArray:
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        out: FloatArray = hidden @ head.T  # [n, vocab]
        return out

    def weight_bytes_per_step(self) -> int:
        per_layers = sum(
            a.nbytes for lay in self.layers for a in vars(lay).values() if a is not None
        )
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        row = 0 if self.lm_head is None else self.embed_tokens.nbytes // self.embed_tokens.shape[0]
        return int(per_layers + self.norm.nbytes + head.nbytes + row)


def _rotate(x: FloatArray, cos: FloatArray, sin: FloatArray) -> FloatArray:
    """RoPE on x [n, heads, d]: each pair (i, i + d/2) rotated by its position's angle,
    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).

    x [n, heads, d], cos/sin [n, 1, 2, d/2] from `Weights._rotation` -> a new [n, heads, d]

    Three NumPy calls for every head at once: the halves (x1, x2) become a pair axis,
    reversed by a view (x2, x1) and multiplied by (-sin, sin); a + (-b) is exactly a - b.
    """
    pairs = x.reshape(*x.shape[:-1], 2, x.shape[-1] // 2)  # [n, heads, 2, d/2]
    out = pairs * cos
    out += pairs[..., ::-1, :] * sin
    return out.reshape(x.shape)


# ---------------------------------------------------------------- loading

_ALLOWED: dict[str, tuple[Any, ...]] = {
    "hidden_act": ("silu", "swish", None),  # transformers' ACT2FN runs "swish" as SiLU
    "attn_logit_softcapping": (None,),
    "final_logit_softcapping": (None,),
    "attention_chunk_size": (None,),
    "partial_rotary_factor": (1, 1.0, None),
    "num_experts": (0, None),
    "num_local_experts": (0, None),
    "num_experts_per_tok": (None,),
}
# pretraining_tp is read by nothing: transformers 5 ignores it, and 4.x only split the
# same products into slices (the same sums, in another order)

# transformers' config defaults (5.x, models/<type>/configuration_<type>.py): the value
# of a field config.json does not give, so that a config reads as transformers loads it.
# None: derived, num_key_value_heads = num_attention_heads and head_dim = hidden_size /
# num_attention_heads (Qwen2Config has no head_dim: its attention derives it). The sizes
# (hidden_size, layers, heads, vocabulary, MLP) have none here: a config without them is
# damaged, and "missing field" says so better than a tensor of the wrong shape.
_LLAMA_DEFAULTS: dict[str, Any] = {
    "num_key_value_heads": None,
    "head_dim": None,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
}
_MISTRAL_DEFAULTS = {
    **_LLAMA_DEFAULTS,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "sliding_window": 4096,
}
_QWEN_DEFAULTS = {
    **_LLAMA_DEFAULTS,
    "num_key_value_heads": 32,
    "max_position_embeddings": 32768,
    "sliding_window": 4096,
    "max_window_layers": 28,
}
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": _LLAMA_DEFAULTS,
    "mistral": _MISTRAL_DEFAULTS,
    "ministral": _MISTRAL_DEFAULTS,
    "qwen2": _QWEN_DEFAULTS,
    "qwen3": {**_QWEN_DEFAULTS, "head_dim": 128},
}
# The derived fields that may also be null: transformers types them `int | None` and
# derives a null (Ministral's attention cannot run without head_dim: derived here, as
# when absent). A null elsewhere is refused, as transformers' strict types refuse it.
_NULL_DERIVED = {
    "llama": ("num_key_value_heads", "head_dim"),
    "mistral": ("head_dim",),
    "ministral": ("head_dim",),
    "qwen2": ("num_key_value_heads",),
    "qwen3": ("num_key_value_heads",),
}


def config_from_hf(data: dict[str, Any], source: str = "config.json") -> LlamaConfig:
    """A `LlamaConfig` from Hugging Face llama/mistral/qwen2/qwen3 config fields; a field
    config.json does not give takes transformers' default for the model type.

    >>> shape = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
    ...     "num_attention_heads": 2, "num_key_value_heads": 1,
    ...     "max_position_embeddings": 32, "vocab_size": 10}
    >>> config_from_hf({**shape, "model_type": "mistral", "sliding_window": 4}).windows
    (4, 4)
    >>> config_from_hf({**shape, "rope_scaling": {"rope_type": "yarn"}})
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: config.json: rope type = "yarn" is not supported (this engine implements "default", "llama3", or "linear" with factor 1)
    """
    model_type = data.get("model_type", "llama")
    if model_type not in HF_DEFAULTS:
        raise unsupported(
            source, "model_type", model_type, "this module reads " + ", ".join(MODEL_TYPES)
        )
    check_allowed(data, _ALLOWED, source)
    check_causal(data, source, "Llama-family models")
    defaults = HF_DEFAULTS[model_type]
    given, data = data, {**defaults, **data}
    f = integers(
        data,
        source,
        n_layer="num_hidden_layers",
        n_head="num_attention_heads",
        n_embd="hidden_size",
        intermediate="intermediate_size",
        n_ctx="max_position_embeddings",
        vocab_size="vocab_size",
    )
    derived = {"num_key_value_heads": f["n_head"], "head_dim": f["n_embd"] // f["n_head"]}
    for key, value in derived.items():
        if data[key] is None and (key not in given or key in _NULL_DERIVED[model_type]):
            data[key] = value
    more = integers(data, source, n_kv_head="num_key_value_heads", head_dim="head_dim")
    if f["n_head"] % more["n_kv_head"]:
        default = "" if "num_key_value_heads" in given else f", transformers' {model_type} default"
        raise MaskvizError(
            f"{source}: num_attention_heads ({f['n_head']}) must be a multiple of "
            f"num_key_value_heads ({more['n_kv_head']}{default})"
        )
    rope_theta, scaling = _rope(data, source)
    eps = positive_number(data, "rms_norm_eps", defaults["rms_norm_eps"], source)
    # transformers' biases: Llama and Qwen3 put attention_bias on q, k, v and o; Qwen2
    # always biases q, k and v and never o; Mistral has none (it ignores the field).
    # Only Llama's MLP reads mlp_bias (gate, up and down).
    bias = flag(data, "attention_bias", False, source) and model_type in ("llama", "qwen3")
    mlp_bias = flag(data, "mlp_bias", False, source) and model_type == "llama"
    windows = _windows(data, model_type, f["n_layer"], source)  # its errors name the source
    tied = flag(data, "tie_word_embeddings", False, source)
    try:
        return LlamaConfig(
            **f,
            **more,
            rms_norm_eps=eps,
            rope_theta=rope_theta,
            rope_scaling=scaling,
            qkv_bias=bias or model_type == "qwen2",
            o_bias=bias,
            mlp_bias=mlp_bias,
            qk_norm=model_type == "qwen3",
            tie_word_embeddings=tied,
            windows=windows,
            model_type=str(model_type),
        )
    except MaskvizError as exc:
        raise MaskvizError(f"{source}: {exc}") from None


_LLAMA3_FACTORS = ("factor", "low_freq_factor", "high_freq_factor")


def _rope(data: dict[str, Any], source: str) -> tuple[float, Llama3Scaling | None]:
    """rope_theta and Llama 3 scaling from ``rope_parameters`` (transformers 5) or the
    older ``rope_theta`` + ``rope_scaling``, which wins when both are there, as in
    transformers. ``data`` holds the model type's defaults."""
    params = data.get("rope_scaling") or data.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise MaskvizError(f"{source}: rope_parameters must be an object")
    nested = [k for k, v in params.items() if isinstance(v, dict)]
    if nested:  # one set per layer type: the engine rotates every layer alike
        raise unsupported(
            source, "rope_parameters", nested, "this engine implements one set for every layer"
        )
    # transformers 5 moves partial_rotary_factor inside rope_parameters
    check_allowed(params, {"partial_rotary_factor": _ALLOWED["partial_rotary_factor"]}, source)
    theta = positive_number(params if "rope_theta" in params else data, "rope_theta", 1e4, source)
    kind = params.get("rope_type", params.get("type", "default"))
    if (
        kind == "linear"
        and "factor" in params
        and positive_number(params, "factor", 1, source) == 1
    ):
        kind = "default"  # positions divided by a factor of 1: the default rotation
    if kind not in ("default", "llama3"):
        why = 'this engine implements "default", "llama3", or "linear" with factor 1'
        raise unsupported(source, "rope type", kind, why)
    if kind == "default":
        return theta, None
    # the pretraining context: a top-level field first, then the rope parameters',
    # then max_position_embeddings, in transformers' order
    key = "original_max_position_embeddings"
    where = next((d for d in (data, params) if d.get(key) is not None), None)
    context = integers(where or {key: data["max_position_embeddings"]}, source, n=key)["n"]
    missing = [k for k in _LLAMA3_FACTORS if k not in params]
    if missing:
        raise MaskvizError(f"{source}: llama3 rope scaling needs {missing[0]!r}")
    factor, low, high = (positive_number(params, k, 1.0, source) for k in _LLAMA3_FACTORS)
    try:
        return theta, Llama3Scaling(factor, low, high, context)
    except MaskvizError as exc:  # high_freq_factor not above low_freq_factor
        raise MaskvizError(f"{source}: {exc}") from None


def _windows(
    data: dict[str, Any], model_type: str, n_layer: int, source: str
) -> tuple[int | None, ...]:
    """Each layer's sliding window, as transformers decides it for this model type."""
    if model_type == "llama":
        # transformers' Llama has no sliding window: the field changes nothing there
        return (None,) * n_layer
    window = data["sliding_window"]  # transformers' default when absent, 4096; null: none
    types: Sequence[Any] | None = data.get("layer_types")
    if model_type in ("qwen2", "qwen3") and not flag(data, "use_sliding_window", False, source):
        window = None  # Qwen ignores sliding_window unless use_sliding_window is set
    if window is None:
        if isinstance(types, list) and "sliding_attention" in types:
            raise MaskvizError(
                f"{source}: layer_types has sliding_attention layers but no sliding window "
                "(sliding_window is null or use_sliding_window is false)"
            )
        return (None,) * n_layer
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_SIZE:
        raise MaskvizError(f"{source}: sliding_window must be an integer from 1 to {MAX_SIZE}")
    if model_type in ("mistral", "ministral") and types is None:
        # every layer slides; with layer_types transformers loads a mistral config as
        # Ministral, which follows them layer by layer, as below
        return (window,) * n_layer
    if types is None:
        first = data["max_window_layers"]  # Qwen's default, 28: layers from 28 on slide
        if isinstance(first, bool) or not isinstance(first, int):
            raise MaskvizError(f"{source}: max_window_layers must be an integer")
        return tuple(window if i >= first else None for i in range(n_layer))
    kinds = {"sliding_attention": window, "full_attention": None}
    if not isinstance(types, list) or len(types) != n_layer or any(t not in kinds for t in types):
        raise MaskvizError(
            f"{source}: layer_types must list {n_layer} of 'sliding_attention'/'full_attention'"
        )
    return tuple(kinds[t] for t in types)


def weights_from_tensors(tensors: dict[str, FloatArray], cfg: LlamaConfig, source: str) -> Weights:
    """Arrange Hugging Face tensors (``model.`` prefix, Linear weights (out, in))."""
    t = Tensors(tensors, source, prefix="model.")
    t.check_layers("layers.", cfg.n_layer, "num_hidden_layers")
    c, d, inter, v = cfg.n_embd, cfg.head_dim, cfg.intermediate, cfg.vocab_size
    q, kv = cfg.n_head * d, cfg.n_kv_head * d

    def linear(name: str, n_out: int, n_in: int) -> FloatArray:
        out: FloatArray = t.take(name, (n_out, n_in)).T  # (in, out) views
        return out

    layers = []
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        a = p + "self_attn."
        qkv_w = np.concatenate(
            [linear(a + "q_proj.weight", q, c), linear(a + "k_proj.weight", kv, c),
             linear(a + "v_proj.weight", kv, c)], axis=1,
        )  # fmt: skip
        qkv_b = None
        if cfg.qkv_bias:
            qkv_b = np.concatenate(
                [t.take(a + "q_proj.bias", (q,)), t.take(a + "k_proj.bias", (kv,)),
                 t.take(a + "v_proj.bias", (kv,))]
            )  # fmt: skip
        m = p + "mlp."
        gate_up = np.concatenate(
            [linear(m + "gate_proj.weight", inter, c), linear(m + "up_proj.weight", inter, c)],
            axis=1,
        )
        gate_up_b = down_b = None
        if cfg.mlp_bias:
            gate_up_b = np.concatenate(
                [t.take(m + "gate_proj.bias", (inter,)), t.take(m + "up_proj.bias", (inter,))]
            )
            down_b = t.take(m + "down_proj.bias", (c,))
        layers.append(
            Layer(
                attn_norm=t.take(p + "input_layernorm.weight", (c,)),
                qkv_w=qkv_w,
                qkv_b=qkv_b,
                q_norm=t.take(a + "q_norm.weight", (d,)) if cfg.qk_norm else None,
                k_norm=t.take(a + "k_norm.weight", (d,)) if cfg.qk_norm else None,
                o_w=linear(a + "o_proj.weight", c, q),
                o_b=t.take(a + "o_proj.bias", (c,)) if cfg.o_bias else None,
                mlp_norm=t.take(p + "post_attention_layernorm.weight", (c,)),
                gate_up_w=gate_up,
                down_w=linear(m + "down_proj.weight", c, inter),
                gate_up_b=gate_up_b,
                down_b=down_b,
            )
        )
    embed = t.take("embed_tokens.weight", (v, c))
    # lm_head.weight has no "model." prefix; the config then says what runs
    lm_head = output_head(t, embed, cfg.tie_word_embeddings)
    cfg = replace(cfg, tie_word_embeddings=lm_head is None)
    weights = Weights(cfg, embed, layers, t.take("norm.weight", (c,)), lm_head)
    t.warn_unused()
    return weights


def random_weights(config: LlamaConfig, rng: np.random.Generator) -> Weights:
    """Weights scaled so that activations stay of order one and attention is not uniform."""
    c, d, inter = config.n_embd, config.head_dim, config.intermediate
    q, kv = config.n_head * d, config.n_kv_head * d

    def mat(rows: int, cols: int, gain: float = 1.0) -> FloatArray:
        return gain * rng.standard_normal((rows, cols)) / math.sqrt(rows)

    def vec(size: int, center: float = 0.0) -> FloatArray:
        return center + 0.1 * rng.standard_normal(size)

    layers = [
        Layer(
            attn_norm=vec(c, 1.0),
            qkv_w=np.concatenate([mat(c, q, 2.0), mat(c, kv, 2.0), mat(c, kv)], axis=1),
            qkv_b=vec(q + 2 * kv) if config.qkv_bias else None,
            q_norm=vec(d, 1.0) if config.qk_norm else None,
            k_norm=vec(d, 1.0) if config.qk_norm else None,
            o_w=mat(q, c),
            o_b=vec(c) if config.o_bias else None,
            mlp_norm=vec(c, 1.0),
            gate_up_w=mat(c, 2 * inter),
            down_w=mat(inter, c),
            gate_up_b=vec(2 * inter) if config.mlp_bias else None,
            down_b=vec(c) if config.mlp_bias else None,
        )
        for _ in range(config.n_layer)
    ]
    embed = rng.standard_normal((config.vocab_size, c)) * 0.5
    head = None if config.tie_word_embeddings else rng.standard_normal((config.vocab_size, c)) * 0.5
    return Weights(config, embed, layers, vec(c, 1.0), head)
