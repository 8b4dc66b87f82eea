"""Write docs/performance.md (and its picture) from bench/results/*.json.

    python bench/decode.py --hf-python ... --baseline REV   # writes decode-gpt2-small.json
    python bench/startup.py                                  # writes startup.json
    python bench/report.py

Every figure in the page comes from those files; the page says which machine,
BLAS kernel and date they were measured on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, load, median, per_position_median

DOC = ROOT / "docs" / "performance.md"
PROBE_BYTES = 768 * 50257 * 4
PICTURE = ROOT / "docs" / "images" / "performance-latency.png"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def picture(decode: dict[str, Any]) -> None:
    """Per-step time against position: cached (to the full context), recompute, transformers."""
    from matplotlib.figure import Figure

    from maskviz.render.figures import save_figure

    full = decode["full"]
    bench = full["bench"]
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    cached = bench["cached"]
    left.plot(
        bench["recompute"]["positions"],
        [s * 1e3 for s in bench["recompute"]["step_seconds"]],
        color="#d95f02",
        label="maskviz recompute (no cache)",
    )
    left.plot(
        cached["positions"],
        [s * 1e3 for s in cached["step_seconds"]],
        color="#1b7837",
        label="maskviz cached",
    )
    left.set_title(f"no cache vs KV cache, {decode['tokens']} tokens")
    long_steps = per_position_median(full["long"]["runs"])
    right.plot(
        full["long"]["positions"][: len(long_steps)],
        [s * 1e3 for s in long_steps],
        color="#1b7837",
        label="maskviz cached",
    )
    hf = decode["engines"].get("hf")
    if hf:
        right.plot(
            range(1, len(hf["step_seconds"]) + 1),
            [s * 1e3 for s in hf["step_seconds"]],
            color="#e7298a",
            label="transformers cached (eager)",
        )
    bound_ms = 1e3 * decode["weight_bytes_per_token"] / (768 * 50257 * 4 / decode["probe_seconds"])
    right.axhline(bound_ms, color="#7570b3", linestyle="--", label="bandwidth bound")
    right.set_title("cached steps up to the full context")
    right.set_ylim(bottom=0)
    left.set_ylim(bottom=0)
    for ax, where in ((left, "upper left"), (right, "lower right")):
        ax.set_xlabel("position of the decoded token")
        ax.set_ylabel("time per step (ms)")
        ax.grid(alpha=0.3)
        ax.legend(loc=where, frameon=True, framealpha=0.9)
    fig.suptitle(f"GPT-2-small shape, random weights, float32 ({decode['machine']['date']})")
    save_figure(fig, PICTURE, dpi=110)


def _engine_names(decode: dict[str, Any]) -> dict[str, str]:
    return {
        "maskviz": "maskviz (this version)",
        "hf": "transformers, eager, KV cache (a loop of forward calls)",
        "hf_generate": "transformers `generate`, eager, KV cache",
        "baseline": f"maskviz before (`{decode.get('baseline_revision')}`)",
    }


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def _round_ratios(decode: dict[str, Any], name: str) -> list[float]:
    """maskviz over ``name`` round by round (median tokens/s of each round's runs)."""
    engines, per = decode["engines"], decode.get("repeats") or 1
    ours, theirs = (
        engines["maskviz"]["run_tokens_per_second"],
        engines[name]["run_tokens_per_second"],
    )
    rounds = min(len(ours), len(theirs)) // per
    return [
        median(ours[r * per : (r + 1) * per]) / median(theirs[r * per : (r + 1) * per])
        for r in range(rounds)
    ]


def _tokens_verdict(parity: dict[str, Any]) -> str:
    """Whether transformers chose maskviz's greedy tokens: identical, or up to a near tie."""
    if parity["tokens_agree"]:
        return "identical"
    if parity.get("near_tie"):
        return f"identical for the first {parity['first_difference']:,}, then a near tie"
    return "they DIFFER"


def _generate_ratio(llama: dict[str, Any]) -> tuple[float, bool] | None:
    """maskviz over transformers' `generate`, and whether the 1.5x target holds (None
    without transformers)."""
    mv, gen = llama["engines"]["maskviz"], llama["engines"].get("hf_generate")
    if not gen:
        return None
    ratio = mv["tokens_per_second"] / gen["tokens_per_second"]
    parity = llama["hf"]["parity"]
    return ratio, ratio >= 1.5 and bool(parity["tokens_agree"] or parity.get("near_tie"))


def _cpu(run: dict[str, Any]) -> str:
    m = run["machine"]
    return f"{m['cpu']} ({m['blas']['kernel']} kernel)"


def llama_target(runs: list[dict[str, Any]], earlier: Sequence[dict[str, Any]] = ()) -> str | None:
    """The Targets row of the Llama-shape comparison: each length measured on this
    page's machine, then each other machine of ``earlier`` (None without transformers)."""
    cells, verdicts = [], []
    for group in (runs, earlier):
        machines: dict[tuple[str, str], list[tuple[dict[str, Any], float, bool]]] = {}
        for run in group:
            if (measured := _generate_ratio(run)) is not None:
                where = (f"{_cpu(run)}, {run['machine']['date']}", run["machine"]["cpu"])
                machines.setdefault(where, []).append((run, *measured))
        for (where, cpu), results in machines.items():
            parts, met, missed = [], [], []
            for run, ratio, ok in results:
                mv, gen = run["engines"]["maskviz"], run["engines"]["hf_generate"]
                parts.append(
                    f"{run['tokens']} tokens: {mv['tokens_per_second']:.1f} vs "
                    f"{gen['tokens_per_second']:.1f} tokens/s = **{ratio:.2f}x**, tokens "
                    f"{_tokens_verdict(run['hf']['parity'])}"
                )
                (met if ok else missed).append(str(run["tokens"]))
            cells.append(f"{where}: {'; '.join(parts)}")
            verdicts += [
                f"{_met(ok)} at {' and '.join(lengths)} tokens on {cpu}"
                for ok, lengths in ((True, met), (False, missed))
                if lengths
            ]
    if not cells:
        return None
    return (
        f"| cached decode, SmolLM2-135M shape (Llama, GQA), float32, random weights: >= 1.5x "
        f"transformers' eager `generate` with its cache, same greedy tokens | "
        f"{'<br>'.join(cells)} | {'<br>'.join(verdicts)} |"
    )


def machines_section(runs: list[dict[str, Any]], earlier: Sequence[dict[str, Any]]) -> list[str]:
    """The Llama-shape comparison on each machine it ran on: the ratio is the CPU's."""
    lines = ["### By machine\n"]
    lines.append(
        "The machines this comparison runs on are lent, and their CPUs differ from one day "
        "to the next. The same comparison on each (`bench/results/earlier/` keeps the "
        "other machines' results as they were written):\n"
    )
    lines.append(
        "| CPU | date | tokens | probe GB/s | maskviz tokens/s | `generate` tokens/s "
        "| maskviz is | a step besides its weights: maskviz | transformers |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for run in [*runs, *earlier]:
        measured = _generate_ratio(run)
        if measured is None:
            continue
        mv, gen = run["engines"]["maskviz"], run["engines"]["hf_generate"]
        calls = run.get("call_overhead_seconds") or {}
        overhead = [f"{calls[k] * 1e3:.1f} ms" if k in calls else "" for k in ("maskviz", "hf")]
        lines.append(
            f"| {_cpu(run)} | {run['machine']['date']} | {run['tokens']} | "
            f"{PROBE_BYTES / run['probe_seconds'] / 1e9:.1f} | {mv['tokens_per_second']:.1f} | "
            f"{gen['tokens_per_second']:.1f} | {measured[0]:.2f}x | {overhead[0]} | {overhead[1]} |"
        )
    lines.append(
        "\nmaskviz's step is mostly streaming weights, so it follows the machine's memory "
        "bandwidth (the probe). transformers' step spends more of its time in PyTorch's "
        "calls and Python, which the last two columns measure with the same layers and heads "
        "at tiny widths; on a CPU where those calls are slow, the ratio grows.\n"
    )
    return lines


def _target_budget(
    generate: dict[str, Any], products_ms: float, step_ms: float, o_loss_ms: float,
    llama: dict[str, Any],
) -> str:  # fmt: skip
    """What a step may cost for the 1.5x target, against what its products alone take."""
    theirs = 1e3 / generate["tokens_per_second"]
    target = theirs / 1.5
    calls = (llama.get("call_overhead_seconds") or {}).get("maskviz")
    spent = f"; {calls * 1e3:.2f} ms of it is the calls themselves (below)" if calls else ""
    return (
        f"**What 1.5x would take.** 1.5x `generate`'s speed is a {target:.1f} ms step. "
        f"The products alone take {products_ms:.1f} ms, leaving {target - products_ms:.1f} "
        f"ms for everything else, where maskviz spends {step_ms - products_ms:.1f} ms"
        f"{spent}. A step made of nothing but its products would be "
        f"{theirs / products_ms:.2f}x `generate`; one with the attention output at the "
        f"other products' rate, {theirs / (products_ms - o_loss_ms):.2f}x.\n"
    )


def llama_section(llama: dict[str, Any]) -> list[str]:
    """The SmolLM2-135M-shape comparison: both transformers timings, spread, load, bound."""
    from maskviz.bench import SHAPES, describe_machine

    cfg = SHAPES[llama["shape"]]
    engines = llama["engines"]
    mv = engines["maskviz"]
    t, m = llama["tokens"], llama["machine"]
    probe_gbps = PROBE_BYTES / llama["probe_seconds"] / 1e9
    wbytes = llama["weight_bytes_per_token"]
    bound = probe_gbps * 1e9 / wbytes
    lines = ["## A Llama: the SmolLM2-135M shape\n"]
    threads = llama.get("threads", m["cores"])
    intro = (
        f"A Llama of SmolLM2-135M's shape: {cfg.n_layer} layers of width {cfg.n_embd}, {cfg.n_head} query "
        f"heads sharing {cfg.n_kv_head} key/value heads of {cfg.head_dim}, SwiGLU MLP of "
        f"{cfg.intermediate}, RoPE, RMSNorm, the head tied to the embedding "
        f"({cfg.n_params / 1e6:.1f}M parameters, {_mb(wbytes)} of float32 weights read per "
        f"step). Random weights, a 1-token prompt and {t - 1} greedy steps; per-step medians "
        f"over {mv['runs']} runs of each engine in {llama.get('rounds', '?')} rounds of "
        f"separate processes that took turns, {threads} thread{'s' if threads != 1 else ''} "
        "each. transformers ran LlamaForCausalLM (eager attention, float32) holding the "
        "same weights, timed two ways in the same process: its own `generate` (greedy, "
        "with its cache; each step timed by a streamer) and a plain loop of cached forward "
        "calls."
    )
    hf = llama.get("hf")
    if hf:
        p = hf["parity"]
        intro += (
            f" In every transformers process both ways chose the same {p['steps']} greedy "
            f"tokens as maskviz ({_tokens_verdict(p)}), "
            f"with logits within {p['max_abs_diff_logits']:.1e}."
        )
    else:
        intro += " transformers was not installed: no comparison."
    lines.append(intro + "\n")
    lines.append(
        "| engine | tokens/s | ms per step | runs (tokens/s) | of the bound | maskviz is |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    names = _engine_names(llama)
    for key, data in engines.items():
        if not data:
            continue
        tps = data["tokens_per_second"]
        versus = "" if key == "maskviz" else f"{mv['tokens_per_second'] / tps:.2f}x"
        lines.append(
            f"| {names[key]} | {tps:.1f} | {1e3 / tps:.1f} | "
            f"{_spread(data['run_tokens_per_second'])} | {tps / bound:.0%} | {versus} |"
        )
    lines.append("")
    notes = []
    for key, label in (("hf_generate", "`generate`"), ("hf", "the forward loop")):
        ratios = _round_ratios(llama, key) if engines.get(key) else []
        if ratios:
            notes.append(f"{_spread(ratios, 2)}x {label}'s")
    text = f"Round by round, maskviz's speed was {' and '.join(notes)}." if notes else ""
    busy = llama.get("others_cpu") or {}
    load = [v for values in busy.values() for v in values]
    if load:
        text += (
            f" Other processes used {min(load):.2f}–{max(load):.2f} cores (median "
            f"{median(load):.2f}) of the {m['cores']} while the workers ran: the figures "
            "are from a shared machine, which is why the engines took turns."
        )
    text += (
        f" The bound: {_mb(wbytes)} of weights per step at the probe's {probe_gbps:.1f} GB/s "
        f"(median of {len(llama['probe_samples'])} products) is {bound:.1f} tokens/s."
    )
    lines.append(text.strip() + "\n")
    rounds = llama.get("products") or []
    if rounds:
        labels = {
            "qkv_w": "q\\|k\\|v projection [C, (H + 2 H_kv) d]",
            "o_w": "attention output [H d, C]",
            "gate_up_w": "MLP gate\\|up [C, 2 I]",
            "down_w": "MLP down [I, C]",
            "head": "output head [V, C]",
        }
        probe_now = median([r["probe_gb_per_second"] for r in rounds])
        lines.append(
            "Each kind of product a step makes, timed in the step's order over the model's "
            "own weights (median of sweeps), against the probe measured right after them "
            f"({probe_now:.1f} GB/s: repeated back to back, the probe's matrix is partly "
            "kept by the last-level cache, so it reads faster than the bound's median "
            "probe, taken between decoding runs):\n"
        )
        lines.append(
            "| product (all layers) | layout | MB per step | ms per step | GB/s | of the probe |\n"
            "|---|---|---:|---:|---:|---:|"
        )
        total = 0.0
        for key, label in labels.items():
            secs = median([r[key]["seconds"] for r in rounds])
            gbps = median([r[key]["gb_per_second"] for r in rounds])
            layout = "column-major" if rounds[0][key]["column_major"] else "row-major"
            total += secs * 1e3
            lines.append(
                f"| {label} | {layout} | {rounds[0][key]['bytes'] / 1e6:,.1f} | "
                f"{secs * 1e3:.2f} | {gbps:.1f} | {gbps / probe_now:.0%} |"
            )
        step_ms = 1e3 / mv["tokens_per_second"]
        rate = {key: median([r[key]["gb_per_second"] for r in rounds]) for key in labels}
        others = [v for k, v in rate.items() if k != "o_w"]
        o_ms = median([r["o_w"]["seconds"] for r in rounds]) * 1e3
        o_fast = o_ms * rate["o_w"] / median(others)
        lines.append(
            f"\nThe products take {total:.1f} ms of a {step_ms:.1f} ms step; the rest "
            f"({step_ms - total:.1f} ms) is attention over the cache, RoPE, the norms, SwiGLU, "
            f"choosing the token and Python, over {cfg.n_layer} layers. The attention output "
            f"streams at {rate['o_w']:.0f} GB/s where the other products reach "
            f"{min(others):.0f}–{max(others):.0f}: OpenBLAS runs a matrix-vector product on "
            "one thread when rows x columns < 460,800, and a 576 x 576 matrix is below it "
            "(it is as fast with one BLAS thread as with two, in either layout, and as a "
            "2-row product; 576 x 799 takes twice as long as 576 x 800); at the others' "
            f"rate it would take {o_fast:.1f} ms instead of {o_ms:.1f}.\n"
        )
        generate = engines.get("hf_generate")
        if generate:
            lines.append(_target_budget(generate, total, step_ms, o_ms - o_fast, llama))
    calls = llama.get("call_overhead_seconds") or {}
    if "maskviz" in calls:
        before = f" ({calls['baseline'] * 1e3:.2f} ms before)" if "baseline" in calls else ""
        theirs = f", transformers' `generate` {calls['hf'] * 1e3:.2f} ms" if "hf" in calls else ""
        lines.append(
            "**Besides the weights.** The same layers and heads with tiny matrices (width "
            "72, head size 8) show what a step costs besides streaming weights, the NumPy "
            f"or PyTorch calls and Python: maskviz {calls['maskviz'] * 1e3:.2f} ms a step"
            f"{before}{theirs}.\n"
        )
    lines.append(f"Measured on {describe_machine(m)}, {m['date']}.\n")
    return lines


def lengths_section(runs: list[dict[str, Any]]) -> list[str]:
    """The Llama shape at several decode lengths: the ratio, and why it grows."""
    from maskviz.bench import describe_machine

    lines = ["### Longer decodes\n"]
    lines.append(
        "The same comparison (separate processes taking turns, the same weights) decoding "
        "more tokens. Both engines read every weight once a step, but a transformers step "
        "also grows with its cache: its `DynamicCache` concatenates each layer's keys and "
        "values into new tensors at every step, and eager attention copies the 3 key/value "
        "heads out to the 9 query heads (`repeat_kv`) before multiplying. maskviz writes "
        "one key and value into a cache allocated for the whole run and multiplies each "
        "key/value head with its group of queries in place. Its step grows too, from "
        "attention over the cache: each layer reads its keys and values from memory and "
        "multiplies them by its queries. With grouped queries the keys are kept [KV heads, "
        "head size, positions], so that a group's 3 queries times the keys is a small "
        "matrix product over rows of keys, which OpenBLAS runs faster than over keys kept "
        "[positions, head size]: one step at position 2,047 took 44.0 ms against 48.8 on "
        "an AMD EPYC, and one at position 2,000 took 9.4 ms less on an Intel Xeon "
        "(SkylakeX kernel), with results equal to float32 rounding. Over 128 tokens the "
        "two layouts run at the same speed: 128-token decodes alternating them in one "
        "process ran at 0.994 ± 0.012 times the old layout's speed (16 paired rounds, AMD "
        "EPYC), closer than separate processes' runs of one engine agree.\n"
    )
    lines.append(
        "| tokens | maskviz tokens/s | `generate` tokens/s | maskviz is | round by round "
        "| ms per step, first 32 → last 32: maskviz | `generate` | greedy tokens |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for llama in runs:
        engines = llama["engines"]
        mv, gen = engines["maskviz"], engines.get("hf_generate")
        if not gen:
            continue
        ends = {}
        for key, data in (("maskviz", mv), ("generate", gen)):
            steps = data["step_seconds"]
            ends[key] = f"{median(steps[:32]) * 1e3:.1f} → {median(steps[-32:]) * 1e3:.1f}"
        lines.append(
            f"| {llama['tokens']} | {mv['tokens_per_second']:.1f} | "
            f"{gen['tokens_per_second']:.1f} | "
            f"{mv['tokens_per_second'] / gen['tokens_per_second']:.2f}x | "
            f"{_spread(_round_ratios(llama, 'hf_generate'), 2)}x | {ends['maskviz']} | "
            f"{ends['generate']} | {_tokens_verdict(llama['hf']['parity'])} |"
        )
    ties = [r for r in runs if not r["hf"]["parity"]["tokens_agree"]]
    for llama in ties:
        p = llama["hf"]["parity"]
        lines.append(
            f"\nAt {llama['tokens']} tokens the engines chose the same first "
            f"{p['first_difference']:,} tokens. For the next, two tokens' logits were "
            f"{p['tie_gap']:.1e} apart in maskviz's row, closer than the engines' largest "
            f"logit difference before it ({p['max_abs_diff_logits']:.1e}), and float32 "
            "rounding broke the tie differently. The sequences differ from "
            "there on; every step still does the same work, so the timings stand."
        )
    dates = sorted({run["machine"]["date"] for run in runs})
    lines.append(f"\nMeasured on {describe_machine(runs[0]['machine'])}, {', '.join(dates)}.\n")
    return lines


def page(
    decode: dict[str, Any],
    startup: dict[str, Any] | None,
    llama: dict[str, Any] | None = None,
    longer: Sequence[dict[str, Any]] = (),
    earlier: Sequence[dict[str, Any]] = (),
) -> str:
    from maskviz.bench import describe_machine

    m = decode["machine"]
    blas = m["blas"]
    full = decode["full"]
    bench = full["bench"]
    engines = decode["engines"]
    mv = engines["maskviz"]
    hf = engines.get("hf")
    probe_gbps = 768 * 50257 * 4 / decode["probe_seconds"] / 1e9
    wbytes = decode["weight_bytes_per_token"]
    bound = probe_gbps * 1e9 / wbytes
    frac = mv["tokens_per_second"] / bound
    ratio = mv["tokens_per_second"] / hf["tokens_per_second"] if hf else None
    rec = full["recording"]
    rec_over = rec["all_float32"]["seconds"] / rec["off"]["seconds"] - 1
    t = decode["tokens"]
    cfg = bench["config"]
    row_bytes = cfg["n_layer"] * cfg["n_head"] * t * 4
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items() if v) or "none set"
    kernel_env = (
        ", ".join(
            f"{k}={v}"
            for k, v in m["env"].items()
            if v and k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        )
        or "neither set"
    )

    lines: list[str] = []
    add = lines.append
    add("# Performance\n")
    add(
        "How fast maskviz's NumPy engine decodes, what the KV cache saves, and what the "
        "command line costs to start. Every figure below was measured by the scripts in "
        "[`bench/`](../bench/README.md) and written into this page by `python bench/report.py`; "
        "rerun them to measure your machine. `maskviz bench` measures the same things for any "
        "model (see the end of the page).\n"
    )
    add("## The machine\n")
    add("| | |\n|---|---|")
    add(f"| CPU | {m['cpu']}, {m['cores']} cores |")
    add(
        f"| BLAS | OpenBLAS {blas['version']}, **{blas['kernel']}** kernel "
        f"(as reported by threadpoolctl), {blas['threads']} threads |"
    )
    add(f"| BLAS environment | {env} |")
    add(f"| NumPy / Python | {m['numpy']} / {m['python']} |")
    if decode.get("hf"):
        h = decode["hf"]
        add(
            f"| torch / transformers | {h['torch']} / {h['transformers']} "
            f"({h['torch_threads']} threads, {h['attn_implementation']} attention) |"
        )
    add(f"| date | {m['date']} |")
    add("")
    add(
        f"In one line: {describe_machine(m)}. The figures ran on the {blas['kernel']} kernel; "
        "on some processors this environment sets `OPENBLAS_CORETYPE` / `OPENBLAS_L2_SIZE` "
        "(here: " + kernel_env + "), which can pick a different kernel; tests and CI leave "
        "them as they are.\n"
    )

    add("## Targets\n")
    add("| target | measured | |\n|---|---|---|")
    if ratio is not None:
        add(
            f"| cached decode, GPT-2-small shape, float32, recording off: >= 1.5x transformers' "
            f"tokens/s | {mv['tokens_per_second']:.1f} vs {hf['tokens_per_second']:.1f} tokens/s "
            f"= **{ratio:.2f}x** | {_met(ratio >= 1.5)} |"
        )
    else:
        add("| >= 1.5x transformers' tokens/s | transformers not installed | not measured |")
    row = llama_target([llama, *longer], earlier) if llama else None
    if row:
        add(row)
    paired = sorted(decode.get("paired_fraction_of_bound") or [frac])
    pmed = median(paired)
    add(
        f"| cached decode >= 85% of the bandwidth bound | {mv['tokens_per_second']:.1f} of "
        f"{bound:.1f} tokens/s = **{frac:.0%}** (all runs against all probes); run by run "
        f"against the probes just before and after: median **{pmed:.0%}** "
        f"({paired[0]:.0%}–{paired[-1]:.0%}) | {_met(min(frac, pmed) >= 0.85)} |"
    )
    add(
        f"| recording every layer and head costs <= 10% at {t} tokens | "
        f"**{rec_over:+.1%}** time; {row_bytes:,} bytes per token | {_met(rec_over <= 0.10)} |"
    )
    long_steps = per_position_median(full["long"]["runs"])
    q = max(1, len(long_steps) // 8)
    first, last = median(long_steps[:q]), median(long_steps[-q:])
    rc = bench["recompute"]["step_seconds"]
    rq = max(1, len(rc) // 8)
    add(
        f"| recompute grows with position, cached stays near flat (both curves) | recompute "
        f"{median(rc[:rq]) * 1e3:.0f} → {median(rc[-rq:]) * 1e3:.0f} ms per step over {t} "
        f"tokens; cached {first * 1e3:.1f} → {last * 1e3:.1f} ms over {len(long_steps) + 1} | "
        "shown below |"
    )
    if startup:
        c = startup["commands"]
        sm = c["maskviz show-mask 6"]
        tr = c["maskviz trace (16 steps)"]
        big = c["maskviz show-mask 1000000 --window 4096"]
        heavy = startup["heavy_imports"]["show-mask 6"]
        add(
            f"| `maskviz show-mask 6` <= 0.35 s, no matplotlib import | **{sm['seconds']:.2f} s**; "
            f"imports {'matplotlib' if 'matplotlib' in heavy else 'no matplotlib'} | "
            f"{_met(sm['seconds'] <= 0.35 and 'matplotlib' not in heavy)} |"
        )
        add(
            f"| `maskviz trace` 16 steps on the shipped model <= 1 s | **{tr['seconds']:.2f} s** "
            f"(model: {startup['model']}) | {_met(tr['seconds'] <= 1.0)} |"
        )
        add(
            f"| `maskviz show-mask 1000000 --window 4096` <= 1 s, < 150 MB | "
            f"**{big['seconds']:.2f} s, {_mb(big['peak_rss_bytes'])}** peak | "
            f"{_met(big['seconds'] <= 1.0 and big['peak_rss_bytes'] < 150e6)} |"
        )
    else:
        add("| command-line targets | run `python bench/startup.py` | not measured |")
    tr_s, cached_s = bench["training"]["seconds"], bench["cached"]["seconds"]
    add(
        "| training-mode pass vs cached generation, recompute vs cached: MACs and time | "
        "see [the costs](#what-a-token-costs) | stated |"
    )
    add("")

    add("## Cached decoding against transformers\n")
    add(
        f"GPT-2-small shape (124M parameters, {_mb(full['weights_bytes'])} of float32 weights), "
        f"random weights, a 1-token prompt and {t - 1} greedy steps; per-step medians over "
        f"{mv['runs']} runs in separate processes that took turns. transformers ran "
        "GPT2LMHeadModel with eager attention and `use_cache=True`, holding the same weights: "
    )
    if decode.get("hf"):
        p = decode["hf"]["parity"]
        add(
            f"both engines chose the same {p['steps']} greedy tokens "
            f"({_tokens_verdict(p)}), with logits within "
            f"{p['max_abs_diff_logits']:.1e}.\n"
        )
    add("| engine | tokens/s | ms per step | of the bound |\n|---|---:|---:|---:|")
    names = _engine_names(decode)
    for key, data in engines.items():
        if data:
            tps = data["tokens_per_second"]
            add(f"| {names[key]} | {tps:.1f} | {1e3 / tps:.1f} | {tps / bound:.0%} |")
    add("")
    add(
        f"**The bound.** One decoding step reads every weight once: {_mb(wbytes)} "
        "(all blocks, the tied 768 x 50257 output head, one row of each embedding). "
        f"A 768 x 50257 float32 matrix-vector product laid out like the engine's head "
        f"(`x @ W` with W row-major [768, 50257], {_mb(768 * 50257 * 4)}) streamed "
        f"{probe_gbps:.1f} GB/s (median of {len(decode['probe_samples'])} products taken "
        "between the decoding runs, in the same processes, with the same BLAS threads), so "
        f"no engine can beat {bound:.1f} tokens/s here without reading fewer bytes.\n"
    )
    samples = sorted(PROBE_BYTES / t / 1e9 for t in decode["probe_samples"])
    add(
        "**Where a step's time goes.** Each kind of product a step makes, timed in the "
        "step's order over the model's own weights (median of sweeps; the probe measured "
        "right after):\n"
    )
    add(
        "| product (all layers) | layout | MB per step | ms per step | GB/s | of the probe |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    labels = {
        "c_attn_w": "q\\|k\\|v projection [C, 3C]",
        "attn_c_proj_w": "attention output [C, C]",
        "c_fc_w": "MLP in [C, 4C]",
        "mlp_c_proj_w": "MLP out [4C, C]",
        "head": "output head [V, C]",
    }
    rounds = decode.get("products") or []
    matmul_ms = 0.0
    for key, label in labels.items():
        if not rounds:
            break
        gbps = median([r[key]["gb_per_second"] for r in rounds])
        secs = median([r[key]["seconds"] for r in rounds])
        probe_now = median([r["probe_gb_per_second"] for r in rounds])
        layout = "column-major" if rounds[0][key]["column_major"] else "row-major"
        matmul_ms += secs * 1e3
        add(
            f"| {label} | {layout} | {rounds[0][key]['bytes'] / 1e6:,.1f} | {secs * 1e3:.2f} | "
            f"{gbps:.1f} | {gbps / probe_now:.0%} |"
        )
    if rounds:
        step_ms = 1e3 / mv["tokens_per_second"]
        add(
            f"\nThe products take {matmul_ms:.1f} ms of a {step_ms:.1f} ms step; the rest "
            f"({step_ms - matmul_ms:.1f} ms) is attention over the cache, layer norms, GELU, "
            "the additions, choosing the token and Python. The probe's samples in this run "
            f"ranged from {samples[0]:.0f} to {samples[-1]:.0f} GB/s: this machine shares "
            "its memory bandwidth with others, which is why each run is also compared with "
            "the probes taken just before and after it.\n"
        )
        rates = [median([r[key]["gb_per_second"] for r in rounds]) for key in labels]
        add(
            "**Why the bound is not reached.** The probe multiplies one 154 MB matrix again "
            "and again, and a CPU with a large last-level cache keeps part of it between "
            "products; a step streams every weight once, so its products run at "
            f"{min(rates):.0f}–{max(rates):.0f} GB/s, {min(rates) / probe_now:.0%}–"
            f"{max(rates) / probe_now:.0%} of the probe's rate. Run by run the engine reached "
            f"{paired[0]:.0%}–{paired[-1]:.0%} of the bound. The remaining "
            f"{step_ms - matmul_ms:.1f} ms of NumPy work per step is about "
            f"{(step_ms - matmul_ms) / step_ms:.0%} of a step on its own. On the machine "
            "these layouts were chosen on (an AMD EPYC), column-major q|k|v was slower, so it "
            "stays row-major, and column-major attention output was as fast or faster, so "
            "it changed.\n"
        )

    add(f"![per-step time against position](images/{PICTURE.name})\n")
    add(
        "Left: without a cache every step runs the whole prefix again, so its time grows "
        "with position; with the cache a step is one query against the stored keys and "
        "values. Right: a cached step stays near flat; its slow growth is attention over "
        "the cache (2 C t multiply-accumulates per layer at position t, and reading the "
        f"cache: {full['kv_cache_bytes_per_token']:,} bytes per token) starting to matter "
        "next to the fixed 12 C² per layer plus the head.\n"
    )

    if llama:
        lines.extend(llama_section(llama))
        if longer:
            lines.extend(lengths_section([llama, *longer]))
        if earlier:
            lines.extend(machines_section([llama, *longer], earlier))

    add("## What a token costs\n")
    add(
        "Multiply-accumulates (MACs) of the matrix products, from `maskviz.compare`: a pass "
        "of n queries over n_k keys costs `L (12 C² n + 2 C n n_k) + V C r` for r logits "
        "rows (embeddings, layer norms and softmax left out).\n"
    )
    tm = bench["training"]["macs"]
    cm, rm = bench["cached"]["macs"], bench["recompute"]["macs"]
    rs = bench["recompute"]["seconds"]
    add("| over the same tokens | MACs | measured time | MACs per second |\n|---|---:|---:|---:|")
    add(
        f"| cached generation, {t - 1} steps (one query each, one logits row) | {cm:,} | "
        f"{cached_s:.2f} s | {cm / cached_s / 1e9:.1f} G |"
    )
    add(
        f"| recompute, {t - 1} steps (whole prefix each, last logits row) | {rm:,} | "
        f"{rs:.2f} s | {rm / rs / 1e9:.1f} G |"
    )
    add(
        f"| one training-mode pass over all {t} tokens (all logits rows) | {tm:,} | "
        f"{tr_s:.2f} s | {tm / tr_s / 1e9:.1f} G |"
    )
    add("")
    add(
        f"Recompute does {rm / cm:.0f}x the work of cached decoding and took "
        f"{rs / cached_s:.1f}x the time. The training-mode pass does about the same work as "
        f"cached generation ({tm / cm:.2f}x: it also scores the masked upper half of the "
        "T x T attention products before the mask zeroes it) but took "
        f"{cached_s / tr_s:.0f}x less time: one pass multiplies matrices by matrices, "
        "reusing each weight it reads for every position, while a decoding step reads all "
        "weights to use each once. That is why decoding is bound by memory bandwidth "
        "and training by arithmetic.\n"
    )

    add("## Recording attention\n")
    add(
        "A trace keeps a dense [layers, heads, T, T] array; each decoded token adds one "
        "row per layer and head, of the current length. At "
        f"{t} tokens:\n"
    )
    add("| recording | decode time | attention array | bytes per token |\n|---|---:|---:|---:|")
    rows = [
        ("off", "off", 0),
        ("every layer and head, float32", "all_float32", 4 * cfg["n_layer"] * cfg["n_head"]),
        ("every layer and head, float16", "all_float16", 2 * cfg["n_layer"] * cfg["n_head"]),
        ("one layer, one head (`layers=[0], heads=[0]`)", "one_head", 4),
    ]
    for label, key, per_row in rows:
        r = rec[key]
        add(
            f"| {label} | {r['seconds']:.2f} s ({r['seconds'] / rec['off']['seconds'] - 1:+.1%}) "
            f"| {_mb(r['attention_bytes'])} | {per_row * t:,} |"
        )
    add("")
    add(
        "Differences of a few percent between these times are the machine's noise "
        "(each is a median of whole decodes). "
        "Bytes per token = layers x heads x T x itemsize (the row of the newest token at "
        "length T); the whole array is that times T. The KV cache adds "
        f"{full['kv_cache_bytes_per_token']:,} bytes per token (2 x layers x C x 4).\n"
    )

    if startup:
        add("## The command line\n")
        add(
            f"Wall time of a fresh process, median of {startup['runs']} runs, peak resident "
            "memory from the kernel's accounting of each child "
            f"(bytecode cached, as after `pip install`; model: {startup['model']}):\n"
        )
        add("| command | wall time | peak memory |\n|---|---:|---:|")
        for name, d in startup["commands"].items():
            add(f"| `{name}` | {d['seconds']:.3f} s | {_mb(d['peak_rss_bytes'])} |")
        add("")
        add(
            "An editable install run with `PYTHONDONTWRITEBYTECODE=1` (as in this "
            "environment) compiles maskviz's own modules at every start: then "
            f"`maskviz show-mask 6` takes {startup['show_mask_6_compiling_seconds']:.3f} s.\n"
        )
        add(
            "`python -X importtime -m maskviz show-mask 6` shows what a command loads: "
            "mask commands import NumPy, Typer and Rich but not matplotlib, the engine, "
            "safetensors or tokenizers (heavy modules imported: "
            f"{', '.join(startup['heavy_imports']['show-mask 6']) or 'none'}). About half of "
            "the remaining time is importing NumPy and Typer.\n"
        )

    add("## What changed in the engine, and why\n")
    add(ENGINE_NOTES)
    add("## `maskviz bench`\n")
    add(
        "The same measurements for any model, with a progress bar on stderr, a Rich "
        "table, `--json` for the numbers and `--save` for the per-step picture:\n"
    )
    add("```text\nmaskviz bench                                    # the shipped model")
    add("maskviz bench --shape gpt2-small --tokens 256 --save latency.png")
    add("maskviz bench --shape smollm2-135m --tokens 64   # a Llama: GQA, RoPE, SwiGLU")
    add("maskviz bench --model gpt2 --json                # a checkpoint from the hub\n```\n")
    return "\n".join(lines) + "\n"


ENGINE_NOTES = """\
These GPT-2 changes predate the "maskviz before" revision in the tables above, so that
row matches this version on GPT-2: it measures the later Llama work.

Profiling one decoding step of the GPT-2-small shape showed nearly all its time in the
matrix-vector products, the 154 MB output head the slowest of them, and several
percent in NumPy call overhead (layer norms, GELU, softmax, bias additions,
temporaries):

- **Matrices are stored in the order their product streams fastest.** The tied head
  was `x @ wte.T` with `wte` row-major: a transposed matrix-vector product (OpenBLAS
  `gemv_t` over 3 KB rows) that streamed the head far slower than the plain product.
  The engine now keeps `wte` (or an untied `lm_head`) column-major, so `wte.T` is a
  row-major [C, V] matrix and the logits are a `gemv_n` over long contiguous rows. The
  attention and MLP output projections are column-major too (their products become
  long dot products, each BLAS thread reading one contiguous part); q|k|v and the
  MLP input stay row-major, measured faster that way. No copy is kept: the arrays
  are still `weights.wte` and the blocks' fields, so edits of the weights reach the
  model.
- **Fewer temporaries and calls per step.** Layer norm (ufunc reductions instead of
  `.mean()`), GELU (bias folded in), softmax and the residual and bias additions work
  in place on buffers the step owns; q, k and v are views of the fused projection;
  the masked softmax sets masked scores to -inf once instead of three `np.where`
  passes (exactly 0 after `exp`; rows without keys stay 0).
- **Recording copies only what it keeps.** The layers to record are looked up once
  per pass, all-heads recording writes without a fancy-index copy, and recompute
  writes the one row it keeps straight into the trace.
- **Recompute computes only the logits row it uses** (it used to compute all of them).

Results are unchanged beyond float rounding: cached, training and recompute modes
still agree to the tolerances the tests check, and the transformers parity tests
still pass.

The Llama family decodes through the same driver, so a step of the SmolLM2 shape is
30 layers of small NumPy calls around its matrix-vector products. Profiling it showed
the products first again, then NumPy call overhead per layer: the norms, RoPE, the
softmax, the cache write. Changed, each with its results bit for bit what they were:

- **q and k are rotated together, in three NumPy calls.** They lie side by side in
  the fused projection [n, H + H_kv, d]; the halves (x1, x2) of each head become a
  pair axis, reversed by a view, so RoPE is `x cos + reversed(x) (-sin, sin)`
  instead of two rotations of eight calls each. The cos and sin tables are laid out
  for that once per pass, not per layer.
- **Norms build their [n, 1] statistics in new small arrays** (NumPy's in-place
  path with a Python scalar costs more on one row), for RMSNorm and LayerNorm alike.
- **A decoding step writes its one key and value with a slice** instead of fancy
  indexing, and a pass that records nothing makes no recording call per layer.

"""


def main() -> int:
    decode = load("decode-gpt2-small")
    if decode is None:
        raise SystemExit("run python bench/decode.py first")
    startup = load("startup")
    picture(decode)
    paths = RESULTS.glob("decode-smollm2-135m-*tokens.json")
    longer = sorted((json.loads(path.read_text()) for path in paths), key=lambda r: r["tokens"])
    llama = load("decode-smollm2-135m")
    paths = (RESULTS / "earlier").glob("decode-smollm2-135m*.json")
    earlier = sorted((json.loads(path.read_text()) for path in paths), key=lambda r: r["tokens"])
    DOC.write_text(page(decode, startup, llama, longer, earlier), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} and {PICTURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
