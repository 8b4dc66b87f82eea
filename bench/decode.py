"""Decode speed: maskviz's NumPy engine against transformers' GPT-2, same weights, same machine.

    python bench/decode.py                      # GPT-2-small shape, 256 tokens
    python bench/decode.py --hf-python /path/to/venv-with-torch/bin/python
    python bench/decode.py --baseline REV       # also time the engine of a git revision

Runs, in separate processes that take turns (``--rounds``):

- maskviz cached decode, recording off, and a bandwidth probe;
- transformers' GPT2LMHeadModel (eager attention, use_cache=True, torch threads =
  cores) decoding greedily with the same random weights, if torch and transformers
  import in ``--hf-python`` (default: this interpreter); skipped otherwise;
- optionally the engine file of another git revision (``--baseline``);

then once: `maskviz.bench.run` (cached, recording, recompute, training-mode pass),
recording variants (float16, one head) and a cached decode to the full context.
Writes bench/results/decode.json; ``python bench/report.py`` turns it into
docs/performance.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, median, per_position_median, save, worker

HERE = Path(__file__).resolve()
PROBE_BYTES = 768 * 50257 * 4


# ---------------------------------------------------------------- workers


def _model(shape: str, engine_file: str | None) -> Any:
    """The random model of ``shape``, built with this checkout's engine or another file's."""
    from maskviz.bench import SHAPES

    if engine_file is None:
        from maskviz.model import random_model
    else:
        spec = importlib.util.spec_from_file_location("baseline_model", engine_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["baseline_model"] = module
        spec.loader.exec_module(module)
        random_model = module.random_model
    return random_model(SHAPES[shape], seed=0)


def worker_maskviz(args: argparse.Namespace) -> dict[str, Any]:
    from maskviz.bench import BandwidthProbe, machine, weight_bytes_per_token

    model = _model(args.shape, args.engine_file)
    prompt = [464]  # "The" in GPT-2's vocabulary
    steps = args.tokens - 1
    wbytes = weight_bytes_per_token(model)
    probe = BandwidthProbe()
    model.trace(prompt, steps=8, record=False)  # warm up
    runs = []
    around = [probe.measure(5)]  # probe between runs: bandwidth drifts on shared machines
    for _ in range(args.repeats):
        runs.append(model.trace(prompt, steps=steps, record=False).step_seconds.tolist())
        around.append(probe.measure(5))
    products = _product_bandwidth(model, probe)
    # each run against the mean bandwidth measured just before and just after it
    paired = [
        (len(run) / sum(run)) / (PROBE_BYTES / ((before + after) / 2) / wbytes)
        for run, before, after in zip(runs, around, around[1:], strict=False)
    ]
    return {
        "runs": runs,
        "paired_fraction_of_bound": paired,
        "products": products,
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
    names = ["c_attn_w", "attn_c_proj_w", "c_fc_w", "mlp_c_proj_w"]
    x = np.random.default_rng(0).standard_normal((1, 4 * model.config.n_embd), dtype=np.float32)
    seconds: dict[str, list[float]] = {n: [] for n in [*names, "head"]}
    head = w.wte if w.lm_head is None else w.lm_head
    for _ in range(sweeps):
        spent = dict.fromkeys(seconds, 0.0)
        for block in w.blocks:
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
    nbytes = {n: sum(getattr(b, n).nbytes for b in w.blocks) for n in names}
    nbytes["head"] = head.nbytes
    probe_now = probe.measure(9)
    return {
        name: {
            "bytes": nbytes[name],
            "seconds": median(times),
            "gb_per_second": nbytes[name] / median(times) / 1e9,
            "column_major": bool(
                np.isfortran(getattr(w.blocks[0], name) if name != "head" else head)
            ),
        }
        for name, times in seconds.items()
    } | {"probe_gb_per_second": PROBE_BYTES / probe_now / 1e9}


def _hf_model(shape: str) -> tuple[Any, Any]:
    """transformers' GPT2LMHeadModel holding the maskviz random model's weights."""
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    mv = _model(shape, None)
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
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected, unexpected
    assert all(name in ("lm_head.weight",) or "attn.bias" in name for name in missing), missing
    model.tie_weights()
    return model, mv


def worker_hf(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    model, mv = _hf_model(args.shape)
    prompt = [464]
    steps = args.tokens - 1

    # transformers 5.x names the cache argument and output `cache` (`past_key_values` before)
    new_api = "cache" in inspect.signature(model.forward).parameters
    key = "cache" if new_api else "past_key_values"

    def decode(n: int) -> tuple[list[float], list[int], list[Any]]:
        times: list[float] = []
        chosen: list[int] = []
        rows: list[Any] = []
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([prompt]), use_cache=True)
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

    decode(8)  # warm up
    runs = [decode(steps)[0] for _ in range(args.repeats)]
    # Same weights, same greedy tokens: the two engines compute the same function.
    _, hf_tokens, hf_rows = decode(16)
    trace = mv.trace(prompt, steps=16, record=False)
    import numpy as np

    diff = float(np.abs(np.stack(hf_rows) - trace.logits[1:]).max())
    return {
        "runs": runs,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "attn_implementation": model.config._attn_implementation,
        "parity": {
            "tokens_agree": hf_tokens == trace.token_ids[1:].tolist(),
            "max_abs_diff_logits": diff,
            "steps": 16,
        },
    }


def worker_full(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `maskviz bench` measures, plus recording variants and a full-context curve."""
    import numpy as np

    from maskviz.bench import run

    model = _model(args.shape, None)
    prompt = [464]
    result = run(model, tokens=args.tokens, repeats=args.repeats, prompt=prompt)
    steps = args.tokens - 1
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
    kv = model.trace(prompt, steps=4, record=False).kv_cache_bytes // 5
    return {
        "bench": result.to_dict(),
        "recording": variants,
        "long": {"positions": list(range(1, long_steps + 1)), "runs": long_runs},
        "kv_cache_bytes_per_token": int(kv),
        "weights_bytes": int(model.weights.nbytes),
        "head_is_column_major": bool(np.isfortran(model.weights.wte)),
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
    parser.add_argument("--shape", default="gpt2-small", choices=["gpt2-small", "gpt2-medium"])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hf-python", default=sys.executable)
    parser.add_argument("--baseline", default=None, help="git revision whose engine to time too")
    parser.add_argument("--engine-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-full", action="store_true", help="only the engine comparison")
    parser.add_argument(
        "--long-tokens", type=int, default=0, help="length of the full-context curve (0: n_ctx)"
    )
    args = parser.parse_args()
    if args.role != "driver":
        role = {"maskviz": worker_maskviz, "hf": worker_hf, "full": worker_full}[args.role]
        print(json.dumps(role(args)))
        return 0

    common = ["--shape", args.shape, "--tokens", str(args.tokens), "--repeats", str(args.repeats)]
    common += ["--long-tokens", str(args.long_tokens)]
    hf = _hf_available(args.hf_python)
    if not hf:
        print(f"transformers/torch not importable in {args.hf_python}: skipping the comparison")
    baseline_file = None
    if args.baseline:
        source = subprocess.run(
            ["git", "show", f"{args.baseline}:maskviz/model.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        handle = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)  # noqa: SIM115
        handle.write(source)
        handle.close()
        baseline_file = handle.name
    runs: dict[str, list[list[float]]] = {"maskviz": [], "hf": [], "baseline": []}
    extra: dict[str, Any] = {}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: maskviz", flush=True)
        out = worker(sys.executable, HERE, ["maskviz", *common])
        runs["maskviz"] += out["runs"]
        extra.setdefault("probe_samples", []).extend(out["probe_samples"])
        extra.setdefault("products", []).append(out["products"])
        extra.setdefault("paired", []).extend(out["paired_fraction_of_bound"])
        extra["weight_bytes_per_token"] = out["weight_bytes_per_token"]
        extra["machine"] = out["machine"]
        if hf:
            print(f"round {r + 1}/{args.rounds}: transformers", flush=True)
            out = worker(args.hf_python, HERE, ["hf", *common])
            runs["hf"] += out["runs"]
            extra["hf"] = {k: v for k, v in out.items() if k != "runs"}
        if baseline_file:
            print(f"round {r + 1}/{args.rounds}: baseline {args.baseline}", flush=True)
            out = worker(sys.executable, HERE, ["maskviz", *common, "--engine-file", baseline_file])
            runs["baseline"] += out["runs"]
    if baseline_file:
        os.unlink(baseline_file)

    def summary(name: str) -> dict[str, Any] | None:
        if not runs[name]:
            return None
        steps = per_position_median(runs[name])
        return {
            "runs": len(runs[name]),
            "step_seconds": steps,
            "tokens_per_second": len(steps) / sum(steps),
            "median_step_seconds": median(steps),
        }

    results: dict[str, Any] = {
        "shape": args.shape,
        "tokens": args.tokens,
        "engines": {name: summary(name) for name in runs},
        "baseline_revision": args.baseline,
        "probe_seconds": median(extra["probe_samples"]),
        "probe_samples": extra["probe_samples"],
        "paired_fraction_of_bound": extra["paired"],
        "products": extra["products"],
        "weight_bytes_per_token": extra["weight_bytes_per_token"],
        "machine": extra["machine"],
        "hf": extra.get("hf"),
    }
    if not args.skip_full:
        print(
            "maskviz bench: cached, recording, recompute, training pass, full context", flush=True
        )
        results["full"] = worker(sys.executable, HERE, ["full", *common])
    path = save(f"decode-{args.shape}", results)
    _print(results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


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
    hf = results["engines"]["hf"]
    if hf:
        print(f"maskviz / transformers: {mv['tokens_per_second'] / hf['tokens_per_second']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
