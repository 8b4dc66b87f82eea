"""The benchmark's picture: per-step latency against position, cached vs recompute.

Built on `matplotlib.figure.Figure` directly (no pyplot state); saved by
`maskviz.render.figures.save_figure`. Imported only when ``maskviz bench --save``
draws.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from maskviz._text import times
from maskviz.bench import BenchResult

COLOR_CACHED = "#1b7837"
COLOR_RECOMPUTE = "#d95f02"
COLOR_BOUND = "#7570b3"


def latency_figure(result: BenchResult) -> Figure:
    """Two panels: both curves (recompute grows with position, cached stays near flat),
    and the cached curve alone with the bandwidth bound, where its small growth shows.
    """
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    both, cached_only = fig.subplots(1, 2)
    ms_cached = [s * 1e3 for s in result.cached.step_seconds]
    ms_recompute = [s * 1e3 for s in result.recompute.step_seconds]
    positions = result.cached.positions
    # dashed and solid: told apart in grey and by colour-blind readers too
    both.plot(
        positions, ms_recompute, color=COLOR_RECOMPUTE, linestyle="--", label="recompute (no cache)"
    )
    both.plot(positions, ms_cached, color=COLOR_CACHED, label="cached (KV cache)")
    speed = times(result.cache_speedup, "faster", "slower")
    both.set_title(f"per-step time: the cache is {speed} overall")
    cached_only.plot(positions, ms_cached, color=COLOR_CACHED, label="cached (KV cache)")
    if result.bandwidth is not None:
        floor = 1e3 / result.bandwidth.bound_tokens_per_second
        cached_only.axhline(
            floor,
            color=COLOR_BOUND,
            linestyle="--",
            label=f"bandwidth bound ({result.bandwidth.bound_tokens_per_second:.1f} tokens/s)",
        )
    cached_only.set_ylim(bottom=0)
    cached_only.set_title(f"cached steps: {result.cached.tokens_per_second:.1f} tokens/s")
    for ax in (both, cached_only):
        ax.set_xlabel("position of the decoded token")
        ax.set_ylabel("time per step (ms)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", framealpha=0.9)  # where the curves leave room; over them, opaque
    both.set_ylim(bottom=0)
    fig.suptitle(
        f"{result.model}: {result.config.describe()}, {result.dtype}\n"
        f"one training-mode pass over all {result.tokens} positions: "
        f"{result.training_seconds * 1e3:.0f} ms"
    )
    return fig
