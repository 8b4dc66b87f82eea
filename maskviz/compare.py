"""Evidence that cached decoding computes what masked training computes, and what
breaks without the mask.

Every comparison runs the same model on the same tokens two ways and records, for
each side, the attention of every layer and head [L, H, T, T], the logits [T, V],
the mask it used [T, T], its measured time and its multiply-accumulate count:

- ``training-vs-cached``: one causal pass over the final sequence vs prefill and
  one cached step per generated token;
- ``recompute-vs-cached``: no cache, the whole prefix run again at every step;
- ``padded-vs-cached``: at every step the prefix padded after its end to the final
  length, causal mask: the padding never reaches a row that matters;
- ``unmasked-vs-cached``: one pass with no mask at all: every row but the last sees
  the future, so the two sides differ.

Costs count multiply-accumulates (MACs) of the matrix products, per layer and
token: 12 C^2 for the projections (q|k|v 3 C^2, output C^2, MLP 8 C^2) plus 2 C n_k
for attention over n_k keys (scores and weighted sum), and V C per logits row.
Embeddings, layer norms and softmax are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from maskviz.errors import usage_error
from maskviz.masks import causal
from maskviz.model import GPT, GPTConfig
from maskviz.trace import FloatArray

Pair = Literal[
    "training-vs-cached", "recompute-vs-cached", "padded-vs-cached", "unmasked-vs-cached"
]
PAIRS: tuple[Pair, ...] = (
    "training-vs-cached",
    "recompute-vs-cached",
    "padded-vs-cached",
    "unmasked-vs-cached",
)


def pass_macs(cfg: GPTConfig, n_queries: int, n_keys: int, logits_rows: int) -> int:
    """MACs of one pass: ``n_queries`` new tokens attending to ``n_keys`` keys each.

    >>> pass_macs(GPTConfig(1, 1, 2, 8, 3), n_queries=1, n_keys=4, logits_rows=1)
    70
    """
    c = cfg.n_embd
    return (
        cfg.n_layer * (12 * c * c * n_queries + 2 * c * n_queries * n_keys)
        + cfg.vocab_size * c * logits_rows
    )


def cached_macs(cfg: GPTConfig, prompt_len: int, total: int) -> int:
    """Prefill (P queries x P keys, P logits rows) plus one step per later token."""
    steps = sum(pass_macs(cfg, 1, t + 1, 1) for t in range(prompt_len, total))
    return pass_macs(cfg, prompt_len, prompt_len, prompt_len) + steps


def tolerance(dtype: str, scale: float = 1.0) -> float:
    """Agreement threshold: 1024 float epsilons of the largest magnitude compared.

    The two sides add the same products in a different order, so each of a few dozen
    rounding steps per layer may differ by an ulp; 1024 eps leaves room for deep
    models while staying 1e4 times below what a missing mask changes.
    """
    return 1024 * float(np.finfo(dtype).eps) * max(1.0, scale)


@dataclass(frozen=True)
class Side:
    """One way of running the sequence."""

    name: str
    attention: FloatArray  # [L, H, T, T]
    logits: FloatArray  # [T, V]
    mask: NDArray[np.bool_]  # [T, T]: keys each row could see
    seconds: float
    macs: int
    step_seconds: NDArray[np.float64]  # [T - P] per-step wall time (empty for one pass)
    step_macs: NDArray[np.int64]  # [T - P] per-step MACs (empty for one pass)
    choices: NDArray[np.int64]  # [T - P] greedy choice at each step


@dataclass(frozen=True)
class Comparison:
    pair: str
    dtype: str
    token_ids: NDArray[np.int64]
    prompt_len: int
    a: Side
    b: Side

    @property
    def tolerance_attention(self) -> float:
        return tolerance(self.dtype)

    @property
    def tolerance_logits(self) -> float:
        return tolerance(self.dtype, float(np.abs(self.b.logits).max()))

    @property
    def row_diff(self) -> NDArray[np.float64]:
        """Max |Δ| of attention per query row over all layers and heads [T]."""
        diff = np.abs(self.a.attention.astype(np.float64) - self.b.attention)
        out: NDArray[np.float64] = diff.max(axis=(0, 1, 3))
        return out

    @property
    def max_abs_diff_attention(self) -> float:
        return float(self.row_diff.max())

    @property
    def max_abs_diff_logits(self) -> float:
        return float(np.abs(self.a.logits.astype(np.float64) - self.b.logits).max())

    @property
    def per_layer(self) -> list[dict[str, float]]:
        diff = np.abs(self.a.attention.astype(np.float64) - self.b.attention)
        return [
            {"layer": layer, "max_abs_diff_attention": float(diff[layer].max())}
            for layer in range(diff.shape[0])
        ]

    @property
    def first_differing_row(self) -> int | None:
        rows = np.flatnonzero(self.row_diff > self.tolerance_attention)
        return None if rows.size == 0 else int(rows[0])

    @property
    def tokens_agree(self) -> bool:
        return bool(np.array_equal(self.a.choices, self.b.choices))

    @property
    def agree(self) -> bool:
        return (
            self.max_abs_diff_attention <= self.tolerance_attention
            and self.max_abs_diff_logits <= self.tolerance_logits
            and self.tokens_agree
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "dtype": self.dtype,
            "tolerance": {"attention": self.tolerance_attention, "logits": self.tolerance_logits},
            "agree": self.agree,
            "max_abs_diff_attention": self.max_abs_diff_attention,
            "max_abs_diff_logits": self.max_abs_diff_logits,
            "first_differing_row": self.first_differing_row,
            "next_token_agreement": self.tokens_agree,
            "per_layer": self.per_layer,
            "token_ids": self.token_ids.tolist(),
            "prompt_len": self.prompt_len,
            "cost": {
                "macs_a": self.a.macs,
                "macs_b": self.b.macs,
                "seconds_a": self.a.seconds,
                "seconds_b": self.b.seconds,
                "step_seconds_a": self.a.step_seconds.tolist(),
                "step_seconds_b": self.b.step_seconds.tolist(),
            },
        }


def _greedy(logits: FloatArray, prompt_len: int) -> NDArray[np.int64]:
    # the choice made at each step: argmax of the row before each generated token
    choices: NDArray[np.int64] = np.argmax(logits[prompt_len - 1 : -1], axis=-1).astype(np.int64)
    return choices


def _cached(model: GPT, prompt: list[int], steps: int) -> Side:
    t = model.trace(prompt, steps=steps, mode="cached")
    n = t.n_tokens
    return Side(
        "cached", t.attention, t.logits, t.mask, t.prefill_seconds + float(t.step_seconds.sum()),
        cached_macs(model.config, t.prompt_len, n), t.step_seconds,
        np.array([pass_macs(model.config, 1, k + 1, 1) for k in range(t.prompt_len, n)], np.int64),
        _greedy(t.logits, t.prompt_len),
    )  # fmt: skip


def _one_pass(model: GPT, ids: NDArray[np.int64], prompt_len: int, masked: bool) -> Side:
    n = ids.shape[0]
    mask = causal(n).to_array() if masked else np.ones((n, n), dtype=bool)
    t0 = time.perf_counter()
    logits, attention = model.forward(ids, mask if masked else None)
    seconds = time.perf_counter() - t0
    name = "training" if masked else "unmasked"
    return Side(
        name, attention, logits, mask, seconds, pass_macs(model.config, n, n, n),
        np.zeros(0), np.zeros(0, np.int64), _greedy(logits, prompt_len),
    )  # fmt: skip


def _recompute(model: GPT, prompt: list[int], steps: int) -> Side:
    t = model.trace(prompt, steps=steps, mode="recompute")
    cfg, p, n = model.config, t.prompt_len, t.n_tokens
    # the whole prefix again, but only its last row of logits (what the next token needs)
    step_macs = np.array([pass_macs(cfg, k + 1, k + 1, 1) for k in range(p, n)], np.int64)
    return Side(
        "recompute", t.attention, t.logits, t.mask, t.prefill_seconds + float(t.step_seconds.sum()),
        pass_macs(cfg, p, p, p) + int(step_macs.sum()), t.step_seconds, step_macs, _greedy(t.logits, p),
    )  # fmt: skip


def _padded(model: GPT, ids: NDArray[np.int64], prompt_len: int, pad_id: int) -> Side:
    """Every step runs the prefix padded to the final length L with ``pad_id`` after it."""
    cfg, n = model.config, ids.shape[0]
    attention = np.zeros((cfg.n_layer, cfg.n_head, n, n), model.dtype)
    logits = np.zeros((n, cfg.vocab_size), model.dtype)
    mask = causal(n).to_array()
    step_seconds, step_macs = [], []
    t_start = time.perf_counter()
    for last in range(prompt_len - 1, n):
        padded = np.full(n, pad_id, np.int64)
        padded[: last + 1] = ids[: last + 1]
        t0 = time.perf_counter()
        row_logits, row_att = model.forward(padded, mask)
        first = 0 if last == prompt_len - 1 else last  # the first pass fills the prompt rows
        logits[first : last + 1] = row_logits[first : last + 1]
        attention[:, :, first : last + 1] = row_att[:, :, first : last + 1]
        if last >= prompt_len:
            step_seconds.append(time.perf_counter() - t0)
            step_macs.append(pass_macs(cfg, n, n, n))
    seconds = time.perf_counter() - t_start
    return Side(
        "padded", attention, logits, mask, seconds, pass_macs(cfg, n, n, n) * (n - prompt_len + 1),
        np.array(step_seconds), np.array(step_macs, np.int64), _greedy(logits, prompt_len),
    )  # fmt: skip


def compare(model: GPT, pair: str, prompt: list[int], steps: int) -> Comparison:
    """Run ``pair`` (one of `PAIRS`) on ``prompt`` + ``steps`` greedy tokens.

    >>> from maskviz import GPTConfig, random_model
    >>> m = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
    >>> compare(m, "training-vs-cached", [1, 2, 3], 5).agree
    True
    >>> c = compare(m, "unmasked-vs-cached", [1, 2, 3], 5)
    >>> c.agree, c.first_differing_row
    (False, 0)
    """
    if pair not in PAIRS:
        raise usage_error(f"unknown comparison {pair!r}; choose from {', '.join(PAIRS)}")
    if steps < 1:
        raise usage_error(f"steps must be >= 1, got {steps}")
    if len(prompt) + steps > model.config.n_ctx:
        raise usage_error(
            f"the prompt ({len(prompt)} tokens) plus {steps} steps exceeds the model's context of "
            f"{model.config.n_ctx} tokens"
        )
    cached = _cached(model, prompt, steps)
    ids = np.asarray([*prompt, *cached.choices.tolist()], np.int64)  # greedy: the generated tokens
    p = len(prompt)
    if pair == "training-vs-cached":
        other = _one_pass(model, ids, p, masked=True)
    elif pair == "unmasked-vs-cached":
        other = _one_pass(model, ids, p, masked=False)
    elif pair == "recompute-vs-cached":
        other = _recompute(model, prompt, steps)
    else:
        pad = model.tokenizer.eot_id if model.tokenizer.eot_id is not None else 0
        other = _padded(model, ids, p, pad)
    if other.logits.shape[0] != cached.logits.shape[0]:
        # generation stopped early on one side (end-of-text): compare the common part
        raise usage_error("the two sides generated different lengths; try fewer --steps")
    return Comparison(pair, model.dtype, ids, p, other, cached)
