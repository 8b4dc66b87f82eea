"""Attention views in the terminal: every key shown at any width, nothing cropped.

`AttentionGrid` draws a `maskviz.view.AttentionView` in the densest faithful layout
the width allows, tried in this order:

1. full cells: a glyph and a space per key;
2. compact cells: one character per key;
3. pooled keys: each column stands for k consecutive keys, drawn allowed if any of
   them is (shaded by the largest weight among them), evicted if none is allowed
   and one was evicted, masked only if all are masked.

Rows are never cropped: sequences longer than `ROW_LIMIT` pool rows the same way,
and the header says how. Notes after a row move onto their own line when they
would cost the grid its layout, and panels that share rows are stacked when side
by side they would have to pool. Lines never exceed the width Rich offers.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.text import Text

from maskviz._text import cell_width, display_label, fit
from maskviz.render.terminal import (
    GLYPH_BLOCKED,
    GLYPH_EVICTED,
    STYLE_BLOCKED,
    STYLE_DIM,
    STYLE_EVICTED,
    STYLE_LABEL,
    TableView,
    attention_legend,
    ruler,
    weight_glyph,
)
from maskviz.view import ALLOWED, EVICTED, NOT_YET, AttentionView, Panel, detail_text

ROW_LIMIT = 64  # rows drawn one per line up to this many; longer sequences pool rows
LABEL_MAX = 10  # columns a token may take in a row label
VERTICAL_MAX = 4  # lines of vertical key labels at most
WIDE_STAND_IN = "□"  # above a column too narrow for its character (wide, or combining)
PANEL_GAP = " │ "
STYLE_BAD = Style(color="red", bold=True)


@dataclass(frozen=True)
class Layout:
    """How a view is drawn at one width."""

    cell: int  # characters per key column: 2 (glyph + space) or 1
    key_block: int  # keys per column (1: none pooled)
    row_block: int  # rows per line (1: none pooled)
    stacked: bool  # panels one under another instead of side by side
    notes_below: bool  # row notes on their own line


@dataclass
class AttentionGrid:
    """The grid part of a view: key rulers, one line per query row (or row block)."""

    view: AttentionView
    plain: bool = False

    # -- layout ------------------------------------------------------------------

    def _n(self) -> int:
        return max(p.n for p in self.view.panels)

    def _label_width(self, row_block: int) -> tuple[int, int]:
        """Columns of the position number and of the token label in a row's head."""
        n = self._n()
        pos_w = len(str(n - 1 + self.view.index_base))
        if row_block > 1:
            return 2 * pos_w + 1, 0  # "12–15": pooled rows carry no single token
        tokens = [fit(display_label(lbl), LABEL_MAX) for p in self.view.panels for lbl in p.labels]
        return pos_w, max([cell_width(t) for t in tokens] + [1])

    def _note_width(self) -> int:
        notes = [n for p in self.view.panels for n in p.notes.values()]
        return max([cell_width(n) for n in notes] + [0])

    def _fit(self, width: int, panels: int, notes_below: bool) -> Layout:
        n = self._n()
        row_block = math.ceil(n / ROW_LIMIT) if n > ROW_LIMIT else 1
        pos_w, lab_w = self._label_width(row_block)
        head = pos_w + 1 + (lab_w + 1 if lab_w else 0)
        note = 0 if notes_below or not self._note_width() else self._note_width() + 1
        per = (width - head - note - len(PANEL_GAP) * (panels - 1)) // panels
        if 2 * n <= per:
            return Layout(2, 1, row_block, panels == 1 and len(self.view.panels) > 1, notes_below)
        if n <= per:
            return Layout(1, 1, row_block, panels == 1 and len(self.view.panels) > 1, notes_below)
        k = math.ceil(n / max(per, 1))
        stacked = panels == 1 and len(self.view.panels) > 1
        return Layout(1, k, max(row_block, k if row_block > 1 else 1), stacked, notes_below)

    def layout(self, width: int) -> Layout:
        """The densest layout that fits: fewest keys per column, panels side by side if
        that costs no pooling, then the widest cells; notes move below only to gain.
        When every row has a note, notes below would double the grid's height: then
        narrower cells that keep them beside come first."""
        side = len(self.view.panels) if self.view.side_by_side else 1
        options = [self._fit(width, side, below) for below in (False, True)]
        if side > 1:  # stacking costs height, not detail: only when side by side must pool
            options += [self._fit(width, 1, below) for below in (False, True)]
        doubles = any(len(p.notes) >= p.n for p in self.view.panels)
        return min(
            options,
            key=lambda o: (
                o.key_block,
                o.stacked,
                doubles and o.notes_below,
                -o.cell,
                o.notes_below,
            ),
        )

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = self.layout(10_000)
        pos_w, lab_w = self._label_width(1)
        side = len(self.view.panels) if self.view.side_by_side else 1
        full = pos_w + lab_w + 2 + side * 2 * self._n() + len(PANEL_GAP) * (side - 1)
        full += self._note_width() + 1 if not widest.notes_below else 0
        return Measurement(min(24, options.max_width), min(full, options.max_width))

    # -- drawing -------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        lay = self.layout(width)
        groups = (
            [[p] for p in self.view.panels]
            if lay.stacked or not self.view.side_by_side
            else [list(self.view.panels)]
        )
        for i, panels in enumerate(groups):
            if len(groups) > 1 or not self.view.side_by_side:
                if i:
                    yield Text()
                yield from _wrapped(panels[0].title, STYLE_LABEL, width)
            yield from self._pooling_note(lay, width)
            if len(panels) > 1:
                yield self._panel_titles(panels, lay, width)
            yield from self._key_header(panels, lay, width)
            yield from self._rows(panels, lay, width)

    def _pooling_note(self, lay: Layout, width: int) -> Iterator[Text]:
        parts = []
        if lay.key_block > 1:
            parts.append(f"keys pooled {lay.key_block} per column")
        if lay.row_block > 1:
            parts.append(f"rows pooled {lay.row_block} per line")
        if parts:
            text = ", ".join(parts) + (
                ": a cell is drawn allowed if any key in it is, shaded by the largest weight"
            )
            if lay.row_block > 1 and any(p.note_rank for p in self.view.panels):
                text += "; a line's note is the largest of its rows'"
            yield from _wrapped(text, STYLE_DIM, width)

    def _head_width(self, lay: Layout) -> int:
        pos_w, lab_w = self._label_width(lay.row_block)
        return pos_w + 1 + (lab_w + 1 if lab_w else 0)

    def _columns(self, n: int, lay: Layout) -> list[range]:
        return [range(s, min(s + lay.key_block, n)) for s in range(0, n, lay.key_block)]

    def _panel_titles(self, panels: list[Panel], lay: Layout, width: int) -> Text:
        """Each side-by-side panel's title over its first column, cut to the panel."""
        line = Text(" " * self._head_width(lay))
        for i, panel in enumerate(panels):
            if i:
                line.append(" " * len(PANEL_GAP))
            span = lay.cell * len(self._columns(panel.n, lay))
            title = fit(panel.title, span)
            line.append(title, STYLE_LABEL)
            line.append(" " * (span - cell_width(title)))
        line.rstrip()
        return _line(line, width)

    def _key_header(self, panels: list[Panel], lay: Layout, width: int) -> Iterator[Text]:
        head = self._head_width(lay)
        base = self.view.index_base
        line = Text(" " * head, STYLE_DIM)
        for i, panel in enumerate(panels):
            if i:
                line.append(" " * len(PANEL_GAP))
            cols = self._columns(panel.n, lay)
            step = 5 if lay.cell == 2 else 10
            firsts = [keys[0] + base for keys in cols]
            numbers = [
                first
                if c == 0
                or (lay.key_block == 1 and first % step == 0)
                or (lay.key_block > 1 and c % 10 == 0)
                else None
                for c, first in enumerate(firsts)
            ]
            line.append(ruler(numbers, lay.cell))
        if cell_width(line.plain) + 6 <= width:
            line.append(" key →", STYLE_DIM)
        yield _line(line, width)
        if lay.key_block > 1:
            return  # pooled columns have no single token; the rows name them
        yield from self._key_labels(panels, lay, width, head)

    def _key_labels(
        self, panels: list[Panel], lay: Layout, width: int, head: int
    ) -> Iterator[Text]:
        """Each key's token above its column: on one line when every token is one
        character, else written downwards (longer ones cut with "…"), never a slice
        that would pass for another token."""
        shown = [[display_label(lbl) for lbl in p.labels] for p in panels]
        tall = max(cell_width(lbl) for labels in shown for lbl in labels)
        lines = min(tall, VERTICAL_MAX)
        for r in range(lines):
            line = Text(" " * head)
            for i, labels in enumerate(shown):
                if i:
                    line.append(" " * len(PANEL_GAP))
                for lbl in labels:
                    chars = [ch for ch in lbl]
                    if len(chars) > lines:
                        chars = [*chars[: lines - 1], "…"]
                    ch = chars[r] if r < len(chars) else " "
                    if not 1 <= cell_width(ch) <= lay.cell:
                        # one that would shift every column after it: the row's label
                        # (the same position) shows it
                        ch = WIDE_STAND_IN
                    line.append(ch + " " * (lay.cell - cell_width(ch)), STYLE_LABEL)
            yield _line(line, width)

    def _rows(self, panels: list[Panel], lay: Layout, width: int) -> Iterator[Text]:
        n = max(p.n for p in panels)
        base = self.view.index_base
        pos_w, lab_w = self._label_width(lay.row_block)
        marks = {m.index: m.text for p in panels for m in p.marks}
        notes = {r: t for p in panels for r, t in p.notes.items()}
        details = {r: t for p in panels for r, t in p.details.items()}
        ranks = {r: v for p in panels for r, v in p.note_rank.items()}
        head = self._head_width(lay)
        for start, stop in _blocks(n, lay.row_block, marks):
            rows = range(start, stop)
            for index in sorted(marks):
                if index == start and index > 0:
                    # across the grid (and its notes), not the whole of a wide terminal
                    grid = head + sum(len(self._columns(p.n, lay)) * lay.cell for p in panels)
                    grid += len(PANEL_GAP) * (len(panels) - 1)
                    grid += 0 if lay.notes_below else self._note_width() + 1
                    rule = min(width, max(grid, cell_width(marks[index]) + 7))
                    yield from _divider(marks[index], rule)
            if lay.row_block == 1:
                label = fit(display_label(panels[-1].labels[start]), LABEL_MAX)
                line = Text(f"{start + base:>{pos_w}} ", STYLE_LABEL)
                line.append(label + " " * (lab_w - cell_width(label)) + " ", STYLE_LABEL)
            else:
                span = f"{start + base}–{rows[-1] + base}" if len(rows) > 1 else f"{start + base}"
                line = Text(f"{span:>{pos_w}} ", STYLE_LABEL)
            for i, panel in enumerate(panels):
                if i:
                    line.append(PANEL_GAP, STYLE_DIM)
                self._cells(line, panel, rows, lay)
            note = notes.get(start)
            if lay.row_block > 1:  # the top-ranked note of the rows pooled here, if ranked
                ranked = [r for r in rows if r in notes and r in ranks]
                note = notes[max(ranked, key=ranks.__getitem__)] if ranked else None
            if note and not lay.notes_below:
                line.append(" ")
                line.append(note, STYLE_BAD if note.endswith("✗") else STYLE_LABEL)
            yield _line(line, width)
            # a note that did not fit after the row leads the row's detail line
            lead = " " * head + (f"{note} · " if note and lay.notes_below else "")
            parts = details.get(start) if lay.row_block == 1 else None
            if parts is None:
                if lead.strip():
                    yield _line(Text(lead.removesuffix(" · "), STYLE_DIM), width, ellipsis=True)
                continue
            # drop whole candidates from the end rather than cut one in half; a lead
            # too long on its own wraps under the row
            for keep in range(len(parts) - 1, -1, -1):
                text = lead + detail_text(parts, keep)
                if cell_width(text) <= width:
                    yield _line(Text(text, STYLE_DIM), width)
                    break
            else:
                for piece in textwrap.wrap(text, width, subsequent_indent=" " * head):
                    yield _line(Text(piece, STYLE_DIM), width, ellipsis=True)

    def _cells(self, line: Text, panel: Panel, rows: range, lay: Layout) -> None:
        pad = " " * (lay.cell - 1)
        states = panel.states[rows.start : rows.stop]
        weights = panel.weights[rows.start : rows.stop]
        for keys in self._columns(panel.n, lay):
            block = states[:, keys.start : keys.stop]
            allowed = block == ALLOWED
            if allowed.any():
                w = float(weights[:, keys.start : keys.stop][allowed].max())
                glyph, style = weight_glyph(w, self.plain)
                line.append(glyph + pad, style or "")
            elif (block == EVICTED).any():
                line.append(GLYPH_EVICTED + pad, STYLE_EVICTED)
            elif (block == NOT_YET).all():  # nothing there to mask: left blank
                line.append(" " + pad)
            else:
                line.append(GLYPH_BLOCKED + pad, STYLE_BLOCKED)


def _line(text: Text, width: int, *, ellipsis: bool = False) -> Text:
    """A line that never exceeds ``width`` (cropped, or cut with "…" when ``ellipsis``),
    with no trailing spaces."""
    text.rstrip()
    text.no_wrap = True
    text.overflow = "ellipsis" if ellipsis else "crop"
    text.truncate(width, overflow=text.overflow)
    return text


def _divider(text: str, width: int) -> Iterator[Text]:
    """A rule across the grid naming what starts below it, its words wrapped (never
    cut) when the line is too narrow."""
    pieces = textwrap.wrap(text, max(width - 4, 1))
    for i, piece in enumerate(pieces):
        line = f"{'──' if i == 0 else '  '} {piece}"
        if i == len(pieces) - 1:
            line += " " + "─" * max(0, width - cell_width(line) - 1)
        yield _line(Text(line, STYLE_DIM), width)


def _wrapped(text: str, style: Style, width: int) -> Iterator[Text]:
    """One-style prose wrapped at spaces into lines of at most ``width``."""
    for piece in textwrap.wrap(text, max(width, 1)):
        yield _line(Text(piece, style), width)


def _blocks(n: int, size: int, marks: Mapping[int, str]) -> Iterator[tuple[int, int]]:
    """Rows [start, stop) pooled ``size`` per line, a block ending early where a mark
    (the start of decoding) falls inside it: no line mixes rows from both sides."""
    cuts = sorted(i for i in marks if 0 < i < n)
    start = 0
    while start < n:
        stop = min(start + size, n)
        stop = next((c for c in cuts if start < c < stop), stop)
        yield start, stop
        start = stop


def render_view(view: AttentionView, plain: bool) -> Group:
    """The whole view for the terminal: header, caption, grid, legend, tables, footer,
    verdict."""
    lines = (*view.header, view.caption) if view.caption else view.header
    parts: list[RenderableType] = [Text(line) for line in lines]
    parts.append(AttentionGrid(view, plain))
    states = view.states_present
    parts.append(attention_legend(plain, evicted=EVICTED in states, not_yet=NOT_YET in states))
    for table in view.tables:
        parts.extend([Text(), TableView(table)])
    if view.tables and view.footer:
        parts.append(Text())
    parts.extend(Text(line) for line in view.footer)
    if view.verdict is not None:
        text, good = view.verdict
        parts.extend([Text(), Text(text, Style(color="green" if good else "red", bold=True))])
    return Group(*parts)


__all__ = ["ROW_LIMIT", "AttentionGrid", "Layout", "render_view"]
