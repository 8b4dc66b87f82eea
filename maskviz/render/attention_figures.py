"""matplotlib figures of recorded attention: heatmaps, side-by-side comparisons, a decoding GIF.

Every figure draws rows as queries (top to bottom) and columns as keys, with
positions numbered from 1 in ticks, titles and captions, as in the terminal.
Attention weights use viridis on a fixed 0..1 scale so figures can be compared
with each other; cells the mask forbids are drawn in a flat grey that no weight
maps to, so "not allowed" never looks like "weight 0". A dashed line marks where
the prompt ends and generated tokens begin; in a similarity figure two dashed
lines enclose the delimiter's row and column instead.

Matrices wider than 64 positions are average-pooled into at most 64 x 64 cells
(the title says so). Figures are built on `matplotlib.figure.Figure` directly (no
pyplot state); only `save_decode_gif` writes a file, atomically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from numpy.typing import NDArray

from maskviz._io import atomic_path
from maskviz._text import display_label, fit, safe_text

FloatArray = NDArray[np.floating[Any]]
BoolArray = NDArray[np.bool_]

MAX_CELLS = 64  # displayed cells per side; above this the matrix is average-pooled
COLOR_MASKED = "#d4d4d4"  # light grey: lighter than viridis' dark end, greyer than its yellow end
COLOR_BOUNDARY = "#e8590c"  # orange: visible on both the viridis and the grey cells
COLOR_HIGHLIGHT = "#e7298a"  # magenta: the newest query row in the decoding GIF
COLOR_PENDING = "white"  # rows the decoding GIF has not reached yet
WEIGHTS_CMAP = "viridis"
DIFF_CMAP = "inferno"
DIFF_FLOOR = 1e-12  # |Δ| at or below this shares the darkest colour (float64 noise lives here)
LABEL_WIDTH = 12  # terminal cells of a token label before it is cut with '…'
GIF_DPI = 100
MASKED_LABEL = "masked (not allowed)"
BOUNDARY_LABEL = "prompt | generated"
DELIMITER_LABEL = "delimiter (between the dashed lines)"
DECODE_MODES = ("cached", "training")

ProgressCallback = Callable[[int, int], None]  # (frames written, total frames)


# -- text ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _charmap(font_path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_path).get_charmap())


def _drawable(text: str) -> str:
    """Escape characters the default font cannot draw.

    matplotlib would draw an empty box and warn (an error under the test suite's
    warning filter) for, say, CJK token text; an escape is readable and silent.
    """
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=mpl.rcParams["font.family"]))
    known = _charmap(str(path))
    out = []
    for ch in text:
        code = ord(ch)
        if code in known or ch.isspace():
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _text(text: str, width: int | None = None) -> str:
    """User or model text made safe (escapes) and drawable, optionally shortened."""
    safe = safe_text(text)
    if width is not None:
        safe = fit(safe, width)
    return _drawable(safe)


# -- checks -------------------------------------------------------------------------


def _square(array: NDArray[Any], name: str) -> int:
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty square [T, T] array, got {array.shape}")
    return int(array.shape[0])


def _check_inputs(
    matrices: Sequence[FloatArray],
    masks: Sequence[BoolArray | None],
    labels: Sequence[str],
    prompt_len: int,
) -> int:
    """Check shapes agree; return T."""
    n = _square(np.asarray(matrices[0]), "matrix")
    for i, matrix in enumerate(matrices):
        if np.asarray(matrix).shape != (n, n):
            raise ValueError(f"matrix {i} is {np.asarray(matrix).shape}, expected ({n}, {n})")
    for mask in masks:
        if mask is not None and np.asarray(mask).shape != (n, n):
            raise ValueError(f"mask is {np.asarray(mask).shape}, expected ({n}, {n})")
    if len(labels) != n:
        raise ValueError(f"expected {n} labels, got {len(labels)}")
    if not 1 <= prompt_len <= n:
        raise ValueError(f"prompt_len {prompt_len} is outside 1..{n}")
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

    def mean(self, values: FloatArray, allowed: BoolArray) -> np.ma.MaskedArray[Any, Any]:
        """Mean weight over each block's allowed cells; a block with none is masked.

        Masked cells hold no weight (they are drawn grey instead), so they are left
        out of the mean rather than counted as zeros.
        """
        values = np.asarray(values, dtype=np.float64)
        if self.k == 1:
            return np.ma.masked_array(values, mask=~allowed)
        sums = self._reduce(np.add, np.where(allowed, values, 0.0))
        counts = self._reduce(np.add, allowed.astype(np.float64))
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return np.ma.masked_array(means, mask=counts == 0)

    def max(self, values: FloatArray, shown: BoolArray) -> np.ma.MaskedArray[Any, Any]:
        """Largest value in each block (a pooled difference must not hide a spike)."""
        values = np.asarray(values, dtype=np.float64)
        if self.k == 1:
            return np.ma.masked_array(values, mask=~shown)
        peaks = self._reduce(np.maximum, np.where(shown, values, -np.inf))
        return np.ma.masked_array(
            np.where(np.isfinite(peaks), peaks, 0.0), mask=~np.isfinite(peaks)
        )


# -- drawing helpers ----------------------------------------------------------------


def _cmap(name: str) -> Colormap:
    return mpl.colormaps[name].with_extremes(bad=COLOR_MASKED)


def _panel_side(cells: int, panels: int) -> float:
    """Inches per heatmap: grows with the number of cells, smaller in a grid."""
    if panels == 1:
        return float(np.clip(0.12 * cells + 3.5, 4.0, 9.0))
    return float(np.clip(0.08 * cells + 2.2, 2.4, 4.5))


@dataclass(frozen=True)
class _Ticks:
    fontsize: float
    stride: int


def _ticks(side: float, grid: _Grid) -> _Ticks:
    # Roughly 80% of a panel's side is the image; fit the font to one cell and
    # skip labels when even the smallest readable font would overlap.
    cell_pt = side * 72 * 0.8 / grid.cells
    fontsize = float(np.clip(0.7 * cell_pt, 5.0, 9.0))
    return _Ticks(fontsize, max(1, math.ceil(1.15 * fontsize / cell_pt)))


def _heatmap(
    ax: Axes,
    values: np.ma.MaskedArray[Any, Any],
    grid: _Grid,
    cmap: Colormap,
    norm: Normalize,
) -> AxesImage:
    image = ax.imshow(
        values,
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
        aspect="equal",
        extent=grid.extent,
    )
    # Crop a partly filled last block to the real positions.
    ax.set_xlim(-0.5, grid.n - 0.5)
    ax.set_ylim(grid.n - 0.5, -0.5)
    return image


def _boundaries(prompt_len: int, n: int) -> tuple[float, ...]:
    """Where the prompt/generated line goes: none when nothing was generated."""
    return (prompt_len - 0.5,) if prompt_len < n else ()


def _position_ticks(ax: Axes, n: int) -> None:
    """Numeric ticks for long sequences, labelled with positions counted from 1."""
    from matplotlib.ticker import MaxNLocator

    # Choose round numbers among the 1-based positions, then place each at its
    # 0-based image coordinate, so tick "100" sits on the row the terminal calls 100.
    nice = MaxNLocator(nbins=8, integer=True).tick_values(1, n)
    numbers = sorted({1, *(int(v) for v in nice if 1 <= v <= n)})
    places = [v - 1 for v in numbers]
    names = [str(v) for v in numbers]
    ax.set_xticks(places, names)
    ax.set_yticks(places, names)
    ax.tick_params(labelsize=8)


def _decorate(
    ax: Axes,
    grid: _Grid,
    labels: Sequence[str],
    ticks: _Ticks,
    lines: Sequence[float],
    *,
    show_x: bool = True,
    show_y: bool = True,
) -> None:
    """Tick labels, axis labels, cell grid and dashed lines at the ``lines`` edges.

    Up to 64 positions get token labels; beyond that, numeric position ticks.
    Either way positions are numbered from 1, as in the terminal.
    """
    n = grid.n
    if n <= MAX_CELLS:
        positions = list(range(0, n, ticks.stride))
        # 1-based positions and visible edge spaces, as in the terminal
        names = [f"{i + 1} {_text(display_label(labels[i]), LABEL_WIDTH)}" for i in positions]
        # parse_math=False: a token such as "$x$" is text, not a formula to typeset.
        ax.set_xticks(positions, names, rotation=90, fontsize=ticks.fontsize, parse_math=False)
        ax.set_yticks(positions, names, fontsize=ticks.fontsize, parse_math=False)
        if n <= 40:
            ax.set_xticks(np.arange(-0.5, n), minor=True)
            ax.set_yticks(np.arange(-0.5, n), minor=True)
            ax.grid(which="minor", color="white", linewidth=0.6)
            ax.tick_params(which="minor", length=0)
    else:
        _position_ticks(ax, n)
    ax.tick_params(labelbottom=show_x, labelleft=show_y)
    if show_x:
        ax.set_xlabel("key position →")
    if show_y:
        ax.set_ylabel("query position ↓")
    for edge in lines:
        ax.axhline(edge, color=COLOR_BOUNDARY, linestyle="--", linewidth=1.4)
        ax.axvline(edge, color=COLOR_BOUNDARY, linestyle="--", linewidth=1.4)


def _legend(fig: Figure, boundary: str | None, extra: Sequence[Artist] = ()) -> None:
    """Legend under the panels; ``boundary`` says what the dashed lines mean (None: no lines)."""
    handles: list[Artist] = [Patch(facecolor=COLOR_MASKED, edgecolor="0.6", label=MASKED_LABEL)]
    if boundary is not None:
        handles.append(
            Line2D([], [], color=COLOR_BOUNDARY, linestyle="--", linewidth=1.4, label=boundary)
        )
    handles.extend(extra)
    # Two rows beat a legend wider than a small figure.
    ncols = len(handles) if len(handles) <= 3 else math.ceil(len(handles) / 2)
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def _suptitle(fig: Figure, text: str, grid: _Grid) -> None:
    title = _text(text)
    if grid.k > 1:
        note = f"downsampled: one cell = {grid.k} x {grid.k} positions"
        title = f"{title}\n({note})" if title else f"({note})"
    if title:
        fig.suptitle(title, fontsize=12, parse_math=False)


# -- public figures -----------------------------------------------------------------


def _heatmap_grid(
    matrices: Sequence[FloatArray],
    masks: Sequence[BoolArray],
    labels: Sequence[Sequence[str]],
    lines: Sequence[Sequence[float]],
    titles: Sequence[str],
    suptitle: str,
    boundary: str | None,
    *,
    shared_axes: bool,
) -> Figure:
    """Panels in a near-square grid, one colour bar, legend below; inputs are checked.

    With ``shared_axes`` the panels have the same tokens, so inner panels leave
    their tick labels to the outer ones; otherwise every panel is labelled.
    """
    grid = _Grid.for_size(int(np.asarray(matrices[0]).shape[0]))
    count = len(matrices)
    ncols = math.ceil(math.sqrt(count))
    nrows = math.ceil(count / ncols)
    side = _panel_side(grid.cells, count)
    # Keep a big grid of heads on a sane page: shrink the panels, not the margins.
    side = min(side, 20.0 / ncols, 20.0 / nrows)
    fig = Figure(figsize=(ncols * side + 1.8, nrows * side + 1.4), layout="constrained")
    grid_axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for unused in grid_axes[count:]:
        unused.remove()
    axes = list(grid_axes[:count])
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)
    image: AxesImage | None = None
    for i, ax in enumerate(axes):
        image = _heatmap(ax, grid.mean(matrices[i], masks[i]), grid, cmap, norm)
        # Inner panels share the outer panels' tick labels; a panel with an empty
        # slot below it (last grid row partly filled) keeps its own.
        _decorate(
            ax,
            grid,
            labels[i],
            ticks,
            lines[i],
            show_x=not shared_axes or i + ncols >= count,
            show_y=not shared_axes or i % ncols == 0,
        )
        if titles[i]:
            ax.set_title(_text(titles[i]), fontsize=11 if count == 1 else 9, parse_math=False)
    assert image is not None
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.9 if count == 1 else 0.6)
    _suptitle(fig, suptitle, grid)
    _legend(fig, boundary)
    return fig


def attention_figure(
    matrices: Sequence[FloatArray],
    mask: BoolArray,
    labels: Sequence[str],
    prompt_len: int,
    titles: Sequence[str],
    suptitle: str,
) -> Figure:
    """Heatmaps of attention weights: one panel per matrix, in a near-square grid.

    ``matrices`` are T x T (row = query, column = key), e.g. one head, a mean over
    heads, or every head as small multiples; ``mask`` [T, T] marks allowed cells
    (False cells are drawn grey). ``labels`` are the T token labels, ``titles`` one
    per panel. Rows and columns after ``prompt_len`` are generated tokens.
    ``suptitle`` is drawn as given (only escaped).
    """
    if not matrices:
        raise ValueError("attention_figure needs at least one matrix")
    if len(titles) != len(matrices):
        raise ValueError(f"expected {len(matrices)} titles, got {len(titles)}")
    allowed = np.asarray(mask, dtype=bool)
    n = _check_inputs(matrices, [allowed], labels, prompt_len)
    count = len(matrices)
    return _heatmap_grid(
        matrices,
        [allowed] * count,
        [labels] * count,
        [_boundaries(prompt_len, n)] * count,
        titles,
        suptitle,
        BOUNDARY_LABEL if prompt_len < n else None,
        shared_axes=True,
    )


@dataclass(frozen=True)
class DelimitedPanel:
    """One ordering of a text pair: its attention [T, T], mask, own token labels, delimiter.

    ``delimiter`` is the 0-based position of the delimiter token in this ordering.
    """

    matrix: FloatArray
    mask: BoolArray
    labels: Sequence[str]
    delimiter: int
    title: str


def similarity_figure(panels: Sequence[DelimitedPanel], suptitle: str) -> Figure:
    """Each ordering of a text pair side by side, each labelled with its own tokens.

    Two dashed lines enclose the delimiter's row and column in every panel, at that
    panel's own delimiter position (the orderings put it in different places when
    the texts differ in length). All panels must have the same length.
    """
    if not panels:
        raise ValueError("similarity_figure needs at least one panel")
    n = _square(np.asarray(panels[0].matrix), "matrix")
    masks = []
    for i, panel in enumerate(panels):
        _check_inputs([panel.matrix], [panel.mask], panel.labels, 1)
        if np.asarray(panel.matrix).shape != (n, n):
            raise ValueError(f"panel {i} is {np.asarray(panel.matrix).shape}, expected ({n}, {n})")
        if not 0 <= panel.delimiter < n:
            raise ValueError(f"panel {i}: delimiter {panel.delimiter} is outside 0..{n - 1}")
        masks.append(np.asarray(panel.mask, dtype=bool))
    return _heatmap_grid(
        [p.matrix for p in panels],
        masks,
        [p.labels for p in panels],
        [(p.delimiter - 0.5, p.delimiter + 0.5) for p in panels],
        [p.title for p in panels],
        suptitle,
        DELIMITER_LABEL,
        shared_axes=False,
    )


def comparison_figure(
    left: FloatArray,
    right: FloatArray,
    mask_left: BoolArray | None,
    mask_right: BoolArray | None,
    labels: Sequence[str],
    prompt_len: int,
    left_title: str,
    right_title: str,
    suptitle: str,
) -> Figure:
    """Two attention matrices side by side and their absolute difference.

    A mask of None means every cell was allowed (an unmasked pass). The difference
    panel uses a fixed log scale from 1e-12 to 1, so float rounding (~1e-8) looks
    dark and a real change (~0.1-1) looks bright in every figure; its title gives
    the largest |Δ| and where it occurs. Cells masked on both sides are grey.
    """
    n = _check_inputs([left, right], [mask_left, mask_right], labels, prompt_len)
    everything = np.ones((n, n), dtype=bool)
    allowed_left = everything if mask_left is None else np.asarray(mask_left, dtype=bool)
    allowed_right = everything if mask_right is None else np.asarray(mask_right, dtype=bool)
    grid = _Grid.for_size(n)
    side = float(np.clip(0.08 * grid.cells + 3.0, 3.2, 5.5))
    fig = Figure(figsize=(3 * side + 3.2, side + 1.6), layout="constrained")
    ax_left, ax_right, ax_diff = fig.subplots(1, 3)
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)

    image = _heatmap(ax_left, grid.mean(left, allowed_left), grid, cmap, norm)
    _heatmap(ax_right, grid.mean(right, allowed_right), grid, cmap, norm)
    fig.colorbar(image, ax=[ax_left, ax_right], label="attention weight", shrink=0.85)

    delta = np.abs(np.asarray(left, dtype=np.float64) - np.asarray(right, dtype=np.float64))
    query, key = np.unravel_index(int(np.argmax(delta)), delta.shape)
    peak = float(delta[query, key])
    shown = np.ma.clip(grid.max(delta, allowed_left | allowed_right), DIFF_FLOOR, 1.0)
    diff_image = _heatmap(ax_diff, shown, grid, _cmap(DIFF_CMAP), LogNorm(DIFF_FLOOR, 1.0))
    fig.colorbar(diff_image, ax=ax_diff, label="|left − right|", shrink=0.85, extend="min")

    if peak == 0.0:
        summary = "max |Δ| = 0 (identical)"
    else:
        summary = f"max |Δ| = {peak:.2e} (query {query + 1}, key {key + 1})"
    for ax, title in ((ax_left, _text(left_title)), (ax_right, _text(right_title))):
        ax.set_title(title, fontsize=10, parse_math=False)
    ax_diff.set_title(f"|left − right|\n{summary}", fontsize=10)
    for ax in (ax_left, ax_right, ax_diff):
        _decorate(ax, grid, labels, ticks, _boundaries(prompt_len, n), show_y=ax is ax_left)
    _suptitle(fig, suptitle, grid)
    _legend(fig, BOUNDARY_LABEL if prompt_len < n else None)
    return fig


@dataclass(frozen=True)
class _Frame:
    filled: int  # rows 0..filled-1 are drawn; later rows are blank
    first: int  # outlined rows: first..last
    last: int
    caption: str


def _decode_frames(labels: Sequence[str], prompt_len: int, mode: str) -> list[_Frame]:
    """What each frame of the decoding GIF shows and says.

    cached: one frame per generated token; the rows appear as decoding computes
    them (prompt rows at once, in the prefill). training: every row comes from one
    masked pass, so all rows are drawn from the first frame and the frames walk
    through them, one row each.
    """
    n = len(labels)
    if mode == "training":
        frames = []
        for t in range(n):
            token = _text(display_label(labels[t]), LABEL_WIDTH)
            sees = "only to itself" if t == 0 else f"to itself + {t} earlier keys"
            frames.append(
                _Frame(
                    n,
                    t,
                    t,
                    f"row {t + 1} of {n} in the single masked pass: query '{token}' attends {sees}",
                )
            )
        return frames
    if prompt_len == n:
        caption = (
            f"prefill: {prompt_len} prompt positions, each attends to itself and earlier positions"
        )
        return [_Frame(n, 0, n - 1, caption)]
    frames = []
    for t in range(prompt_len, n):
        token = _text(display_label(labels[t]), LABEL_WIDTH)
        caption = (
            f"step {t - prompt_len + 1}: query '{token}' at position {t + 1} attends to "
            f"{t} cached keys + itself"
        )
        frames.append(_Frame(t + 1, t, t, caption))
    return frames


def decode_frame_count(n: int, prompt_len: int, mode: str = "cached") -> int:
    """Frames `save_decode_gif` writes for ``n`` positions of which ``prompt_len`` are the prompt."""
    if mode == "training":
        return n
    return max(n - prompt_len, 1)


def save_decode_gif(
    path: str | Path,
    matrices: Sequence[FloatArray],
    mask: BoolArray,
    labels: Sequence[str],
    prompt_len: int,
    title: str,
    panel_titles: Sequence[str] | None = None,
    *,
    mode: str = "cached",
    fps: float = 2.0,
    progress: ProgressCallback | None = None,
) -> int:
    """Animate a trace row by row; return the frame count.

    One panel per matrix (e.g. one per head), side by side, all stepping together.
    ``mode`` "cached": one frame per generated token; frame k shows the prompt rows
    and the rows of steps 1..k+1, later rows blank (not computed yet), and outlines
    the newest query row; with no generated tokens one frame shows the prefill.
    ``mode`` "training": every row is drawn from the start (one masked pass) and
    each frame outlines and describes one row. ``title`` is drawn as given (only
    escaped); ``progress(done, total)`` is called as frames are written. The file
    is written atomically.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if mode not in DECODE_MODES:
        raise ValueError(f"mode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
    if not matrices:
        raise ValueError("save_decode_gif needs at least one matrix")
    if panel_titles is not None and len(panel_titles) != len(matrices):
        raise ValueError(f"expected {len(matrices)} panel titles, got {len(panel_titles)}")
    allowed = np.asarray(mask, dtype=bool)
    n = _check_inputs(matrices, [allowed], labels, prompt_len)
    frames = _decode_frames(labels, prompt_len, mode)
    assert len(frames) == decode_frame_count(n, prompt_len, mode)
    # The GIF is not pooled: rows appear one at a time, and a pooled block would
    # mix a revealed row with rows that are still blank.
    grid = _Grid(n, 1)
    count = len(matrices)
    ncols = math.ceil(math.sqrt(count))
    nrows = math.ceil(count / ncols)
    if count == 1:
        side = float(np.clip(0.12 * n + 3.5, 4.0, 7.0))
    else:
        side = min(_panel_side(n, count), 16.0 / ncols, 12.0 / nrows)
    fig = Figure(figsize=(ncols * side + 1.8, nrows * side + 1.9), layout="constrained")
    FigureCanvasAgg(fig)  # the animation writer renders through the figure's canvas
    if title:
        fig.suptitle(_text(title), fontsize=12, parse_math=False)
    # The caption changes every frame; a subfigure's title sits under the figure's.
    body = fig.add_subfigure(fig.add_gridspec(1, 1)[0, 0])
    grid_axes = body.subplots(nrows, ncols, squeeze=False).ravel()
    for unused in grid_axes[count:]:
        unused.remove()
    axes = list(grid_axes[:count])
    ticks = _ticks(side, grid)
    cmap, norm = _cmap(WEIGHTS_CMAP), Normalize(0.0, 1.0)
    pending: list[Rectangle] = []
    newest: list[Rectangle] = []
    image: AxesImage | None = None
    for i, ax in enumerate(axes):
        image = _heatmap(ax, grid.mean(matrices[i], allowed), grid, cmap, norm)
        _decorate(
            ax,
            grid,
            labels,
            ticks,
            _boundaries(prompt_len, n),
            show_x=i + ncols >= count,
            show_y=i % ncols == 0,
        )
        if panel_titles is not None and panel_titles[i]:
            ax.set_title(_text(panel_titles[i]), fontsize=10, parse_math=False)
        # Drawn above the heatmap and its grid lines (zorder), moved every frame.
        pending.append(
            ax.add_patch(
                Rectangle(
                    (-0.5, n - 0.5), n, 0, facecolor=COLOR_PENDING, edgecolor="none", zorder=3
                )
            )
        )
        newest.append(
            ax.add_patch(
                Rectangle(
                    (-0.5, -0.5),
                    n,
                    1,
                    fill=False,
                    edgecolor=COLOR_HIGHLIGHT,
                    linewidth=2.2,
                    zorder=4,
                )
            )
        )
    assert image is not None
    body.colorbar(image, ax=axes, label="attention weight", shrink=0.85 if count == 1 else 0.6)

    if mode == "training":
        outline_label = "row in the caption"
    elif prompt_len < n:
        outline_label = "newest query"
    else:
        outline_label = "prefill queries"
    extra: list[Artist] = [
        Patch(fill=False, edgecolor=COLOR_HIGHLIGHT, linewidth=2.2, label=outline_label)
    ]
    if any(frame.filled < n for frame in frames):
        extra.insert(0, Patch(facecolor=COLOR_PENDING, edgecolor="0.6", label="not computed yet"))
    _legend(fig, BOUNDARY_LABEL if prompt_len < n else None, extra=extra)
    caption = body.suptitle("", fontsize=10, parse_math=False)

    def draw(index: int) -> list[Artist]:
        frame = frames[index]
        for blank, outline in zip(pending, newest, strict=True):
            blank.set_y(frame.filled - 0.5)
            blank.set_height(n - frame.filled)
            outline.set_y(frame.first - 0.5)
            outline.set_height(frame.last - frame.first + 1)
        caption.set_text(frame.caption)
        return [*pending, *newest, caption]

    # Lay the figure out once, with the longest caption, then freeze it: a layout
    # that followed each caption would shift the heatmap between frames.
    draw(max(range(len(frames)), key=lambda f: len(frames[f].caption)))
    fig.draw_without_rendering()
    fig.set_layout_engine("none")

    animation = FuncAnimation(
        fig, draw, frames=len(frames), blit=False, repeat=False, cache_frame_data=False
    )

    def written(done: int, _total: int | None) -> None:
        if progress is not None:
            progress(done, len(frames))

    with atomic_path(path) as tmp:
        # The stubs say int, but PillowWriter only uses fps as 1000 / fps ms per frame.
        writer = PillowWriter(fps=fps)  # type: ignore[arg-type]
        animation.save(tmp, writer=writer, dpi=GIF_DPI, progress_callback=written)
        written(len(frames), len(frames))
    return len(frames)
