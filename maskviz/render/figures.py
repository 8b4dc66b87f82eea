"""matplotlib figures of masks and attention; imported only by commands that draw.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state, no GUI
backend), returned to the caller, and saved atomically by `save_figure`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import re
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from numpy.typing import NDArray

from maskviz._io import FIGURE_SUFFIXES, atomic_path, check_output_path
from maskviz._text import display_label, fit, safe_text
from maskviz.errors import as_integer, check_labels, check_type, index_in
from maskviz.masks import Mask
from maskviz.render.sizes import (
    DEFAULT_DPI,
    MASK_BESIDE,
    MASK_GRID,
    MASK_TEXT,
    MIN_TEXT_SCALE,
    check_picture,
    check_width_range,
    mask_least,
    too_narrow,
)
from maskviz.render.style import (
    COLOR_ALLOWED,
    COLOR_BLOCKED,
    COLOR_BLOCKED_DOTS,
    COLOR_HIGHLIGHT,
    COLOR_PADDING,
    COLOR_PARTIAL,
)

MAX_FIGURE_CELLS = 512  # cells per side before a figure is downsampled
NOTEBOOK_DPI = 100  # a figure shown in a notebook: matplotlib's own screen resolution
LABEL_WIDTH = 12  # terminal cells of a token label before it is cut with '…'
# a cell no query may attend, the same in every figure (and page): light grey, dotted
BLOCKED_STYLE: dict[str, Any] = {
    "facecolor": COLOR_BLOCKED,
    "edgecolor": COLOR_BLOCKED_DOTS,
    "hatch": "....",
}
mpl.rcParams["svg.hashsalt"] = "maskviz"  # reproducible SVG ids


class NotebookFigure(Figure):
    """A matplotlib `Figure` that a Jupyter notebook shows as a picture. Figures made
    without pyplot show as text ("<Figure size ...>") until ``%matplotlib inline``
    registers them; with it, its own printer is used instead of this one."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=NOTEBOOK_DPI)
        return buffer.getvalue()


@lru_cache(maxsize=8)
def _charmap(font_path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_path).get_charmap())


def drawable(text: str) -> str:
    """Escape characters the default font cannot draw.

    matplotlib would draw an empty box for, say, CJK text, where an escape can be read;
    every label of a figure goes through here (text that does not is caught by
    `missing_glyphs_said_once`).
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


def blocked_background(ax: Axes) -> None:
    """Make ``ax``'s background the "may not" cells: images leave those cells
    transparent, so one dotted area shows through them (a patch per run of cells is
    seconds of hatching for a large mask)."""
    ax.patch.set(**BLOCKED_STYLE, linewidth=0)


def _tick_labels(n: int, offset: int, index_base: int, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [str(i + offset + index_base) for i in range(n)]
    return [f"{i + offset + index_base} {label_text(labels[i + offset])}" for i in range(n)]


# -- size ---------------------------------------------------------------------------
# A figure is drawn at a size that suits its cells, or at a width asked for (a paper's
# column, 3.3 in; its text width, 7 in). Narrower than its own size, its text shrinks
# with it, to `MIN_TEXT_SCALE` (maskviz.render.sizes): the cells take the rest, and
# tick labels thin out where they would overlap.


def text_scale(natural: float, width: float | None) -> float:
    """How much a figure ``natural`` inches wide scales its text when drawn ``width``
    inches wide: as the figure, from 1 down to `MIN_TEXT_SCALE`; never up.

    >>> text_scale(10.0, None), text_scale(10.0, 8.0), text_scale(10.0, 3.3), text_scale(4.0, 7.0)
    (1.0, 0.8, 0.7, 1.0)
    """
    if width is None:
        return 1.0
    check_width_range(width, "a figure's width")
    return min(1.0, max(MIN_TEXT_SCALE, width / natural))


@contextlib.contextmanager
def scaled_text(scale: float) -> Iterator[None]:
    """Build a figure inside: text without a size of its own is ``scale`` x 10 pt, and
    `pt` scales sizes given in points."""
    with mpl.rc_context({"font.size": 10.0 * scale}):
        yield


def pt(size: float) -> float:
    """``size`` points as the figure being built draws them (see `scaled_text`)."""
    return size * float(mpl.rcParams["font.size"]) / 10.0


def wrapped(text: str, inches: float, fontsize: float, *, name_first: bool = True) -> str:
    """``text`` made drawable and broken into lines that fit ``inches`` at ``fontsize``;
    a long "name: details" title breaks after the name first (unless not ``name_first``)."""
    chars = max(16, int(inches * 72 / (0.55 * fontsize)))  # ~0.55 em per character
    text = drawable(safe_text(text))
    parts = [text] if len(text) <= chars or not name_first else text.split(": ", 1)
    parts[:-1] = [part + ":" for part in parts[:-1]]
    return "\n".join(
        textwrap.fill(part, chars, break_long_words=False, break_on_hyphens=False) for part in parts
    )


def grow(fig: Figure, lines: int, size: float) -> None:
    """Make room for ``lines`` more lines of ``size`` pt text: a figure is sized for its
    texts on one line each, and wrapping them must not squeeze the panels."""
    if lines > 0:
        fig.set_figheight(fig.get_figheight() + lines * 1.25 * size / 72)


@lru_cache(maxsize=256)
def _text_points(text: str, size: float) -> float:
    """How wide ``text`` is drawn at ``size`` pt in the figures' font, in points."""
    from matplotlib.backends import backend_agg
    from matplotlib.font_manager import FontProperties

    agg: Any = backend_agg  # matplotlib leaves the Agg renderer untyped
    renderer = agg.RendererAgg(1, 1, 72)  # 72 dots per inch: one dot per point
    width, _, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), False)
    return float(width)


def fit_height(fig: Figure) -> None:
    """Make a figure whose width was asked for exactly as tall as what it draws.

    Its height is only estimated from its texts; constrained layout squeezes text
    together in a figure too short (its heatmaps keep their aspect) and leaves empty
    bands in one too tall. So it is laid out at twice the estimate, cut to the height
    its content took, and grown a little until that content fits.
    """
    fig.set_figheight(2 * fig.get_figheight())
    for _ in range(4):
        fig.draw_without_rendering()  # the layout, and every text's size
        # the panels with their labels and titles (colour bars stretch to any height),
        # and the figure's own title and legends above and below them
        panels = [ax.get_tightbbox() for ax in fig.axes if not hasattr(ax, "_colorbar")]
        texts = [t.get_window_extent() for t in fig.texts if t.get_text()]
        texts += [legend.get_window_extent() for legend in fig.legends]
        top = max(b.y1 for b in panels if b is not None)
        bottom = min(b.y0 for b in panels if b is not None)
        needed = (top - bottom + sum(b.height for b in texts)) / fig.dpi + 0.25  # inches
        if abs(needed - fig.get_figheight()) < 0.02:
            return
        fig.set_figheight(needed)


def legend_columns(labels: Sequence[str], inches: float) -> int:
    """The most legend columns whose labels fit in ``inches`` (entries fill columns
    first) at the legend's size (`pt` (10))."""
    # each label as the font draws it, plus its handle, padding and the column gap
    size = pt(10)
    widths = [(_text_points(label, size) + 5.5 * size) / 72 for label in labels]
    for ncols in range(len(labels), 1, -1):
        # as matplotlib fills them: the first n % ncols columns one entry longer
        rows, longer = divmod(len(labels), ncols)
        ends = list(itertools.accumulate(rows + (c < longer) for c in range(ncols)))
        starts = [0, *ends[:-1]]
        if sum(max(widths[a:b]) for a, b in zip(starts, ends, strict=True)) <= inches - 0.1:
            return ncols
    return 1


def label_text(label: str) -> str:
    """A token or word label as figures draw it: escaped, cut to `LABEL_WIDTH`."""
    return drawable(fit(display_label(label), LABEL_WIDTH))


def mask_figure(
    mask: Mask,
    *,
    labels: Sequence[str] | None = None,
    index_base: int = 1,
    highlight: int | None = None,
    padded: Sequence[int] | NDArray[np.integer[Any]] = (),
    width: float | None = None,
) -> Figure:
    """The mask as a heatmap: allowed cells dark, blocked light, rows = queries;
    ``highlight``: the row one cached step computes, outlined; ``padded`` positions'
    rows and columns hatched (their cells are blocked too, but
    for being padding, not for the rule). ``width``: the figure's width in inches
    (default: what suits its cells).

    Masks wider than 512 cells are drawn downsampled (partly allowed cells in a
    third colour) and say so in the title.
    """
    check_type(mask, Mask, "mask")
    index_base = as_integer(index_base, "index_base")
    if labels is not None:
        check_labels(labels, mask.n_keys)
    if highlight is not None:
        highlight = index_in(highlight, mask.n_queries, "highlighted row")
    padded = [index_in(r, mask.n_keys, "padded position") for r in padded]
    k = max(1, -(-max(mask.n_queries, mask.n_keys) // MAX_FIGURE_CELLS))
    states = mask.blocks(k, k) if k > 1 else mask.to_array().astype(np.int8) * 2
    n_rows, n_cols = states.shape
    cells = max(n_rows, n_cols)
    numbered = k == 1 and cells <= 64  # every cell numbered (some skipped when too small)
    x_labels = _tick_labels(n_cols, 0, index_base, labels)
    y_labels = _tick_labels(n_rows, mask.query_offset, index_base, labels)
    longest = max(len(t) for t in x_labels + y_labels) if numbered and labels is not None else 0

    def ticks(side: float, scale: float) -> tuple[float, int, float]:
        """Tick labels' size and stride, and the inches they add left and below."""
        cell_pt = 72 * (side - MASK_TEXT * scale) / cells
        size = min(10.0 * scale, 0.8 * cell_pt)
        stride = 1 if size >= 5.0 else math.ceil(1.15 * 5.0 / cell_pt)
        size = max(size, 5.0)
        return size, stride, longest * 0.6 * size / 72  # ~0.6 em per character

    side = min(9.0, max(3.0, 0.32 * cells + 1.5))
    scale = text_scale(side + MASK_BESIDE + ticks(side, 1.0)[2], width)
    if width is not None:  # the grid takes what the labels leave
        least = MASK_TEXT * scale + MASK_GRID
        narrowest = mask_least(scale, ticks(least, scale)[2])
        if narrowest > width:
            raise too_narrow(width, narrowest, "this mask")
        low, high = least, width
        for _ in range(40):  # the labels grow with the grid: bisect for the width asked
            side = (low + high) / 2
            beside = MASK_BESIDE * scale + ticks(side, scale)[2]
            low, high = (side, high) if side + beside < width else (low, side)
        side = low
    size, stride, extent = ticks(side, scale)
    with scaled_text(scale):
        wide = width if width is not None else side + MASK_BESIDE * scale + extent
        fig = NotebookFigure(figsize=(wide, side + extent), layout="constrained")
        ax = fig.add_subplot()
        cmap = ListedColormap(["none", COLOR_PARTIAL, COLOR_ALLOWED])  # "none": transparent
        # "none": SVG and PDF hold one pixel per cell, drawn sharp at any zoom
        ax.imshow(states, cmap=cmap, vmin=0, vmax=2, interpolation="none", aspect="equal")
        blocked_background(ax)
        # centred over the grid, which the labels push right: as wide as the grid and
        # the margin on its right, either side
        title_width = side - 0.5 * scale
        size_text = f"{mask.n_queries:,}\u00a0x\u00a0{mask.n_keys:,}"  # never broken
        title = f"{mask.description} mask, {size_text}"
        title = wrapped(title, title_width, pt(12))
        if k > 1:
            note = f"(downsampled: one cell = {k:,} x {k:,} positions)"
            title += "\n" + wrapped(note, title_width, pt(12), name_first=False)
        grow(fig, title.count("\n") - (k > 1), pt(12))  # sized for one line, and the note
        ax.set_title(title)
        ax.set_xlabel("key position →")
        ax.set_ylabel("query position ↓")
        if numbered:
            # parse_math=False: a label such as "$x$" is text, not a formula to typeset
            ax.set_xticks(range(0, n_cols, stride), x_labels[::stride], parse_math=False)
            ax.set_yticks(range(0, n_rows, stride), y_labels[::stride], parse_math=False)
            ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
            ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
            ax.grid(which="minor", color="white", linewidth=1.0)
            ax.tick_params(which="minor", length=0)
            # the labels shrink with the cells (the figure stops growing at 9 in), and
            # key numbers wider than their column stand upright
            ax.tick_params(which="major", labelsize=size)
            column_pt = 72 * (side - MASK_TEXT * scale) / cells * stride
            if (
                labels is not None
                or len(str(n_cols - 1 + index_base)) * 0.6 * size > 0.9 * column_pt
            ):
                ax.tick_params(axis="x", labelrotation=90)
        else:  # round positions, placed where they fall: cell c holds positions c k .. c k + k - 1
            from matplotlib.ticker import MaxNLocator

            # as many round numbers as fit side by side, at most 8 ("12,345": 6 chars)
            chars = len(f"{max(mask.n_queries, mask.n_keys) + index_base:,}")
            bins = int(72 * (side - MASK_TEXT * scale) / (1.2 * 0.6 * chars * pt(10)))
            locator = MaxNLocator(nbins=min(8, max(2, bins)), integer=True)
            for set_ticks, count, offset in (
                (ax.set_xticks, mask.n_keys, 0),
                (ax.set_yticks, mask.n_queries, mask.query_offset),
            ):
                first = offset + index_base
                values = locator.tick_values(first, first + count - 1)
                shown = [int(p) for p in values if first <= p < first + count]
                set_ticks([(p - first + 0.5) / k - 0.5 for p in shown], [f"{p:,}" for p in shown])
            ax.tick_params(labelsize=pt(10))  # made when drawn: sized now
            if bins < 4:  # a few long numbers: upright, they cannot run into each other
                ax.tick_params(axis="x", labelrotation=90)
        _mask_legend(fig, ax, k, padded, highlight, mask.query_offset + index_base)
        if width is not None:
            fit_height(fig)
    return fig


def _mask_legend(
    fig: Figure, ax: Axes, k: int, padded: Sequence[int], highlight: int | None, first: int
) -> None:
    """May attend, may not, partly (downsampled), padding hatched over its rows and
    columns, the highlighted row (numbered from ``first``)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Patch | Line2D] = [
        Patch(color=COLOR_ALLOWED, label="may attend"),
        Patch(**BLOCKED_STYLE, label="may not"),
    ]
    if k > 1:
        handles.insert(1, Patch(color=COLOR_PARTIAL, label="partly"))
    if len(padded):
        hatch: dict[str, Any] = {
            "facecolor": "none",
            "edgecolor": COLOR_PADDING,
            "hatch": "///",
            "linewidth": 0,
        }
        for first_pad, last_pad in _runs(sorted(padded)):
            ax.axhspan(first_pad / k - 0.5, (last_pad + 1) / k - 0.5, **hatch)
            ax.axvspan(first_pad / k - 0.5, (last_pad + 1) / k - 0.5, **hatch)
        handles.append(Patch(**hatch, label="padding"))
    if highlight is not None:
        r = highlight // k
        ax.axhline(r - 0.5, color=COLOR_HIGHLIGHT, linewidth=2)
        ax.axhline(r + 0.5, color=COLOR_HIGHLIGHT, linewidth=2)
        label = f"row {highlight + first}"
        handles.append(Line2D([], [], color=COLOR_HIGHLIGHT, linewidth=2, label=label))
    ncols = legend_columns([str(h.get_label()) for h in handles], float(fig.get_figwidth()))
    grow(fig, math.ceil(len(handles) / ncols) - 1, pt(10))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def _runs(positions: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive sorted positions."""
    start = prev = positions[0]
    for p in positions[1:]:
        if p != prev + 1:
            yield start, prev
            start = p
        prev = p
    yield start, prev


@contextlib.contextmanager
def missing_glyphs_said_once() -> Iterator[None]:
    """Draw inside: matplotlib warns once per character its font lacks (CJK labels in
    DejaVu Sans); they become one warning naming them all. Other warnings pass."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing: list[str] = []
    for w in caught:
        glyph = re.match(r"Glyph (\d+) .*missing from font", str(w.message))
        if glyph is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif chr(int(glyph[1])) not in missing:
            missing.append(chr(int(glyph[1])))
    if missing:
        shown = " ".join(safe_text(ch) for ch in missing[:12]) + (" …" if len(missing) > 12 else "")
        warnings.warn(
            f"the figure's font has no glyph for {len(missing)} characters ({shown}): "
            "they are drawn as empty boxes",
            UserWarning,
            stacklevel=3,
        )


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int | None = None) -> None:
    """Save ``fig`` atomically as .png, .svg or .pdf, as the suffix says. ``dpi``: a
    PNG's dots per inch (default `DEFAULT_DPI`)."""
    target = check_output_path(path, FIGURE_SUFFIXES)
    check_picture(target.suffix.lower(), dpi, None)
    # TrueType (Type 42) fonts in PDF and PostScript: journals' checks refuse Type 3
    with (
        atomic_path(target) as tmp,
        mpl.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}),
        missing_glyphs_said_once(),
    ):
        fig.savefig(
            tmp,
            format=target.suffix.lower().lstrip("."),
            dpi=dpi or DEFAULT_DPI,
            metadata=_metadata(target),
        )


def _metadata(path: Path) -> dict[str, str | None]:
    # Fixed metadata keeps SVG and PDF output byte-identical between runs.
    suffix = path.suffix.lower()
    if suffix == ".svg":
        return {"Date": None, "Creator": "maskviz"}
    if suffix == ".pdf":
        return {"CreationDate": None, "Creator": "maskviz", "Producer": "maskviz"}
    return {"Software": "maskviz"}
