"""Evidence that cached decoding computes what masked training computes, and what
breaks without the mask.

Every comparison runs the same model on the same tokens two ways and records, for
each side, the attention of every layer and head [L, H, T, T], the logits [T, V],
the keys each layer let each row see [L, T, T], its measured time and its
multiply-accumulate count:

- ``training-vs-cached``: one masked pass over the final sequence vs prefill and
  one cached step per generated token (a sliding-window layer's ring-buffer cache
  against its windowed training mask);
- ``recompute-vs-cached``: no cache, the whole prefix run again at every step;
- ``padded-vs-cached``: at every step the prefix padded to the final length. Right
  padding (``side="right"``): the pads come after, where the causal mask hides
  them. Left padding (``side="left"``): the pads come first, are masked, and the
  position ids skip them (HF's ``cumsum(attention_mask) - 1``);
- ``shifted-vs-cached``: left padding with position ids counted from the pads, the
  common bug. It differs on a model with learned absolute positions (GPT-2) and
  agrees to rounding on a rotary (RoPE) model, whose scores depend only on the
  distance between positions;
- ``unmasked-vs-cached``: one pass with no mask at all: rows see the future, so
  the two sides differ.

Costs count multiply-accumulates (MACs) of the matrix products, from each
architecture's formula (``model.config.pass_macs``); embeddings, norms and softmax
are left out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from maskviz.arch import step_macs as decode_step_macs
from maskviz.errors import as_integer, as_integers, usage_error
from maskviz.masks import PadSide
from maskviz.model import GPT, check_context, check_model
from maskviz.trace import FloatArray, Trace

Pair = Literal[
    "training-vs-cached",
    "recompute-vs-cached",
    "padded-vs-cached",
    "shifted-vs-cached",
    "unmasked-vs-cached",
]
PAIRS: tuple[Pair, ...] = get_args(Pair)


def tolerance(dtype: str, scale: float = 1.0, layers: int = 4) -> float:
    """Agreement threshold: 1024 float epsilons per 4 layers, times the size of what is
    compared.

    The two sides add the same products in a different order, so each of a few dozen
    rounding steps per layer may differ by an ulp, and each layer passes its rounding
    on to the next. ``scale``: for attention weights, the widest spread of scores in a
    row (`score_spread`), since a score's rounding error, and with it its weight's,
    grows with the score; for logits, the largest |logit| times that spread, since the
    logits carry the attention's rounding.
    """
    return 1024 * float(np.finfo(dtype).eps) * max(1.0, scale) * max(1.0, layers / 4)


def score_spread(attention: FloatArray) -> float:
    """The widest spread of attention scores in any row [..., n_q, n_k], read from the
    weights: softmax makes w_i / w_j = exp(s_i - s_j), so a row's largest score minus
    its smallest is log(max w / min w) over the keys it weighs. Keys weighed below
    one epsilon of the row's largest weight are left out: their share of the row is
    below rounding. The spread is then at most log(1 / eps): 16 in float32, 36 in float64.

    >>> w = np.exp(np.array([[0.0, -3.0, -1e3]])); score_spread(w / w.sum())
    3.0
    """
    eps = float(np.finfo(attention.dtype).eps)
    spread = 0.0
    for block in attention.reshape(-1, *attention.shape[-2:]):  # [n_q, n_k]: bounded memory
        high = block.max(axis=-1).astype(np.float64)  # [n_q]
        weighed = np.where(block >= (high * eps)[:, None], block, np.inf).min(axis=-1)
        rows = high > 0  # a row that may attend to no key has no spread
        if rows.any():
            spread = max(spread, float(np.log(high[rows] / weighed[rows]).max()))
    return spread


@dataclass(frozen=True, eq=False)  # equal only to itself: its fields are arrays
class Side:
    """One way of running the sequence."""

    name: str
    attention: FloatArray  # [L, H, T, T]
    logits: FloatArray  # [T, V]
    mask: NDArray[np.bool_]  # [L, T, T]: keys each layer let each row see
    seconds: float
    macs: int
    step_seconds: NDArray[np.float64]  # [T - P] per-step wall time (empty for one pass)
    step_macs: NDArray[np.int64]  # [T - P] per-step MACs (empty for one pass)
    choices: NDArray[np.int64]  # [T - P] greedy choice at each step


@dataclass(frozen=True, eq=False, repr=False)
class Comparison:
    """Two ways of running the same tokens, side by side: ``a`` is the pair's first name
    (training, recompute, padded, shifted or unmasked) and ``b`` always the cached run.

    ``agree`` when every attention weight and logit is within tolerance of the cached
    run's (``tolerance_attention``, ``tolerance_logits``: scaled to the dtype, the
    scores' spread and the depth) and the greedy choices are equal. ``row_diff`` [T] is
    each query row's max |Δ| over every layer and head, ``first_differing_row`` the
    first beyond tolerance (None: none), ``per_layer`` the max |Δ| of each layer.
    ``to_dict()`` is what ``maskviz compare --json`` prints.
    """

    pair: str
    dtype: str
    token_ids: NDArray[np.int64]
    prompt_len: int
    a: Side
    b: Side
    note: str = ""  # why this model gives the answer it gives, where that is not obvious
    windows: tuple[int | None, ...] = ()  # each layer's sliding window (None: full)
    labels: tuple[str, ...] = ()  # [T] each token as the model's tokenizer writes it
    model_name: str = ""

    @cached_property
    def _score_spread(self) -> float:
        return max(1.0, score_spread(self.b.attention))

    @property
    def tolerance_attention(self) -> float:
        return tolerance(self.dtype, self._score_spread, self.b.attention.shape[0])

    @property
    def tolerance_logits(self) -> float:
        # the logits carry the attention's relative rounding error, which grows with the
        # scores as the weights' does
        largest = float(np.abs(self.b.logits).max())
        return tolerance(self.dtype, largest * self._score_spread, self.b.attention.shape[0])

    @cached_property
    def _layer_row_diff(self) -> NDArray[np.float64]:
        """Max |Δ| of attention per layer and query row [L, T], over heads and keys.

        Computed once: views of every layer and head of a comparison all read it.
        """
        diff = np.abs(self.a.attention.astype(np.float64) - self.b.attention)
        out: NDArray[np.float64] = diff.max(axis=(1, 3))
        return out

    @property
    def row_diff(self) -> NDArray[np.float64]:
        """Max |Δ| of attention per query row over all layers and heads [T]."""
        out: NDArray[np.float64] = self._layer_row_diff.max(axis=0)
        return out

    @property
    def max_abs_diff_attention(self) -> float:
        return float(self.row_diff.max())

    @property
    def max_abs_diff_logits(self) -> float:
        return float(np.abs(self.a.logits.astype(np.float64) - self.b.logits).max())

    @property
    def per_layer(self) -> list[dict[str, float]]:
        return [
            {"layer": layer, "max_abs_diff_attention": float(row.max())}
            for layer, row in enumerate(self._layer_row_diff)
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

    def __repr__(self) -> str:
        verdict = "agree" if self.agree else "differ"
        return (
            f"<Comparison {self.pair}: {verdict}, {self.token_ids.shape[0]} tokens, "
            f"max |Δ| attention {self.max_abs_diff_attention:.2e}, {self.dtype}>"
        )

    def _repr_html_(self) -> str | None:
        """A notebook shows both sides, their |Δ| and the verdict, interactively."""
        from maskviz.render.html import comparison_page, repr_html

        return repr_html(lambda: comparison_page(self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "dtype": self.dtype,
            "note": self.note,
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


def _layer_masks(t: Trace, n_layer: int) -> NDArray[np.bool_]:
    return np.stack([t.layer_mask(layer) for layer in range(n_layer)])


def _rule_masks(model: GPT, n: int) -> NDArray[np.bool_]:
    """Each layer's own mask over n positions, [L, n, n]."""
    return np.stack([model.config.layer_mask(i, n).to_array() for i in range(model.config.n_layer)])


def _from_trace(model: GPT, t: Trace, step_macs: NDArray[np.int64], prefill_macs: int) -> Side:
    return Side(
        t.mode, t.attention, t.logits, _layer_masks(t, model.config.n_layer),
        t.prefill_seconds + float(t.step_seconds.sum()), prefill_macs + int(step_macs.sum()),
        t.step_seconds, step_macs, _greedy(t.logits, t.prompt_len),
    )  # fmt: skip


def _cached(model: GPT, prompt: list[int], steps: int) -> Side:
    t = model.trace(prompt, steps=steps, mode="cached")
    cfg, p = model.config, t.prompt_len
    macs = [decode_step_macs(cfg, k, cached=True) for k in range(p, t.n_tokens)]
    return _from_trace(model, t, np.array(macs, np.int64), cfg.pass_macs(p, p, p))


def _recompute(model: GPT, prompt: list[int], steps: int) -> Side:
    t = model.trace(prompt, steps=steps, mode="recompute")
    cfg, p = model.config, t.prompt_len
    macs = [decode_step_macs(cfg, k, cached=False) for k in range(p, t.n_tokens)]
    return _from_trace(model, t, np.array(macs, np.int64), cfg.pass_macs(p, p, p))


def _one_pass(model: GPT, ids: NDArray[np.int64], prompt_len: int, masked: bool) -> Side:
    n = ids.shape[0]
    t0 = time.perf_counter()
    logits, attention = model.forward(ids, "causal" if masked else None)
    seconds = time.perf_counter() - t0
    masks = _rule_masks(model, n) if masked else np.ones((model.config.n_layer, n, n), bool)
    return Side(
        "training" if masked else "unmasked", attention, logits, masks, seconds,
        model.config.pass_macs(n, n, n), np.zeros(0), np.zeros(0, np.int64),
        _greedy(logits, prompt_len),
    )  # fmt: skip


def _padded(
    model: GPT, ids: NDArray[np.int64], prompt_len: int, side: PadSide, *, shifted: bool = False
) -> Side:
    """At every step, the prefix padded to the final length n and run in one pass.

    Right: pads after the prefix (the causal mask hides them). Left: pads before it,
    never attended; position ids skip them, or, ``shifted``, count them.
    """
    cfg, n = model.config, ids.shape[0]
    pad_id = model.tokenizer.eot_id if model.tokenizer.eot_id is not None else 0
    attention = np.zeros((cfg.n_layer, cfg.n_head, n, n), model.dtype)
    logits = np.zeros((n, cfg.vocab_size), model.dtype)
    step_seconds, step_macs = [], []
    t_start = time.perf_counter()
    for last in range(prompt_len - 1, n):
        real = last + 1
        first = 0 if last == prompt_len - 1 else last  # the first pass fills the prompt rows
        t0 = time.perf_counter()
        if side == "right":
            row_ids = np.full(n, pad_id, np.int64)
            row_ids[:real] = ids[:real]
            row_logits, row_att = model.forward(row_ids)
            logits[first:real] = row_logits[first:real]
            attention[:, :, first:real] = row_att[:, :, first:real]
        else:
            pads = n - real
            row_ids = np.concatenate([np.full(pads, pad_id, np.int64), ids[:real]])
            padded = np.arange(n) < pads
            # HF's position_ids = cumsum(attention_mask) - 1: pads at 0, real tokens 0..
            positions = np.arange(n) if shifted else np.maximum(np.cumsum(~padded) - 1, 0)
            row_logits, row_att = model.forward(row_ids, positions=positions, padded=padded)
            logits[first:real] = row_logits[pads + first :]
            attention[:, :, first:real, :real] = row_att[:, :, pads + first :, pads:]
        if last >= prompt_len:
            step_seconds.append(time.perf_counter() - t0)
            step_macs.append(cfg.pass_macs(n, n, n))
    seconds = time.perf_counter() - t_start
    name = "shifted" if shifted else {"right": "padded", "left": "left-padded"}[side]
    return Side(
        name, attention, logits, _rule_masks(model, n), seconds, cfg.pass_macs(n, n, n) * (n - prompt_len + 1),
        np.array(step_seconds), np.array(step_macs, np.int64), _greedy(logits, prompt_len),
    )  # fmt: skip


def compare(
    model: GPT,
    pair: Pair,
    prompt: Sequence[int] | NDArray[np.integer[Any]],
    steps: int,
    *,
    side: PadSide = "right",
) -> Comparison:
    """Run ``pair`` (one of `PAIRS`) on ``prompt`` + ``steps`` greedy tokens.

    ``side`` chooses where ``padded-vs-cached`` pads (``shifted-vs-cached`` always pads
    on the left).

    >>> from maskviz import GPTConfig, random_model
    >>> m = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
    >>> compare(m, "training-vs-cached", [1, 2, 3], 5).agree
    True
    >>> c = compare(m, "unmasked-vs-cached", [1, 2, 3], 5)
    >>> c.agree, c.first_differing_row
    (False, 0)
    >>> compare(m, "padded-vs-cached", [1, 2, 3], 5, side="left").agree
    True
    >>> compare(m, "shifted-vs-cached", [1, 2, 3], 5).agree  # learned positions shift
    False
    """
    check_model(model, "compare")
    if pair not in PAIRS:
        raise usage_error(f"unknown comparison {pair!r}; choose from {', '.join(PAIRS)}")
    if side not in ("left", "right"):
        raise usage_error(f"side must be 'left' or 'right', got {side!r}")
    if as_integer(steps, "steps") < 1:
        raise usage_error(f"steps must be >= 1, got {steps}")
    prompt = as_integers(prompt, "prompt token ids")
    check_context(len(prompt), steps, model.config.n_ctx, min_steps=1)
    cached = _cached(model, prompt, steps)
    ids = np.asarray([*prompt, *cached.choices.tolist()], np.int64)  # greedy: the generated tokens
    p = len(prompt)
    if pair == "training-vs-cached":
        other = _one_pass(model, ids, p, masked=True)
    elif pair == "unmasked-vs-cached":
        other = _one_pass(model, ids, p, masked=False)
    elif pair == "recompute-vs-cached":
        other = _recompute(model, prompt, steps)
    elif pair == "shifted-vs-cached":
        other = _padded(model, ids, p, "left", shifted=True)
    else:
        other = _padded(model, ids, p, side)
    if other.logits.shape[0] != cached.logits.shape[0]:
        # generation stopped early on one side only (end-of-text): rows would not pair up
        raise usage_error("the two sides generated different lengths; try fewer steps")
    labels = tuple(model.tokenizer.token_label(int(i)) for i in ids)
    result = Comparison(
        pair, model.dtype, ids, p, other, cached, windows=model.config.windows, labels=labels,
        model_name=model.name,
    )  # fmt: skip
    return replace(result, note=_why(result, model))


def _why(result: Comparison, model: GPT) -> str:
    """For shifted-vs-cached, why the shift changes this model's answer or not; said
    only when the verdict is the one its kind of positions predicts."""
    if result.pair != "shifted-vs-cached":
        return ""
    learned = model.config.position_encoding == "learned"
    if learned and not result.agree:
        return (
            "why: this model learned one embedding per absolute position (wpe); counted "
            "from the pads, every token gets another position's embedding"
        )
    if not learned and result.agree:
        return (
            "why: this model's positions are rotary: a score depends only on the distance "
            "between query and key, which shifting every position by the pads keeps"
        )
    return ""
