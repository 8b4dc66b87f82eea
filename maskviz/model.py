"""The decoding driver: runs any architecture two ways and records what attention did.

- training mode: the whole sequence in one pass, each layer's mask (causal, or
  causal & sliding window) applied to the T x T scores;
- cached inference: a prefill pass over the prompt, then one query per step
  against the keys and values held in a KV cache.

The driver knows no architecture (those are in `maskviz.arch`): it owns the token
loop, sampling, timing, position ids, the KV cache and recording. At every pass
it asks each layer's rule (`maskviz.masks`) which of the keys that layer holds
each query may see, and applies a mask only where the rule forbids some: for a
cached step none does, since a full layer's cache holds only the past and a
sliding layer's ring buffer holds exactly its window. So "no mask at inference"
is derived here, not assumed; the steps that did need one are counted in
`Trace.step_masks`.

Everything stays in the model's dtype: constants are Python floats, which NumPy 2
never uses to promote arrays.

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
from types import ModuleType
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
from numpy.typing import NDArray

from maskviz._text import plural
from maskviz.arch import (
    Architecture,
    Config,
    FloatArray,
    IntArray,
    kv_cache_bytes,
    kv_cache_formula,
)
from maskviz.arch.gpt2 import Block, GPTConfig, Weights
from maskviz.errors import MaskvizError, as_integer, as_integers, index_in, usage_error
from maskviz.masks import Mask, causal
from maskviz.nn import attention, checked_products, gelu, layer_norm, masked_softmax
from maskviz.tokenizer import ByteTokenizer, Tokenizer, check_ids, utf8
from maskviz.trace import LABELLED_NEXT, MAX_SEED, MODES, Mode, Trace

DType = Literal["float32", "float64"]
DTYPES: tuple[DType, ...] = get_args(DType)
# What `GPT.forward` takes as its mask; anything else is refused by name.
MaskArg: TypeAlias = Mask | NDArray[np.bool_] | Literal["causal"] | None
BoolArray = NDArray[np.bool_]

# GPT-2's parts (Block, GPTConfig, Weights, gelu, layer_norm) are re-exported:
# `maskviz.model` was the GPT-2 engine in 0.1.0, and code written for it imports them here
__all__ = [
    "DTYPES",
    "GPT",
    "Block",
    "GPTConfig",
    "KVCache",
    "Weights",
    "attention",
    "check_context",
    "check_sampling",
    "gelu",
    "layer_norm",
    "masked_softmax",
    "random_model",
]


class KVCache:
    """Keys and values of every layer, allocated once per sequence.

    A full-attention layer keeps every position: ``k[layer]`` and ``v[layer]`` are
    [H_kv, capacity, head_dim]. A sliding-window layer keeps a ring buffer of its W
    most recent positions (slot = position % W): writing position t evicts t - W,
    so the buffer holds exactly the keys the window allows. ``index[layer]`` is the
    position each slot holds (-1: empty); ``length`` positions have been written.
    """

    def __init__(self, config: Config, capacity: int, dtype: DType) -> None:
        _check_config(config, "KVCache")
        capacity = as_integer(capacity, "capacity")
        if not 0 <= capacity <= config.n_ctx:  # no position past the context is ever cached
            raise usage_error(
                f"KVCache capacity must be from 0 to the model's context {config.n_ctx}, "
                f"got {capacity}"
            )
        dtype = dtype_name(dtype)  # the engine's dtypes: an int8 cache would round every key
        self.k: list[FloatArray] = []
        self.v: list[FloatArray] = []
        self.index: list[IntArray] = []
        h_kv, d = config.n_kv_head, config.head_dim
        grouped = config.n_head > h_kv
        for window in config.windows:
            slots = capacity if window is None else min(window, capacity)
            # with GQA a step's scores are a small matrix product per KV head, [group, d]
            # @ [d, n_k], which BLAS runs faster over rows of keys: those keys live
            # [H_kv, d, slots] behind a transposed view (docs/performance.md). One query
            # per KV head is a matrix-vector product, faster over contiguous keys
            keys = (
                np.zeros((h_kv, d, slots), dtype).mT
                if grouped
                else np.zeros((h_kv, slots, d), dtype)
            )
            self.k.append(keys)
            self.v.append(np.zeros((h_kv, slots, d), dtype))
            self.index.append(np.full(slots, -1, np.int64))
        self.capacity = capacity
        self.length = 0
        self.step_masks = 0  # (layer, step) pairs whose rule forbade a key the cache held

    @property
    def nbytes(self) -> int:
        """Bytes allocated for keys and values (`maskviz.arch.kv_cache_bytes` at capacity)."""
        return sum(int(k.nbytes + v.nbytes) for k, v in zip(self.k, self.v, strict=True))

    def update(
        self, layer: int, k: FloatArray, v: FloatArray, idx: IntArray
    ) -> tuple[FloatArray, FloatArray, IntArray]:
        """Store new keys/values [H_kv, n, d] at positions ``idx`` [n]; return every key
        and value the new queries attend over, with the position of each [n_k]."""
        layer = index_in(layer, len(self.k), "KVCache layer")
        if not (isinstance(idx, np.ndarray) and idx.ndim == 1 and idx.dtype.kind in "iu"):
            raise usage_error("KVCache positions must be a 1-D array of integers")
        keys, values, held = self.k[layer], self.v[layer], self.index[layer]
        h_kv, slots, d = keys.shape
        if k.shape != (h_kv, idx.shape[0], d) or v.shape != k.shape:
            raise usage_error(
                f"KVCache keys and values must be [{h_kv}, {idx.shape[0]}, {d}] "
                f"([KV heads, positions, head size]), got {list(k.shape)} and {list(v.shape)}"
            )
        for given in (k, v):  # a cast could round or overflow
            if given.dtype != keys.dtype:
                raise usage_error(
                    f"KVCache keys and values must be {keys.dtype}, got {given.dtype}"
                )
        # past the capacity a full layer's slot would silently wrap onto an earlier position
        if idx.shape[0] and not 0 <= idx[0] <= idx[-1] < self.capacity:
            raise usage_error(
                f"KVCache positions must lie in 0..{self.capacity - 1}, got {idx.tolist()}"
            )
        if idx.shape[0] == 1:
            # a decoding step: one slot by basic slicing (fancy indexing costs 3x per layer)
            pos = int(idx[0])
            s = pos % slots
            keys[:, s : s + 1] = k
            values[:, s : s + 1] = v
            held[s] = pos
            filled = min(pos + 1, slots)
            return keys[:, :filled], values[:, :filled], held[:filled]
        if slots < self.capacity:
            # a ring buffer prefilling several positions: they attend over what it held
            # and each other (the layer's rule masks the rest), then the last W stay
            past = (held >= 0) & (held < idx[0])  # what earlier passes left (a rerun too)
            out_k = np.concatenate([keys[:, past], k], axis=1)
            out_v = np.concatenate([values[:, past], v], axis=1)
            out_idx = np.concatenate([held[past], idx])
            keep = slice(max(0, idx.shape[0] - slots), None)
            slot = idx[keep] % slots
            keys[:, slot], values[:, slot], held[slot] = k[:, keep], v[:, keep], idx[keep]
            return out_k, out_v, out_idx
        # a full layer's slot is its position
        keys[:, idx], values[:, idx], held[idx] = k, v, idx
        filled = int(idx[-1]) + 1
        return keys[:, :filled], values[:, :filled], held[:filled]


class Recorder:
    """Where passes write the attention they computed: ``out`` [L', H', T, T].

    Layers report their weights [H, n_q, n_k] with the positions of their queries and
    keys; the recorder keeps the chosen layers and heads at those positions (a ring
    cache's keys arrive in slot order). Query rows before ``keep_from`` are dropped:
    recompute keeps only the last row of each pass.
    """

    def __init__(self, layers: IntArray, heads: IntArray, n_head: int, n: int, dtype: str) -> None:
        self.layers, self.heads = layers, heads
        self.out: FloatArray = np.zeros((layers.size, heads.size, n, n), dtype)
        self.slots = {int(layer): i for i, layer in enumerate(layers)}
        # None when every head is kept in order: no copy to select them
        self._pick = None if np.array_equal(heads, np.arange(n_head)) else heads
        self.keep_from = 0

    def report(self, layer: int, weights: FloatArray, q_idx: IntArray, k_idx: IntArray) -> None:
        slot = self.slots.get(layer)
        if slot is None:
            return
        keep = q_idx >= self.keep_from
        if not keep.all():
            weights, q_idx = weights[:, keep], q_idx[keep]
        if self._pick is not None:
            weights = weights[self._pick]
        self.out[slot][:, q_idx[:, None], k_idx[None, :]] = weights

    def trimmed(self, n: int) -> FloatArray:
        if self.out.shape[2] == n:
            return self.out
        return np.ascontiguousarray(self.out[:, :, :n, :n])


class GPT:
    """A decoder-only language model: an architecture's weights in a chosen dtype, a
    tokenizer, and the driver that runs and records them."""

    def __init__(
        self, weights: Architecture, tokenizer: Tokenizer, *, name: str, dtype: DType = "float32"
    ) -> None:
        dtype = dtype_name(dtype)
        self.weights: Architecture = weights.astype(dtype).decoding_layout()
        self.config: Config = weights.config
        self.tokenizer = tokenizer
        self.name = name
        self.dtype: DType = dtype

    def __repr__(self) -> str:
        return f"GPT({self.name!r}, {self.config.describe()}, {self.dtype})"

    # -- one pass over new tokens -------------------------------------------------

    def _hidden(
        self,
        ids: IntArray,
        *,
        start: int,
        positions: IntArray,
        cache: KVCache | None,
        mask: BoolArray | Literal["rules"] | None,
        record: Recorder | None,
        padded: BoolArray | None = None,
    ) -> FloatArray:
        """Final hidden states [n, C] of ``n`` new tokens at sequence indices start...

        ``mask`` "rules": each layer's own rule, asked about the keys it holds, and
        never a ``padded`` position [n_total] (True = pad); else a dense mask [n, n_k]
        applied to every layer, or None for no mask.
        """
        idx = np.arange(start, start + ids.shape[0], dtype=np.int64)
        planned: dict[int | None, BoolArray | None] = {}  # one mask per kind of layer
        windows = self.config.windows  # read once per pass: GPTConfig computes it
        if record is not None and not record.slots:
            record = None  # no layer to record: no call per layer

        def attend(layer: int, q: FloatArray, k: FloatArray, v: FloatArray) -> FloatArray:
            key_idx = idx
            if cache is not None:
                k, v, key_idx = cache.update(layer, k, v, idx)
            if isinstance(mask, str):
                window = windows[layer]
                if window not in planned:
                    planned[window] = self._rule_mask(layer, idx, key_idx, padded)
                layer_mask = planned[window]
            else:
                layer_mask = mask
            if cache is not None and layer_mask is not None and idx.shape[0] == 1:
                cache.step_masks += 1  # never expected: a step's cache holds only allowed keys
            out, weights = attention(q, k, v, layer_mask)  # [H, n, d], [H, n, n_k]
            if record is not None:
                record.report(layer, weights, idx, key_idx)
            return out

        def run() -> FloatArray:
            x = self.weights.embed(ids, positions)
            for layer in range(self.config.n_layer):
                x = self.weights.layer(layer, x, positions, attend)
            hidden: FloatArray = self.weights.final_norm(x)
            return hidden

        # an overflow is one error, not NumPy warnings and garbage: NumPy raises on its
        # own loops, and the check after catches what slips through. A flag may also be
        # a BLAS kernel's on a finite product: the pass then runs again (writing the same
        # cache slots and recorded rows) with products judged by their values
        try:
            with np.errstate(over="raise", invalid="raise"):
                hidden = run()
        except FloatingPointError:
            try:
                with np.errstate(over="raise", invalid="raise"), checked_products():
                    hidden = run()
            except FloatingPointError:
                raise self._overflow(start) from None
        self._check_finite(hidden, start)
        if cache is not None:
            cache.length = start + ids.shape[0]
        return hidden

    def _overflow(self, start: int) -> MaskvizError:
        if not all(np.isfinite(a).all() for a in self.weights.arrays()):  # edited weights
            return MaskvizError("the model's weights hold NaN or inf values")
        return MaskvizError(
            f"the model's activations overflowed {self.dtype} (position {start} on): "
            "its weights are too large for this dtype"
        )

    def _check_finite(self, values: FloatArray, start: int) -> None:
        if not np.isfinite(values).all():
            raise self._overflow(start)

    def _logits(self, hidden: FloatArray, start: int) -> FloatArray:
        """The output head's logits of ``hidden``, checked like the hidden states."""
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            logits = self.weights.logits(hidden)
        self._check_finite(logits, start)
        return logits

    def _rule_mask(
        self, layer: int, q_idx: IntArray, k_idx: IntArray, padded: BoolArray | None
    ) -> BoolArray | None:
        """The layer's rule over these queries and keys; None when it forbids nothing.

        Pads are never attended, and a pad's own row attends to nothing (its output is
        ignored), as `maskviz.masks.padding` defines them.
        """
        rule = self.config.layer_mask(layer, int(q_idx[-1]) + 1)
        allowed = rule.allows(q_idx, k_idx)
        if padded is not None:
            allowed &= ~padded[k_idx][None, :]
            allowed[padded[q_idx]] = False
        return None if allowed.all() else allowed

    def forward(
        self,
        token_ids: Sequence[int] | NDArray[np.integer[Any]],
        mask: MaskArg = "causal",
        *,
        positions: Sequence[int] | NDArray[np.integer[Any]] | None = None,
        padded: Sequence[bool] | NDArray[np.bool_] | None = None,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """One pass over the whole sequence (training mode), no cache.

        ``mask`` for T tokens is one of: "causal" (the default: each layer's own rule,
        causal or causal & its sliding window); a `maskviz.masks.Mask` of shape [T, T]
        or a NumPy bool array [T, T] (True = the query may attend to the key), applied
        to every layer; or None for no mask at all. Anything else (another string, a
        list, a non-bool array, another shape) raises a usage `MaskvizError`.
        ``positions`` [T] are the position ids, 0..T-1 by default, pads counted too:
        give a left-padded row positions that skip its pads, as its unpadded run has
        them (``compare padded-vs-cached --side left``; left as they are, they are
        ``shifted-vs-cached``). ``padded`` [T] marks pad tokens, which "causal" never
        lets any query attend (and whose own rows attend to nothing). Returns logits
        [T, vocab] and attention [L', H', T, T].

        >>> from maskviz import GPTConfig, masks, random_model
        >>> model = random_model(GPTConfig(1, 2, 8, 16, 20))
        >>> a = model.forward([1, 2, 3], masks.causal(3))[0]
        >>> bool((a == model.forward([1, 2, 3], "causal")[0]).all())
        True
        >>> model.forward([1, 2, 3], "bidirectional")
        Traceback (most recent call last):
        ...
        maskviz.errors.MaskvizError: mask must be "causal", None, a maskviz.masks.Mask [3, 3] or a bool array [3, 3]; got the string 'bidirectional'
        """
        hidden, attention = self.forward_hidden(
            token_ids, mask, positions=positions, padded=padded, layers=layers, heads=heads
        )
        return self._logits(hidden, 0), attention

    def forward_hidden(
        self,
        token_ids: Sequence[int] | NDArray[np.integer[Any]],
        mask: MaskArg = "causal",
        *,
        positions: Sequence[int] | NDArray[np.integer[Any]] | None = None,
        padded: Sequence[bool] | NDArray[np.bool_] | None = None,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Like `forward` (the same arguments), but returns the final hidden states
        [T, C] (what the output head reads) instead of the logits, with the attention
        [L', H', T, T]."""
        ids = self._ids(token_ids)
        n = ids.shape[0]
        dense = _dense_mask(mask, n)
        pos = self._positions(positions, n)
        pads = None
        if padded is not None:
            given = np.asarray(padded)
            if given.dtype != np.bool_:  # 2 or "no" would read as True: a pad
                raise usage_error(f"padded must hold True or False, got {given.dtype} values")
            pads = given
            if pads.shape != (n,):
                raise usage_error(
                    f"padded must mark each of the {n} tokens, got {list(pads.shape)}"
                )
            if not isinstance(dense, str):
                raise usage_error('padded applies to the "causal" mask, not to a given mask')
        rec = self._recorder(n, layers, heads, None)
        hidden = self._hidden(
            ids, start=0, positions=pos, cache=None, mask=dense, record=rec, padded=pads
        )
        return hidden, rec.out

    def final_hidden(self, token_ids: Sequence[int] | NDArray[np.integer[Any]]) -> FloatArray:
        """Final hidden states [T, C] of one causal pass, recording nothing."""
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

        mode "cached": prefill with each layer's mask, then one cached step per token;
        "training": generate, then run the final sequence in one masked pass;
        "recompute": no cache, the whole prefix is run again at every step.
        Decoding is greedy unless ``temperature`` > 0 (then sampled, optionally from
        the ``top_k`` most likely tokens, reproducibly for a given ``seed``; without one
        a seed is chosen and recorded in ``Trace.seed``). It stops after ``steps``
        tokens, after an end-of-text token, or at the context limit. Every position
        gets its attention row and logits.

        >>> m = random_model(GPTConfig(n_layer=2, n_head=2, n_embd=16, n_ctx=32, vocab_size=50))
        >>> t = m.trace([1, 2, 3], steps=4)
        >>> t.token_ids.shape, t.attention.shape  # [T], [layers, heads, T, T]
        ((7,), (2, 2, 7, 7))
        >>> bool((t.attention[:, :, 3, 4:] == 0).all())  # step 1's row: no key after itself
        True
        >>> training = m.trace([1, 2, 3], steps=4, mode="training")
        >>> bool(np.allclose(training.attention, t.attention, atol=1e-6))
        True
        """
        ids = self._ids(token_ids)
        if as_integer(steps, "steps") < 0:
            raise usage_error(f"steps must be >= 0, got {steps}")
        if mode not in MODES:
            raise usage_error(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        check_sampling(temperature, top_k, seed)
        if temperature > 0 and seed is None:
            # choose the seed here and record it, so that any sampled run can be replayed
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        choose = _Chooser(temperature, top_k, seed)
        if not isinstance(record, bool | np.bool_):  # "no" would record
            raise usage_error(f"record must be True or False, got {record!r}")
        _select("layer", layers, self.config.n_layer)  # checked even when nothing is recorded
        _select("head", heads, self.config.n_head)
        chosen = layers if record else []
        if mode == "training":
            gen = self.trace(
                ids, steps=steps, mode="cached", record=False,
                temperature=temperature, top_k=top_k, seed=seed,
            )  # fmt: skip
            return self._training(gen, chosen, heads, record_dtype, choose)
        p = ids.shape[0]
        capacity = min(p + steps, self.config.n_ctx)
        rec = self._recorder(capacity, chosen, heads, record_dtype)
        all_ids = np.zeros(capacity, np.int64)
        all_ids[:p] = ids
        positions = np.arange(capacity, dtype=np.int64)
        try:
            logits_out = np.zeros((capacity, self.config.vocab_size), self.dtype)
            cache = KVCache(self.config, capacity, self.dtype) if mode == "cached" else None
        except MemoryError:
            raise MaskvizError(
                f"not enough memory for the logits and KV cache of {capacity:,} positions: "
                "decode fewer steps"
            ) from None
        t0 = time.perf_counter()
        hidden = self._hidden(
            ids, start=0, positions=positions[:p], cache=cache, mask="rules", record=rec
        )
        logits_out[:p] = self._logits(hidden, 0)
        prefill_seconds = time.perf_counter() - t0
        step_seconds: list[float] = []
        t, stop = p, "steps"
        stop_ids = _stop_ids(self.tokenizer)
        while t < p + steps:
            if t >= self.config.n_ctx:
                stop = "context"
                break
            t0 = time.perf_counter()
            all_ids[t] = choose(logits_out[t - 1])
            if cache is not None:
                # one query against the cache: each layer's rule is asked, and allows every
                # key its cache holds (the past, or a sliding window's ring), so no mask
                new = all_ids[t : t + 1]
                hidden = self._hidden(
                    new, start=t, positions=positions[t : t + 1], cache=cache, mask="rules",
                    record=rec,
                )  # fmt: skip
            else:
                # no cache: run the whole prefix again and keep only its last row
                rec.keep_from = t
                hidden = self._hidden(
                    all_ids[: t + 1], start=0, positions=positions[: t + 1], cache=None,
                    mask="rules", record=rec,
                )[-1:]  # fmt: skip  # only the last position's logits are needed
            logits_out[t] = self._logits(hidden, t)[0]
            step_seconds.append(time.perf_counter() - t0)
            t += 1
            if int(all_ids[t - 1]) in stop_ids:
                stop = "end_of_text"
                break
        # the bytes of the t positions held (a run that stopped early used less than it
        # allocated); the trace's formula adds up the same
        kv_bytes = 0 if cache is None else kv_cache_bytes(self.config, t, cache.k[0].itemsize)
        return self._trace(
            all_ids[:t], logits_out[:t], rec.trimmed(t), rec,
            prompt_len=p, mode=mode, prefill_seconds=prefill_seconds,
            step_seconds=np.array(step_seconds), kv_bytes=kv_bytes, stop=stop, choose=choose,
            step_masks=0 if cache is None else cache.step_masks,
        )  # fmt: skip

    def _training(
        self,
        generated: Trace,
        layers: Sequence[int] | None,
        heads: Sequence[int] | None,
        record_dtype: str | None,
        choose: _Chooser,
    ) -> Trace:
        """The generated sequence run again in one pass with each layer's mask."""
        full = generated.token_ids
        n = full.shape[0]
        t0 = time.perf_counter()
        rec = self._recorder(n, layers, heads, record_dtype)
        positions = np.arange(n, dtype=np.int64)
        hidden = self._hidden(
            full, start=0, positions=positions, cache=None, mask="rules", record=rec
        )
        logits = self._logits(hidden, 0)
        return self._trace(
            full, logits, rec.out, rec,
            prompt_len=generated.prompt_len, mode="training",
            prefill_seconds=time.perf_counter() - t0, step_seconds=np.zeros(0), kv_bytes=0,
            stop=generated.stop_reason, choose=choose, step_masks=0,
        )  # fmt: skip

    def _trace(
        self,
        ids: IntArray,
        logits: FloatArray,
        attention: FloatArray,
        rec: Recorder,
        *,
        prompt_len: int,
        mode: str,
        prefill_seconds: float,
        step_seconds: NDArray[np.float64],
        kv_bytes: int,
        stop: str,
        choose: _Chooser,
        step_masks: int,
    ) -> Trace:
        n = ids.shape[0]
        # labels of the sequence and of each row's likeliest next tokens: what drawing the
        # trace needs, recorded so that it can be drawn again without the tokenizer
        likely = np.argpartition(-logits, min(LABELLED_NEXT, logits.shape[1] - 1), axis=1)
        label_ids = np.unique(np.concatenate([ids, likely[:, :LABELLED_NEXT].ravel()]))
        return Trace(
            token_ids=ids.astype(np.int64),
            prompt_len=prompt_len,
            logits=logits,
            attention=attention,
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
            temperature=choose.temperature,
            top_k=choose.top_k,
            seed=choose.seed,
            windows=np.array([w or 0 for w in self.config.windows], np.int64),
            positions=np.arange(n, dtype=np.int64),
            step_masks=step_masks,
            label_ids=label_ids.astype(np.int64),
            label_texts=np.array(
                [self.tokenizer.token_label(int(i)) for i in label_ids], dtype=str
            ),
            model_desc=f"{self.config.describe()}, {self.config.n_params / 1e6:.2f}M parameters",
            kv_formula=kv_cache_formula(self.config, n, np.dtype(self.dtype).itemsize)
            if kv_bytes
            else "",
            # prompt and continuation decoded apart: a byte-level tokenizer's continuation
            # may not complete the prompt's last character, which would garble both
            text="".join(
                self.tokenizer.decode([int(i) for i in part])
                for part in (ids[:prompt_len], ids[prompt_len:])
            ),
        )

    # -- helpers -------------------------------------------------------------------

    def _ids(self, token_ids: Sequence[int] | NDArray[np.integer[Any]]) -> IntArray:
        if isinstance(token_ids, np.ndarray) and token_ids.ndim != 1:
            raise usage_error(f"token ids must be one sequence (1-D), got shape {token_ids.shape}")
        ids = as_integers(token_ids, "token ids")
        check_ids(ids, self.config.vocab_size)
        check_context(len(ids), 0, self.config.n_ctx)
        return np.asarray(ids, dtype=np.int64)

    def _positions(
        self, positions: Sequence[int] | NDArray[np.integer[Any]] | None, n: int
    ) -> IntArray:
        if positions is None:
            return np.arange(n, dtype=np.int64)
        pos = np.asarray(as_integers(positions, "positions"), dtype=np.int64)
        if pos.shape != (n,) or (pos < 0).any() or (pos >= self.config.n_ctx).any():
            raise usage_error(f"positions must be {n} integers from 0 to {self.config.n_ctx - 1}")
        return pos

    def _recorder(
        self,
        n: int,
        layers: Sequence[int] | None,
        heads: Sequence[int] | None,
        record_dtype: str | None,
    ) -> Recorder:
        cfg = self.config
        lay = _select("layer", layers, cfg.n_layer)
        hd = _select("head", heads, cfg.n_head)
        dtype = self.dtype if record_dtype is None else record_dtype
        dtype = dtype_name(dtype, ("float16", *DTYPES), "record_dtype")
        try:
            return Recorder(lay, hd, cfg.n_head, n, dtype)
        except MemoryError:  # allocated before the run, so nothing is lost yet
            size = lay.size * hd.size * n * n * np.dtype(dtype).itemsize
            raise MaskvizError(
                f"not enough memory to record the attention of {plural(lay.size, 'layer')} "
                f"x {plural(hd.size, 'head')} over {n:,} positions ({size / 2**30:,.1f} GiB "
                f"of {dtype}): record fewer layers, heads or positions"
            ) from None


def dtype_name(value: object, allowed: tuple[str, ...] = DTYPES, what: str = "dtype") -> Any:
    """A float type's name: "float32", ``np.float32`` and ``np.dtype("float32")`` alike.

    >>> dtype_name(np.float32), dtype_name("float64")
    ('float32', 'float64')
    """
    try:
        name = None if value is None else np.dtype(value).name  # type: ignore[call-overload]
    except TypeError:
        name = None
    if name not in allowed:
        raise usage_error(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return name


def _dense_mask(mask: object, n: int) -> BoolArray | Literal["rules"] | None:
    """What a `GPT.forward` mask stands for: "rules" (each layer's own), a bool matrix
    [n, n], or None; refuses anything else.

    Checked by type and shape rather than trusted: a `maskviz.masks.Mask` object or an
    unknown string would otherwise fail deep inside the softmax or run causal.
    """
    if mask is None:
        return None
    if isinstance(mask, str) and mask == "causal":
        return "rules"
    if isinstance(mask, Mask) and mask.shape == (n, n):
        return mask.to_array()
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (n, n):
        return mask
    if isinstance(mask, str):
        given = f"the string {mask!r}"
    elif isinstance(mask, Mask):
        given = f"a Mask of shape {list(mask.shape)}"
    elif isinstance(mask, np.ndarray):
        given = f"a {mask.dtype} array of shape {list(mask.shape)}"
    else:
        given = f"a {type(mask).__name__}"
    raise usage_error(
        f'mask must be "causal", None, a maskviz.masks.Mask [{n}, {n}] or a bool array '
        f"[{n}, {n}]; got {given}"
    )


def _stop_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """The tokens that end generation; a tokenizer without ``stop_ids`` (written before
    0.2.1) stops at its ``eot_id``."""
    stop: frozenset[int] | None = getattr(tokenizer, "stop_ids", None)
    if stop is not None:
        return stop
    return frozenset() if tokenizer.eot_id is None else frozenset({tokenizer.eot_id})


def check_context(
    prompt_len: int, steps: int, n_ctx: int, *, min_steps: int = 0, option: str = ""
) -> None:
    """Refuse a run that would not fit the context, naming the most steps that fit
    (``option``: as the command line's option that sets them).

    >>> check_context(3, 10, 8)
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: the prompt (3 tokens) plus 10 steps exceeds the model's context of 8 positions: use 5 steps or fewer
    """
    if prompt_len > n_ctx:
        raise usage_error(
            f"the prompt ({plural(prompt_len, 'token')}) is longer than the model's context "
            f"of {n_ctx} positions: shorten it"
        )
    if prompt_len + steps > n_ctx:
        fits = n_ctx - prompt_len

        def count(k: int) -> str:
            return f"{option} {k}" if option else plural(k, "step")

        hint = f"use {count(fits)} or fewer" if fits >= min_steps else "shorten the prompt"
        raise usage_error(
            f"the prompt ({plural(prompt_len, 'token')}) plus {count(steps)} exceeds the "
            f"model's context of {n_ctx} positions: {hint}"
        )


def check_sampling(temperature: float, top_k: int | None, seed: int | None) -> None:
    """Refuse sampling settings `GPT.trace` cannot use, or would ignore.

    >>> check_sampling(0.0, 5, None)
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: top_k applies only when sampling: add temperature > 0
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float | np.integer | np.floating)
        or not (math.isfinite(temperature) and temperature >= 0)
    ):
        raise usage_error(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and as_integer(top_k, "top_k") < 1:
        raise usage_error(f"top_k must be >= 1, got {top_k}")
    if seed is not None:
        _check_seed(seed)
    if temperature == 0 and (top_k is not None or seed is not None):
        given = "top_k" if top_k is not None else "seed"
        raise usage_error(f"{given} applies only when sampling: add temperature > 0")


def _check_seed(seed: object) -> None:
    if not 0 <= as_integer(seed, "seed") <= MAX_SEED:
        raise usage_error(f"seed must be from 0 to {MAX_SEED}, got {seed}")


def _select(what: str, chosen: Sequence[int] | None, count: int) -> IntArray:
    if chosen is None:
        return np.arange(count, dtype=np.int64)
    out = np.asarray(as_integers(chosen, f"{what}s"), dtype=np.int64)
    bad = out[(out < 0) | (out >= count)]
    if bad.size:
        raise usage_error(
            f"{what} {int(bad[0])} is out of range: the model has {plural(count, what)} "
            f"(0..{count - 1})"
        )
    if np.unique(out).size != out.size:
        raise usage_error(f"{what}s must not repeat")
    return out


class _Chooser:
    """Greedy choice, or seeded sampling with temperature and top-k."""

    def __init__(self, temperature: float, top_k: int | None, seed: int | None) -> None:
        self.temperature, self.top_k, self.seed = float(temperature), top_k, seed
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: FloatArray) -> int:
        if self.temperature == 0:
            return int(np.argmax(logits))
        # the largest logit becomes 0 before dividing: a tiny temperature then sends the
        # others to -inf (probability 0), never the largest to inf (NaN)
        with np.errstate(over="ignore"):
            z = (logits.astype(np.float64) - float(logits.max())) / self.temperature
        if self.top_k is not None and self.top_k < z.size:
            # exactly k candidates, also when several logits tie at the cut
            top = np.argpartition(z, -self.top_k)[-self.top_k :]
            kept = np.full_like(z, -np.inf)
            kept[top] = z[top]
            z = kept
        p = np.exp(z - z.max())
        return int(self.rng.choice(z.size, p=p / p.sum()))


def random_model(
    config: Config, seed: int = 0, dtype: DType = "float32", *, name: str | None = None
) -> GPT:
    """A model of any supported architecture with deterministic random weights (for
    tests and benchmarks).

    Weights are scaled so that activations stay of order one and attention is not
    uniform. The tokenizer is byte-level when the vocabulary has 257 entries or
    more (ids past 256 are written `<id:N>`), else ids are their own labels.

    >>> m = random_model(GPTConfig(1, 1, 8, 16, 20), seed=1)
    >>> m.trace([3, 4], steps=2).token_ids.shape
    (4,)
    """
    module = _check_config(config, "random_model")
    _check_seed(seed)
    if name is not None and not isinstance(name, str):
        raise usage_error(f"random_model: name must be a string, got {name!r}")
    weights = module.random_weights(config, np.random.default_rng(seed))
    tokenizer: Tokenizer = (
        ByteTokenizer() if config.vocab_size >= 257 else _IdTokenizer(config.vocab_size)
    )
    return GPT(weights, tokenizer, name=name or f"random(seed={seed})", dtype=dtype)


def check_model(model: object, what: str) -> None:
    """Refuse anything but a model by name, rather than fail on a missing attribute."""
    if not isinstance(model, GPT):
        raise usage_error(
            f"{what} takes a model (maskviz.load_model or random_model), "
            f"got a {type(model).__name__}"
        )


def _check_config(config: object, what: str) -> ModuleType:
    """The architecture module of a model config; anything else (a dict of fields, say)
    is refused by name rather than failing on a missing attribute."""
    from maskviz.arch import family

    architecture = getattr(config, "architecture", None)
    if not isinstance(architecture, str):
        raise usage_error(
            f"{what} takes a model config such as GPTConfig or LlamaConfig, "
            f"got a {type(config).__name__}"
        )
    module = family(architecture)
    if module is None:
        raise usage_error(f"no architecture {architecture!r}")
    return module


class _IdTokenizer:
    """Token ids written as numbers: for random models with small vocabularies."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.eot_id: int | None = None
        self.stop_ids: frozenset[int] = frozenset()
        self.prefix_ids: tuple[int, ...] = ()

    def encode(self, text: str) -> list[int]:
        utf8(text)  # the same errors as the other tokenizers' for what is not text
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
