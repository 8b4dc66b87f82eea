"""Decode speed: maskviz's NumPy engine against transformers, same weights, same machine.

    python bench/decode.py                      # GPT-2-small shape, 256 tokens
    python bench/decode.py --shape smollm2-135m # a Llama (GQA, RoPE), 128 tokens
    python bench/decode.py --shape smollm2-135m --tokens 512 --skip-full   # a longer decode
    python bench/decode.py --hf-python /path/to/venv-with-torch/bin/python
    python bench/decode.py --baseline REV       # also time the engine of a git revision

Runs, in separate processes that take turns (``--rounds``):

- maskviz cached decode, recording off, and a bandwidth probe;
- transformers' model of the shape's architecture (GPT2LMHeadModel or
  LlamaForCausalLM; eager attention, float32, torch threads = ``--threads``) holding
  the same random weights, decoding greedily with its cache two ways: a loop of
  cached forward calls, and its own ``generate``; both must choose exactly the
  tokens maskviz chose, or leave them only at a near tie (two logits within the
  engines' float32 differences of each other). Needs torch and transformers in
  ``--hf-python`` (default: this interpreter); skipped otherwise;
- optionally the engine (the whole ``maskviz`` package) of another git revision
  (``--baseline``);

then once: `maskviz.bench.run` (cached, recording, recompute, training-mode pass),
recording variants (float16, one head) and a cached decode to the full context.
Writes bench/results/decode-<shape>.json (decode-<shape>-<N>tokens.json for a length
other than the shape's own, `TOKENS`); ``python bench/report.py`` turns the results
into docs/performance.md. On a machine that is never idle, ``--quiet-wait 0`` starts
each worker at once (the JSON records how busy the machine was, ``others_cpu``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, median, per_position_median, save, worker

from maskviz.bench import SHAPES

HERE = Path(__file__).resolve()
PROBE_BYTES = 768 * 50257 * 4
PROMPT = [464]  # "The" in GPT-2's vocabulary; any id of the shapes' vocabularies
TOKENS = {"gpt2-small": 256, "smollm2-135m": 128}  # each shape's headline length
# each architecture's matrices, in the order a decoding step multiplies them
PRODUCTS = {
    "gpt2": ("blocks", ["c_attn_w", "attn_c_proj_w", "c_fc_w", "mlp_c_proj_w"]),
    "llama": ("layers", ["qkv_w", "o_w", "gate_up_w", "down_w"]),
}


# ---------------------------------------------------------------- workers


def _tiny(config: Any) -> Any:
    """``config`` with its layers and heads but matrices too small to take time: a step
    of it costs what a step costs besides streaming the weights (calls, Python)."""
    import dataclasses

    if config.architecture == "llama":
        return dataclasses.replace(config, head_dim=8, n_embd=72, intermediate=96, vocab_size=512)
    return dataclasses.replace(config, n_embd=8 * config.n_head, vocab_size=512)


def _model(shape: str, engine_root: str | None, *, tiny: bool = False) -> Any:
    """The random model of ``shape`` (``tiny``: of `_tiny` of it), built with this
    checkout's engine or with the ``maskviz`` package found in ``engine_root`` (another
    revision's, for --baseline)."""
    import dataclasses

    # SHAPES of this checkout, imported with the module: the baseline may not name the shape
    config = _tiny(SHAPES[shape]) if tiny else SHAPES[shape]
    if engine_root is None:
        from maskviz.model import random_model

        return random_model(config, seed=0)
    # this checkout named the shape; the other revision builds and runs it
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    family = type(config).__module__
    for name in [m for m in sys.modules if m == "maskviz" or m.startswith("maskviz.")]:
        del sys.modules[name]
    sys.path.insert(0, engine_root)
    other = importlib.import_module(family)
    model = importlib.import_module("maskviz.model")
    assert model.__file__ is not None and model.__file__.startswith(engine_root)
    cls = getattr(other, type(config).__name__)
    known = {f.name for f in dataclasses.fields(cls)}
    # fields added since that revision must be at their defaults (the same model)
    later = {k: v for k, v in fields.items() if k not in known}
    assert later == {f.name: f.default for f in dataclasses.fields(config) if f.name in later}, (
        later
    )
    return model.random_model(cls(**{k: v for k, v in fields.items() if k in known}), seed=0)


def worker_maskviz(args: argparse.Namespace) -> dict[str, Any]:
    from maskviz.bench import BandwidthProbe, machine

    model = _model(args.shape, args.engine_root)
    prompt = PROMPT
    steps = args.tokens - len(PROMPT)
    wbytes = model.weights.weight_bytes_per_step()
    probe = BandwidthProbe()
    model.trace(prompt, steps=8, record=False)  # warm up
    runs = []
    around = [probe.measure(5)]  # probe between runs: bandwidth drifts on shared machines
    for _ in range(args.repeats):
        runs.append(model.trace(prompt, steps=steps, record=False).step_seconds.tolist())
        around.append(probe.measure(5))
    products = _product_bandwidth(model, probe)
    small = _model(args.shape, args.engine_root, tiny=True)
    small.trace(prompt, steps=8, record=False)
    overhead = [
        median(small.trace(prompt, steps=steps, record=False).step_seconds.tolist())
        for _ in range(5)
    ]
    # each run against the mean bandwidth measured just before and just after it
    paired = [
        (len(run) / sum(run)) / (PROBE_BYTES / ((before + after) / 2) / wbytes)
        for run, before, after in zip(runs, around, around[1:], strict=False)
    ]
    return {
        "runs": runs,
        "paired_fraction_of_bound": paired,
        "products": products,
        "call_overhead_seconds": median(overhead),
        "probe_samples": probe.samples,
        "weight_bytes_per_token": wbytes,
        "machine": machine(),
    }


def _product_bandwidth(model: Any, probe: Any, sweeps: int = 15) -> dict[str, Any]:
    """GB/s of each kind of matrix-vector product a decoding step makes, in the step's order.

    Every sweep runs the layers' products in turn (q|k|v, attention output, MLP in,
    MLP out) and then the head, as a step does, so each matrix comes from memory.
    """
    import numpy as np

    w = model.weights
    field, names = PRODUCTS[model.config.architecture]
    blocks = getattr(w, field)
    widest = max(getattr(blocks[0], n).shape[0] for n in names)
    x = np.random.default_rng(0).standard_normal((1, widest), dtype=np.float32)
    seconds: dict[str, list[float]] = {n: [] for n in [*names, "head"]}
    head = _head(w)
    for _ in range(sweeps):
        spent = dict.fromkeys(seconds, 0.0)
        for block in blocks:
            for name in names:
                matrix = getattr(block, name)
                t0 = time.perf_counter()
                x[:, : matrix.shape[0]] @ matrix
                spent[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        x[:, : head.shape[1]] @ head.T
        spent["head"] += time.perf_counter() - t0
        for name, value in spent.items():
            seconds[name].append(value)
    nbytes = {n: sum(getattr(b, n).nbytes for b in blocks) for n in names}
    nbytes["head"] = head.nbytes
    probe_now = probe.measure(9)
    return {
        name: {
            "bytes": nbytes[name],
            "seconds": median(times),
            "gb_per_second": nbytes[name] / median(times) / 1e9,
            "column_major": bool(
                np.isfortran(getattr(blocks[0], name) if name != "head" else head)
            ),
        }
        for name, times in seconds.items()
    } | {"probe_gb_per_second": PROBE_BYTES / probe_now / 1e9}


def _head(weights: Any) -> Any:
    """The output head [V, C] of either architecture (tied: the token embedding)."""
    if weights.lm_head is not None:
        return weights.lm_head
    return weights.wte if hasattr(weights, "wte") else weights.embed_tokens


def _hf_model(shape: str, *, tiny: bool = False) -> tuple[Any, Any]:
    """transformers' model of the shape's architecture holding the maskviz random model's
    weights (eager attention, float32), and that maskviz model."""
    mv = _model(shape, None, tiny=tiny)
    build = {"gpt2": _hf_gpt2, "llama": _hf_llama}[mv.config.architecture]
    model, state = build(mv)
    import numpy as np
    import torch

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected, unexpected
    assert all(name in ("lm_head.weight",) or "attn.bias" in name for name in missing), missing
    model.tie_weights()
    model.generation_config.eos_token_id = mv.tokenizer.eot_id  # stop where maskviz stops
    model.generation_config.pad_token_id = mv.tokenizer.eot_id
    return model, mv


def _hf_gpt2(mv: Any) -> tuple[Any, dict[str, Any]]:
    """GPT2LMHeadModel and the state dict (Conv1D weights are (in, out), as maskviz's)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = mv.config
    hf_cfg = GPT2Config(
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        n_positions=cfg.n_ctx,
        vocab_size=cfg.vocab_size,
        layer_norm_epsilon=cfg.layer_norm_epsilon,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
    )
    hf_cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(hf_cfg).eval()
    w = mv.weights
    state = {
        "transformer.wte.weight": w.wte,
        "transformer.wpe.weight": w.wpe,
        "transformer.ln_f.weight": w.ln_f_w,
        "transformer.ln_f.bias": w.ln_f_b,
    }
    names = {
        "ln_1.weight": "ln_1_w",
        "ln_1.bias": "ln_1_b",
        "attn.c_attn.weight": "c_attn_w",
        "attn.c_attn.bias": "c_attn_b",
        "attn.c_proj.weight": "attn_c_proj_w",
        "attn.c_proj.bias": "attn_c_proj_b",
        "ln_2.weight": "ln_2_w",
        "ln_2.bias": "ln_2_b",
        "mlp.c_fc.weight": "c_fc_w",
        "mlp.c_fc.bias": "c_fc_b",
        "mlp.c_proj.weight": "mlp_c_proj_w",
        "mlp.c_proj.bias": "mlp_c_proj_b",
    }
    for i, block in enumerate(w.blocks):
        for hf_name, mv_name in names.items():
            state[f"transformer.h.{i}.{hf_name}"] = getattr(block, mv_name)
    return model, state


def _hf_llama(mv: Any) -> tuple[Any, dict[str, Any]]:
    """LlamaForCausalLM and the state dict: maskviz's fused (in, out) q|k|v and gate|up
    split into transformers' (out, in) Linear weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = mv.config
    plain = not (cfg.qkv_bias or cfg.o_bias or cfg.qk_norm or cfg.rope_scaling)
    assert plain and set(cfg.windows) == {None}, "the comparison covers plain Llama shapes"
    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.n_ctx,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf_cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(hf_cfg).eval()
    w = mv.weights
    q, kv, inter = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim, cfg.intermediate
    state = {"model.embed_tokens.weight": w.embed_tokens, "model.norm.weight": w.norm}
    if w.lm_head is not None:
        state["lm_head.weight"] = w.lm_head
    for i, layer in enumerate(w.layers):
        p = f"model.layers.{i}."
        state |= {
            p + "input_layernorm.weight": layer.attn_norm,
            p + "self_attn.q_proj.weight": layer.qkv_w[:, :q].T,
            p + "self_attn.k_proj.weight": layer.qkv_w[:, q : q + kv].T,
            p + "self_attn.v_proj.weight": layer.qkv_w[:, q + kv :].T,
            p + "self_attn.o_proj.weight": layer.o_w.T,
            p + "post_attention_layernorm.weight": layer.mlp_norm,
            p + "mlp.gate_proj.weight": layer.gate_up_w[:, :inter].T,
            p + "mlp.up_proj.weight": layer.gate_up_w[:, inter:].T,
            p + "mlp.down_proj.weight": layer.down_w.T,
        }
    return model, state


class _StepClock:
    """A `generate` streamer that notes when each token arrives: the first call brings
    the prompt, the second the token chosen after prefill, each later one a cached step."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.tokens: list[int] = []

    def put(self, value: Any) -> None:
        self.stamps.append(time.perf_counter())
        if len(self.stamps) > 1:
            self.tokens.append(int(value.reshape(-1)[0]))

    def end(self) -> None:
        pass

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps[1:], self.stamps[2:], strict=False)]


def worker_hf(args: argparse.Namespace) -> dict[str, Any]:
    """transformers decoding the same sequence two ways: its own `generate` (greedy,
    with its cache) and a plain loop of cached forward calls, each step timed."""
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    model, mv = _hf_model(args.shape)
    steps = args.tokens - len(PROMPT)

    # transformers 5.x names the cache argument and output `cache` (`past_key_values` before)
    new_api = "cache" in inspect.signature(model.forward).parameters
    key = "cache" if new_api else "past_key_values"

    def decode(n: int) -> tuple[list[float], list[int], list[Any]]:
        times: list[float] = []
        chosen: list[int] = []
        rows: list[Any] = []
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([PROMPT]), use_cache=True)
            past, logits = getattr(out, key), out.logits[:, -1]
            for _ in range(n):
                t0 = time.perf_counter()
                nxt = logits.argmax(-1, keepdim=True)
                out = model(input_ids=nxt, use_cache=True, **{key: past})
                past, logits = getattr(out, key), out.logits[:, -1]
                times.append(time.perf_counter() - t0)
                chosen.append(int(nxt))
                rows.append(logits[0].numpy().copy())
        return times, chosen, rows

    def generate(n: int) -> _StepClock:
        clock = _StepClock()
        with torch.inference_mode():
            model.generate(
                torch.tensor([PROMPT]), max_new_tokens=n + 1, do_sample=False, use_cache=True,
                streamer=clock,
            )  # fmt: skip  # n + 1 new tokens: the first comes from prefill, then n steps
        return clock

    decode(8)  # warm up
    generate(8)
    runs, generated = [], []
    for _ in range(args.repeats):  # interleaved, so a slow moment hits both alike
        times, loop_tokens, rows = decode(steps)
        runs.append(times)
        clock = generate(steps)
        generated.append(clock.step_seconds())
    small, _ = _hf_model(args.shape, tiny=True)
    with torch.inference_mode():
        overhead = []
        for _ in range(6):  # the first warms up
            ticks = _StepClock()
            small.generate(
                torch.tensor([PROMPT]), max_new_tokens=steps + 1, min_new_tokens=steps + 1,
                do_sample=False, streamer=ticks,
            )  # fmt: skip
            overhead.append(median(ticks.step_seconds()))
    # Same weights, same greedy tokens: the engines compute one function. Over a long
    # decode two logits can come within the engines' float32 differences of each other
    # (a near tie), where either engine's rounding may choose; past it the sequences
    # differ but every step still does the same work, so the timings stand.
    trace = mv.trace(PROMPT, steps=steps, record=False)
    ours = trace.token_ids[len(PROMPT) :].tolist()
    decided = trace.logits[len(PROMPT) - 1 :]  # row k chose ours[k]
    n = len(ours)
    parity = _parity(ours, {"loop": loop_tokens[:n], "generate": clock.tokens[:n]}, rows, decided)
    return {
        "runs": runs,
        "generate_runs": generated,
        "call_overhead_seconds": median(overhead[1:]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "attn_implementation": model.config._attn_implementation,
        "parity": parity,
    }


def _parity(
    ours: list[int], theirs: dict[str, list[int]], rows: list[Any], decided: Any
) -> dict[str, Any]:
    """How transformers' greedy tokens (``theirs``, per way of running it) compare with
    maskviz's (``ours``): identical, or identical up to a near tie.

    ``rows[k]`` is transformers' loop's logits after its step k, ``decided[k]`` the
    logits maskviz chose ``ours[k]`` from (so ``decided[k + 1]`` matches ``rows[k]``
    while the sequences agree). A first difference at step k is a near tie when, in
    maskviz's row, the two chosen tokens' logits are no further apart than the largest
    logit difference between the engines before it.
    """
    import numpy as np

    n = len(ours)

    def differs(tokens: list[int]) -> int:  # the first step where tokens leave ours, or n
        return next((k for k in range(n) if k >= len(tokens) or tokens[k] != ours[k]), n)

    first = min((differs(tokens) for tokens in theirs.values()), default=n)
    shared = min(first, len(rows))  # the loop's rows over the same sequence as maskviz's
    diff = float(np.abs(np.stack(rows[:shared]) - decided[1 : shared + 1]).max()) if shared else 0.0
    out: dict[str, Any] = {
        "tokens_agree": first == n,
        **{f"{way}_tokens_agree": tokens == ours for way, tokens in theirs.items()},
        "max_abs_diff_logits": diff,
        "steps": n,
    }
    if first < n:
        # a run that stopped early (an end token maskviz did not choose) is no tie
        chosen = [t[first] if first < len(t) else None for t in theirs.values()]
        gaps = [
            abs(float(decided[first][ours[first]] - decided[first][t]))
            for t in chosen
            if t is not None
        ]
        gap = max(gaps) if None not in chosen else float("inf")
        out.update(first_difference=first, tie_gap=gap, near_tie=gap <= diff)
    return out


def worker_full(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `maskviz bench` measures, plus recording variants and a full-context curve."""
    import numpy as np

    from maskviz.arch import kv_cache_bytes
    from maskviz.bench import run

    model = _model(args.shape, None)
    prompt = PROMPT
    result = run(model, tokens=args.tokens, repeats=args.repeats, prompt=prompt)
    steps = args.tokens - len(PROMPT)
    variants: dict[str, Any] = {}
    for name, kwargs in {
        "off": {"record": False},
        "all_float32": {},
        "all_float16": {"record_dtype": "float16"},
        "one_head": {"layers": [0], "heads": [0]},
    }.items():
        times, nbytes = [], 0
        for _ in range(args.repeats):
            trace = model.trace(prompt, steps=steps, **kwargs)
            times.append(float(trace.step_seconds.sum()))
            nbytes = int(trace.attention.nbytes)
        variants[name] = {"seconds": median(times), "attention_bytes": nbytes}
    long_steps = min(args.long_tokens or model.config.n_ctx, model.config.n_ctx) - 1
    long_runs = [
        model.trace(prompt, steps=long_steps, record=False).step_seconds.tolist() for _ in range(2)
    ]
    kv = kv_cache_bytes(model.config, 1, 4)
    return {
        "bench": result.to_dict(),
        "recording": variants,
        "long": {"positions": list(range(1, long_steps + 1)), "runs": long_runs},
        "kv_cache_bytes_per_token": int(kv),
        "weights_bytes": int(model.weights.nbytes),
        "head_is_column_major": bool(np.isfortran(_head(model.weights))),
    }


# ---------------------------------------------------------------- driver


def _hf_available(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import torch, transformers, maskviz"], capture_output=True, check=False
    )
    return probe.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role", nargs="?", default="driver", choices=["driver", "maskviz", "hf", "full"]
    )
    parser.add_argument("--shape", default="gpt2-small", choices=list(SHAPES))
    parser.add_argument("--tokens", type=int, default=None, help="default: the shape's TOKENS")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hf-python", default=sys.executable)
    parser.add_argument("--baseline", default=None, help="git revision whose engine to time too")
    parser.add_argument("--engine-root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-full", action="store_true", help="only the engine comparison")
    parser.add_argument(
        "--long-tokens", type=int, default=0, help="length of the full-context curve (0: n_ctx)"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=300.0,
        help="seconds each worker waits for idle CPUs (0: start at once, on a machine that "
        "is never idle; the JSON records how busy it was)",
    )  # fmt: skip
    parser.add_argument("--attempts", type=int, default=3, help="tries of a disturbed worker")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1,
        help="BLAS threads of maskviz and torch threads of transformers (default: cores)",
    )  # fmt: skip
    args = parser.parse_args()
    args.tokens = args.tokens or TOKENS[args.shape]
    if args.role != "driver":
        role = {"maskviz": worker_maskviz, "hf": worker_hf, "full": worker_full}[args.role]
        print(json.dumps(role(args)))
        return 0

    common = ["--shape", args.shape, "--tokens", str(args.tokens), "--repeats", str(args.repeats)]
    common += ["--long-tokens", str(args.long_tokens), "--threads", str(args.threads)]
    threads = {"OPENBLAS_NUM_THREADS": str(args.threads)}  # NumPy's BLAS in every worker
    hf = _hf_available(args.hf_python)
    if not hf:
        print(f"transformers/torch not importable in {args.hf_python}: skipping the comparison")
    baseline_root = None
    if args.baseline:
        # the revision's whole package, so that its architecture modules run too
        baseline_root = tempfile.mkdtemp(prefix="maskviz-baseline-")
        archive = subprocess.run(
            ["git", "archive", args.baseline, "maskviz"], cwd=ROOT, capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", baseline_root], input=archive, check=True)
    runs: dict[str, list[list[float]]] = {
        "maskviz": [], "hf": [], "hf_generate": [], "baseline": []
    }  # fmt: skip
    extra: dict[str, Any] = {"others_cpu": {name: [] for name in runs}}
    overhead: dict[str, list[float]] = {name: [] for name in runs}

    def run_worker(name: str, python: str, role: list[str]) -> Any:
        out = worker(
            python, HERE, role, threads, quiet_wait=args.quiet_wait, attempts=args.attempts
        )
        extra["others_cpu"][name].append(out["others_cpu"])
        if "call_overhead_seconds" in out:
            overhead[name].append(out["call_overhead_seconds"])
        return out

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: maskviz", flush=True)
        out = run_worker("maskviz", sys.executable, ["maskviz", *common])
        runs["maskviz"] += out["runs"]
        extra.setdefault("probe_samples", []).extend(out["probe_samples"])
        extra.setdefault("products", []).append(out["products"])
        extra.setdefault("paired", []).extend(out["paired_fraction_of_bound"])
        extra["weight_bytes_per_token"] = out["weight_bytes_per_token"]
        extra["machine"] = out["machine"]
        if hf:
            print(f"round {r + 1}/{args.rounds}: transformers", flush=True)
            out = run_worker("hf", args.hf_python, ["hf", *common])
            runs["hf"] += out["runs"]
            runs["hf_generate"] += out["generate_runs"]
            extra["hf"] = {k: v for k, v in out.items() if k not in ("runs", "generate_runs")}
            extra.setdefault("parity", []).append(out["parity"])
        if baseline_root:
            print(f"round {r + 1}/{args.rounds}: baseline {args.baseline}", flush=True)
            role = ["maskviz", *common, "--engine-root", baseline_root]
            out = run_worker("baseline", sys.executable, role)
            runs["baseline"] += out["runs"]
    if baseline_root:
        shutil.rmtree(baseline_root)

    def summary(name: str) -> dict[str, Any] | None:
        if not runs[name]:
            return None
        steps = per_position_median(runs[name])
        return {
            "runs": len(runs[name]),
            "step_seconds": steps,
            "tokens_per_second": len(steps) / sum(steps),
            "median_step_seconds": median(steps),
            # the spread: tokens/s of each run on its own, in the order they ran
            "run_tokens_per_second": [len(run) / sum(run) for run in runs[name]],
        }

    results: dict[str, Any] = {
        "shape": args.shape,
        "tokens": args.tokens,
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "engines": {name: summary(name) for name in runs},
        "baseline_revision": args.baseline,
        "probe_seconds": median(extra["probe_samples"]),
        "probe_samples": extra["probe_samples"],
        "paired_fraction_of_bound": extra["paired"],
        "products": extra["products"],
        "weight_bytes_per_token": extra["weight_bytes_per_token"],
        "machine": extra["machine"],
        "hf": extra.get("hf"),
        "others_cpu": extra["others_cpu"],
        # a step of the same layers and heads with tiny matrices: calls and Python
        "call_overhead_seconds": {name: median(v) for name, v in overhead.items() if v},
    }
    if "parity" in extra:
        # every transformers worker decoded the very tokens maskviz decoded, or left them
        # only at a near tie (see `_parity`)
        parity = extra["parity"]
        merged = results["hf"]["parity"]
        merged["tokens_agree"] = all(p["tokens_agree"] for p in parity)
        merged["max_abs_diff_logits"] = max(p["max_abs_diff_logits"] for p in parity)
        ties = [p for p in parity if not p["tokens_agree"]]
        if ties:
            first = min(ties, key=lambda p: p["first_difference"])
            merged.update({k: first[k] for k in ("first_difference", "tie_gap")})
            merged["near_tie"] = all(p["near_tie"] for p in ties)
            if not merged["near_tie"]:
                save(_results_name(args), results)
                raise SystemExit("transformers and maskviz chose different greedy tokens")
    if not args.skip_full:
        print(
            "maskviz bench: cached, recording, recompute, training pass, full context", flush=True
        )
        results["full"] = worker(
            sys.executable, HERE, ["full", *common], threads, quiet_wait=args.quiet_wait,
            attempts=args.attempts,
        )  # fmt: skip
    path = save(_results_name(args), results)
    _print(results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _results_name(args: argparse.Namespace) -> str:
    """decode-<shape>, with -<N>thread when not every core was used and -<N>tokens for a
    length other than the shape's headline one."""
    cores = os.cpu_count() or 1
    name = f"decode-{args.shape}" + ("" if args.threads == cores else f"-{args.threads}thread")
    return name + ("" if args.tokens == TOKENS[args.shape] else f"-{args.tokens}tokens")


def _print(results: dict[str, Any]) -> None:
    probe = results["probe_seconds"]
    gbps = 768 * 50257 * 4 / probe / 1e9
    bound = gbps * 1e9 / results["weight_bytes_per_token"]
    print(
        f"\n{results['shape']}, {results['tokens']} tokens; probe {gbps:.1f} GB/s; bound {bound:.1f} tokens/s"
    )
    print(f"{'engine':<14}{'tokens/s':>10}{'ms/step':>10}{'of bound':>10}")
    mv = results["engines"]["maskviz"]
    for name, data in results["engines"].items():
        if data is None:
            continue
        tps = data["tokens_per_second"]
        print(f"{name:<14}{tps:>10.2f}{1e3 / tps:>10.2f}{tps / bound:>10.0%}")
    for name in ("hf", "hf_generate"):
        hf = results["engines"][name]
        if hf:
            ratio = mv["tokens_per_second"] / hf["tokens_per_second"]
            runs = mv["run_tokens_per_second"]
            print(
                f"maskviz / {name}: {ratio:.2f}x (maskviz runs {min(runs):.1f} to "
                f"{max(runs):.1f} tokens/s; {name} runs {min(hf['run_tokens_per_second']):.1f} "
                f"to {max(hf['run_tokens_per_second']):.1f})"
            )
    if results.get("hf"):
        p = results["hf"]["parity"]
        print(f"greedy tokens agree: {p['tokens_agree']} ({p['steps']} steps)")
        if not p["tokens_agree"]:
            print(
                f"  identical for the first {p['first_difference']}, then a near tie (logits "
                f"{p['tie_gap']:.1e} apart; the engines differ by up to "
                f"{p['max_abs_diff_logits']:.1e})"
            )


if __name__ == "__main__":
    sys.exit(main())
