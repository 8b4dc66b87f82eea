"""matplotlib figures of attention views: heatmaps, comparisons, layers, a decoding GIF.

Every figure draws a `maskviz.view.AttentionView`, the plain data the terminal draws
too, so both show every cell in the same state and number positions alike: rows are
queries (top to bottom), columns keys, positions counted from 1 in ticks, titles and
captions. Each panel uses its own cell states, token labels and marks.

Attention weights use viridis on a fixed 0..1 scale so figures can be compared with
each other. A cell the mask forbids is the mask pictures' "may not" grey, dotted with
darker grey: no weight maps to that colour, so "not allowed" never looks like "weight
0", and the dots keep it apart from a weight near 1 when the picture is printed in
grey (viridis' light end is as light as the grey). A key that a sliding-window layer's
rolling KV cache had evicted is light pink with dark magenta hatching: the hatching
tells it apart from grey and from every weight without relying on colour vision. Dashed lines
are a panel's marks: where the prompt ends and generated tokens begin, or the two
lines that enclose a delimiter's row and column.

Matrices wider than 64 positions are pooled into at most 64 x 64 cells (the title
says so) by the terminal's rule: a cell is allowed if any position in it is (shaded
by the largest of its allowed weights), evicted if none is allowed and one was
evicted, else masked. Figures are built on `matplotlib.figure.Figure` directly (no
pyplot state); only `save_decode_gif` writes a file, atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure, FigureBase
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from numpy.typing import NDArray

from maskviz._io import atomic_path
from maskviz._text import safe_text
from maskviz.errors import usage_error
from maskviz.render.figures import (
    BLOCKED_STYLE,
    NotebookFigure,
    blocked_background,
    fit_height,
    grow,
    label_text,
    legend_columns,
    pt,
    scaled_text,
    text_scale,
    wrapped,
)
from maskviz.render.sizes import (
    COMPARISON_MARGIN,
    COMPARISON_PANELS,
    MIN_SIDE,
    across,
    grid_margin,
    least_width,
    panels_text,
    too_narrow,
)
from maskviz.render.style import (
    COLOR_BOUNDARY,
    COLOR_EVICTED,
    COLOR_EVICTED_HATCH,
    COLOR_HIGHLIGHT,
    COLOR_PENDING,
    DIFF_CMAP,
    DIFF_FLOOR,
    MARK_LABELS,
    WEIGHTS_CMAP,
)
from maskviz.view import (
    ALLOWED,
    EVICTED,
    MASKED,
    NOT_YET,
    STATE_NAMES,
    AttentionView,
    Panel,
    layer_mask_words,
)

if TYPE_CHECKING:
    from maskviz.trace import Trace

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]
StateArray = NDArray[np.int8]

MAX_CELLS = 64  # displayed cells per side; above this the matrix is pooled
EVICTED_HATCH = "///"
COLOR_GOOD, COLOR_BAD = "#1b7837", "#b2182b"  # a comparison's verdict
GIF_DPI = 100
MASKED_LABEL = "masked (not allowed)"
EVICTED_LABEL = STATE_NAMES[EVICTED]
NOT_YET_LABEL = STATE_NAMES[NOT_YET]

ProgressCallback = Callable[[int, int], None]  # (frames written, total frames)


# -- text ---------------------------------------------------------------------------


# -- checks -------------------------------------------------------------------------


def _check(view: AttentionView) -> int:
    """Check the panels agree with themselves and each other; return T (positions)."""
    if not view.panels:
        raise usage_error("a view needs at least one panel")
    n = view.panels[0].n
    for i, panel in enumerate(view.panels):
        weights = np.asarray(panel.weights)
        if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] < 1:
            raise usage_error(
                f"panel {i}: weights must be a non-empty [T, T] array, got {weights.shape}"
            )
        if weights.shape != (n, n) or panel.states.shape != (n, n):
            raise usage_error(
                f"panel {i}: weights {weights.shape} and states {panel.states.shape} "
                f"must both be ({n}, {n})"
            )
        if len(panel.labels) != n:
            raise usage_error(f"panel {i}: expected {n} labels, got {len(panel.labels)}")
        for mark in panel.marks:
            if not 0 <= mark.index <= n:
                raise usage_error(f"panel {i}: mark at {mark.index} is outside 0..{n}")
    return n


# -- pooling ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """How T positions map onto displayed cells: ``k`` positions per cell side."""

    n: int
    k: int

    @classmethod
    def for_size(cls, n: int) -> _Grid:
        return cls(n, max(1, -(-n // MAX_CELLS)))

    @property
    def cells(self) -> int:
        return -(-self.n // self.k)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        # Image coordinates are positions, so boundary lines, ticks and the GIF's
        # row highlight are placed the same way whether or not the image is pooled.
        edge = self.cells * self.k - 0.5
        return (-0.5, edge, edge, -0.5)

    def _reduce(self, ufunc: np.ufunc, values: NDArray[Any]) -> NDArray[Any]:
        starts = np.arange(0, self.n, self.k)
        out: NDArray[Any] = ufunc.reduceat(ufunc.reduceat(values, starts, axis=0), starts, axis=1)
        return out

    def states(self, states: StateArray) -> StateArray:
        """Each cell's state by the terminal's rule: allowed if any position in it is,
        evicted if none is and one was evicted, not generated yet if every one was not,
        else masked."""
        if self.k == 1:
            return states

        def some(cells: BoolArray) -> BoolArray:  # per block: any cell
            return self._reduce(np.add, cells.astype(np.int64)) > 0

        out = np.full(some(states == ALLOWED).shape, MASKED, np.int8)
        out[~some(states != NOT_YET)] = NOT_YET
        out[some(states == EVICTED)] = EVICTED
        out[some(states == ALLOWED)] = ALLOWED
        return out

    def max(self, values: FloatArray, shown: BoolArray) -> np.ma.MaskedArray[Any, Any]:
        """Largest value in each block, as the terminal shades pooled cells (a pooled
        weight or difference must not hide a spike); a block with none shown is masked."""
        values = np.asarray(values, dtype=np.float64)
        if self.k == 1:
            return np.ma.masked_array(values, mask=~shown)
        peaks = self._reduce(np.maximum, np.where(shown, values, -np.inf))
        return np.ma.masked_array(
            np.where(np.isfinite(peaks), peaks, 0.0), mask=~np.isfinite(peaks)
        )


# -- drawing helpers ----------------------------------------------------------------


def _cmap(name: str) -> Colormap:
    # masked cells are left transparent: the axes' dotted background shows through
    return mpl.colormaps[name].with_extremes(bad="none")


def _panel_side(cells: int, panels: int) -> float:
    """Inches per heatmap: grows with the number of cells, smaller in a grid."""
    if panels == 1:
        return float(np.clip(0.12 * cells + 3.5, 4.0, 9.0))
    return float(np.clip(0.08 * cells + 2.2, 2.4, 4.5))


@dataclass(frozen=True)
class _Ticks:
    fontsize: float
    stride: int
    side: float  # inches: the panel's, labels included


def _ticks(side: float, grid: _Grid) -> _Ticks:
    # Roughly 80% of a panel's side is the image; fit the font to one cell and
    # skip labels when even the smallest readable font would overlap.
    cell_pt = side * 72 * 0.8 / grid.cells
    fontsize = float(np.clip(0.7 * cell_pt, 6.0, max(6.0, pt(9))))  # 6 pt: legible on a slide
    return _Ticks(fontsize, max(1, math.ceil(1.15 * fontsize / cell_pt)), side)


def _heatmap(
    ax: Axes,
    values: np.ma.MaskedArray[Any, Any],
    grid: _Grid,
    cmap: Colormap,
    norm: Normalize,
) -> AxesImage:
    blocked_background(ax)
    image = ax.imshow(
        values,
        cmap=cmap,
        norm=norm,
        interpolation="none",  # vector files: one pixel per cell, sharp
        aspect="equal",
        extent=grid.extent,
    )
    # Crop a partly filled last block to the real positions.
    ax.set_xlim(-0.5, grid.n - 0.5)
    ax.set_ylim(grid.n - 0.5, -0.5)
    return image


_OUTLINE: dict[str, Any] = {"fill": False, "edgecolor": COLOR_HIGHLIGHT, "linewidth": 2.2}
# how the cells of each state the image cannot show are covered (masked cells show the
# axes' dotted background): evicted hatched, keys not generated yet blank (as the GIF's
# keys not cached yet, and the terminal's blank)
_COVERS: dict[int, dict[str, Any]] = {
    EVICTED: {"facecolor": COLOR_EVICTED, "edgecolor": COLOR_EVICTED_HATCH, "hatch": EVICTED_HATCH},
    NOT_YET: {"facecolor": COLOR_PENDING, "edgecolor": COLOR_PENDING},
}


def _cover(ax: Axes, cells: StateArray, grid: _Grid) -> None:
    """Cover the evicted and not-yet ``cells`` (pooled states) with patches.

    The image under them holds no weight there (it is transparent), so a hidden
    patch could never pass for a weight.
    """
    for state, style in _COVERS.items():
        boxes = []  # one per run in a row: the hatching stays continuous
        for r, row in enumerate(cells == state):
            edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
            for start, stop in zip(edges[::2], edges[1::2], strict=True):
                corner = (int(start) * grid.k - 0.5, r * grid.k - 0.5)
                boxes.append(Rectangle(corner, int(stop - start) * grid.k, grid.k))
        if boxes:
            # zorder 1: above the image, under the cell grid, the dashed marks and the GIF's
            # blanks
            ax.add_collection(PatchCollection(boxes, **style, linewidth=0, zorder=1), autolim=False)


def _draw_panel(
    ax: Axes, panel: Panel, grid: _Grid, cmap: Colormap, norm: Normalize
) -> tuple[AxesImage, set[int]]:
    """The panel's weights, evicted and not-yet cells; return the image and the states drawn."""
    cells = grid.states(panel.states)
    image = _heatmap(ax, grid.max(panel.weights, panel.states == ALLOWED), grid, cmap, norm)
    _cover(ax, cells, grid)
    return image, {int(s) for s in np.unique(cells)}


def _mark_lines(panel: Panel) -> tuple[float, ...]:
    """Dashed-line edges: before each mark's position (none on the panel's border)."""
    return tuple(m.index - 0.5 for m in panel.marks if 0 < m.index < panel.n)


def _mark_kinds(panels: Sequence[Panel]) -> list[str]:
    kinds: list[str] = []
    for panel in panels:
        for mark in panel.marks:
            if 0 < mark.index < panel.n and mark.kind not in kinds:
                kinds.append(mark.kind)
    return kinds


def _position_ticks(ax: Axes, n: int, side: float) -> None:
    """Numeric ticks for long sequences, labelled with positions counted from 1: as
    many round numbers as fit a panel ``side`` inches wide side by side, at most 8."""
    from matplotlib.ticker import MaxNLocator

    # Choose round numbers among the 1-based positions, then place each at its
    # 0-based image coordinate, so tick "100" sits on the row the terminal calls 100.
    bins = int(0.8 * side * 72 / (1.3 * 0.6 * len(str(n)) * pt(8)))
    nice = MaxNLocator(nbins=min(8, max(2, bins)), integer=True).tick_values(1, n)
    numbers = sorted({1, *(int(v) for v in nice if 1 <= v <= n)})
    places = [v - 1 for v in numbers]
    names = [str(v) for v in numbers]
    ax.set_xticks(places, names)
    ax.set_yticks(places, names)
    ax.tick_params(labelsize=pt(8))


def _decorate(
    ax: Axes,
    grid: _Grid,
    panel: Panel,
    ticks: _Ticks,
    *,
    show_x: bool = True,
    show_y: bool = True,
) -> None:
    """Tick labels, axis labels, cell grid and the panel's dashed mark lines.

    Up to 64 positions get token labels; beyond that, numeric position ticks.
    Either way positions are numbered from 1, as in the terminal.
    """
    n = grid.n
    if n <= MAX_CELLS:
        positions = list(range(0, n, ticks.stride))
        # 1-based positions and visible edge spaces, as in the terminal
        names = [f"{i + 1} {label_text(panel.labels[i])}" for i in positions]
        # parse_math=False: a token such as "$x$" is text, not a formula to typeset.
        ax.set_xticks(positions, names, rotation=90, fontsize=ticks.fontsize, parse_math=False)
        ax.set_yticks(positions, names, fontsize=ticks.fontsize, parse_math=False)
        if n <= 40:
            ax.set_xticks(np.arange(-0.5, n), minor=True)
            ax.set_yticks(np.arange(-0.5, n), minor=True)
            ax.grid(which="minor", color="white", linewidth=0.6)
            ax.tick_params(which="minor", length=0)
    else:
        _position_ticks(ax, n, ticks.side)
    ax.tick_params(labelbottom=show_x, labelleft=show_y)
    if show_x:
        ax.set_xlabel("key position →")
    if show_y:
        ax.set_ylabel("query position ↓")
    for edge in _mark_lines(panel):
        ax.axhline(edge, color=COLOR_BOUNDARY, linestyle="--", linewidth=1.4)
        ax.axvline(edge, color=COLOR_BOUNDARY, linestyle="--", linewidth=1.4)


def _legend(
    fig: Figure,
    drawn: set[int],
    mark_kinds: Sequence[str],
    extra: Sequence[Artist] = (),
    *,
    verdict: tuple[str, bool] | None = None,
) -> None:
    """Legend under the panels: masked, evicted and not yet (each only if drawn), what the
    dashed lines mean; a comparison's ``verdict`` heads it (a separate text would collide
    with it). None when there is nothing to say."""
    handles: list[Artist] = []
    if MASKED in drawn:
        handles.append(Patch(**BLOCKED_STYLE, label=MASKED_LABEL))
    if EVICTED in drawn:
        handles.append(Patch(**_COVERS[EVICTED], label=EVICTED_LABEL))
    if NOT_YET in drawn:
        handles.append(Patch(facecolor=COLOR_PENDING, edgecolor="0.6", label=NOT_YET_LABEL))
    for kind in mark_kinds:
        handles.append(
            Line2D(
                [],
                [],
                color=COLOR_BOUNDARY,
                linestyle="--",
                linewidth=1.4,
                label=MARK_LABELS.get(kind, kind),
            )
        )
    handles.extend(extra)
    if not handles and verdict is None:
        return
    width = float(fig.get_figwidth())
    ncols = legend_columns([str(h.get_label()) for h in handles], width)
    # each legend row past the first: 10 pt text and its spacing, added to the figure,
    # which was sized for one row (a taller legend would push into the panels)
    grow(fig, math.ceil(len(handles) / ncols) - 1, pt(10))
    title = None if verdict is None else wrapped(verdict[0], width - 0.4, pt(11))
    grow(fig, 0 if title is None else title.count("\n"), pt(11))
    legend = fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols,
        frameon=False,
        title=title,
        title_fontproperties={"size": pt(11), "weight": "bold"},
    )
    if verdict is not None:
        legend.get_title().set_color(COLOR_GOOD if verdict[1] else COLOR_BAD)


def _colorbar(fig: Figure, image: AxesImage, axes: list[Axes], label: str, **kwargs: Any) -> None:
    """A colour bar beside ``axes``; its numbers sized now, as the figure's other text
    (matplotlib makes tick labels only when it draws)."""
    bar = fig.colorbar(image, ax=axes, label=label, **kwargs)
    bar.ax.tick_params(labelsize=pt(10))


def _suptitle(fig: Figure, text: str, grid: _Grid | None = None) -> None:
    """The figure's title, wrapped to its width (a short prompt makes a narrow figure)."""
    lines = [text] if text else []
    if grid is not None and grid.k > 1:
        lines.append(
            f"(downsampled: one cell = {grid.k:,} x {grid.k:,} positions, allowed if any is, "
            "shaded by the largest weight)"
        )
    if lines:
        width, size = float(fig.get_figwidth()) - 0.4, pt(12)
        title = "\n".join(
            wrapped(line, width, size, name_first=i == 0) for i, line in enumerate(lines)
        )
        grow(fig, title.count("\n") + 1 - len(lines), size)
        fig.suptitle(title, fontsize=size, parse_math=False)


# -- public figures -----------------------------------------------------------------


def _panels_figure(
    panels: Sequence[Panel],
    titles: Sequence[str],
    suptitle: str,
    *,
    shared_axes: bool,
    width: float | None = None,
) -> Figure:
    """Panels in a near-square grid, one colour bar, legend below (panels already checked).

    With ``shared_axes`` the panels have the same tokens, so inner panels leave
    their tick labels to the outer ones; otherwise every panel is labelled.
    """
    grid = _Grid.for_size(panels[0].n)
    count = len(panels)
    ncols = across(count)
    nrows = math.ceil(count / ncols)
    side = _panel_side(grid.cells, count)
    # Keep a big grid of heads on a sane page: shrink the panels, not the margins.
    side = min(side, 20.0 / ncols, 20.0 / nrows)
    margin = grid_margin(ncols, shared_axes)
    scale = text_scale(ncols * side + margin, width)
    if width is not None:  # the panels take what the labels and colour bar leave
        side = (width - margin * scale) / ncols
        if side < MIN_SIDE:
            raise too_narrow(width, least_width(ncols, margin, scale), panels_text(count))
    with scaled_text(scale):
        fig = _draw_panels(
            panels, titles, suptitle, grid, side, scale, margin, shared_axes=shared_axes
        )
        if width is not None:
            fit_height(fig)
    return fig


def _draw_panels(
    panels: Sequence[Panel],
    titles: Sequence[str],
    suptitle: str,
    grid: _Grid,
    side: float,
    scale: float,
    margin: float,
    *,
    shared_axes: bool,
) -> Figure:
    count = len(panels)
    ncols = across(count)
    nrows = math.ceil(count / ncols)
    fig = NotebookFigure(
        figsize=(ncols * side + margin * scale, nrows * side + 1.4 * scale), layout="constrained"
    )
    axes = _panel_axes(fig, count)
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)
    drawn: set[int] = set()
    image: AxesImage | None = None
    extra = 0  # lines the panels' titles wrapped onto
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        image, states = _draw_panel(ax, panel, grid, cmap, norm)
        drawn |= states
        # Inner panels share the outer panels' tick labels; a panel with an empty
        # slot below it (last grid row partly filled) keeps its own.
        _decorate(
            ax,
            grid,
            panel,
            ticks,
            show_x=not shared_axes or i + ncols >= count,
            show_y=not shared_axes or i % ncols == 0,
        )
        if titles[i]:
            size = pt(11 if count == 1 else 9)
            title = wrapped(titles[i], side, size)
            ax.set_title(title, fontsize=size, parse_math=False)
            extra = max(extra, title.count("\n"))
        if panel.outline is not None:
            row = panel.outline[0] // grid.k * grid.k  # its pooled block, cut at the last row
            height = min(grid.k, grid.n - row)
            ax.add_patch(Rectangle((-0.5, row - 0.5), grid.n, height, **_OUTLINE, zorder=4))
    assert image is not None
    grow(fig, extra * nrows, pt(11 if count == 1 else 9))
    _colorbar(fig, image, axes, "attention weight", shrink=0.9 if count == 1 else 0.6)
    _suptitle(fig, suptitle, grid)
    outlined = sorted({p.outline[1] for p in panels if p.outline is not None})
    _legend(fig, drawn, _mark_kinds(panels), [Patch(**_OUTLINE, label=o) for o in outlined])
    return fig


def attention_figure(view: AttentionView, *, width: float | None = None) -> Figure:
    """Every panel of ``view`` as a heatmap, in a near-square grid, ``width`` inches
    wide (default: what suits its cells).

    Panels that share their rows (``view.side_by_side``: heads of one trace) leave
    inner tick labels to the outer panels; others (the two orderings of a text pair)
    each carry their own tokens and marks. ``view.title`` is drawn as given (only
    escaped). A comparison's |Δ| map is `comparison_figure`.
    """
    _check(view)
    titles = [p.title for p in view.panels]
    if len(titles) == 1 and titles[0] in view.title:  # one panel: the figure's title says it
        titles = [""]
    return _panels_figure(
        view.panels, titles, view.title, shared_axes=view.side_by_side, width=width
    )


def comparison_figure(view: AttentionView, *, width: float | None = None) -> Figure:
    """A comparison's two sides, their absolute difference and the verdict, ``width``
    inches wide (default: what suits its cells).

    The difference panel uses a fixed log scale from 1e-12 to 1, so float rounding
    (~1e-8) looks dark and a real change (~0.1-1) looks bright in every figure; its
    title gives the largest |Δ| and where it occurs. Cells neither side may attend
    to are dotted grey there, as masked cells. The verdict heads the legend under the
    panels, green when it is good news (red otherwise).
    """
    n = _check(view)
    if len(view.panels) != 2:
        raise usage_error(f"a comparison has 2 panels, got {len(view.panels)}")
    grid = _Grid.for_size(n)
    side = float(np.clip(0.06 * grid.cells + 3.0, 3.2, 4.5))  # three panels fit a slide
    scale = text_scale(3 * side + COMPARISON_MARGIN, width)
    if width is not None:  # the panels take what the labels and colour bars leave
        side = (width - COMPARISON_MARGIN * scale) / 3
        if side < MIN_SIDE:
            least = least_width(3, COMPARISON_MARGIN, scale)
            raise too_narrow(width, least, COMPARISON_PANELS)
    with scaled_text(scale):
        fig = _draw_comparison(view, grid, side, scale)
        if width is not None:
            fit_height(fig)
    return fig


def _draw_comparison(view: AttentionView, grid: _Grid, side: float, scale: float) -> Figure:
    left, right = view.panels
    fig = NotebookFigure(
        figsize=(3 * side + COMPARISON_MARGIN * scale, side + 2.0 * scale), layout="constrained"
    )
    ax_left, ax_right, ax_diff = fig.subplots(1, 3)
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)

    image, drawn = _draw_panel(ax_left, left, grid, cmap, norm)
    drawn |= _draw_panel(ax_right, right, grid, cmap, norm)[1]
    _colorbar(fig, image, [ax_left, ax_right], "attention weight", shrink=0.85)

    a = np.where(left.states == ALLOWED, np.asarray(left.weights, dtype=np.float64), 0.0)
    b = np.where(right.states == ALLOWED, np.asarray(right.weights, dtype=np.float64), 0.0)
    delta = np.abs(a - b)
    query, key = np.unravel_index(int(np.argmax(delta)), delta.shape)
    peak = float(delta[query, key])
    either = (left.states == ALLOWED) | (right.states == ALLOWED)
    shown = np.ma.clip(grid.max(delta, either), DIFF_FLOOR, 1.0)
    diff_image = _heatmap(ax_diff, shown, grid, _cmap(DIFF_CMAP), LogNorm(DIFF_FLOOR, 1.0))
    if np.ma.getmaskarray(shown).any():  # keys neither side attends: dotted as masked
        drawn.add(MASKED)
    _colorbar(fig, diff_image, [ax_diff], "|left − right|", shrink=0.85, extend="min")

    if peak == 0.0:
        summary = "this head's max |Δ| = 0 (identical)"
    else:
        summary = f"this head's max |Δ| = {peak:.2e} (query {query + 1}, key {key + 1})"
    titles = [wrapped(panel.title, side, pt(10)) for panel in (left, right)]
    titles.append(f"|left − right|\n{wrapped(summary, side, pt(10))}")
    for ax, title in zip((ax_left, ax_right, ax_diff), titles, strict=True):
        ax.set_title(title, fontsize=pt(10), parse_math=False)
    grow(fig, max(t.count("\n") for t in titles) - 1, pt(10))  # sized for two lines
    _decorate(ax_left, grid, left, ticks)
    _decorate(ax_right, grid, right, ticks, show_y=False)
    _decorate(ax_diff, grid, right, ticks, show_y=False)
    _suptitle(fig, view.title, grid)
    _legend(fig, drawn, _mark_kinds(view.panels), verdict=view.verdict)
    return fig


def layers_figure(trace: Trace, layers: Sequence[int] = (0, 1), *, head: int = 0) -> Figure:
    """The same head in several layers of one trace side by side, each titled with its
    layer's mask: a sliding-window layer next to a full one shows which keys its rolling
    cache evicted (cached traces) or its mask hid (training traces)."""
    from maskviz.view import trace_view

    if not layers:
        raise usage_error("layers_figure needs at least one layer")
    panels = [trace_view(trace, layer=layer, head=head).panels[0] for layer in layers]
    titles = [f"layer {layer}: {layer_mask_words(trace.window(layer))}" for layer in layers]
    name = safe_text(trace.model_name) or "model"
    title = f"{name} · head {head} · {trace.mode} · {trace.decoding}"
    return _panels_figure(panels, titles, title, shared_axes=True)


# -- the decoding GIF ---------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    filled: int  # rows 0..filled-1 are drawn; later rows are blank
    first: int  # outlined rows: first..last
    last: int
    caption: str


def decode_frame_count(view: AttentionView) -> int:
    """Frames `save_decode_gif` writes for ``view``: for a cached trace the prefill and
    then one per decoding step, else one per row."""
    n = view.panels[0].n
    if view.mode == "cached":
        return max(n - view.steps_from, 0) + 1
    return n


def _decode_frames(view: AttentionView) -> list[_Frame]:
    """What each frame of the decoding GIF shows and says.

    cached: the prefill (the prompt's rows at once), then one frame per generated
    token; rows and keys appear as decoding computes them. Otherwise every row comes from one
    masked pass, so all rows are drawn from the first frame and the frames walk
    through them, one row each. Captions count the keys each row's states allow.
    """
    panel = view.panels[-1]
    n, states = panel.n, panel.states

    def token(t: int) -> str:
        return label_text(panel.labels[t])

    def earlier(t: int) -> int:
        return int((states[t, :t] == ALLOWED).sum())

    if view.mode != "cached":
        frames = []
        for t in range(n):
            sees = "only to itself" if earlier(t) == 0 else f"to itself + {earlier(t)} earlier keys"
            caption = (
                f"row {t + 1} of {n} in the single masked pass: query '{token(t)}' attends {sees}"
            )
            frames.append(_Frame(n, t, t, caption))
        return frames
    p = min(view.steps_from, n)
    caption = f"prefill: {p} prompt positions, each attends to itself and earlier positions"
    frames = [_Frame(p, 0, p - 1, caption)]
    for t in range(p, n):
        evicted = int((states[t] == EVICTED).sum())
        gone = f" ({evicted} evicted)" if evicted else ""
        caption = (
            f"step {t - p + 1}: query '{token(t)}' at position {t + 1} attends to "
            f"{earlier(t)} cached keys + itself{gone}"
        )
        frames.append(_Frame(t + 1, t, t, caption))
    return frames


def _gif_frame(
    fig: Figure, canvas: Any, still: Any, moving: Sequence[Artist], palette: Any = None
) -> Any:
    """One GIF frame: the still picture with the moving artists drawn over it, as the
    palette image GIF stores (made now: a quarter of the memory of keeping RGBA). Every
    frame takes one ``palette`` (this frame's own colours when none is given): a colour
    keeps one value throughout, with no flicker between frames."""
    from PIL import Image

    canvas.restore_region(still)
    for artist in moving:
        fig.draw_artist(artist)
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    if palette is None:
        palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.quantize(palette=palette, dither=Image.Dither.NONE)


def _token_labels(axes: Sequence[Axes]) -> list[tuple[int, Artist]]:
    """(position, tick label) of every shown token label of ``axes``."""
    return [
        (round(float(tick.get_loc())), tick.label1)
        for ax in axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks()
        if tick.label1.get_visible() and tick.label1.get_text()
    ]


def gif_fps(frames: int) -> float:
    """Frames per second of a decoding GIF: 2, or faster for a long trace, so that one
    loop lasts at most about 30 s (at most 25 per second: browsers slow shorter delays).

    >>> gif_fps(13), gif_fps(240), gif_fps(1024)
    (2.0, 8.0, 25.0)
    """
    return min(25.0, max(2.0, frames / 30))


def save_decode_gif(
    path: str | os.PathLike[str],
    view: AttentionView,
    *,
    fps: float | None = None,
    progress: ProgressCallback | None = None,
) -> int:
    """Animate ``view`` row by row; return the frame count.

    Every panel (e.g. one per head) side by side, all stepping together. A cached
    trace (``view.mode`` "cached"): frame 0 shows the prefill's rows, frame k adds the
    row of decoding step k, rows and keys not computed yet are blank (the KV cache
    does not hold them yet), and the newest rows are outlined; a token's labels appear
    with its row. Otherwise (one masked pass) every row is drawn from the start and each
    frame outlines and describes one row. ``fps``: frames per second (default
    `gif_fps`). ``view.title`` is drawn as given (only escaped); ``progress(done,
    total)`` is called as frames are written. The file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise usage_error(f"fps must be a positive number, got {fps}")
    n = _check(view)
    frames = _decode_frames(view)
    assert len(frames) == decode_frame_count(view)
    # The GIF is not pooled: rows appear one at a time, and a pooled block would
    # mix a revealed row with rows that are still blank.
    grid = _Grid(n, 1)
    panels = view.panels
    count = len(panels)
    ncols = across(count)
    nrows = math.ceil(count / ncols)
    if count == 1:
        side = float(np.clip(0.12 * n + 3.5, 4.0, 7.0))
    else:
        side = min(_panel_side(n, count), 16.0 / ncols, 12.0 / nrows)
    fig = Figure(
        figsize=(ncols * side + 1.8, nrows * side + 1.9), dpi=GIF_DPI, layout="constrained"
    )
    canvas: Any = FigureCanvasAgg(fig)  # Any: matplotlib leaves the Agg canvas untyped
    _suptitle(fig, view.title)
    # The caption changes every frame; a subfigure's title sits under the figure's.
    body = fig.add_subfigure(fig.add_gridspec(1, 1)[0, 0])
    axes = _panel_axes(body, count)
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)
    pending: list[Rectangle] = []  # per panel: rows not computed yet, then their keys
    newest: list[Rectangle] = []
    drawn: set[int] = set()
    image: AxesImage | None = None
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        image, states = _draw_panel(ax, panel, grid, cmap, norm)
        drawn |= states
        _decorate(ax, grid, panel, ticks, show_x=i + ncols >= count, show_y=i % ncols == 0)
        if count > 1 and panel.title:
            ax.set_title(wrapped(panel.title, side, 10), fontsize=10, parse_math=False)
        # Drawn above the heatmap and its grid lines (zorder), moved every frame.
        blanks = [
            Rectangle((-0.5, n - 0.5), n, 0, facecolor=COLOR_PENDING, edgecolor="none", zorder=3)
            for _ in range(2)
        ]
        outline = Rectangle((-0.5, -0.5), n, 1, **_OUTLINE, zorder=4)
        for patch in (*blanks, outline):
            ax.add_patch(patch)
        pending += blanks
        newest.append(outline)
    assert image is not None
    body.colorbar(image, ax=axes, label="attention weight", shrink=0.85 if count == 1 else 0.6)

    if view.mode != "cached":
        outline_label = "row in the caption"
    elif view.steps_from < n:
        outline_label = "newest query"
    else:
        outline_label = "prefill queries"
    extra: list[Artist] = [Patch(**_OUTLINE, label=outline_label)]
    if any(frame.filled < n for frame in frames) and NOT_YET not in drawn:
        extra.insert(0, Patch(facecolor=COLOR_PENDING, edgecolor="0.6", label=NOT_YET_LABEL))
    _legend(fig, drawn, _mark_kinds(panels), extra=extra)  # one blank entry: rows and keys
    caption = body.suptitle("", fontsize=10, parse_math=False)

    # A token's label appears with its row and key: a frame never names a token that
    # has not been generated yet (numeric ticks, past 64 positions, name none).
    tokens = _token_labels(axes) if view.mode == "cached" and n <= MAX_CELLS else []

    def draw(index: int) -> list[Artist]:
        frame, filled = frames[index], frames[index].filled
        for rows, keys, outline in zip(pending[::2], pending[1::2], newest, strict=True):
            rows.set_bounds(-0.5, filled - 0.5, n, n - filled)
            keys.set_bounds(filled - 0.5, -0.5, n - filled, filled if filled < n else 0)
            outline.set_y(frame.first - 0.5)
            outline.set_height(frame.last - frame.first + 1)
        for position, label in tokens:
            label.set_alpha(1.0 if position < filled else 0.0)
        caption.set_text(frame.caption)
        return [*pending, *newest, caption]

    # Lay the figure out once, with the longest caption, then freeze it: a layout
    # that followed each caption would shift the heatmap between frames.
    draw(max(range(len(frames)), key=lambda f: len(frames[f].caption)))
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    # Render everything that never moves once; each frame restores that picture and
    # draws only the blanks, outlines and caption over it (and the axes' borders,
    # which the blanks reach).
    spines = [spine for ax in axes for spine in ax.spines.values()]
    moving: list[Artist] = [*pending, *spines, *newest, caption]
    for artist in moving:
        artist.set_animated(True)
    # tick labels belong to their axis, which draws them with the still picture: there
    # they are transparent (not hidden, which would move the axis titles), and each
    # frame draws those it shows
    for _, label in tokens:
        label.set_alpha(0.0)
    moving += [label for _, label in tokens]
    _write_gif(path, fig, canvas, moving, draw, len(frames), fps, progress)
    return len(frames)


def _panel_axes(container: FigureBase, count: int) -> list[Axes]:
    """``count`` heatmap axes in a near-square grid (`across`), the grid's spare slots
    removed. ``container``: a figure or subfigure."""
    ncols = across(count)
    grid_axes = container.subplots(math.ceil(count / ncols), ncols, squeeze=False).ravel()
    for unused in grid_axes[count:]:
        unused.remove()
    return list(grid_axes[:count])


def _write_gif(
    path: str | os.PathLike[str],
    fig: Figure,
    canvas: Any,
    moving: list[Artist],
    draw: Callable[[int], object],
    frames: int,
    fps: float | None,
    progress: ProgressCallback | None,
) -> None:
    """Render the still picture once, then each frame's ``moving`` artists over it, and
    write the frames as one GIF, atomically."""
    canvas.draw()
    still = canvas.copy_from_bbox(fig.bbox)
    # the palette of the last frame, which shows every state (evicted keys appear late)
    draw(frames - 1)
    palette = _gif_frame(fig, canvas, still, moving)
    images: list[Any] = []  # PIL images, imported with the GIF writer
    with atomic_path(path) as tmp:
        for index in range(frames):
            draw(index)
            images.append(_gif_frame(fig, canvas, still, moving, palette))
            if progress is not None:
                progress(index + 1, frames)
        # the last frame holds for 2 s before the loop starts again
        frame_ms = 10 * round(100 / (fps or gif_fps(len(images))))  # GIF counts 1/100 s
        durations = [frame_ms] * (len(images) - 1) + [max(frame_ms, 2000)]
        with open(tmp, "wb") as fh:  # ours to close: Pillow leaves a file it opened open on Ctrl-C
            images[0].save(
                fh,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=durations,
                loop=0,
            )
