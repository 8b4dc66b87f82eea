"""Rich renderables for masks and attention: data in, something drawable out.

Every renderable fits the width Rich offers it (downsampling or dropping the
oldest keys rather than wrapping) and escapes every label it prints. Colour is
Rich's business: a console without colour prints the same glyphs unstyled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

from maskviz._text import cell_width, fit, safe_text
from maskviz.masks import Mask

ALLOWED, BLOCKED, PARTIAL = "●", "○", "◐"
STYLE_ALLOWED = Style(color="green", bold=True)
STYLE_BLOCKED = Style(color="grey42")
STYLE_PARTIAL = Style(color="yellow")
STYLE_LABEL = Style(color="cyan")
STYLE_HIGHLIGHT = Style(color="black", bgcolor="yellow", bold=True)
STYLE_DIM = Style(dim=True)
LABEL_MAX = 14  # columns a token label may take in a row label


def legend() -> Text:
    """The one-line key to the glyphs."""
    text = Text()
    text.append(ALLOWED, STYLE_ALLOWED)
    text.append(" may attend   ")
    text.append(BLOCKED, STYLE_BLOCKED)
    text.append(" may not   rows = queries ↓, columns = keys →")
    return text


@dataclass
class MaskGrid:
    """A mask drawn as a ●/○ grid, downsampled into k x k cells when it is too wide.

    ``labels`` (one per query position) are shown after the row index;
    ``highlight_row`` (0-based) is marked, e.g. the row one cached step computes.
    """

    mask: Mask
    labels: Sequence[str] | None = None
    index_base: int = 1
    highlight_row: int | None = None

    def _full_width(self) -> tuple[int, int]:
        col_w = len(str(self.mask.n_keys - 1 + self.index_base))
        label_w = max(cell_width(self._row_label(r)) for r in range(min(self.mask.n_queries, 4096)))
        marker = 0 if self.highlight_row is None else 7
        return col_w, label_w + self.mask.n_keys * (col_w + 1) + marker

    def _row_label(self, row: int) -> str:
        label = str(row + self.mask.query_offset + self.index_base)
        if self.labels is not None:
            label += " " + fit(safe_text(self.labels[row + self.mask.query_offset]), LABEL_MAX)
        return label

    def cell_size(self, width: int) -> int:
        """1 when the full grid fits in ``width`` columns, else the k of k x k cells."""
        _, full = self._full_width()
        if full <= width:
            return 1
        label_w = len(str(self.mask.n_queries + self.index_base))
        n_cells = max(1, (width - label_w - 1) // 2)
        return max(2, -(-max(self.mask.n_queries, self.mask.n_keys) // n_cells))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        k = self.cell_size(width)
        if k == 1:
            yield from self._full(width)
        else:
            yield from self._downsampled(k)

    def _full(self, width: int) -> RenderResult:
        m = self.mask
        col_w, _ = self._full_width()
        grid = m.to_array()
        row_labels = [self._row_label(r) for r in range(m.n_queries)]
        label_w = max(cell_width(s) for s in [*row_labels, "\\"])
        header = Text("\\" + " " * (label_w - 1), STYLE_LABEL)
        for j in range(m.n_keys):
            header.append(" " + str(j + self.index_base).rjust(col_w), STYLE_LABEL)
        yield header
        for r in range(m.n_queries):
            line = Text(row_labels[r] + " " * (label_w - cell_width(row_labels[r])), STYLE_LABEL)
            hi = r == self.highlight_row
            for allowed in grid[r]:
                glyph = ALLOWED if allowed else BLOCKED
                style = STYLE_ALLOWED if allowed else STYLE_BLOCKED
                line.append(" " + " " * (col_w - 1))
                line.append(glyph, STYLE_HIGHLIGHT if hi else style)
            if hi:
                line.append(" ◀ step", STYLE_HIGHLIGHT)
            line.no_wrap, line.overflow = True, "crop"
            yield line

    def _downsampled(self, k: int) -> RenderResult:
        m = self.mask
        states = m.blocks(k, k)
        glyphs = (BLOCKED, PARTIAL, ALLOWED)
        styles = (STYLE_BLOCKED, STYLE_PARTIAL, STYLE_ALLOWED)
        label_w = len(str(m.n_queries - 1 + m.query_offset + self.index_base))
        first, last = self.index_base, m.n_keys - 1 + self.index_base
        yield Text(f"{'':{label_w}}  keys {first}…{last} →, {states.shape[1]} cells", STYLE_LABEL)
        hi_block = None if self.highlight_row is None else self.highlight_row // k
        for i, row in enumerate(states):
            start = i * k + m.query_offset + self.index_base
            line = Text(str(start).rjust(label_w), STYLE_LABEL)
            for s in row:
                line.append(" ")
                line.append(glyphs[s], STYLE_HIGHLIGHT if i == hi_block else styles[s])
            if i == hi_block:
                line.append(" ◀ step", STYLE_HIGHLIGHT)
            line.no_wrap, line.overflow = True, "crop"
            yield line
        yield Text(
            f"downsampled: each cell covers {k} x {k} positions (queries x keys); "
            f"{ALLOWED} all allowed, {BLOCKED} none, {PARTIAL} some",
            STYLE_DIM,
        )


def mask_summary(
    mask: Mask, index_base: int = 1, padded_rows: NDArray[np.int64] | None = None
) -> Text:
    """Allowed cells, density, and what fully masked rows mean."""
    s = mask.summary()
    text = Text(f"{s.allowed:,} of {s.cells:,} cells allowed ({100 * s.density:.1f}%); ")
    n_full = s.fully_masked.size
    if n_full == 0:
        text.append("no fully masked rows.")
        return text
    shown = ", ".join(str(int(r) + mask.query_offset + index_base) for r in s.fully_masked[:10])
    more = f", … ({n_full - 10:,} more)" if n_full > 10 else ""
    text.append(f"{n_full:,} fully masked row{'s' if n_full > 1 else ''}: {shown}{more}.")
    first = int(s.fully_masked[0]) + mask.query_offset
    if first == 0 and (padded_rows is None or 0 not in padded_rows):
        text.append(
            f"\nRow {index_base} has no key to attend to: the first token is generated from the "
            "start symbol alone."
        )
    if padded_rows is not None and padded_rows.size:
        text.append("\nPadded query rows attend to nothing; their outputs are ignored.")
    text.append(
        "\nThe engine gives fully masked rows all-zero attention weights, never NaN.", STYLE_DIM
    )
    return text
