"""A GPT-2 in NumPy that runs a sequence two ways and records what attention did.

- training mode: the whole sequence in one pass, the causal mask applied to the
  T x T scores;
- cached inference: a prefill pass over the prompt, then one query per step
  against the keys and values held in a KV cache, with no mask at all.

Names follow the GPT-2 checkpoint (wte, wpe, ln_1, c_attn, c_proj, ln_2, c_fc,
ln_f); Linear weights are stored (in, out). Everything stays in the model's
dtype: constants are Python floats, which NumPy 2 never uses to promote arrays.

>>> import maskviz
>>> model = maskviz.random_model(maskviz.GPTConfig(2, 2, 16, 32, 50), seed=0)
>>> cached = model.trace([1, 2, 3], steps=4)
>>> training = model.trace([1, 2, 3], steps=4, mode="training")
>>> bool((cached.token_ids == training.token_ids).all())
True
>>> bool(np.abs(cached.logits - training.logits).max() < 1e-5)
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from maskviz.errors import MaskvizError, usage_error
from maskviz.masks import causal
from maskviz.tokenizer import ByteTokenizer, Tokenizer, check_ids
from maskviz.trace import Trace

FloatArray = NDArray[np.floating[Any]]
DType = Literal["float32", "float64"]
Mode = Literal["cached", "training", "recompute"]
DTYPES: tuple[DType, ...] = ("float32", "float64")


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

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "n_ctx", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise usage_error(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise usage_error(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not self.layer_norm_epsilon > 0:
            raise usage_error(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Parameters, counting the tied output projection once."""
        c, v = self.n_embd, self.vocab_size
        per_block = (
            4 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c)
        )
        return v * c + self.n_ctx * c + self.n_layer * per_block + 2 * c

    def describe(self) -> str:
        return (
            f"{self.n_layer} layers, {self.n_head} heads, width {self.n_embd}, "
            f"context {self.n_ctx}, vocabulary {self.vocab_size}"
        )


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
    wte: FloatArray  # [vocab, C] (a GPT keeps its output head column-major: _decoding_layout)
    wpe: FloatArray  # [n_ctx, C]
    blocks: list[Block]
    ln_f_w: FloatArray  # [C]
    ln_f_b: FloatArray  # [C]
    lm_head: FloatArray | None = None  # [vocab, C]; None = tied to wte

    def astype(self, dtype: DType) -> Weights:
        def cast(a: FloatArray) -> FloatArray:
            if a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous:
                return np.asfortranarray(a, dtype=dtype)  # keep a decoding layout
            return np.ascontiguousarray(a, dtype=dtype)

        blocks = [Block(**{k: cast(v) for k, v in vars(b).items()}) for b in self.blocks]
        head = None if self.lm_head is None else cast(self.lm_head)
        return Weights(
            cast(self.wte), cast(self.wpe), blocks, cast(self.ln_f_w), cast(self.ln_f_b), head
        )

    @property
    def nbytes(self) -> int:
        arrays = [self.wte, self.wpe, self.ln_f_w, self.ln_f_b]
        arrays += [a for b in self.blocks for a in vars(b).values()]
        if self.lm_head is not None:
            arrays.append(self.lm_head)
        return sum(a.nbytes for a in arrays)


def _decoding_layout(w: Weights) -> Weights:
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
    ``weights`` (the tied head is still ``weights.wte``), so edits reach the model.
    """
    if w.lm_head is None:
        w.wte = np.asfortranarray(w.wte)
    else:
        w.lm_head = np.asfortranarray(w.lm_head)
    for block in w.blocks:
        block.attn_c_proj_w = np.asfortranarray(block.attn_c_proj_w)
        block.mlp_c_proj_w = np.asfortranarray(block.mlp_c_proj_w)
    return w


# ---------------------------------------------------------------- the math


def layer_norm(x: FloatArray, w: FloatArray, b: FloatArray, eps: float) -> FloatArray:
    # [n, C] -> [n, C]. ufunc reductions rather than .mean(): a decoding step runs this
    # 2 L + 1 times on one row, where .mean()'s Python-level overhead is most of the cost.
    inv_c = 1.0 / x.shape[-1]
    xc: FloatArray = x - np.add.reduce(x, axis=-1, keepdims=True) * inv_c
    var = np.add.reduce(np.square(xc), axis=-1, keepdims=True)
    var *= inv_c
    var += eps
    np.sqrt(var, out=var)
    xc /= var
    xc *= w
    xc += b
    return xc


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu(x: FloatArray) -> FloatArray:
    """GPT-2's GELU, tanh form ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return gelu_(np.array(x, copy=True), None)


def gelu_(x: FloatArray, bias: FloatArray | None) -> FloatArray:
    """`gelu` of ``x + bias`` computed in ``x`` (a temporary the caller owns), one more buffer."""
    if bias is not None:
        x += bias
    t: FloatArray = np.square(x)
    t *= 0.044715
    t += 1.0
    t *= x
    t *= _GELU_C
    np.tanh(t, out=t)
    t += 1.0
    x *= t
    x *= 0.5
    return x


def masked_softmax(scores: FloatArray, mask: NDArray[np.bool_] | None) -> FloatArray:
    """Softmax over the last axis where ``mask`` allows; exactly 0 where it does not.

    A row with no allowed key is all zeros (never NaN): there is nothing to attend to.

    >>> s = np.zeros((2, 2), np.float32)
    >>> masked_softmax(s, np.array([[True, False], [False, False]]))
    array([[1., 0.],
           [0., 0.]], dtype=float32)
    """
    return _softmax_(np.array(scores, copy=True), mask)


def _softmax_(scores: FloatArray, mask: NDArray[np.bool_] | None) -> FloatArray:
    """`masked_softmax` computed in place in ``scores`` (a temporary the caller owns)."""
    if mask is not None:
        np.copyto(scores, -np.inf, where=~mask)  # masked keys: exp(-inf) is exactly 0
    row_max = np.maximum.reduce(scores, axis=-1, keepdims=True)
    if mask is not None:
        row_max[~np.isfinite(row_max)] = 0.0  # a row with no allowed key: -inf - 0, no NaN
    scores -= row_max
    np.exp(scores, out=scores)
    total = np.add.reduce(scores, axis=-1, keepdims=True)
    if mask is not None:
        total[total == 0] = 1.0
    scores /= total
    return scores


def attention(
    q: FloatArray, k: FloatArray, v: FloatArray, mask: NDArray[np.bool_] | None
) -> tuple[FloatArray, FloatArray]:
    """softmax(q k^T / sqrt(d) + mask) v for every head.

    q [H, n_q, d], k [H, n_k, d], v [H, n_k, d], mask [n_q, n_k] or None
    -> output [H, n_q, d], weights [H, n_q, n_k]
    """
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 2, 1)  # [H, n_q, n_k]
    weights = _softmax_(scores, mask)
    return weights @ v, weights


class KVCache:
    """Keys and values of every position seen so far, allocated once per sequence.

    ``k`` and ``v`` are [n_layer, n_head, capacity, head_dim]; the first ``length``
    positions are filled.
    """

    def __init__(self, config: GPTConfig, capacity: int, dtype: DType) -> None:
        shape = (config.n_layer, config.n_head, capacity, config.head_dim)
        self.k: FloatArray = np.zeros(shape, dtype)
        self.v: FloatArray = np.zeros(shape, dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return int(self.k.shape[2])

    @property
    def nbytes(self) -> int:
        """Bytes allocated for keys and values."""
        return int(self.k.nbytes + self.v.nbytes)

    @property
    def used_bytes(self) -> int:
        """Bytes holding filled positions."""
        return self.nbytes * self.length // max(self.capacity, 1)


# ---------------------------------------------------------------- the model


@dataclass
class _Record:
    """Where a pass writes the attention weights it computed, if anywhere."""

    layers: NDArray[np.int64]
    heads: NDArray[np.int64]
    out: FloatArray | None  # [L', H', T, T]
    rows: slice = field(default_factory=lambda: slice(0, 0))  # query rows this pass fills
    # (the pass's last ``rows.stop - rows.start`` queries; slices always have start and stop)


class GPT:
    """A GPT-2 model: config, weights in a chosen dtype, and a tokenizer."""

    def __init__(
        self,
        config: GPTConfig,
        weights: Weights,
        tokenizer: Tokenizer,
        *,
        name: str,
        dtype: DType = "float32",
    ) -> None:
        if dtype not in DTYPES:
            raise usage_error(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.config = config
        self.tokenizer = tokenizer
        self.name = name
        self.dtype: DType = dtype
        w = _decoding_layout(weights.astype(dtype))
        self.weights = w
        head = w.lm_head if w.lm_head is not None else w.wte
        self._head_t = head.T  # [C, vocab] C-contiguous view: logits = x @ wte.T (tied)

    def __repr__(self) -> str:
        return f"GPT({self.name!r}, {self.config.describe()}, {self.dtype})"

    # -- one pass over new tokens -------------------------------------------------

    def _pass(
        self,
        ids: NDArray[np.int64],
        *,
        cache: KVCache | None,
        mask: NDArray[np.bool_] | None,
        record: _Record | None,
        last_logits_only: bool = False,
    ) -> FloatArray:
        """Run ``n`` new tokens; return their logits [n, vocab] (or [1, vocab])."""
        hidden = self._hidden(ids, cache=cache, mask=mask, record=record)
        if last_logits_only:
            hidden = hidden[-1:]  # only the last position's logits are needed while decoding
        logits: FloatArray = hidden @ self._head_t  # [n, vocab]
        return logits

    def _hidden(
        self,
        ids: NDArray[np.int64],
        *,
        cache: KVCache | None,
        mask: NDArray[np.bool_] | None,
        record: _Record | None,
    ) -> FloatArray:
        """The final hidden states ln_f(x) [n, C] of ``n`` new tokens.

        With a cache the tokens sit at positions cache.length.. and attend to every
        cached key plus the new ones (``mask`` [n, past + n] or None for no mask).
        """
        cfg, w = self.config, self.weights
        n = ids.shape[0]
        past = 0 if cache is None else cache.length
        c, h_, d, eps = cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.layer_norm_epsilon
        x: FloatArray = w.wte[ids]  # [n, C]: a fresh copy (fancy indexing), updated in place
        x += w.wpe[past : past + n]
        slots, heads = _record_plan(record, h_)
        k: FloatArray
        v: FloatArray
        for layer, blk in enumerate(w.blocks):
            qkv = layer_norm(x, blk.ln_1_w, blk.ln_1_b, eps) @ blk.c_attn_w
            qkv += blk.c_attn_b  # [n, 3C]: q | k | v, each H blocks of d
            split = qkv.reshape(n, 3, h_, d).transpose(1, 2, 0, 3)  # [3, H, n, d] view
            q, k, v = split[0], split[1], split[2]
            if cache is not None:
                cache.k[layer, :, past : past + n] = k
                cache.v[layer, :, past : past + n] = v
                k = cache.k[layer, :, : past + n]  # [H, past + n, d]
                v = cache.v[layer, :, : past + n]
            out, weights = attention(q, k, v, mask)  # [H, n, d], [H, n, past + n]
            slot = slots.get(layer)
            if slot is not None:
                assert record is not None and record.out is not None
                rows = record.rows.stop - record.rows.start  # the last `rows` queries are kept
                chosen = weights if rows == n else weights[:, n - rows :]
                if heads is not None:
                    chosen = chosen[heads]
                record.out[slot, :, record.rows, : past + n] = chosen
            y = out.transpose(1, 0, 2).reshape(n, c) @ blk.attn_c_proj_w
            y += blk.attn_c_proj_b
            x += y
            hid = gelu_(layer_norm(x, blk.ln_2_w, blk.ln_2_b, eps) @ blk.c_fc_w, blk.c_fc_b)
            y = hid @ blk.mlp_c_proj_w
            y += blk.mlp_c_proj_b
            x += y
        if cache is not None:
            cache.length = past + n
        return layer_norm(x, w.ln_f_w, w.ln_f_b, cfg.layer_norm_epsilon)

    def forward(
        self,
        token_ids: Sequence[int] | NDArray[np.integer[Any]],
        mask: NDArray[np.bool_] | Literal["causal"] | None = "causal",
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """One pass over the whole sequence (training mode), no cache.

        ``mask`` is "causal" (default), a bool array [T, T], or None for no mask at
        all. Returns logits [T, vocab] and attention [L', H', T, T].
        """
        hidden, attention = self.forward_hidden(token_ids, mask, layers=layers, heads=heads)
        logits: FloatArray = hidden @ self._head_t  # [T, vocab]
        return logits, attention

    def forward_hidden(
        self,
        token_ids: Sequence[int] | NDArray[np.integer[Any]],
        mask: NDArray[np.bool_] | Literal["causal"] | None = "causal",
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Like `forward`, but returns the final hidden states ln_f(x) [T, C] (what the
        output head reads) instead of the logits, with the attention [L', H', T, T]."""
        ids = self._ids(token_ids)
        n = ids.shape[0]
        if isinstance(mask, str):
            mask = causal(n).to_array()
        elif mask is not None and mask.shape != (n, n):
            raise usage_error(f"mask must be [{n}, {n}], got {list(mask.shape)}")
        rec = self._record(n, layers, heads, None)
        rec.rows = slice(0, n)
        hidden = self._hidden(ids, cache=None, mask=mask, record=rec)
        assert rec.out is not None
        return hidden, rec.out

    def final_hidden(self, token_ids: Sequence[int] | NDArray[np.integer[Any]]) -> FloatArray:
        """Final hidden states ln_f(x) [T, C] of one causal pass, recording nothing."""
        return self.forward_hidden(token_ids, layers=[])[0]

    # -- recorded runs -----------------------------------------------------------

    def trace(
        self,
        token_ids: Sequence[int] | NDArray[np.integer[Any]],
        steps: int = 0,
        mode: Mode = "cached",
        record: bool = True,
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        record_dtype: str | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> Trace:
        """Generate ``steps`` tokens after the prompt and record what attention did.

        mode "cached": prefill with the causal mask, then one cached step per token;
        "training": generate, then run the final sequence in one masked pass;
        "recompute": no cache, the whole prefix is run again at every step.
        Decoding is greedy unless ``temperature`` > 0 (then sampled, optionally from
        the ``top_k`` most likely tokens, reproducibly for a given ``seed``). It stops
        after ``steps`` tokens, after an end-of-text token, or at the context limit.
        Every position gets its attention row and logits.
        """
        ids = self._ids(token_ids)
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise usage_error(f"steps must be an integer >= 0, got {steps!r}")
        if mode not in ("cached", "training", "recompute"):
            raise usage_error(f"mode must be 'cached', 'training' or 'recompute', got {mode!r}")
        if temperature < 0 or not math.isfinite(temperature):
            raise usage_error(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise usage_error(f"top_k must be >= 1, got {top_k}")
        p = ids.shape[0]
        capacity = min(p + steps, self.config.n_ctx)
        rng = np.random.default_rng(seed)
        choose = _Chooser(temperature, top_k, rng)
        if mode == "training":
            gen = self.trace(
                ids, steps, "cached", False, temperature=temperature, top_k=top_k, seed=seed
            )
            full = gen.token_ids
            t0 = time.perf_counter()
            rec = self._record(full.shape[0], layers if record else [], heads, record_dtype)
            rec.rows = slice(0, full.shape[0])
            mask = causal(full.shape[0]).to_array()
            logits = self._pass(full, cache=None, mask=mask, record=rec)
            assert rec.out is not None
            return self._trace(
                full,
                p,
                logits,
                rec,
                mode,
                time.perf_counter() - t0,
                np.zeros(0),
                0,
                gen.stop_reason,
            )
        rec = self._record(capacity, layers if record else [], heads, record_dtype)
        all_ids = np.zeros(capacity, np.int64)
        all_ids[:p] = ids
        logits_out = np.zeros((capacity, self.config.vocab_size), self.dtype)
        cache = KVCache(self.config, capacity, self.dtype) if mode == "cached" else None
        t0 = time.perf_counter()
        rec.rows = slice(0, p)
        logits_out[:p] = self._pass(ids, cache=cache, mask=causal(p).to_array(), record=rec)
        prefill_seconds = time.perf_counter() - t0
        step_seconds: list[float] = []
        t, stop = p, "steps"
        eot = self.tokenizer.eot_id
        while t < p + steps:
            if t >= self.config.n_ctx:
                stop = "context"
                break
            t0 = time.perf_counter()
            all_ids[t] = choose(logits_out[t - 1])
            rec.rows = slice(t, t + 1)
            if cache is not None:
                # one query against the cache: nothing to mask, the cache holds only the past
                new = all_ids[t : t + 1]
                logits_out[t] = self._pass(new, cache=cache, mask=None, record=rec)[0]
            else:
                # no cache: run the whole prefix again and keep only its last row
                logits_out[t] = self._recompute_row(all_ids[: t + 1], rec)
            step_seconds.append(time.perf_counter() - t0)
            t += 1
            if eot is not None and int(all_ids[t - 1]) == eot:
                stop = "end_of_text"
                break
        n = t
        if rec.out is not None and n < capacity:
            rec.out = np.ascontiguousarray(rec.out[:, :, :n, :n])
        kv_bytes = 0 if cache is None else cache.nbytes
        return self._trace(
            all_ids[:n],
            p,
            logits_out[:n],
            rec,
            mode,
            prefill_seconds,
            np.array(step_seconds),
            kv_bytes,
            stop,
        )

    def _recompute_row(self, prefix: NDArray[np.int64], rec: _Record) -> FloatArray:
        n = prefix.shape[0]
        last = _Record(rec.layers, rec.heads, rec.out, slice(n - 1, n))  # keep the last row only
        logits = self._pass(
            prefix, cache=None, mask=causal(n).to_array(), record=last, last_logits_only=True
        )
        row: FloatArray = logits[0]
        return row

    def _trace(
        self,
        ids: NDArray[np.int64],
        prompt_len: int,
        logits: FloatArray,
        rec: _Record,
        mode: str,
        prefill_seconds: float,
        step_seconds: NDArray[np.float64],
        kv_bytes: int,
        stop: str,
    ) -> Trace:
        n = ids.shape[0]
        assert rec.out is not None
        return Trace(
            token_ids=ids.astype(np.int64),
            prompt_len=prompt_len,
            logits=logits,
            attention=rec.out,
            mask=causal(n).to_array(),
            mode=mode,
            layers=rec.layers,
            heads=rec.heads,
            model_name=self.name,
            dtype=self.dtype,
            step_seconds=step_seconds.astype(np.float64),
            prefill_seconds=float(prefill_seconds),
            kv_cache_bytes=int(kv_bytes),
            stop_reason=stop,
        )

    # -- helpers -------------------------------------------------------------------

    def _ids(self, token_ids: Sequence[int] | NDArray[np.integer[Any]]) -> NDArray[np.int64]:
        try:
            ids = [int(i) for i in token_ids]
        except (TypeError, ValueError):
            raise usage_error("token ids must be integers") from None
        check_ids(ids, self.config.vocab_size)
        if len(ids) > self.config.n_ctx:
            raise usage_error(
                f"the prompt has {len(ids)} tokens but the model's context is {self.config.n_ctx}"
            )
        return np.asarray(ids, dtype=np.int64)

    def _record(
        self,
        n: int,
        layers: Sequence[int] | None,
        heads: Sequence[int] | None,
        record_dtype: str | None,
    ) -> _Record:
        cfg = self.config
        lay = _select("layer", layers, cfg.n_layer)
        hd = _select("head", heads, cfg.n_head)
        dtype = record_dtype or self.dtype
        if dtype not in ("float16", "float32", "float64"):
            raise usage_error(f"record_dtype must be float16, float32 or float64, got {dtype!r}")
        return _Record(lay, hd, np.zeros((lay.size, hd.size, n, n), dtype))


def _record_plan(
    record: _Record | None, n_head: int
) -> tuple[dict[int, int], NDArray[np.int64] | None]:
    """Which layers a pass records (layer -> slot in ``record.out``) and which heads.

    Heads are None when all are recorded in order, so no head selection copy is made.
    """
    if record is None or record.out is None or record.out.size == 0:
        return {}, None
    slots = {int(layer): i for i, layer in enumerate(record.layers)}
    all_heads = np.array_equal(record.heads, np.arange(n_head))
    return slots, None if all_heads else record.heads


def _select(what: str, chosen: Sequence[int] | None, count: int) -> NDArray[np.int64]:
    if chosen is None:
        return np.arange(count, dtype=np.int64)
    out = np.asarray([int(c) for c in chosen], dtype=np.int64)
    bad = out[(out < 0) | (out >= count)]
    if bad.size:
        raise usage_error(
            f"{what} {int(bad[0])} is out of range: the model has {count} {what}s (0..{count - 1})"
        )
    if np.unique(out).size != out.size:
        raise usage_error(f"{what}s must not repeat")
    return out


class _Chooser:
    """Greedy choice, or seeded sampling with temperature and top-k."""

    def __init__(self, temperature: float, top_k: int | None, rng: np.random.Generator) -> None:
        self.temperature, self.top_k, self.rng = temperature, top_k, rng

    def __call__(self, logits: FloatArray) -> int:
        if self.temperature == 0:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / self.temperature
        if self.top_k is not None and self.top_k < z.size:
            cut = np.partition(z, -self.top_k)[-self.top_k]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z - z.max())
        return int(self.rng.choice(z.size, p=p / p.sum()))


def random_model(
    config: GPTConfig, seed: int = 0, dtype: DType = "float32", *, name: str | None = None
) -> GPT:
    """A model with deterministic random weights (for tests and benchmarks).

    Weights are scaled so that activations stay of order one and attention is not
    uniform. The tokenizer is byte-level when the vocabulary has 257 entries or
    more, else ids are their own labels.

    >>> m = random_model(GPTConfig(1, 1, 8, 16, 20), seed=1)
    >>> m.trace([3, 4], steps=2).token_ids.shape
    (4,)
    """
    rng = np.random.default_rng(seed)
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
    weights = Weights(
        wte=rng.standard_normal((config.vocab_size, c)) * 0.5,
        wpe=rng.standard_normal((config.n_ctx, c)) * 0.5,
        blocks=blocks,
        ln_f_w=vec(c, 1.0),
        ln_f_b=vec(c),
    )
    tokenizer: Tokenizer = (
        ByteTokenizer() if config.vocab_size >= 257 else _IdTokenizer(config.vocab_size)
    )
    return GPT(config, weights, tokenizer, name=name or f"random(seed={seed})", dtype=dtype)


class _IdTokenizer:
    """Token ids written as numbers: for random models with small vocabularies."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.eot_id: int | None = None

    def encode(self, text: str) -> list[int]:
        try:
            return [int(part) for part in text.split()]
        except ValueError:
            raise MaskvizError(
                "this model reads space-separated token ids, e.g. '3 1 4'", usage=True
            ) from None

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(i) for i in ids)

    def token_label(self, token_id: int) -> str:
        return str(token_id)
