"""Architectures: one module per model family, each read by the one decoding driver.

The driver (`maskviz.model`) runs prefill, the decode loop, sampling, the KV cache
and recording, and knows nothing of any particular architecture. An architecture
module provides what differs between model families:

- a frozen config dataclass with the model's shape and costs (`Config`): each
  layer's mask as a `maskviz.masks` rule (causal, or causal & sliding window W),
  parameters, multiply-accumulates of a pass (`kv_cache_bytes` and
  `kv_cache_formula` read its KV heads, head size and windows);
- a weights class with the math (`Architecture`): embedding at given positions,
  one layer (attention + MLP) whose attention over the cached keys and values the
  driver computes, the final norm and the output head;
- loading: ``config_from_hf(data, source)`` from a Hugging Face ``config.json``,
  ``weights_from_tensors(tensors, config, source)`` from its safetensors, and
  ``random_weights(config, rng)`` for tests and benchmarks.

`_families` maps Hugging Face ``model_type`` values to the module that reads them:
a third architecture is a new module here and one more entry in that table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from maskviz._text import plural
from maskviz.masks import Mask

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]

# attend(layer, q [H, n, d], k [H_kv, n, d], v [H_kv, n, d]) -> [H, n, d]: the driver's
# attention of the layer's new queries over every key the layer may see (cached or not)
Attend = Callable[[int, FloatArray, FloatArray, FloatArray], FloatArray]


class Config(Protocol):
    """The shape of a model, what its masks are, and what running it costs."""

    @property
    def architecture(self) -> str: ...  # "gpt2", "llama"

    @property
    def position_encoding(self) -> str: ...  # "learned" (absolute) or "rotary" (relative)

    @property
    def n_layer(self) -> int: ...

    @property
    def n_head(self) -> int: ...  # query heads

    @property
    def n_kv_head(self) -> int: ...  # key/value heads (< n_head: grouped-query attention)

    @property
    def head_dim(self) -> int: ...

    @property
    def n_embd(self) -> int: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def windows(self) -> tuple[int | None, ...]:
        """Each layer's sliding window W (keys including the query), None for full attention."""
        ...

    @property
    def n_params(self) -> int: ...

    def describe(self) -> str: ...

    def layer_mask(self, layer: int, n: int) -> Mask:
        """The rule of ``layer`` over ``n`` positions: causal, or causal & sliding window W."""
        ...

    def pass_macs(
        self, n_queries: int, n_keys: int, logits_rows: int, *, cached: bool = False
    ) -> int:
        """Multiply-accumulates of one pass: ``n_queries`` new tokens over ``n_keys`` keys.

        ``cached``: a sliding-window layer's ring cache holds at most W keys, so its
        products cover min(n_keys, W); an uncached pass multiplies every key (masked).
        """
        ...


class Architecture(Protocol):
    """A model's weights in one dtype, and the math that reads them."""

    config: Config

    @property
    def nbytes(self) -> int: ...

    def arrays(self) -> list[FloatArray]:
        """Every weight array, once."""
        ...

    def astype(self, dtype: str) -> Architecture:
        """A copy in ``dtype`` (float32 or float64)."""
        ...

    def decoding_layout(self) -> Architecture:
        """Itself, with each matrix in the memory order a decoding step streams fastest."""
        ...

    def embed(self, ids: IntArray, positions: IntArray) -> FloatArray:
        """Token ids [n] at positions [n] -> residual stream x [n, C] (a new array)."""
        ...

    def layer(self, i: int, x: FloatArray, positions: IntArray, attend: Attend) -> FloatArray:
        """One transformer block over x [n, C], updated in place and returned."""
        ...

    def final_norm(self, x: FloatArray) -> FloatArray:
        """The hidden states the output head reads [n, C]."""
        ...

    def logits(self, hidden: FloatArray) -> FloatArray:
        """hidden [n, C] -> logits [n, vocab]."""
        ...

    def weight_bytes_per_step(self) -> int:
        """Bytes of weights one cached decoding step reads (every matrix once, one row
        of each embedding table)."""
        ...


def step_macs(cfg: Config, position: int, *, cached: bool) -> int:
    """Multiply-accumulates of the decoding step that computes ``position``: with a KV
    cache one query over the keys held; without, the whole prefix again, of which only
    the last row's logits are needed.

    >>> from maskviz.model import GPTConfig
    >>> cfg = GPTConfig(1, 1, 2, 8, 3)
    >>> step_macs(cfg, 3, cached=True), step_macs(cfg, 3, cached=False)
    (70, 262)
    """
    if cached:
        return cfg.pass_macs(1, position + 1, 1, cached=True)
    return cfg.pass_macs(position + 1, position + 1, 1)


def kv_cache_bytes(cfg: Config, positions: int, itemsize: int) -> int:
    """Bytes of keys and values a KV cache holds at ``positions`` positions: a full
    layer keeps every position, a sliding layer at most its window.

    >>> from maskviz.arch.llama import LlamaConfig
    >>> kv_cache_bytes(LlamaConfig(4, 4, 2, 40, 160, 432, 256, 257, windows=(32, None) * 2), 48, 4)
    102400
    """
    slots = sum(positions if w is None else min(w, positions) for w in cfg.windows)
    return 2 * cfg.n_kv_head * cfg.head_dim * itemsize * slots


def kv_cache_formula(cfg: Config, positions: int, itemsize: int) -> str:
    """How the KV cache's bytes add up: layers x keys and values x KV heads x positions
    (a sliding layer: its window) x head dims x bytes.

    >>> from maskviz.arch.llama import LlamaConfig
    >>> kv_cache_formula(LlamaConfig(4, 4, 2, 40, 160, 432, 256, 257, windows=(32, None) * 2), 48, 4)
    '2 full layers x 2 (keys, values) x 2 KV heads x 48 positions x 40 dims x 4 bytes + 2 sliding layers x 2 x 2 x 32 slots x 40 x 4'
    """
    heads = ("KV " if cfg.n_kv_head != cfg.n_head else "") + (
        "head" if cfg.n_kv_head == 1 else "heads"
    )
    groups: dict[int | None, int] = {}  # window -> layers, full layers first
    for w in sorted(cfg.windows, key=lambda w: -1 if w is None else w):
        groups[w] = groups.get(w, 0) + 1
    parts: list[str] = []
    for w, count in groups.items():
        if w is None:
            kind = "layers" if count == len(cfg.windows) else "full layers"
            slots = plural(positions, "position")
        else:
            kind, slots = "sliding layers", plural(min(w, positions), "slot")
        kind = kind if count > 1 else kind[:-1]
        if parts:  # the first term names every factor; later ones only what differs
            parts.append(
                f"{count} {kind} x 2 x {cfg.n_kv_head} x {slots} x {cfg.head_dim} x {itemsize}"
            )
        else:
            parts.append(
                f"{count} {kind} x 2 (keys, values) x {cfg.n_kv_head} {heads} x {slots} "
                f"x {cfg.head_dim} dims x {itemsize} bytes"
            )
    return " + ".join(parts)


def _families() -> dict[str, ModuleType]:
    """Hugging Face ``model_type`` -> the architecture module that reads it."""
    from maskviz.arch import gpt2, llama

    return {"gpt2": gpt2, **dict.fromkeys(llama.MODEL_TYPES, llama)}


def family(model_type: str) -> ModuleType | None:
    """The architecture module that reads Hugging Face ``model_type``, or None."""
    return _families().get(model_type)


def supported_model_types() -> Sequence[str]:
    return tuple(_families())
