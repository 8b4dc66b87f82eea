"""How narrow a picture may be drawn: known before a run, without importing matplotlib.

A picture asked for a width (``--width``) is laid out again at it: its text shrinks
with it down to `MIN_TEXT_SCALE`, and its heatmaps take what the text leaves, each at
least `MIN_SIDE`. The command line checks a width here before it computes anything;
the figures check it again with the text size they settle on.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from maskviz._io import FIGURE_SUFFIXES
from maskviz.errors import MaskvizError, usage_error

MAX_WIDTH = 20.0  # inches: the widest picture drawn (a 150 dpi PNG 3,000 pixels wide)
DEFAULT_DPI = 150  # a PNG's resolution; .svg and .pdf are vector, their files do not depend on it
DPI_RANGE = (50, 600)  # a PNG's dots per inch: 600 is a print shop's; 20 in at 600 is 12,000 px
MIN_TEXT_SCALE = 0.7  # 10 pt -> 7 pt, the smallest a paper prints comfortably
MIN_SIDE = 0.8  # inches: the smallest heatmap a width may ask for
GRID_MARGIN = 1.8  # inches beside a grid of heatmaps at full text size: labels, colour bar
AXIS_LABELS = 0.9  # inches more for each further heatmap that carries its own labels
COMPARISON_MARGIN = 3.2  # beside a comparison's three heatmaps and two colour bars
BENCH_LEAST = 6.0  # the benchmark's two plots side by side
# a mask figure at full text size: its side holds the grid and MASK_TEXT inches of title
# and tick labels; MASK_BESIDE more are right of it. Its grid is at least MASK_GRID
MASK_TEXT = 1.5
MASK_BESIDE = 1.0
MASK_GRID = 0.6
BENCH_PLOTS = "the benchmark's two panels"
COMPARISON_PANELS = "a comparison's three panels"


def across(count: int) -> int:
    """Heatmaps side by side when ``count`` of them make a near-square grid.

    >>> across(1), across(2), across(4), across(5)
    (1, 2, 2, 3)
    """
    return math.ceil(math.sqrt(count))


def grid_margin(panels_across: int, shared_axes: bool) -> float:
    """Inches of text beside a grid of heatmaps (at full size): one set of labels and the
    colour bar, and labels beside every heatmap that does not share its row's.

    >>> grid_margin(2, True), grid_margin(2, False)
    (1.8, 2.7)
    """
    return GRID_MARGIN + (0 if shared_axes else (panels_across - 1) * AXIS_LABELS)


def least_width(panels_across: int, margin: float, scale: float = MIN_TEXT_SCALE) -> float:
    """The narrowest picture of ``panels_across`` heatmaps with ``margin`` inches of
    text beside them (at full size), its text at ``scale``.

    >>> round(least_width(3, COMPARISON_MARGIN), 2)
    4.64
    """
    return panels_across * MIN_SIDE + margin * scale


def mask_least(scale: float = MIN_TEXT_SCALE, labels: float = 0.0) -> float:
    """The narrowest mask figure, its text at ``scale``, with ``labels`` inches of tick
    labels beside the grid.

    >>> round(mask_least(), 2)
    2.35
    """
    return MASK_TEXT * scale + MASK_GRID + MASK_BESIDE * scale + labels


def shown(least: float) -> float:
    """``least`` rounded up to a tenth of an inch: a width that is accepted.

    >>> shown(least_width(3, COMPARISON_MARGIN))
    4.7
    """
    return math.ceil(round(least * 10, 6)) / 10


def too_narrow(width: float, least: float, what: str) -> MaskvizError:
    """The refusal of ``width``, naming the least width accepted."""
    return usage_error(
        f"a width of {width:g} in is too narrow for {what}: at least {shown(least):.1f} in"
    )


def check_width_range(width: object, what: str) -> None:
    """Refuse a ``width`` that is no number of inches from above 0 to `MAX_WIDTH`."""
    number = isinstance(width, Real) and not isinstance(width, bool)
    if not (number and 0 < width <= MAX_WIDTH):  # type: ignore[operator]
        given = f"{width:g}" if number else repr(width)
        raise usage_error(
            f"{what} must be a number of inches above 0 and up to {MAX_WIDTH:g}, got {given}"
        )


def check_picture(suffix: str, dpi: object, width: object, *, option: bool = False) -> None:
    """Refuse a ``dpi`` or ``width`` that a file of ``suffix`` would not use, or out of
    range (``option``: named as the command line's --dpi and --width)."""
    dpi_name, width_name = ("--dpi", "--width") if option else ("dpi", "width")
    if dpi is not None:
        if suffix != ".png":
            why = " (a vector file is sharp at any size)" if suffix in FIGURE_SUFFIXES else ""
            raise usage_error(f"{dpi_name} applies to .png pictures, not {suffix}{why}")
        low, high = DPI_RANGE
        whole = isinstance(dpi, Integral) and not isinstance(dpi, bool)
        if not (whole and low <= dpi <= high):  # type: ignore[operator]
            raise usage_error(
                f"{dpi_name} must be from {low} to {high}, got {dpi if whole else repr(dpi)}"
            )
    if width is not None:
        if suffix not in FIGURE_SUFFIXES:
            raise usage_error(f"{width_name} applies to .png, .svg and .pdf pictures, not {suffix}")
        check_width_range(width, width_name)  # NaN fails too; the least is each picture's


def check_width(width: float | None, least: float, what: str) -> None:
    """Refuse ``width`` when it is under ``least`` inches (none: nothing to check)."""
    if width is not None and width < least:
        raise too_narrow(width, least, what)


def panels_text(count: int) -> str:
    """What a grid of ``count`` heatmaps is called in a too-narrow message."""
    return f"{count} panels, {across(count)} side by side" if count > 1 else "this picture"
