"""Views: what a picture of attention shows, as plain data built once for every renderer.

A view is built from a `Trace`, a `Comparison` or a `Similarity` plus the user's
choices (layer, heads, aggregation). It holds everything drawing needs and nothing
about how to draw: each panel's weights and the state of every cell, token labels,
the lines that separate prompt from generated tokens, notes on rows, titles,
tables and a verdict. The terminal (`maskviz.render.terminal`), the figures
(`maskviz.render.attention_figures`) and the HTML page draw from the same view,
so they cannot disagree about what is masked, evicted or numbered how.

Cell states (`Panel.states`, int8 [n, n]):

- ``ALLOWED``: the query may attend to the key; its weight is drawn;
- ``MASKED``: the mask forbids the key (the future, another document, a pad, or
  outside a sliding window in a single masked pass);
- ``EVICTED``: a sliding-window layer's rolling KV cache had dropped the key when
  this query was computed in cached decoding;
- ``NOT_YET``: the key did not exist yet when this query was computed, one step at
  a time (cached decoding, or recompute's kept row): a later step generated it, so
  nothing had to mask it. The prompt's rows, computed by the prefill, see the
  generated keys this way too; their masked future is the prompt's own.

Positions are numbered from ``index_base`` (1) in every title and note.

>>> import maskviz
>>> model = maskviz.random_model(maskviz.GPTConfig(1, 2, 8, 16, 300), seed=0)
>>> view = trace_view(model.trace([72, 105], steps=2), layer=0)
>>> [p.title for p in view.panels], view.panels[0].states.shape
(['layer 0, head 0'], (4, 4))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from maskviz._text import display_label, plural, safe_text
from maskviz.errors import as_integer, check_labels, check_type, index_in, usage_error
from maskviz.masks import Mask
from maskviz.tokenizer import labels_without_tokenizer

if TYPE_CHECKING:
    from maskviz.compare import Comparison
    from maskviz.similarity import Ordering, Similarity
    from maskviz.trace import Agg, Trace

FloatArray = NDArray[np.floating[Any]]
StateArray = NDArray[np.int8]

MASKED, ALLOWED, EVICTED, NOT_YET = 0, 1, 2, 3
STATE_NAMES = {
    ALLOWED: "may attend",
    MASKED: "masked",
    EVICTED: "evicted from the rolling cache",
    NOT_YET: "not generated yet",
}
STEPWISE = ("cached", "recompute")  # modes and sides that computed one new row per step
PAD_NOTE = "pad"  # a mask view's note on each padding position


@dataclass(frozen=True)
class Mark:
    """A line drawn before position ``index`` (between rows and between columns)."""

    index: int
    kind: str  # "prompt": where generated tokens begin; "delimiter": around it
    text: str  # what the line separates, e.g. "decoding: one new query per step ..."


@dataclass(frozen=True)
class Panel:
    """One attention matrix as drawn: rows are queries, columns keys (one per position)."""

    title: str
    weights: FloatArray  # [n, n]; 0 where the state is not ALLOWED
    states: StateArray  # [n, n]
    labels: tuple[str, ...]  # each position's token, printable
    marks: tuple[Mark, ...] = ()
    notes: Mapping[int, str] = field(default_factory=dict)  # row -> short text after it
    # row -> line under it: a lead, then candidates ("'a' 34%") a narrow line may drop
    details: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # row -> rank of its note: a line pooling rows shows its top-ranked row's note
    # (without ranks, pooled lines show no notes)
    note_rank: Mapping[int, float] = field(default_factory=dict)
    # a row pictures outline, and what it is (a similarity ordering's read-out row)
    outline: tuple[int, str] | None = None

    @property
    def n(self) -> int:
        return int(self.states.shape[0])


def detail_text(parts: Sequence[str], keep: int | None = None) -> str:
    """A row's detail line from its parts (a lead, then candidates), with the first
    ``keep`` candidates only when given ("…" stands for the rest; none: the lead alone).

    >>> parts = ("step 1", "'a' 50%", "'b' 20%")
    >>> detail_text(parts), detail_text(parts, 1), detail_text(parts, 0)
    ("step 1; top: 'a' 50%, 'b' 20%", "step 1; top: 'a' 50%, …", 'step 1')
    """
    lead, candidates = parts[0], list(parts[1:])
    if keep is not None and keep < len(candidates):
        candidates = [*candidates[:keep], "…"] if keep else []
    return lead + "; top: " + ", ".join(candidates) if candidates else lead


@dataclass(frozen=True)
class Table:
    """Rows of text under a title; the first column names the row."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class AttentionView:
    """Everything a picture of one or more attention matrices shows.

    ``header``: lines about the run; ``caption``: the line under them that says what
    the grid shows (a page, whose maps switch heads and steps, writes its own).
    ``side_by_side``: the panels share their rows (heads of one sequence, the two sides
    of a comparison); otherwise each is drawn on its own (two orderings). ``steps_from``:
    the first row computed by a decoding step (cached traces; animations step there).
    ``verdict``: a comparison's conclusion and whether it is good news.
    """

    title: str
    header: tuple[str, ...]
    panels: tuple[Panel, ...]
    side_by_side: bool = True
    footer: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    verdict: tuple[str, bool] | None = None
    mode: str = "training"  # "cached" rows past steps_from were decoding steps
    steps_from: int = 0
    index_base: int = 1
    caption: str = ""

    @property
    def states_present(self) -> set[int]:
        return {int(s) for p in self.panels for s in np.unique(p.states)}


# ---------------------------------------------------------------- traces


def _states(
    allowed: NDArray[np.bool_],
    evicted: NDArray[np.bool_] | None = None,
    stepwise_from: int | None = None,
) -> StateArray:
    """[n, n] states; ``stepwise_from`` = p: rows from p on were computed one per step,
    and rows before p by a prefill over p tokens, so key k did not exist for row r when
    k > r and k >= p."""
    states = np.where(allowed, ALLOWED, MASKED).astype(np.int8)
    if evicted is not None:
        states[evicted & ~allowed] = EVICTED
    if stepwise_from is not None:
        n_q, n_k = allowed.shape
        keys = np.arange(n_k)
        later = (keys[None, :] > np.arange(n_q)[:, None]) & (keys >= stepwise_from)[None, :]
        states[later & ~allowed] = NOT_YET
    return states


def trace_states(trace: Trace, layer: int) -> StateArray:
    """The state of every cell of ``layer`` [T, T]: allowed, masked, evicted from a
    rolling cache, or not generated yet (`_run_states`)."""
    return _run_states(trace.layer_mask(layer), trace.mode, trace.prompt_len)


def _run_states(allowed: NDArray[np.bool_], mode: str, prompt_len: int) -> StateArray:
    """The states of a run's cells [T, T] from the keys each row could see: in cached
    mode a sliding layer's keys beyond its window were evicted from the ring buffer
    (decoding rows), not masked; keys generated after a row was computed are NOT_YET,
    not masked."""
    evicted = None
    if mode == "cached":  # earlier keys a row could not see: its ring buffer dropped them
        evicted = np.tril(np.ones(allowed.shape, bool)) & ~allowed
        evicted[:prompt_len] = False  # the prefill pass masked these: never cached
    return _states(allowed, evicted, prompt_len if mode in STEPWISE else None)


def _token_labels(
    given: Sequence[str] | None,
    recorded: tuple[str, ...],
    token_ids: NDArray[np.int64],
    vocab_size: int,
) -> tuple[str, ...]:
    """The labels to draw: ``given``, else those the run recorded, else bytes or ids
    (a result built by hand)."""
    n = token_ids.shape[0]
    if given is None:
        given = recorded or labels_without_tokenizer(token_ids, vocab_size)
    check_labels(given, n)  # before tuple() splits a string
    return tuple(given)


def describe_layer_masks(windows: Sequence[int | None]) -> str:
    """Each layer's mask, layers grouped (0-based, as ``--layer`` counts).

    >>> describe_layer_masks([None, None])
    'every layer causal'
    >>> describe_layer_masks([32, None, 32, None])
    'layers 0,2: causal & sliding window 32; layers 1,3: causal'
    >>> describe_layer_masks([None, 5, 5])
    'layer 0: causal; layers 1,2: causal & sliding window 5'
    """
    kinds: dict[int | None, list[int]] = {}
    for i, w in enumerate(windows):
        kinds.setdefault(w, []).append(i)
    if len(kinds) == 1:
        return f"every layer {layer_mask_words(next(iter(kinds)))}"
    return "; ".join(
        f"layer{'s' if len(layers) > 1 else ''} {','.join(map(str, layers))}: "
        + layer_mask_words(w)
        for w, layers in sorted(kinds.items(), key=lambda kv: kv[1][0])
    )


def layer_mask_words(window: int | None) -> str:
    """A layer's mask in the mask library's words (`maskviz.masks`'s descriptions).

    >>> layer_mask_words(32)
    'causal & sliding window 32'
    """
    return "causal" if window is None else f"causal & sliding window {window}"


def _matrices(
    trace: Trace, layer: int, head: int | None, heads: Sequence[int] | None, agg: Agg | None
) -> list[tuple[str, FloatArray]]:
    if heads is not None:
        return [(f"head {h}", trace.head_attention(layer, h)) for h in heads]
    if agg is not None:
        n_heads = trace.heads.shape[0]
        return [(f"layer {layer}, {agg} over {n_heads} heads", trace.layer_attention(layer, agg))]
    h = int(trace.heads[0]) if head is None else head
    return [(f"layer {layer}, head {h}", trace.head_attention(layer, h))]


def trace_view(
    trace: Trace,
    *,
    layer: int | None = None,
    head: int | None = None,
    heads: Sequence[int] | None = None,
    agg: Agg | None = None,
    top_k: int = 3,
) -> AttentionView:
    """A recorded run: the prefill rows, then one row per decoding step with the token it
    chose; ``heads`` side by side, or ``agg`` ("mean"/"max") over the layer's heads, or
    one ``head``. By default the first layer and head the trace recorded."""
    _check_choice(trace, head, heads, agg)
    layer = int(trace.layers[0]) if layer is None else layer
    notes = _row_notes(trace, trace.window(layer), top_k)  # trace.window checks the layer
    return _trace_layer_view(trace, layer, head, heads, agg, notes)


def trace_views(trace: Trace, heads: Sequence[int], *, top_k: int = 3) -> list[AttentionView]:
    """`trace_view` of ``heads`` side by side for every recorded layer, in order. The row
    notes belong to the sequence: they are worked out once per window size, not per
    layer (they read the vocabulary's probabilities at every row)."""
    _check_choice(trace, None, heads, None)
    notes: dict[int | None, _RowNotes] = {}
    views = []
    for layer in (int(x) for x in trace.layers):
        window = trace.window(layer)
        if window not in notes:
            notes[window] = _row_notes(trace, window, top_k)
        views.append(_trace_layer_view(trace, layer, None, heads, None, notes[window]))
    return views


def _check_choice(
    trace: Trace, head: int | None, heads: Sequence[int] | None, agg: Agg | None
) -> None:
    from maskviz.trace import Trace

    check_type(trace, Trace, "trace")
    if head is not None and (heads is not None or agg is not None):
        raise usage_error("choose one of head, heads or agg")
    if heads is not None and not len(heads):
        raise usage_error("heads: name at least one head")
    if heads is not None and len(set(heads)) != len(heads):
        raise usage_error(f"heads must not repeat, got {list(heads)}")
    if not trace.layers.size or not trace.heads.size:
        raise usage_error("the trace recorded no attention to draw")


_RowNotes = tuple[dict[int, str], dict[int, tuple[str, ...]]]


def _row_notes(trace: Trace, window: int | None, top_k: int) -> _RowNotes:
    """After each row from the prompt's last on, the token it chose (``notes``), and what
    computed it with the likeliest next tokens (``details``)."""
    p, n = trace.prompt_len, trace.n_tokens
    notes: dict[int, str] = {}
    details: dict[int, tuple[str, ...]] = {}
    for t in range(p - 1, n):
        # row t's output (logits[t]) predicts token t+1: the next step's query
        top = trace.next_token_probs(t, top_k)
        if t + 1 < n:
            chosen = int(trace.token_ids[t + 1])
            label = display_label(trace.token_label(chosen))
            notes[t] = f"→ {label} {trace.probabilities(t)[chosen]:.0%}"
        else:
            notes[t] = f"(next: {display_label(trace.token_label(top[0][0]))} {top[0][1]:.0%})"
        alts = tuple(f"{_quoted(display_label(trace.token_label(i)))} {q:.0%}" for i, q in top)
        if t >= p and trace.mode == "recompute":
            details[t] = (f"step {t - p + 1}: {plural(t + 1, 'query')} in one masked pass, "
                          "this row kept", *alts)  # fmt: skip
        elif t >= p and trace.mode != "training":
            held = plural(t, "cached key")
            if window is not None and t >= window:
                held = f"a ring of {window - 1} cached keys ({t - window + 1} evicted)"
            details[t] = (f"step {t - p + 1}: {held} + itself", *alts)
        elif t == p - 1 and trace.mode == "training":  # one pass over all rows: no prefill
            details[t] = ("the prompt's last row", *alts)
        elif t == p - 1:
            details[t] = (f"prefill: {plural(p, 'query')} in one masked pass", *alts)
    return notes, details


def _trace_layer_view(
    trace: Trace,
    layer: int,
    head: int | None,
    heads: Sequence[int] | None,
    agg: Agg | None,
    row_notes: _RowNotes,
) -> AttentionView:
    p, n = trace.prompt_len, trace.n_tokens
    labels = tuple(trace.labels)
    shown = [display_label(label) for label in labels]
    states = trace_states(trace, layer)
    window = trace.window(layer)
    rule = {
        "training": "generated tokens: the same single pass, the mask hides the future",
        "recompute": "decoding: no cache, the whole prefix again at every step (masked)",
    }.get(trace.mode, "decoding: one new query per step, attending to the KV cache (no mask)")
    marks = (Mark(p, "prompt", rule),) if 0 < p < n else ()
    panels = []
    for title, matrix in _matrices(trace, layer, head, heads, agg):
        weights = np.where(states == ALLOWED, matrix, 0.0).astype(matrix.dtype)
        panels.append(Panel(title, weights, states, labels, marks))
    # the row notes belong to the sequence, not to a head: the last panel carries them
    last = panels[-1]
    panels[-1] = Panel(last.title, last.weights, last.states, labels, marks, *row_notes)
    what = (
        panels[0].title
        if len(panels) == 1
        else f"layer {layer}, heads " + ", ".join(str(h) for h in (heads or []))
    )
    name = safe_text(trace.model_name) or "model"
    model_line = f"model {name}"
    if trace.model_desc:
        model_line += f": {safe_text(trace.model_desc)}"
    header = (
        f"{model_line} · {trace.dtype} · mode {trace.mode} · {trace.decoding}",
        f"masks: {describe_layer_masks([trace.window(i) for i in range(trace.windows.shape[0])] or [None])}",
        f"prompt, {plural(p, 'token')}: " + " ".join(f"{i + 1}:{shown[i]}" for i in range(p)),
    )
    # a picture of one layer says its window, which the terminal's header lists
    sliding = "" if window is None else f" · sliding window {window}"
    return AttentionView(
        title=f"{name} · {what}{sliding} · {trace.mode} · {trace.decoding}",
        header=header,
        caption=f"attention of {what}; rows = queries ↓, columns = keys →",
        panels=tuple(panels),
        footer=_trace_footer(trace),
        mode=trace.mode,
        steps_from=p if trace.mode == "cached" else n,
    )


def _quoted(label: str) -> str:
    """``label`` in quotes that it does not hold itself: 'a', but "'".

    >>> print(_quoted("a"), _quoted("'"))
    'a' "'"
    """
    return f'"{label}"' if "'" in label and '"' not in label else f"'{label}'"


def _trace_footer(trace: Trace) -> tuple[str, ...]:
    p, n = trace.prompt_len, trace.n_tokens
    reason = {
        "steps": f"after {plural(n - p, 'step')}",
        "end_of_text": "at end-of-text",
        "context": "at the context limit",
    }.get(trace.stop_reason, trace.stop_reason)
    lines = [f"text: {safe_text(trace.text)}"]
    if trace.temperature > 0:
        lines.append(
            "percentages are the model's probabilities, before temperature and top-k: "
            "sampling may choose an unlikely token"
        )
    if trace.mode == "training":
        lines.append(
            f"stopped {reason}; one masked pass over {plural(n, 'token')} took "
            f"{1e3 * trace.prefill_seconds:.1f} ms"
        )
        return tuple(lines)
    per_step = ""
    if trace.step_seconds.size:
        per_step = f", {1e3 * float(trace.step_seconds.mean()):.2f} ms per step"
    lines.append(f"stopped {reason}; prefill {1e3 * trace.prefill_seconds:.1f} ms{per_step}")
    if trace.kv_cache_bytes:
        formula = f" = {safe_text(trace.kv_formula)}" if trace.kv_formula else ""
        lines.append(f"KV cache: {trace.kv_cache_bytes:,} bytes{formula}")
    if trace.mode == "cached" and trace.step_masks == 0 and n > p:
        lines.append(
            "no mask applied at any step: every layer's rule allowed every key its cache held"
        )
    return tuple(lines)


# ---------------------------------------------------------------- comparisons

SIDE_TEXT = {
    "cached": "cached: prefill, then one query per step against the KV cache",
    "training": "training: one pass, each layer's mask",
    "unmasked": "unmasked: one pass, no mask",
    "recompute": "recompute: the whole prefix again at every step, no cache",
    "padded": "padded: every step padded after its end to the final length, masked",
    "left-padded": "left-padded: every step padded before its start, pads masked, "
    "positions skip them",
    "shifted": "shifted: left-padded, positions counted from the pads (the common bug)",
}


def comparison_view(
    result: Comparison,
    labels: Sequence[str] | None = None,
    *,
    layer: int = 0,
    head: int = 0,
    model_name: str | None = None,
) -> AttentionView:
    """Both sides' attention of one head side by side, each row's max |Δ| over every layer
    and head, the per-layer and cost tables, and the verdict. ``labels`` and
    ``model_name`` replace the ones the result recorded.

    >>> from maskviz import load_model
    >>> from maskviz.compare import compare
    >>> tiny = load_model("tiny")
    >>> view = comparison_view(compare(tiny, "training-vs-cached", [84, 111], 3), head=1)
    >>> [p.title for p in view.panels], view.panels[0].labels[:2]
    (['training', 'cached'], ('T', 'o'))
    """
    from maskviz.compare import Comparison

    check_type(result, Comparison, "result")
    a, b = result.a, result.b
    p, n = result.prompt_len, result.token_ids.shape[0]
    shown = _token_labels(labels, result.labels, result.token_ids, a.logits.shape[1])
    model_name = result.model_name if model_name is None else model_name
    layer = index_in(layer, a.attention.shape[0], "layer")
    head = index_in(head, a.attention.shape[1], "head")
    marks = (Mark(p, "prompt", "generated tokens"),) if 0 < p < n else ()
    row_diff, tol = result.row_diff, result.tolerance_attention
    notes = {t: f"{row_diff[t]:.1e}" + ("" if row_diff[t] <= tol else " ✗") for t in range(n)}
    panels = []
    for side in (a, b):
        states = _run_states(side.mask[layer], side.name, p)
        weights = np.where(states == ALLOWED, side.attention[layer, head], 0.0)
        panels.append(Panel(side.name, weights, states, shown, marks))
    rank = {t: float(row_diff[t]) for t in range(n)}
    panels[-1] = Panel(b.name, panels[-1].weights, panels[-1].states, shown, marks, notes, {}, rank)
    name = f" · model {safe_text(model_name)}" if model_name else ""
    header = (
        f"compare {result.pair}{name} · {result.dtype} · {plural(p, 'prompt token')} + {plural(n - p, 'step')}",
        f"left  = {SIDE_TEXT.get(a.name, a.name)}",
        f"right = {SIDE_TEXT.get(b.name, b.name)}",
    )
    caption = (
        f"attention of layer {layer}, head {head}; after each row: max |Δ| of that row over "
        "all layers and heads"
    )
    per_layer: list[tuple[str, ...]] = [
        (str(r["layer"]), f"{r['max_abs_diff_attention']:.2e}") for r in result.per_layer
    ]
    per_layer.append(("logits", f"{result.max_abs_diff_logits:.2e}"))
    ratio = a.seconds / max(b.seconds, 1e-12)
    cost: list[tuple[str, ...]] = [
        ("MACs", f"{a.macs:,}", f"{b.macs:,}", f"{a.macs / b.macs:.2f}x"),
        ("time, ms", _ms(a.seconds, 1), _ms(b.seconds, 1), f"{ratio:7.2f}x"),
    ]
    for which, i in (("first", 0), ("last", -1)):
        cost.append(
            (
                f"MACs per step, {which}",
                *(f"{s.step_macs[i]:,}" if s.step_macs.size else "-" for s in (a, b)),
                "",
            )
        )
    for which, i in (("first", 0), ("last", -1)):
        cost.append(
            (
                f"ms per step, {which}",
                *(_ms(s.step_seconds[i], 2) if s.step_seconds.size else "-" for s in (a, b)),
                "",
            )
        )
    tables = (
        Table("per layer", ("layer", "max |Δ| attention"), tuple(per_layer)),
        # One column per side keeps the table narrow at any model size. Times are printed
        # at a fixed width (up to 99,999 ms), so the layout never depends on the machine's
        # speed: a slow run changes digits, not line breaks.
        Table(
            "cost (MACs = multiply-accumulates of the matrix products)",
            ("", a.name, b.name, "left / right"),
            tuple(cost),
        ),
    )
    return AttentionView(
        title=f"{result.pair}{name} · layer {layer}, head {head}",
        header=header,
        caption=caption,
        panels=tuple(panels),
        tables=tables,
        footer=(
            "greedy next tokens equal: " + ("yes, at every step" if result.tokens_agree else "NO"),
            *((result.note,) if result.note else ()),
        ),
        verdict=(verdict_text(result), result.agree),
    )


def _ms(seconds: float, decimals: int) -> str:
    """Milliseconds in a fixed width for anything under 100 s (layout independent of speed)."""
    return f"{1e3 * seconds:{6 + decimals}.{decimals}f}"


def verdict_text(result: Comparison) -> str:
    """The one-line answer: identical up to rounding, or where they differ."""
    tol = f"tolerance {result.tolerance_attention:.1e} attention, {result.tolerance_logits:.1e} logits"
    if result.agree:
        return (
            f"identical up to float rounding (max |Δ| = {result.max_abs_diff_attention:.1e} "
            f"attention, {result.max_abs_diff_logits:.1e} logits, {result.dtype}; {tol})"
        )
    first = result.first_differing_row
    where = f"first at row {first + 1}" if first is not None else "in the greedy tokens"
    return (
        f"DIFFERENT: {where}, max |Δ| = {result.max_abs_diff_attention:.2g} attention, "
        f"{result.max_abs_diff_logits:.2g} logits ({result.dtype}; {tol})"
    )


# ---------------------------------------------------------------- similarity


def _last_position_reach(order: Ordering) -> str:
    """What the last position's state can depend on, given each layer's window."""
    if 0 in order.first_keys:
        return "it is the one position that attends to every token of both texts."
    if order.unreachable:
        return (
            f"sliding windows shorter than the texts keep the first {order.unreachable:,} "
            "tokens of each ordering from reaching it at all: they cannot change the result."
        )
    return (
        "its windows are shorter than the texts, so far tokens reach it only through "
        "nearer positions in the layers below."
    )


def similarity_view(
    result: Similarity,
    labels: Sequence[Sequence[str]] | None = None,
    *,
    layer: int = 0,
    head: int = 0,
) -> AttentionView:
    """Both orderings' masked attention, each with its own tokens and its delimiter marked,
    and the combined representation. ``labels``: the two orderings' token labels, to
    replace the ones the result recorded."""
    from maskviz.similarity import Similarity

    check_type(result, Similarity, "result")
    layer = index_in(layer, result.forward.attention.shape[0], "layer")
    head = index_in(head, result.forward.attention.shape[1], "head")
    if labels is not None and len(labels) != 2:
        raise usage_error(f"labels: one list per ordering (2), got {len(labels)}")
    panels = []
    for title, order, names in zip(
        ("[TEXT1; delim; TEXT2]", "[TEXT2; delim; TEXT1]"),
        (result.forward, result.backward),
        (None, None) if labels is None else labels,
        strict=True,
    ):
        shown = _token_labels(names, order.labels, order.token_ids, result.vocab_size)
        panels.append(_ordering_panel(title, order, shown, layer, head))
    norm = float(np.linalg.norm(result.representation.astype(np.float64)))
    footer = (
        f"cosine similarity of the two last states: {result.cosine:.4f}",
        f"pair representation = sum of both last states: norm {norm:.4f} "
        f"(width {result.representation.shape[0]})",
        "No contradiction: each ordering is fed once, whole, with each layer's mask exactly "
        "as in training, and only the last position's output is read; "
        + _last_position_reach(result.forward),
    )
    return AttentionView(
        title=f"similarity · layer {layer}, head {head}",
        header=(),
        panels=tuple(panels),
        side_by_side=False,
        footer=footer,
    )


READ_OUT = "last position: its state is read"  # what the read-out row's outline is


def _ordering_panel(
    title: str, order: Ordering, labels: tuple[str, ...], layer: int, head: int
) -> Panel:
    _, delim, second = order.segments
    n = order.token_ids.shape[0]
    rule = order.rules[layer]
    states = _states(rule.to_array())
    weights = np.where(states == ALLOWED, order.attention[layer, head], 0.0)
    marks = (Mark(delim, "delimiter", "delimiter"), Mark(second, "delimiter", "second text"))
    # a sliding layer's last position sees only its window; the state is read all the same
    sees = "every token" if rule.allowed_keys(n - 1) == [(0, n - 1)] else "its window"
    notes = {delim: "◀ delimiter", n - 1: f"◀ last: sees {sees}; its state is read"}
    heading = f"{title}: one pass, {rule.description} mask, {n} tokens; layer {layer}, head {head}"
    return Panel(heading, weights, states, labels, marks, notes, outline=(n - 1, READ_OUT))


# ---------------------------------------------------------------- masks


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


ZERO_ROWS_NOTE = "The engine gives fully masked rows all-zero attention weights, never NaN."


def mask_notes(
    mask: Mask, index_base: int = 1, padded: Sequence[int] | NDArray[np.int64] | None = None
) -> list[str]:
    """What a mask's counts mean, as lines: allowed cells, fully masked rows and why.

    >>> from maskviz.masks import causal
    >>> mask_notes(causal(4))
    ['10 of 16 cells allowed (62.5%); no fully masked rows.']
    """
    s = mask.summary()
    n_full = s.fully_masked.size
    if n_full == 0:
        return [f"{s.allowed_text()}; no fully masked rows."]
    shown = ", ".join(str(int(r) + mask.query_offset + index_base) for r in s.fully_masked[:10])
    more = f", … ({n_full - 10:,} more)" if n_full > 10 else ""
    lines = [
        f"{s.allowed_text()}; {n_full:,} fully masked row{'s' if n_full > 1 else ''}: {shown}{more}."
    ]
    pads = {int(r) for r in padded} if padded is not None else set()
    real = [int(r) + mask.query_offset for r in s.fully_masked]
    real = [r for r in real if r not in pads]
    first_token = next((i for i in range(mask.n_keys) if i not in pads), None)
    first_told = bool(real) and real[0] == first_token
    if first_told and first_token is not None:  # (None never equals a row: for mypy)
        who = "the first token after the padding" if first_token else "the first token"
        lines.append(
            f"Row {first_token + index_base} has no key to attend to: {who} has nothing "
            f"before it{' but padding' if first_token else ''}, and this mask hides the token "
            "itself."
        )
    others = [r + index_base for r in real if r != first_token]
    if others:  # e.g. strict & sliding window 1: the window holds only the query, strict forbids it
        listed = ", ".join(map(str, others[:10])) + (", …" if len(others) > 10 else "")
        lines.append(
            f"{'Row' if len(others) == 1 else 'Rows'} {listed} "
            f"{'has' if len(others) == 1 else 'have'} no key "
            f"{'either' if first_told else 'to attend to'}: the mask's rules together forbid "
            "every one."
        )
    if pads:
        lines.append("Padded query rows attend to nothing; their outputs are ignored.")
    return [*lines, ZERO_ROWS_NOTE]


def mask_view(
    mask: Mask,
    *,
    labels: Sequence[str] | None = None,
    index_base: int = 1,
    highlight: int | None = None,
    padded: Sequence[int] | NDArray[np.integer[Any]] | None = None,
) -> AttentionView:
    """A square mask as a view with no weights: each cell ALLOWED or MASKED; padding
    positions carry the note `PAD_NOTE`, ``highlight`` the row one cached step computes.

    >>> from maskviz.masks import causal
    >>> mask_view(causal(3)).panels[0].states.tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    check_type(mask, Mask, "mask")
    index_base = as_integer(index_base, "index_base")
    n = mask.n_keys
    if mask.n_queries != n:
        raise usage_error(f"a mask view needs a square mask, got {mask.n_queries} x {n}")
    if labels is not None:
        check_labels(labels, n)
    names = tuple(labels) if labels is not None else ("",) * n
    padded = [index_in(r, n, "padded position") for r in ([] if padded is None else padded)]
    notes = dict.fromkeys(padded, PAD_NOTE)
    if highlight is not None:
        highlight = index_in(highlight, n, "highlighted row")
        notes[highlight] = "◀ one cached decoding step computes this row"
    states = _states(mask.to_array())
    panel = Panel(mask.description, np.zeros((n, n), np.float32), states, names, (), notes)
    footer = mask_notes(mask, index_base, padded)
    if highlight is not None:
        footer.insert(0, step_sentence(mask, highlight, index_base))
    return AttentionView(
        title=f"{mask.description} mask",
        header=(mask.heading(index_base),),
        panels=(panel,),
        footer=tuple(footer),
        steps_from=n,
        index_base=index_base,
    )
