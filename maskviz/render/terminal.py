"""Rich renderables for masks and attention: data in, something drawable out.

Every renderable fits the width Rich offers it (downsampling or dropping the
oldest keys rather than wrapping) and escapes every label it prints. Colour is
Rich's business: a console without colour prints the same glyphs unstyled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.style import Style
from rich.text import Text

from maskviz._text import cell_width, display_label, fit, plural, safe_text
from maskviz.masks import Mask

if TYPE_CHECKING:  # annotations only: drawing a mask needs no engine
    from maskviz.arch import Config
    from maskviz.bench import BenchResult
    from maskviz.compare import Comparison
    from maskviz.model import GPT
    from maskviz.similarity import Similarity
    from maskviz.trace import Trace

ALLOWED, BLOCKED, PARTIAL, EVICTED = "●", "○", "◐", "◌"
STYLE_ALLOWED = Style(color="green", bold=True)
STYLE_BLOCKED = Style(color="grey42")
STYLE_EVICTED = Style(color="magenta")
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


def key_ranges(intervals: Sequence[tuple[int, int]], index_base: int = 1) -> str:
    """Intervals of keys as text with their count, e.g. "keys 3–4 (2)" or "no key".

    >>> key_ranges([(0, 1), (4, 4)])
    'keys 1–2, 5 (3)'
    """
    count = sum(b - a + 1 for a, b in intervals)
    if count == 0:
        return "no key"
    parts = [
        str(a + index_base) if a == b else f"{a + index_base}–{b + index_base}"
        for a, b in intervals
    ]
    return f"key{'s' if count > 1 else ''} {', '.join(parts)} ({count:,})"


def step_sentence(mask: Mask, row: int, index_base: int = 1) -> str:
    """What one cached decoding step does for query ``row``, or why it cannot do it.

    >>> from maskviz.masks import bidirectional, causal, sliding_window
    >>> step_sentence(causal(6) & sliding_window(6, 2), 3)
    'Step 4: cached decoding computes only this row: one query at position 4 against the cached keys the mask allows, plus itself: keys 3–4 (2). A cache that keeps only these keys needs no mask.'
    >>> step_sentence(bidirectional(6), 2)
    'Row 3 may attend to keys 1–6 (6), including later positions: cached decoding, whose KV cache holds only the past, cannot reproduce this row.'
    """
    intervals = mask.allowed_keys(row)
    pos = row + mask.query_offset
    step, keys = pos + index_base, key_ranges(intervals, index_base)
    if not intervals:
        return f"Row {step} may attend to {keys}: its attention is all zeros, and one cached step has nothing to compute."
    if intervals[-1][1] > pos:
        return (
            f"Row {step} may attend to {keys}, including later positions: cached decoding, "
            "whose KV cache holds only the past, cannot reproduce this row."
        )
    itself = intervals[-1][1] == pos
    earlier = sum(min(b, pos - 1) - a + 1 for a, b in intervals if a < pos)
    if earlier == pos:
        cache, note = "every key held in the KV cache", ""
    else:
        cache, note = (
            "the cached keys the mask allows",
            " A cache that keeps only these keys needs no mask.",
        )
    if earlier == 0:
        cache = "no cached key"
    own = ", plus itself" if itself else ", not itself"
    return (
        f"Step {step}: cached decoding computes only this row: one query at position {step} "
        f"against {cache}{own}: {keys}.{note}"
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
    return ALLOWED, _SHADE_STYLES[level]


def attention_legend(plain: bool, evicted: bool = False) -> Text:
    text = Text("allowed cells by weight: ")
    if plain:
        levels = [(w, f"{edge}{bound:.0%}") for w, edge, bound in _RAMP_LEGEND]
    else:
        levels = [(w, f"{w:.0%}") for w in (0.0, 0.1, 0.3, 0.6, 1.0)]
    for i, (w, label) in enumerate(levels):
        glyph, style = weight_glyph(w, plain)
        text.append(("  " if i else "") + glyph, style)
        text.append(f" {label}")
    text.append("   ")
    text.append(BLOCKED, STYLE_BLOCKED)
    text.append(" masked")
    if evicted:
        text.append("   ")
        text.append(EVICTED, STYLE_EVICTED)
        text.append(" evicted from the rolling cache")
    return text


@dataclass
class AttentionGrid:
    """Attention matrices [T, T] drawn row by row over the same key columns.

    Each row shows, for every matrix in ``matrices`` (side by side), the keys its
    query may attend to shaded by weight and the masked keys as ○. When the keys do
    not fit the width, the most recent ones are shown after an "… N earlier keys"
    marker. ``row_notes`` adds text after a row and ``row_details`` a dim line
    under it; a rule separates the prompt (rows < ``prompt_len``) from the rest.
    """

    matrices: Sequence[NDArray[np.floating]]
    mask: NDArray[np.bool_] | Sequence[NDArray[np.bool_]]
    labels: Sequence[str]
    prompt_len: int
    rows: Sequence[int] | None = None
    row_notes: dict[int, Text] | None = None
    row_details: dict[int, Text] | None = None
    plain: bool = False
    separator: str = "decoding: one new query per step, attending to the KV cache (no mask)"
    index_base: int = 1
    evicted: NDArray[np.bool_] | None = None  # [T, T] keys a ring-buffer cache had dropped

    def _masks(self) -> list[NDArray[np.bool_]]:
        if isinstance(self.mask, np.ndarray):
            return [self.mask] * len(self.matrices)
        return list(self.mask)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        n = int(self.matrices[0].shape[1])
        rows = list(range(self.matrices[0].shape[0])) if self.rows is None else list(self.rows)
        labels = [fit(display_label(s), 8) for s in self.labels]
        pos_w = len(str(n - 1 + self.index_base))
        lab_w = max([cell_width(labels[r]) for r in rows] + [1])
        row_head_w = pos_w + 1 + lab_w
        note_w = max([cell_width(t.plain) for t in (self.row_notes or {}).values()] + [0])
        n_mat = len(self.matrices)
        gaps = 3 * (n_mat - 1)
        per_matrix = max(
            4, (width - row_head_w - 1 - gaps - (note_w + 1 if note_w else 0)) // (2 * n_mat)
        )
        shown = min(n, per_matrix)
        hidden = n - shown
        if hidden:
            shown = max(1, per_matrix - 1)  # one cell for the "…" marker
            hidden = n - shown
        keys = list(range(hidden, n))
        masks = self._masks()

        # header: key positions (every 5th) and one character of each key's label
        pos_line = Text(" " * (row_head_w + 1), STYLE_DIM)
        corner = "query ↓" if lab_w >= 7 else "q ↓"
        tok_line = Text(f"{'':>{pos_w}} {corner:<{lab_w}} ", STYLE_DIM)
        for m in range(n_mat):
            if m:
                pos_line.append("   ")
                tok_line.append(" │ ", STYLE_DIM)
            marks = [" "] * (2 * len(keys) + (2 if hidden else 0))
            for i, k in enumerate(keys):
                number = k + self.index_base
                if number % 5 == 0 or i == 0:
                    text = str(number)
                    at = (2 if hidden else 0) + 2 * i
                    if all(c == " " for c in marks[at : at + len(text) + 1]):
                        marks[at : at + len(text)] = list(text)
            pos_line.append("".join(marks)[: len(marks)], STYLE_DIM)
            if hidden:
                tok_line.append("… ", STYLE_DIM)
            for k in keys:
                first = labels[k][:1] if cell_width(labels[k][:1]) == 1 else "?"
                tok_line.append(first + " ", STYLE_LABEL)
        tok_line.append(" key →", STYLE_DIM)
        for line in (pos_line, tok_line):
            line.no_wrap, line.overflow = True, "crop"
            yield line

        for r in rows:
            if r == self.prompt_len and r > 0 and self.separator:
                rule = Text("─" * 2 + " " + self.separator + " ", STYLE_DIM)
                rule.append("─" * max(0, width - cell_width(rule.plain)), STYLE_DIM)
                rule.no_wrap, rule.overflow = True, "crop"
                yield rule
            line = Text(f"{r + self.index_base:>{pos_w}} ", STYLE_LABEL)
            line.append(labels[r] + " " * (lab_w - cell_width(labels[r])) + " ", STYLE_LABEL)
            for m, (matrix, mask) in enumerate(zip(self.matrices, masks, strict=True)):
                if m:
                    line.append(" │ ", STYLE_DIM)
                if hidden:
                    line.append("… ", STYLE_DIM)
                for k in keys:
                    if mask[r, k]:
                        glyph, style = weight_glyph(float(matrix[r, k]), self.plain)
                        line.append(glyph + " ", style or "")
                    elif self.evicted is not None and self.evicted[r, k]:
                        line.append(EVICTED + " ", STYLE_EVICTED)
                    else:
                        line.append(BLOCKED + " ", STYLE_BLOCKED)
            if self.row_notes and r in self.row_notes:
                line.append(" ")
                line.append_text(self.row_notes[r])
            line.no_wrap, line.overflow = True, "crop"
            yield line
            if self.row_details and r in self.row_details:
                detail = Text(" " * (row_head_w + 1))
                detail.append_text(self.row_details[r])
                detail.no_wrap, detail.overflow = True, "ellipsis"
                yield detail
        if hidden:
            yield Text(
                f"… {hidden} earlier key{'s' if hidden > 1 else ''} not shown (the grid shows the most recent {shown})",
                STYLE_DIM,
            )


def _quoted(label: str) -> str:
    return f"'{label}'"


def trace_view(
    model: GPT,
    trace: Trace,
    labels: Sequence[str],
    matrices: Sequence[NDArray[np.floating]],
    what: str,
    *,
    layer: int = 0,
    plain: bool = False,
    top_k: int = 3,
) -> Group:
    """Header, attention grid of ``layer`` with one row per decoding step, legend, footer.

    A sliding-window layer in cached mode shows three states: keys its query may
    attend, masked future keys, and keys evicted from its rolling cache.
    """
    cfg = model.config
    p, n = trace.prompt_len, trace.n_tokens
    window = trace.window(layer)
    shown = [display_label(lbl) for lbl in labels]
    header = Text()
    header.append(f"model {safe_text(model.name)}", STYLE_LABEL)
    header.append(
        f": {cfg.describe()}, {cfg.n_params / 1e6:.2f}M parameters · {trace.dtype} · mode {trace.mode}"
        f" · {trace.decoding}\n"
    )
    header.append(f"masks: {describe_layer_masks(cfg.windows)}\n")
    header.append(f"prompt, {p} token{'s' if p > 1 else ''}: ")
    for i in range(p):
        header.append(f"{i + 1}:", STYLE_DIM)
        header.append(f"{shown[i]} ", STYLE_LABEL)
    header.append(f"\nattention of {what}; rows = queries ↓ (position, token), columns = keys →")
    header.no_wrap = False

    notes: dict[int, Text] = {}
    details: dict[int, Text] = {}
    if trace.mode == "training":
        separator = "generated tokens: the same single pass, the causal mask hides the future"
    else:
        separator = "decoding: one new query per step, attending to the KV cache (no mask)"
    for t in range(p - 1, n):
        # row t's output (logits[t]) predicts token t+1: the next step's query
        top = trace.next_token_probs(t, top_k)
        if t + 1 < n:
            chosen = int(trace.token_ids[t + 1])
            note = Text(f"→ {shown[t + 1]} ", STYLE_LABEL)
            note.append(f"{trace.probabilities(t)[chosen]:.0%}")
        else:
            note = Text(
                f"(next: {display_label(model.tokenizer.token_label(top[0][0]))} {top[0][1]:.0%})",
                STYLE_DIM,
            )
        notes[t] = note
        alts = ", ".join(
            f"{_quoted(display_label(model.tokenizer.token_label(i)))} {q:.0%}" for i, q in top
        )
        if t >= p and trace.mode != "training":
            held = (
                f"{t} cached keys"
                if window is None or t < window
                else (f"a ring of {window - 1} cached keys ({t - window + 1} evicted)")
            )
            details[t] = Text(f"step {t - p + 1}: {held} + itself; top: {alts}", STYLE_DIM)
        elif t == p - 1:
            details[t] = Text(
                f"prefill: {plural(p, 'query')} in one masked pass; top: {alts}", STYLE_DIM
            )
    evicted = None
    if window is not None and trace.mode == "cached":
        evicted = trace.mask & ~trace.layer_mask(layer)
        evicted[:p] = False  # the prefill pass masked them: they were never cached and dropped
    grid = AttentionGrid(
        matrices,
        trace.layer_mask(layer),
        labels,
        p,
        row_notes=notes,
        row_details=details,
        plain=plain,
        separator=separator,
        evicted=evicted,
    )
    footer = Text()
    generated = model.tokenizer.decode(trace.generated_ids)
    footer.append("text: ", STYLE_DIM)
    footer.append(
        safe_text(model.tokenizer.decode([int(i) for i in trace.token_ids[:p]])), STYLE_LABEL
    )
    footer.append(safe_text(generated), Style(bold=True))
    reason = {
        "steps": f"after {n - p} steps",
        "end_of_text": "at end-of-text",
        "context": "at the context limit",
    }
    footer.append(f"\nstopped {reason.get(trace.stop_reason, trace.stop_reason)}")
    if trace.mode == "training":
        footer.append(
            f"; one masked pass over {n} tokens took {1e3 * trace.prefill_seconds:.1f} ms"
        )
    else:
        per_step = (
            f", {1e3 * float(trace.step_seconds.mean()):.2f} ms per step"
            if trace.step_seconds.size
            else ""
        )
        footer.append(f"; prefill {1e3 * trace.prefill_seconds:.1f} ms{per_step}")
        footer.append(
            f"\nKV cache: {trace.kv_cache_bytes:,} bytes = "
            f"{kv_cache_formula(cfg, n, np.dtype(trace.dtype).itemsize)}"
        )
        if trace.step_masks == 0 and n > p:
            footer.append(
                "\nno mask applied at any step: every layer's rule allowed every key its cache held",
                STYLE_DIM,
            )
    return Group(header, grid, attention_legend(plain, evicted is not None), footer)


def describe_layer_masks(windows: Sequence[int | None]) -> str:
    """Each layer's mask, layers grouped (0-based, as ``--layer`` counts).

    >>> describe_layer_masks([None, None])
    'every layer causal'
    >>> describe_layer_masks([32, None, 32, None])
    'layers 0,2: causal & sliding window 32; 1,3: causal'
    """
    kinds: dict[int | None, list[int]] = {}
    for i, w in enumerate(windows):
        kinds.setdefault(w, []).append(i)
    if len(kinds) == 1:
        w = next(iter(kinds))
        return "every layer causal" + ("" if w is None else f" & sliding window {w}")
    parts = [
        ",".join(map(str, layers)) + ": causal" + ("" if w is None else f" & sliding window {w}")
        for w, layers in sorted(kinds.items(), key=lambda kv: kv[1][0])
    ]
    return "layers " + "; ".join(parts)


def kv_cache_formula(cfg: Config, positions: int, itemsize: int) -> str:
    """How the KV cache's bytes add up: layers x keys and values x KV heads x positions
    (a sliding layer: its window) x head dims x bytes.

    >>> from maskviz.arch.llama import LlamaConfig
    >>> kv_cache_formula(LlamaConfig(4, 4, 2, 40, 160, 432, 256, 257, windows=(32, None) * 2), 48, 4)
    '2 full layers x 2 (keys, values) x 2 KV heads x 48 positions x 40 dims x 4 bytes + 2 sliding layers x 2 x 2 x 32 slots x 40 x 4'
    """
    heads = ("KV " if cfg.n_kv_head != cfg.n_head else "") + (
        "head" if cfg.n_kv_head == 1 else "heads"
    )
    groups: dict[int | None, int] = {}  # window -> layers, full layers first
    for w in sorted(cfg.windows, key=lambda w: -1 if w is None else w):
        groups[w] = groups.get(w, 0) + 1
    parts: list[str] = []
    for w, count in groups.items():
        if w is None:
            kind = "layers" if count == len(cfg.windows) else "full layers"
            slots = f"{positions} positions"
        else:
            kind, slots = "sliding layers", f"{min(w, positions)} slots"
        kind = kind if count > 1 else kind[:-1]
        if parts:  # the first term names every factor; later ones only what differs
            parts.append(
                f"{count} {kind} x 2 x {cfg.n_kv_head} x {slots} x {cfg.head_dim} x {itemsize}"
            )
        else:
            parts.append(
                f"{count} {kind} x 2 (keys, values) x {cfg.n_kv_head} {heads} x {slots} "
                f"x {cfg.head_dim} dims x {itemsize} bytes"
            )
    return " + ".join(parts)


_SIDE_TEXT = {
    "cached": "cached: prefill, then one query per step against the KV cache",
    "training": "training: one pass, causal mask",
    "unmasked": "unmasked: one pass, no mask",
    "recompute": "recompute: the whole prefix again at every step, no cache",
    "padded": "padded: every step padded to the final length, causal mask",
    "left-padded": "left-padded: every step padded before its start, pads masked, positions skip them",
    "shifted": "shifted: left-padded, positions counted from the pads (the common bug)",
}


def compare_view(
    model: GPT,
    result: Comparison,
    labels: Sequence[str],
    layer: int,
    head: int,
    *,
    plain: bool = False,
) -> Group:
    """Both sides' attention for one head side by side, per-layer and cost tables, verdict."""
    from rich.table import Table

    a, b = result.a, result.b
    p, n = result.prompt_len, result.token_ids.shape[0]
    header = Text()
    header.append(f"compare {result.pair}", STYLE_LABEL)
    header.append(
        f" · model {safe_text(model.name)} · {result.dtype} · {p} prompt tokens + {n - p} steps\n"
    )
    header.append(f"left  = {_SIDE_TEXT[a.name]}\nright = {_SIDE_TEXT[b.name]}\n")
    header.append(
        f"attention of layer {layer}, head {head}; after each row: max |Δ| of that row over all layers and heads"
    )
    row_diff = result.row_diff
    tol = result.tolerance_attention
    notes = {
        t: Text(
            f"{row_diff[t]:.1e}", STYLE_DIM if row_diff[t] <= tol else Style(color="red", bold=True)
        )
        for t in range(n)
    }
    grid = AttentionGrid(
        [a.attention[layer, head], b.attention[layer, head]], [a.mask[layer], b.mask[layer]], labels, p,
        row_notes=notes, plain=plain, separator="generated tokens",
    )  # fmt: skip

    layers = Table(title="per layer", title_justify="left", box=None, pad_edge=False)
    layers.add_column("layer", justify="right")
    layers.add_column("max |Δ| attention", justify="right")
    for row in result.per_layer:
        layers.add_row(str(row["layer"]), f"{row['max_abs_diff_attention']:.2e}")
    layers.add_row("logits", f"{result.max_abs_diff_logits:.2e}")
    agree = "yes, at every step" if result.tokens_agree else "NO"
    layers.add_row("greedy next tokens equal", agree)

    # One column per side keeps the table narrow at any model size. Times are printed at
    # a fixed width (up to 99,999 ms), so the layout never depends on the machine's
    # speed: a slow run changes digits, not line breaks.
    cost = Table(
        title="cost (MACs = multiply-accumulates of the matrix products)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    cost.add_column("", no_wrap=True)
    for name in (a.name, b.name, "left / right"):
        cost.add_column(name, justify="right", no_wrap=True)
    cost.add_row("MACs", f"{a.macs:,}", f"{b.macs:,}", f"{a.macs / b.macs:.2f}x")
    ratio = a.seconds / max(b.seconds, 1e-12)
    cost.add_row("time, ms", _ms(a.seconds, 1), _ms(b.seconds, 1), f"{ratio:7.2f}x")
    for which, i in (("first", 0), ("last", -1)):
        cost.add_row(
            f"MACs per step, {which}",
            *(f"{s.step_macs[i]:,}" if s.step_macs.size else "-" for s in (a, b)),
        )
    for which, i in (("first", 0), ("last", -1)):
        cost.add_row(
            f"ms per step, {which}",
            *(_ms(s.step_seconds[i], 2) if s.step_seconds.size else "-" for s in (a, b)),
        )
    return Group(
        header, grid, attention_legend(plain), Text(), layers, Text(), cost, Text(), verdict(result)
    )


def _ms(seconds: float, decimals: int) -> str:
    """Milliseconds in a fixed width for anything under 100 s (layout independent of speed)."""
    return f"{1e3 * seconds:{6 + decimals}.{decimals}f}"


def verdict(result: Comparison) -> Text:
    """The one-line answer: identical up to rounding, or where they differ."""
    tol = f"tolerance {result.tolerance_attention:.1e} attention, {result.tolerance_logits:.1e} logits"
    if result.agree:
        return Text(
            f"identical up to float rounding (max |Δ| = {result.max_abs_diff_attention:.1e} attention, "
            f"{result.max_abs_diff_logits:.1e} logits, {result.dtype}; {tol})",
            Style(color="green", bold=True),
        )
    first = result.first_differing_row
    where = f"first at row {first + 1}" if first is not None else "in the greedy tokens"
    return Text(
        f"DIFFERENT: {where}, max |Δ| = {result.max_abs_diff_attention:.2g} attention, "
        f"{result.max_abs_diff_logits:.2g} logits ({result.dtype}; {tol})",
        Style(color="red", bold=True),
    )


def similarity_view(
    model: GPT, result: Similarity, layer: int, head: int, *, plain: bool = False
) -> Group:
    """Both orderings' masked attention with the segments marked, and the combined vector."""
    parts: list[Any] = []
    for title, order in (
        ("[TEXT1; delim; TEXT2]", result.forward),
        ("[TEXT2; delim; TEXT1]", result.backward),
    ):
        labels = [model.tokenizer.token_label(int(i)) for i in order.token_ids]
        _, delim, second = order.segments
        n = order.token_ids.shape[0]
        notes = {
            delim: Text("◀ delimiter", STYLE_DIM),
            n - 1: Text("◀ last: sees every token; its state is read", STYLE_LABEL),
        }
        parts.append(
            Text(
                f"{title}: one pass, causal mask, {n} tokens; layer {layer}, head {head}",
                STYLE_LABEL,
            )
        )
        parts.append(
            AttentionGrid(
                [order.attention[layer, head]],
                order.mask,
                labels,
                second,
                row_notes=notes,
                plain=plain,
                separator="second text",
            )
        )
        parts.append(Text())
    norm = float(np.linalg.norm(result.representation.astype(np.float64)))
    summary = Text(
        f"cosine similarity of the two last states: {result.cosine:.4f}\n"
        f"pair representation = sum of both last states: norm {norm:.4f} (width {result.representation.shape[0]})\n"
    )
    summary.append(
        "No contradiction: each ordering is fed once, whole, with the causal mask exactly as in "
        "training, and only the last position's output is read; it is the one position that "
        "attends to every token of both texts.",
        STYLE_DIM,
    )
    return Group(*parts, attention_legend(plain), summary)


def _signed_percent(fraction: float, decimals: int) -> str:
    """A signed percentage that never reads "-0%" for a change that rounds to zero.

    >>> _signed_percent(-0.001, 0), _signed_percent(0.034, 1)
    ('+0%', '+3.4%')
    """
    value = round(100 * fraction, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:+.{decimals}f}%"


def bench_view(result: BenchResult, machine: str) -> Group:
    """The benchmark as a Rich table with a header and the conclusions under it."""
    from rich.table import Table

    mem, steps = result.memory(), max(result.cached.steps, 1)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("way of running")
    for name in ("tokens/s", "ms/token", "MACs/token", "vs cached"):
        table.add_column(name, justify="right")
    for label, decode, versus in [
        ("cached (KV cache)", result.cached, "1.0x"),
        (
            "cached + recording",
            result.cached_recording,
            _signed_percent(result.recording_overhead, 0),
        ),
        ("recompute", result.recompute, f"{result.cache_speedup:.1f}x slower"),
    ]:
        table.add_row(
            label,
            f"{decode.tokens_per_second:,.1f}",
            f"{decode.seconds / max(decode.steps, 1) * 1e3:,.2f}",
            f"{decode.macs // steps:,}",
            versus,
        )
    table.add_row(
        "training-mode pass",
        f"{result.training_tokens_per_second:,.1f}",
        f"{result.training_seconds / result.tokens * 1e3:,.3f}",
        f"{result.training_macs // result.tokens:,}",
        "one pass",
    )
    stopped = "" if result.stop_reason == "steps" else f", stopped at {result.stop_reason}"
    lines = [
        f"{result.model}: {result.config.describe()}, {result.dtype}",
        f"{result.tokens} positions: prompt {result.prompt_len}, {steps} decoded{stopped}; "
        f"median of {result.repeats} runs",
        machine,
        "",
    ]
    notes = [
        "",
        f"cache speedup: {result.cache_speedup:.1f}x over recomputing the prefix at every step",
        f"recording every layer and head: {_signed_percent(result.recording_overhead, 1)} time, "
        f"{mem['record_bytes_per_token']:,} bytes per token at {result.tokens} positions "
        f"(one head: {mem['record_bytes_per_token_one_head']:,}; float16 halves both)",
        f"KV cache: {mem['kv_cache_bytes_per_token']:,} bytes per token",
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
