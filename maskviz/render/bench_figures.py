"""The benchmark's picture: per-step latency against position, cached vs recompute.

Built on `matplotlib.figure.Figure` directly (no pyplot state); saved by
`maskviz.render.figures.save_figure`. Imported only when ``maskviz bench --save``
draws.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from maskviz._text import times
from maskviz.bench import BenchResult
from maskviz.render.figures import NotebookFigure, pt, scaled_text, text_scale, wrapped
from maskviz.render.sizes import BENCH_LEAST, BENCH_PLOTS, check_width

COLOR_CACHED = "#1b7837"
COLOR_RECOMPUTE = "#d95f02"
COLOR_BOUND = "#7570b3"


WIDTH, HEIGHT = 11.0, 4.8  # inches, unless a width is asked for


def latency_figure(result: BenchResult, *, width: float | None = None) -> Figure:
    """Two panels: both curves (recompute grows with position, cached stays near flat),
    and the cached curve alone with the bandwidth bound, where its small growth shows;
    ``width`` inches wide (default 11).
    """
    scale = text_scale(WIDTH, width)  # first: refuses a width that is no number > 0
    check_width(width, BENCH_LEAST, BENCH_PLOTS)
    with scaled_text(scale):
        return _draw(result, width or WIDTH)


def _draw(result: BenchResult, width: float) -> Figure:
    fig = NotebookFigure(figsize=(width, max(2.6, HEIGHT * width / WIDTH)), layout="constrained")
    title_width = width / 2 - 0.6  # a panel's, less its axis labels
    both, cached_only = fig.subplots(1, 2)
    ms_cached = [s * 1e3 for s in result.cached.step_seconds]
    ms_recompute = [s * 1e3 for s in result.recompute.step_seconds]
    positions = [p + 1 for p in result.cached.positions]  # from 1, as every picture counts
    # a few steps get markers: a single step is a point, which a line alone would not show
    marker = "o" if len(positions) <= 32 else None
    # dashed and solid: told apart in grey and by colour-blind readers too
    both.plot(
        positions, ms_recompute, color=COLOR_RECOMPUTE, linestyle="--", marker=marker,
        markersize=3, label="recompute (no cache)",
    )  # fmt: skip
    both.plot(positions, ms_cached, color=COLOR_CACHED, marker=marker, markersize=3,
              label="cached (KV cache)")  # fmt: skip
    speed = times(result.cache_speedup, "faster", "slower")
    both.set_title(wrapped(f"per-step time: the cache is {speed} overall", title_width, pt(12)))
    cached_only.plot(positions, ms_cached, color=COLOR_CACHED, marker=marker, markersize=3,
                     label="cached (KV cache)")  # fmt: skip
    bw = result.bandwidth
    if bw is not None:
        label = f"bandwidth bound ({bw.bound_tokens_per_second:.1f} tokens/s)"
        if not bw.applies:  # as the terminal says it
            label += "\n" + wrapped(
                "not a limit here: these weights fit in the CPU caches", title_width, pt(10)
            )
        cached_only.axhline(
            1e3 / bw.bound_tokens_per_second, color=COLOR_BOUND, linestyle="--", label=label
        )
    cached_only.set_title(
        wrapped(
            f"cached steps: {result.cached.tokens_per_second:.1f} tokens/s", title_width, pt(12)
        )
    )
    for ax in (both, cached_only):
        ax.set_xlabel("position of the decoded token")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # positions: whole numbers
        if len(positions) == 1:  # room for integers either side (the locator needs two)
            ax.set_xlim(positions[0] - 1, positions[0] + 1)
        ax.set_ylabel("time per step (ms)")
        ax.tick_params(labelsize=pt(10))  # made when drawn: sized now
        ax.grid(alpha=0.3)
        # from 0, and a tenth above the highest mark: autoscaling keeps no room above a
        # lone point, which the frame would cut in half
        top = max(float(np.max(np.asarray(line.get_ydata()))) for line in ax.get_lines())
        ax.set_ylim(0, 1.1 * top)
        ax.legend(loc="best", framealpha=0.9)  # where the curves leave room; over them, opaque
    lines = (
        f"{result.model}: {result.config.describe()}, {result.dtype}",
        f"one training-mode pass over all {result.tokens} positions: "
        f"{result.training_seconds * 1e3:.0f} ms",
    )
    fig.suptitle("\n".join(wrapped(line, width - 0.4, pt(12)) for line in lines))
    return fig
