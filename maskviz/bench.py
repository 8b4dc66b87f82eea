"""How fast the engine decodes, and why inference keeps a KV cache: plain numbers.

`run` measures one model on one sequence of ``tokens`` positions:

- cached decode: prefill, then one query per step against the KV cache, recording
  off and (separately) recording every layer and head;
- recompute: no cache, the whole prefix run again at every step;
- one training-mode pass over the same sequence (causal mask, all positions);
- a bandwidth probe: a [1, 768] x [768, 50257] float32 product laid out like the
  engine's output head, the kind of product batch-1 decoding is made of. Decoding
  one token reads every weight once, so ``probe bandwidth / weight bytes per token``
  bounds the tokens per second of cached decoding.

Times are medians over ``repeats`` runs (per position for the per-step curves);
costs are the architecture's multiply-accumulates (``Config.pass_macs``). Nothing
here draws or prints: `maskviz.cli` renders a `BenchResult`,
`maskviz.render.bench_figures` plots it.

>>> from maskviz.model import GPTConfig, random_model
>>> result = run(random_model(GPTConfig(1, 2, 8, 16, 300)), tokens=6, repeats=1, probe=False)
>>> result.cached.steps, result.recompute.steps, len(result.cached.step_seconds)
(5, 5, 5)
>>> sorted(result.to_dict())[:4]
['bandwidth', 'cache_speedup', 'cached', 'cached_recording']
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from maskviz.arch import Config, kv_cache_bytes, step_macs
from maskviz.arch.llama import LlamaConfig
from maskviz.errors import as_integer, usage_error
from maskviz.model import GPT, DType, GPTConfig, random_model

SHAPES: dict[str, Config] = {
    "gpt2-small": GPTConfig(n_layer=12, n_head=12, n_embd=768, n_ctx=1024, vocab_size=50257),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024, n_ctx=1024, vocab_size=50257),
    # SmolLM2-135M: a Llama with grouped-query attention (3 KV heads), tied head
    "smollm2-135m": LlamaConfig(
        n_layer=30,
        n_head=9,
        n_kv_head=3,
        head_dim=64,
        n_embd=576,
        intermediate=1536,
        n_ctx=2048,
        vocab_size=49152,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
    ),
}
DEFAULT_TOKENS = 128
MIN_TOKENS = 2
MAX_TOKENS = 4096  # recompute costs grow with the square of this
MAX_REPEATS = 100
PROBE_SHAPE = (768, 50257)  # GPT-2's output head: [C, vocab]
PROBE_REPEATS = 9
BOUND_MIN_BYTES = 64 * 2**20  # below this a model's weights may stay in cache between steps
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

Progress = Callable[[str, int, int], None]
"""Called as ``progress(what, done, total)`` before each measured run and once at the end."""


@dataclass(frozen=True)
class Decode:
    """Per-step times of one way of decoding ``steps`` tokens after the prompt."""

    mode: str  # "cached" or "recompute"
    recording: bool  # attention of every layer and head recorded
    positions: list[int]  # position of each decoded token (0-based)
    step_seconds: list[float]  # median wall time of each step over the repeats
    macs: int  # multiply-accumulates of all the steps

    @property
    def steps(self) -> int:
        return len(self.step_seconds)

    @property
    def seconds(self) -> float:
        return float(sum(self.step_seconds))

    @property
    def tokens_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")

    @property
    def median_step_seconds(self) -> float:
        return float(np.median(self.step_seconds)) if self.step_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "recording": self.recording,
            "steps": self.steps,
            "seconds": self.seconds,
            "tokens_per_second": _finite(self.tokens_per_second),
            "median_step_seconds": self.median_step_seconds,
            "macs": self.macs,
            "positions": self.positions,
            "step_seconds": self.step_seconds,
        }


@dataclass(frozen=True)
class Bandwidth:
    """The memory-bandwidth bound on cached decoding."""

    probe_shape: tuple[int, int]
    probe_seconds: float  # median time of one probe product
    weight_bytes_per_token: int  # weights one decoding step reads

    @property
    def probe_bytes(self) -> int:
        return self.probe_shape[0] * self.probe_shape[1] * 4

    @property
    def bytes_per_second(self) -> float:
        return self.probe_bytes / self.probe_seconds if self.probe_seconds > 0 else 0.0

    @property
    def bound_tokens_per_second(self) -> float:
        return self.bytes_per_second / self.weight_bytes_per_token

    @property
    def applies(self) -> bool:
        """True when a step's weights are too large for CPU caches (>= `BOUND_MIN_BYTES`),
        so each step streams them from memory as the probe does."""
        return self.weight_bytes_per_token >= BOUND_MIN_BYTES

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe_shape": list(self.probe_shape),
            "probe_seconds": self.probe_seconds,
            "probe_gb_per_second": self.bytes_per_second / 1e9,
            "weight_bytes_per_token": self.weight_bytes_per_token,
            "bound_tokens_per_second": self.bound_tokens_per_second,
            "bound_applies": self.applies,
        }


@dataclass(frozen=True)
class BenchResult:
    """Everything `run` measured; `to_dict` is what ``maskviz bench --json`` prints."""

    model: str
    config: Config
    dtype: str
    prompt_len: int
    tokens: int  # sequence length reached: prompt plus decoded tokens
    stop_reason: str
    repeats: int
    cached: Decode
    cached_recording: Decode
    recompute: Decode
    training_seconds: float  # one training-mode pass over all ``tokens`` positions
    training_macs: int
    bandwidth: Bandwidth | None
    record_itemsize: int
    machine: dict[str, Any]
    # each repeat's recording overhead: its recorded decode against its plain one
    recording_overheads: list[float] = field(default_factory=list)

    @property
    def cache_speedup(self) -> float:
        """Recompute time over cached time for the same decoded tokens."""
        return self.recompute.seconds / self.cached.seconds if self.cached.seconds > 0 else 0.0

    @property
    def recording_overhead(self) -> float:
        """Extra time of recording every layer and head, as a fraction of decoding without:
        the median of the repeats' own ratios when there are any (each recorded decode
        against the plain one run beside it), so it lies within the range they span."""
        if self.recording_overheads:
            return float(np.median(self.recording_overheads))
        if self.cached.seconds <= 0:
            return 0.0
        return self.cached_recording.seconds / self.cached.seconds - 1.0

    @property
    def recording_within_noise(self) -> bool | None:
        """True when a repeat found no cost: recording adds work, so a repeat that ran
        as fast or faster with it measured noise. None when one repeat found a cost:
        nothing to tell it from noise by."""
        runs = self.recording_overheads
        if runs and min(runs) <= 0:
            return True
        return None if len(runs) < 2 else False

    @property
    def fraction_of_bound(self) -> float | None:
        if self.bandwidth is None or self.bandwidth.bound_tokens_per_second <= 0:
            return None
        return self.cached.tokens_per_second / self.bandwidth.bound_tokens_per_second

    @property
    def training_tokens_per_second(self) -> float:
        return self.tokens / self.training_seconds if self.training_seconds > 0 else float("inf")

    def memory(self) -> dict[str, int]:
        """Bytes the KV cache and a full attention record take, per token and in total.

        A token adds ``kv_cache_bytes_per_token`` to the cache while every layer keeps
        it; once sliding windows are full, only the full layers grow: the last token
        added ``kv_cache_bytes_last_token``.
        """
        cfg, t = self.config, self.tokens
        item = np.dtype(self.dtype).itemsize
        kv = kv_cache_bytes(cfg, t, item)
        row = cfg.n_layer * cfg.n_head * t * self.record_itemsize  # one query row, every head
        return {
            "kv_cache_bytes_per_token": kv_cache_bytes(cfg, 1, item),
            "kv_cache_bytes_last_token": kv - kv_cache_bytes(cfg, t - 1, item),
            "kv_cache_bytes": kv,
            "record_bytes_per_token": row,
            "record_bytes": row * t,
            "record_bytes_per_token_one_head": t * self.record_itemsize,
        }

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "model": self.model,
            "config": {
                "architecture": cfg.architecture,
                "n_layer": cfg.n_layer,
                "n_head": cfg.n_head,
                "n_kv_head": cfg.n_kv_head,
                "head_dim": cfg.head_dim,
                "n_embd": cfg.n_embd,
                "n_ctx": cfg.n_ctx,
                "vocab_size": cfg.vocab_size,
                "n_params": cfg.n_params,
            },
            "dtype": self.dtype,
            "prompt_len": self.prompt_len,
            "tokens": self.tokens,
            "stop_reason": self.stop_reason,
            "repeats": self.repeats,
            "cached": self.cached.to_dict(),
            "cached_recording": self.cached_recording.to_dict(),
            "recompute": self.recompute.to_dict(),
            "training": {
                "tokens": self.tokens,
                "seconds": self.training_seconds,
                "tokens_per_second": _finite(self.training_tokens_per_second),
                "macs": self.training_macs,
            },
            "cache_speedup": self.cache_speedup,
            "recording_overhead": self.recording_overhead,
            "recording_overhead_runs": self.recording_overheads,
            "recording_overhead_within_noise": self.recording_within_noise,
            "bandwidth": None if self.bandwidth is None else self.bandwidth.to_dict(),
            "fraction_of_bound": self.fraction_of_bound,
            "memory": self.memory(),
            "machine": self.machine,
        }


def _finite(value: float) -> float | None:
    """JSON has no infinity: a rate over zero measured time becomes None."""
    return value if np.isfinite(value) else None


def check_tokens(tokens: int, n_ctx: int | None = None) -> None:
    """Refuse sequence lengths the benchmark cannot or should not run."""
    if not MIN_TOKENS <= as_integer(tokens, "tokens") <= MAX_TOKENS:
        raise usage_error(
            f"tokens must be from {MIN_TOKENS} to {MAX_TOKENS:,} (recompute costs grow with "
            f"its square), got {tokens:,}"
        )
    if n_ctx is not None and tokens > n_ctx:
        raise usage_error(
            f"tokens must be at most the model's context of {n_ctx:,} positions, got {tokens:,}"
        )


def check_repeats(repeats: int) -> None:
    """Refuse a number of runs outside 1..`MAX_REPEATS`."""
    if not 1 <= as_integer(repeats, "repeats") <= MAX_REPEATS:
        raise usage_error(f"repeats must be from 1 to {MAX_REPEATS}, got {repeats}")


def shape_model(shape: str, *, seed: int = 0, dtype: DType = "float32") -> GPT:
    """A model of a named shape (`SHAPES`) with deterministic random weights."""
    if shape not in SHAPES:
        raise usage_error(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    return random_model(SHAPES[shape], seed=seed, dtype=dtype, name=f"random {shape}")


class BandwidthProbe:
    """Times ``x @ W`` with W [C, V] float32 stored like the engine's output head.

    The engine keeps the head [V, C] column-major, so ``head.T`` is a row-major
    [C, V] matrix and a step's logits are one matrix-vector product with it. At
    154 MB the matrix is far larger than any CPU cache: every product streams it from
    memory, as a decoding step streams the model's weights. Memory bandwidth drifts
    on shared machines, so `run` probes between its decoding runs and keeps every
    sample; the bound uses their median.
    """

    def __init__(self, shape: tuple[int, int] = PROBE_SHAPE) -> None:
        c, v = shape
        self.shape = shape
        # values do not change the speed; np.full writes every page before timing
        self._head = np.full((v, c), 0.5, dtype=np.float32, order="F")
        self._x = np.random.default_rng(0).standard_normal((1, c), dtype=np.float32)
        self.samples: list[float] = []
        self._x @ self._head.T  # warm up: start BLAS threads

    def measure(self, repeats: int = PROBE_REPEATS) -> float:
        """Time ``repeats`` products; return their median seconds (all are kept)."""
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            self._x @ self._head.T
            times.append(time.perf_counter() - t0)
        self.samples += times
        return float(np.median(times))

    @property
    def seconds(self) -> float:
        """Median over every sample taken so far."""
        return float(np.median(self.samples)) if self.samples else 0.0


def default_prompt(model: GPT) -> list[int]:
    """One token to start from: the first of "The" where the tokenizer reads text, else 0."""
    try:
        ids = model.tokenizer.encode("The")
    except Exception:
        ids = []
    return ids[:1] if ids and all(0 <= i < model.config.vocab_size for i in ids[:1]) else [0]


def run(
    model: GPT,
    tokens: int = 128,
    *,
    repeats: int = 3,
    prompt: Sequence[int] | None = None,
    probe: bool = True,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure ``model`` decoding a sequence of ``tokens`` positions (see the module doc).

    Greedy decoding stops early at an end-of-text token; all modes then measure the
    same shorter sequence (``stop_reason`` says so). Recompute runs once: its
    per-step curve is smooth, and it costs the most.
    """
    check_tokens(tokens, model.config.n_ctx)
    check_repeats(repeats)
    ids = list(prompt) if prompt is not None else default_prompt(model)
    if not 1 <= len(ids) < tokens:
        raise usage_error(f"the prompt needs 1 to {tokens - 1} tokens, got {len(ids)}")
    steps = tokens - len(ids)
    total = (1 if probe else 0) + 3 * repeats + 1
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(what, done, total)
        done += 1

    prober = None
    if probe:
        tick("bandwidth probe")
        prober = BandwidthProbe()
    plain: list[NDArray[np.float64]] = []
    recorded: list[NDArray[np.float64]] = []
    model.trace(ids, steps=min(steps, 4), record=False)  # warm up: caches, pages, BLAS threads
    final = None
    for _ in range(repeats):  # interleaved, so a slow moment hits all alike
        if prober is not None:
            prober.measure(3)
        tick("cached decode")
        final = model.trace(ids, steps=steps, record=False)
        plain.append(final.step_seconds)
        tick("cached decode, recording")
        recorded.append(model.trace(ids, steps=steps).step_seconds)
    assert final is not None
    n = final.n_tokens
    sequence = final.token_ids
    tick("recompute")
    again = model.trace(ids, steps=steps, mode="recompute", record=False)
    training: list[float] = []
    for _ in range(repeats):
        tick("training-mode pass")
        t0 = time.perf_counter()
        model.forward(sequence, layers=[])
        training.append(time.perf_counter() - t0)
    if progress is not None:
        progress("done", total, total)

    cfg, p = model.config, len(ids)
    positions = list(range(p, n))
    cached_macs = sum(step_macs(cfg, t, cached=True) for t in positions)
    recompute_macs = sum(step_macs(cfg, t, cached=False) for t in positions)
    bandwidth = None
    if prober is not None:
        prober.measure(3)
        bandwidth = Bandwidth(PROBE_SHAPE, prober.seconds, model.weights.weight_bytes_per_step())
    return BenchResult(
        model=model.name,
        config=cfg,
        dtype=model.dtype,
        prompt_len=p,
        tokens=n,
        stop_reason=final.stop_reason,
        repeats=repeats,
        cached=Decode("cached", False, positions, _per_step(plain, n - p), cached_macs),
        cached_recording=Decode("cached", True, positions, _per_step(recorded, n - p), cached_macs),
        recompute=Decode(
            "recompute", False, positions, _per_step([again.step_seconds], n - p), recompute_macs
        ),
        training_seconds=float(np.median(training)),
        training_macs=cfg.pass_macs(n, n, n),
        bandwidth=bandwidth,
        record_itemsize=np.dtype(model.dtype).itemsize,
        machine=machine(),
        recording_overheads=[
            float(r.sum() / q.sum() - 1.0) if q.sum() > 0 else 0.0
            for q, r in zip(plain, recorded, strict=True)
        ],
    )


def _per_step(runs: list[NDArray[np.float64]], steps: int) -> list[float]:
    """Median over runs of each step's time (runs are cut to the shortest)."""
    stacked = np.stack([r[:steps] for r in runs])
    return [float(s) for s in np.median(stacked, axis=0)]


def machine() -> dict[str, Any]:
    """The machine the figures ran on: CPU, cores, NumPy, BLAS kernel and threads, date."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "env": {name: os.environ.get(name) for name in BLAS_ENV},
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> dict[str, Any]:
    """BLAS library, kernel and threads from threadpoolctl if installed, else NumPy's build info."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {
                    "library": pool.get("internal_api"),
                    "version": pool.get("version"),
                    "kernel": pool.get("architecture"),
                    "threads": pool.get("num_threads"),
                    "source": "threadpoolctl",
                }
    config: dict[str, Any] = {}
    try:
        build: Any = np.show_config(mode="dicts")
        config = dict(build.get("Build Dependencies", {}).get("blas", {}))
    except Exception:
        config = {}
    return {
        "library": config.get("name"),
        "version": config.get("version"),
        "kernel": None,
        "threads": None,
        "source": "numpy build info (pip install 'maskviz[bench]' for the kernel and threads)",
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line: "AMD EPYC, 2 cores, NumPy 2.4.6, OpenBLAS 0.3.31 (SkylakeX kernel, 2 threads)"."""
    blas = info.get("blas", {})
    kernel = blas.get("kernel")
    threads = blas.get("threads")
    detail = ", ".join(
        part
        for part in (
            f"{kernel} kernel" if kernel else "",
            f"{threads} threads" if threads else "",
        )
        if part
    )
    name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(str(blas.get("library")), blas.get("library"))
    text = f"{info.get('cpu')}, {info.get('cores')} cores, NumPy {info.get('numpy')}, {name} {blas.get('version')}"
    return f"{text} ({detail})" if detail else text
