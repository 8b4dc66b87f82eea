"""What every picture and page shares, without matplotlib: colours, colormaps, names.

Figures (`maskviz.render.figures`, `maskviz.render.attention_figures`) and pages
(`maskviz.render.html`) draw each cell state in the same colour. Holding them here
lets a page be written without loading matplotlib. The two colormaps are matplotlib's
own, sampled at 256 levels into ``colormaps.json`` beside this module (written by
``scripts/make_colormaps.py``; a test checks them against matplotlib).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

# masks: a cell a query may attend, a pooled cell where some may, one where none may
COLOR_ALLOWED, COLOR_PARTIAL, COLOR_BLOCKED = "#1b7837", "#a6dba0", "#f2f2f2"
# dots on "may not" cells: apart from any weight in grey print, and 3.4:1 against the
# cell's grey, so that a washed-out projector still tells a masked cell from a white one
COLOR_BLOCKED_DOTS = "#808080"
COLOR_PADDING = "#7f7f7f"  # the hatching of padding positions
COLOR_HIGHLIGHT = "#e7298a"  # magenta: the row a step computes, in every figure and page
# attention: masked cells look like a mask's "may not" cells
COLOR_MASKED, COLOR_MASKED_DOTS = COLOR_BLOCKED, COLOR_BLOCKED_DOTS
COLOR_EVICTED = "#fde0ef"  # light pink: a hue viridis never takes
COLOR_EVICTED_HATCH = "#c51b7d"  # dark magenta lines: the pattern survives any colour vision
COLOR_BOUNDARY = "#e8590c"  # orange: visible on both the viridis and the grey cells
COLOR_PENDING = "#ffffff"  # what does not exist yet: keys not generated, rows not reached
WEIGHTS_CMAP = "viridis"
DIFF_CMAP = "inferno"
DIFF_FLOOR = 1e-12  # |Δ| at or below this shares the darkest colour (float64 noise lives here)

BOUNDARY_LABEL = "prompt | generated"
DELIMITER_LABEL = "delimiter (between the dashed lines)"
MARK_LABELS = {"prompt": BOUNDARY_LABEL, "delimiter": DELIMITER_LABEL}


@cache
def lut(name: str) -> str:
    """Colormap ``name`` ("viridis" or "inferno") as 256 colours, "rrggbb" each, joined.

    >>> lut("viridis")[:12]
    '440154440256'
    """
    text = resources.files("maskviz.render").joinpath("colormaps.json").read_text("utf-8")
    table: dict[str, str] = json.loads(text)
    return table[name]


def mix(a: str, b: str, t: float) -> str:
    """The colour ``t`` of the way from ``a`` to ``b`` ("#rrggbb" each), as "#rrggbb".

    >>> mix("#000000", "#ffffff", 0.5)
    '#808080'
    """
    start, end = ([int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in (a, b))
    return "#" + "".join(
        f"{round(255 * ((1 - t) * x + t * y)):02x}" for x, y in zip(start, end, strict=True)
    )
