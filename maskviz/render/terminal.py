"""Rich renderables for masks and attention: data in, something drawable out.

Every renderable fits the width Rich offers it (narrower cells, then pooled rows
and keys, never wrapped or cropped) and escapes every label it prints. Colour is
Rich's business: a console without colour prints the same glyphs unstyled.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.text import Text

from maskviz._text import cell_width, fit, plural, safe_text, times
from maskviz.masks import Mask
from maskviz.view import ZERO_ROWS_NOTE, mask_notes, step_sentence

if TYPE_CHECKING:  # annotations only: drawing a mask needs no engine, views nor tables
    from maskviz.bench import BenchResult
    from maskviz.view import Table

GLYPH_ALLOWED, GLYPH_BLOCKED, GLYPH_PARTIAL, GLYPH_EVICTED = "●", "○", "◐", "◌"
STYLE_ALLOWED = Style(color="green", bold=True)
STYLE_BLOCKED = Style(color="grey42")
STYLE_EVICTED = Style(color="magenta")
STYLE_PARTIAL = Style(color="yellow")
STYLE_LABEL = Style(color="cyan")
STYLE_HIGHLIGHT = Style(color="black", bgcolor="yellow", bold=True)
STYLE_DIM = Style(dim=True)
LABEL_MAX = 14  # columns a token label may take in a row label
STEP_MARKER = " ◀ step"


@dataclass
class Legend:
    """A key to the glyphs: entries (a glyph and its meaning) after a lead, each entry
    preceded by its gap. A line breaks only between entries, never between a glyph and
    what it means; an entry wider than the line wraps on its own."""

    lead: str
    entries: list[tuple[str, Text]]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        line = Text(self.lead)
        for gap, entry in self.entries:
            if cell_width(line.plain + gap + entry.plain) <= width:
                line.append(gap)
                line.append_text(entry)
                continue
            if line.plain.strip():
                line.rstrip()
                yield line
            line = entry.copy()
        yield line


def _entry(glyph: str, style: Style | None, meaning: str) -> Text:
    text = Text(glyph, style or "")
    text.append(f" {meaning}")
    return text


def legend(pooled: bool = False) -> Legend:
    """The key to a mask's glyphs; a pooled cell holds several queries and keys."""
    if pooled:
        entries = [
            ("", _entry(GLYPH_ALLOWED, STYLE_ALLOWED, "all may attend")),
            ("   ", _entry(GLYPH_PARTIAL, STYLE_PARTIAL, "some")),
            ("   ", _entry(GLYPH_BLOCKED, STYLE_BLOCKED, "none")),
        ]
    else:
        entries = [
            ("", _entry(GLYPH_ALLOWED, STYLE_ALLOWED, "may attend")),
            ("   ", _entry(GLYPH_BLOCKED, STYLE_BLOCKED, "may not")),
        ]
    return Legend("", [*entries, ("   ", Text("rows = queries ↓, columns = keys →"))])


def ruler(numbers: Sequence[int | None], cell: int) -> str:
    """Numbers over columns ``cell`` characters wide, each starting over its column. A
    number that would touch another or run past the end is left out, never cut ("5"
    would be read for 50).

    >>> ruler([1, None, None, None, 5, None], 2)
    '1       5   '
    """
    marks = [" "] * (cell * len(numbers))
    for c, number in enumerate(numbers):
        if number is None:
            continue
        text, at = str(number), cell * c
        free = marks[max(at - 1, 0) : at + len(text) + 1]
        if at + len(text) <= len(marks) and all(ch == " " for ch in free):
            marks[at : at + len(text)] = list(text)
    return "".join(marks)


COMPACT_ROWS = 64  # a mask with more rows pools them, several per line
LABEL_MIN = 3  # a label cut shorter than this ("a…") names nothing: left out instead


@dataclass(frozen=True)
class MaskLayout:
    """How a mask is drawn at one width."""

    cell: int  # characters per key column: 0 = every key numbered above its column
    row_block: int  # queries per line (1: none pooled)
    key_block: int  # keys per column (1: none pooled)
    label: int = 0  # columns a row's token label may take (0: labels not shown)
    marker_below: bool = False  # the step marker on its own line, under its row


@dataclass
class MaskGrid:
    """A mask drawn as a ●/○ grid and its legend: every key numbered when that fits, else
    one or two columns per key under a ruler (rows pooled past 64), else downsampled
    into k x k cells; a pooled cell is ● all allowed, ◐ some, ○ none.

    ``labels`` (one per query position) are shown after the row index;
    ``highlight`` (0-based) is marked, e.g. the row one cached step computes.
    Labels and the marker are never drawn at the cost of a key's own column: a label
    is cut with "…" (then left out, saying so), and the marker moves under its row.
    """

    mask: Mask
    labels: Sequence[str] | None = None
    index_base: int = 1
    highlight: int | None = None

    def _row_label(self, row: int, row_block: int = 1, label: int = 0) -> str:
        # numbers right-aligned, as trace draws them: the tokens after them line up
        m, base = self.mask, self.mask.query_offset + self.index_base
        last = m.n_queries - 1 + base
        if row_block > 1:  # pooled rows are named by their range, as trace names them
            stop = min(row + row_block, m.n_queries) - 1 + base
            span = f"{row + base}–{stop}" if stop > row + base else str(stop)
            return span.rjust(2 * len(str(last)) + 1)
        text = str(row + base).rjust(len(str(last)))
        if self.labels is not None and label:
            text += " " + fit(safe_text(self.labels[row + m.query_offset]), label)
        return text

    def _label_width(self, row_block: int, label: int = 0) -> int:
        rows = range(0, min(self.mask.n_queries, 4096), row_block)
        return max([cell_width(self._row_label(r, row_block, label)) for r in rows] + [1])

    def _width(self, lay: MaskLayout) -> int:
        """Columns the widest line takes: row label, cells, and the marker beside its row."""
        keys = -(-self.mask.n_keys // lay.key_block)
        if lay.cell == 0:  # a space and the key's number (right-aligned) per column
            cells = keys * (len(str(self.mask.n_keys - 1 + self.index_base)) + 1)
        else:  # a space, then a glyph every `cell` columns
            cells = 1 + lay.cell * (keys - 1) + 1
        beside = self.highlight is not None and not lay.marker_below
        return self._label_width(lay.row_block, lay.label) + cells + len(STEP_MARKER) * beside

    def layout(self, width: int) -> MaskLayout:
        """The most detailed layout that fits ``width`` columns, keeping one column per
        key whenever that fits at all: the cells narrow first (every key numbered, then
        two columns, then one), then the marker moves under its row, then the labels
        are cut shorter and shorter, then left out; only then are keys pooled."""
        m = self.mask
        rows = -(-m.n_queries // COMPACT_ROWS) if m.n_queries > COMPACT_ROWS else 1
        widest = max((cell_width(safe_text(t)) for t in self.labels or ()), default=0)
        fits = []
        for below in (False, True) if self.highlight is not None else (False,):
            for cell, row_block in ((0, 1), (2, rows), (1, rows)):
                lay = MaskLayout(cell, row_block, 1, 0, below)
                spare = width - self._width(lay)  # for a label and the space before it
                if spare < 0:
                    continue
                # a pooled line holds several tokens; a label cut to "a…" names nothing
                if row_block == 1 and widest and spare - 1 >= min(widest, LABEL_MIN):
                    lay = replace(lay, label=min(spare - 1, LABEL_MAX))
                fits.append(lay)
        if fits:  # the longest labels; among equals, the first (densest) tried
            return max(fits, key=lambda lay: min(lay.label, widest))
        # not even one glyph per key fits: k x k positions per cell, as many as fit
        n_cells = max(1, (width - len(self._row_label(0, 2)) - 1) // 2)
        k = max(2, -(-max(m.n_queries, m.n_keys) // n_cells))
        return MaskLayout(2, k, k, 0, self._width(MaskLayout(2, k, k)) > width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lay = self.layout(options.max_width)
        m = self.mask
        pooled = lay.row_block > 1 or lay.key_block > 1
        states = m.blocks(lay.row_block, lay.key_block) if pooled else 2 * m.to_array()
        label_w = self._label_width(lay.row_block, lay.label)
        keys = [j + self.index_base for j in range(m.n_keys)]
        if lay.cell == 0:  # every key numbered: each column as wide as the widest number
            col_w = len(str(keys[-1]))
            header = Text("\\" + " " * (label_w - 1), STYLE_LABEL)
            header.append("".join(" " + str(key).rjust(col_w) for key in keys), STYLE_LABEL)
        elif lay.key_block == 1:
            step = 5 if lay.cell == 2 else 10
            numbers = [key if j == 0 or key % step == 0 else None for j, key in enumerate(keys)]
            header = Text(" " * (label_w + 1) + ruler(numbers, lay.cell), STYLE_LABEL)
        else:
            cells = f"keys {keys[0]}–{keys[-1]} →, {lay.key_block:,} per column"
            # over the grid where it fits; else from the margin, never wrapped
            fits = label_w + 1 + len(cells) <= options.max_width
            header = Text(" " * (label_w + 1 if fits else 0) + cells, STYLE_LABEL)
        header.rstrip()
        yield header
        gap = " " * (len(str(keys[-1])) if lay.cell == 0 else 1)
        marked = self.highlight
        hi = None if marked is None else marked // lay.row_block
        # under its line, the marker names its row: the line may hold several
        below = "" if marked is None else f"^ step {self._row_label(marked).strip()}"
        glyphs = (GLYPH_BLOCKED, GLYPH_PARTIAL, GLYPH_ALLOWED)
        styles = (STYLE_BLOCKED, STYLE_PARTIAL, STYLE_ALLOWED)
        for i, row in enumerate(states):
            label = self._row_label(i * lay.row_block, lay.row_block, lay.label)
            line = Text(label + " " * (label_w - cell_width(label)), STYLE_LABEL)
            for j, s in enumerate(row):
                line.append(gap if lay.cell != 1 or j == 0 else "")
                line.append(glyphs[s], STYLE_HIGHLIGHT if i == hi else styles[s])
            if i == hi and not lay.marker_below:
                line.append(STEP_MARKER, STYLE_HIGHLIGHT)
            line.no_wrap, line.overflow = True, "crop"
            yield line
            if i == hi and lay.marker_below:  # under the row's first cell (or left of it)
                indent = min(label_w + len(gap), options.max_width - len(below))
                line = Text(" " * max(indent, 0))
                line.append(below, STYLE_HIGHLIGHT)
                line.no_wrap, line.overflow = True, "crop"
                yield line
        if pooled:
            yield Text(
                f"rows pooled {lay.row_block:,} per line"
                if lay.key_block == 1
                else f"downsampled: each cell covers {lay.row_block:,} x {lay.key_block:,} "
                "positions (queries x keys)",
                STYLE_DIM,
            )
        if self.labels is not None and not lay.label:  # never dropped without a word
            why = "a line holds several queries" if pooled else "no room beside the grid"
            yield Text(f"labels not shown: {why}", STYLE_DIM)
        yield legend(pooled)


def mask_report(
    mask: Mask,
    labels: Sequence[str] | None = None,
    index_base: int = 1,
    highlight: int | None = None,
    padded: NDArray[np.int64] | None = None,
) -> Group:
    """What show-mask prints: a title, the grid and its legend, the step's sentence, counts.
    ``highlight``: the row one cached step computes; ``padded``: padding positions."""
    parts: list[RenderableType] = [
        Text(mask.heading(index_base)),
        MaskGrid(mask, labels=labels, index_base=index_base, highlight=highlight),
    ]
    if highlight is not None:
        parts.append(Text(step_sentence(mask, highlight, index_base)))
    parts.append(mask_summary(mask, index_base, padded))
    return Group(*parts)


def mask_summary(mask: Mask, index_base: int = 1, padded: NDArray[np.int64] | None = None) -> Text:
    """Allowed cells, density, and what fully masked rows mean (`maskviz.view.mask_notes`)."""
    lines = mask_notes(mask, index_base, padded)
    text = Text("\n".join(line for line in lines if line != ZERO_ROWS_NOTE))
    if lines[-1] == ZERO_ROWS_NOTE:
        text.append("\n" + ZERO_ROWS_NOTE, STYLE_DIM)
    return text


# ---------------------------------------------------------------- attention

RAMP = "·░▒▓█"  # plain-mode shading, weight bins below
_RAMP_EDGES = (0.05, 0.2, 0.4, 0.7)
# one weight inside each ramp bin, and how the legend names the bin
_RAMP_LEGEND = [
    (0.0, "<", 0.05),
    (0.1, "<", 0.2),
    (0.3, "<", 0.4),
    (0.6, "<", 0.7),
    (1.0, "≥", 0.7),
]
_SHADES = 12


def _shade_styles() -> list[Style]:
    # dark green (weight 0) to bright yellow-green (weight 1), perceptually even-ish
    out = []
    for i in range(_SHADES):
        f = i / (_SHADES - 1)
        r, g, b = int(40 + 200 * f), int(70 + 185 * f), int(50 + 20 * f)
        out.append(Style(color=f"rgb({r},{g},{b})", bold=f > 0.5))
    return out


_SHADE_STYLES = _shade_styles()


def weight_glyph(weight: float, plain: bool) -> tuple[str, Style | None]:
    """The glyph and style of one allowed cell: colour intensity, or a glyph ramp when
    ``plain`` (no colour, or too few colours to keep the levels apart)."""
    if plain:
        return RAMP[int(np.searchsorted(_RAMP_EDGES, weight, side="right"))], STYLE_ALLOWED
    level = round(min(max(weight, 0.0), 1.0) ** 0.5 * (_SHADES - 1))
    return GLYPH_ALLOWED, _SHADE_STYLES[level]


def attention_legend(plain: bool, evicted: bool = False, not_yet: bool = False) -> Legend:
    if plain:
        levels = [(w, f"{edge}{bound:.0%}") for w, edge, bound in _RAMP_LEGEND]
    else:
        levels = [(w, f"{w:.0%}") for w in (0.0, 0.1, 0.3, 0.6, 1.0)]
    entries = [
        ("  " if i else "", _entry(*weight_glyph(w, plain), label))
        for i, (w, label) in enumerate(levels)
    ]
    entries.append(("   ", _entry(GLYPH_BLOCKED, STYLE_BLOCKED, "masked")))
    if evicted:
        entries.append(
            ("   ", _entry(GLYPH_EVICTED, STYLE_EVICTED, "evicted from the rolling cache"))
        )
    if not_yet:
        entries.append(("   ", Text("blank: not generated yet")))
    return Legend("allowed cells by weight: ", entries)


@dataclass
class TableView:
    """A table in columns when they fit the width, else one line per row naming each
    value's column, so that no number is ever cut short."""

    table: Table

    def _widths(self) -> list[int]:
        cells = [self.table.columns, *self.table.rows]
        return [max(cell_width(row[i]) for row in cells) for i in range(len(self.table.columns))]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = sum(self._widths()) + len(self.table.columns) - 1
        return Measurement(min(natural, options.max_width), min(natural, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.table import Table as RichTable

        t = self.table
        if t.title:  # above the table, not its title: Rich wraps that to the table's width
            yield Text(t.title, style="italic")
        if sum(self._widths()) + len(t.columns) - 1 <= options.max_width:
            rich = RichTable(box=None, pad_edge=False)
            for i, column in enumerate(t.columns):
                rich.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
            for row in t.rows:
                rich.add_row(*row)
            yield rich
            return
        for row in t.rows:
            values = [
                f"{name} {value.strip()}" if name else value.strip()
                for name, value in zip(t.columns[1:], row[1:], strict=True)
                if value.strip()
            ]
            yield Text(f"{row[0]}: " + ", ".join(values))


@dataclass
class KeyValues:
    """Nested key: value pairs, each level indented two spaces further; None reads
    "unknown", True and False "yes" and "no". On a terminal a long value wraps under
    where it started (a path folds only where it must); piped, every value stays on its
    line, to be copied whole."""

    data: Mapping[str, object]

    def _rows(self, items: Mapping[str, object], depth: int = 0) -> Iterator[tuple[str, str]]:
        for key, value in items.items():
            name = "  " * depth + f"{key}:"
            if isinstance(value, Mapping):
                yield name, "" if value else "(none)"
                yield from self._rows(value, depth + 1)
            elif isinstance(value, bool):
                yield name, "yes" if value else "no"
            else:
                yield name, "unknown" if value is None else str(value)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = list(self._rows(self.data))
        indent = max(cell_width(name) for name, _ in rows) + 1
        room = max(options.max_width - indent, 10)
        for name, value in rows:
            if options.is_terminal:
                pieces = textwrap.wrap(safe_text(value), room, break_on_hyphens=False)
            else:
                pieces = [safe_text(value)] if value else []
            if not pieces:
                yield Text(name, STYLE_LABEL)
                continue
            first = Text.assemble((name, STYLE_LABEL), " " * (indent - cell_width(name)), pieces[0])
            first.no_wrap, first.overflow = True, "ignore"
            yield first
            yield from (Text(" " * indent + piece) for piece in pieces[1:])


def _signed_percent(fraction: float, decimals: int) -> str:
    """A signed percentage that never reads "-0%" for a change that rounds to zero.

    >>> _signed_percent(-0.001, 0), _signed_percent(0.034, 1)
    ('+0%', '+3.4%')
    """
    value = round(100 * fraction, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:+.{decimals}f}%"


def _recording_time(result: BenchResult) -> str:
    """What recording costs in time, or that the runs cannot tell it from noise."""
    overhead = _signed_percent(result.recording_overhead, 1)
    if not result.recording_within_noise:
        return f"{overhead} time"
    runs = result.recording_overheads
    if len(runs) == 1:
        return f"{overhead} time, which is noise: recording adds work"
    return (
        f"{overhead} time, within run-to-run noise (the {len(runs)} runs gave "
        f"{_signed_percent(min(runs), 1)} to {_signed_percent(max(runs), 1)})"
    )


def _kv_note(mem: dict[str, int], tokens: int) -> str:
    """The KV cache at the run's length, and what a token adds (less once windows are full)."""
    first, last = mem["kv_cache_bytes_per_token"], mem["kv_cache_bytes_last_token"]
    growth = f"{first:,} per token"
    if last != first:
        growth += f" until the sliding windows are full, then {last:,}"
    return f"KV cache: {mem['kv_cache_bytes']:,} bytes at {tokens} positions ({growth})"


def bench_view(result: BenchResult, machine: str) -> Group:
    """The benchmark as a table with a header and the conclusions under it."""
    mem, steps = result.memory(), max(result.cached.steps, 1)
    rows = [
        (
            label,
            f"{decode.tokens_per_second:,.1f}",
            f"{decode.seconds / max(decode.steps, 1) * 1e3:,.2f}",
            f"{decode.macs // steps:,}",
            versus,
        )
        for label, decode, versus in [
            ("cached (KV cache)", result.cached, "1.0x"),
            (
                "cached + recording",
                result.cached_recording,
                _signed_percent(result.recording_overhead, 0)
                + (" (noise)" if result.recording_within_noise else ""),
            ),
            ("recompute", result.recompute, times(result.cache_speedup, "slower", "faster")),
        ]
    ]
    rows.append(
        (
            "training-mode pass",
            f"{result.training_tokens_per_second:,.1f}",
            f"{result.training_seconds / result.tokens * 1e3:,.3f}",
            f"{result.training_macs // result.tokens:,}",
            "one pass",
        )
    )
    from maskviz.view import Table

    columns = ("way of running", "tokens/s", "ms/token", "MACs/token", "vs cached")
    table = TableView(Table("", columns, tuple(rows)))
    stopped = "" if result.stop_reason == "steps" else f", stopped at {result.stop_reason}"
    lines = [
        f"{result.model}: {result.config.describe()}, {result.dtype}",
        f"{result.tokens} positions: prompt {result.prompt_len}, {steps} decoded{stopped}; "
        f"median of {plural(result.repeats, 'run')}",
        machine,
        "",
    ]
    notes = [
        "",
        f"the cache: {times(result.cache_speedup, 'faster', 'slower')} than recomputing the "
        "prefix at every step",
        f"recording every layer and head: {_recording_time(result)}, "
        f"{mem['record_bytes_per_token']:,} bytes per token at {result.tokens} positions "
        f"(one head: {mem['record_bytes_per_token_one_head']:,}; float16 halves both)",
        _kv_note(mem, result.tokens),
    ]
    bw = result.bandwidth
    if bw is not None:
        probe = f"{bw.probe_shape[0]}x{bw.probe_shape[1]} matrix-vector product"
        bound = (
            f"bandwidth bound: {bw.weight_bytes_per_token / 1e6:,.1f} MB of weights per token "
            f"at {bw.bytes_per_second / 1e9:.1f} GB/s ({probe}) = "
            f"{bw.bound_tokens_per_second:,.1f} tokens/s"
        )
        if bw.applies:
            bound += f"; cached decode reaches {result.fraction_of_bound:.0%} of it"
        else:
            bound += "; not a limit here: these weights fit in the CPU caches"
        notes.append(bound)
    return Group(*lines, table, *notes)
