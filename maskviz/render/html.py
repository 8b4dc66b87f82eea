"""Attention views as one self-contained, interactive HTML page (or notebook output).

A page is a `Page`: plain JSON-ready data built from the same views the terminal and
the figures draw (`maskviz.view`), so states, labels and numbering agree everywhere.
`render_document` wraps it in a complete HTML file and `render_fragment` in a
``<div>`` for a notebook; both inline the viewer's CSS and JavaScript
(``viewer.css``, ``viewer.js`` beside this module) and the data. Nothing is ever
fetched: no CDN, font, image or script, and a standalone page forbids any request
with a Content-Security-Policy of ``default-src 'none'``.

Size policy:

- each panel stores the weights of its ALLOWED cells only (masked and evicted cells
  hold no weight), quantised to 16 bits (tooltips exact to 1e-4); a page whose
  16-bit weights would pass `WEIGHT_BUDGET` bytes stores 8 bits instead (±0.002,
  said on the page);
- cell states, labels and row notes are stored once and shared by every head;
- a comparison's |Δ| map is stored as float32 (float rounding lives near 1e-8);
- matrices over `MAX_POSITIONS` positions are refused (save a .png: it pools).

>>> import maskviz
>>> model = maskviz.random_model(maskviz.GPTConfig(2, 2, 8, 16, 300), seed=0)
>>> page = trace_page(model.trace([72, 105], steps=2))
>>> page.kind, page.data["layers"], page.data["heads"], page.data["q"]
('trace', [0, 1], [0, 1], 65535)
>>> document = render_document(page)
>>> "default-src 'none'" in document, "://" in document
(True, False)
"""

from __future__ import annotations

import base64
import html
import json
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from maskviz._io import write_text
from maskviz._text import display_label, plural, safe_text
from maskviz.errors import check_type, usage_error
from maskviz.render import style
from maskviz.trace import LABELLED_NEXT
from maskviz.view import (
    ALLOWED,
    PAD_NOTE,
    READ_OUT,
    AttentionView,
    Panel,
    comparison_view,
    detail_text,
    similarity_view,
    trace_view,
    trace_views,
)

if TYPE_CHECKING:
    from maskviz.compare import Comparison
    from maskviz.masks import Mask
    from maskviz.similarity import Similarity
    from maskviz.trace import Agg, Trace

MAX_POSITIONS = 1024  # positions a page draws cell by cell
WEIGHT_BUDGET = 8_000_000  # bytes of 16-bit weights a page may hold before it drops to 8 bits
LARGE_PAGE = 32_000_000  # bytes past which a page is written with a warning: browsers slow
# characters past which a notebook gets the plain repr: every output is kept in the .ipynb,
# and Jupyter drops outputs sent faster than 1 MB/s by default
NOTEBOOK_PAGE = 8_000_000
TOP_K = LABELLED_NEXT  # next-token candidates shown per row: those the trace has labels of
# cells under this many pixels are too small to hatch: evicted keys are drawn flat in a
# colour this far from the figures' light pink towards its magenta hatching, which stays
# visible on the white page (3:1) and still reads as neither a weight nor masked
SMALL_CELL = 4
EVICTED_SMALL_MIX = 0.6


@dataclass(frozen=True)
class Page:
    """What a page shows: ``kind`` ("trace", "compare", "similarity", "mask", "view")
    and its JSON-ready ``data`` (see ``viewer.js`` for how it is read)."""

    kind: str
    title: str
    data: dict[str, Any]

    @property
    def size(self) -> int:
        """Bytes of the complete standalone document."""
        return len(render_document(self).encode("utf-8"))


# ---------------------------------------------------------------- encoding


class _Pool:
    """Values many panels share (states, labels, notes), stored once and referred to
    by index."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._index: dict[str, int] = {}

    def ref(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True)
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(value)
        return self._index[key]


def _b64(array: NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantised(weights: NDArray[Any], states: NDArray[np.int8], q: int) -> str:
    """The ALLOWED cells' weights, row by row, as little-endian integers 0..q."""
    values = np.clip(np.rint(np.asarray(weights, np.float64)[states == ALLOWED] * q), 0, q)
    return _b64(values.astype("<u2" if q > 255 else "u1"))


ROW_DELTA_LABEL = "row's max |Δ|, all layers and heads: "  # what a comparison's row notes are


def _delta(a: Panel, b: Panel) -> str:
    """|a - b| as float32 (rounding differences live near 1e-8) for the cells either side
    may attend to, as the figures' difference map; the rest is masked on both sides."""
    wa = np.where(a.states == ALLOWED, np.asarray(a.weights, np.float64), 0.0)
    wb = np.where(b.states == ALLOWED, np.asarray(b.weights, np.float64), 0.0)
    either = (a.states == ALLOWED) | (b.states == ALLOWED)
    return _b64(np.abs(wa - wb)[either].astype("<f4"))


def _levels(cells: int) -> int:
    """16-bit weights while they fit the budget, else 8-bit."""
    return 65535 if 2 * cells <= WEIGHT_BUDGET else 255


def check_positions(n: int) -> None:
    if n > MAX_POSITIONS:
        raise usage_error(
            f"an HTML page draws at most {MAX_POSITIONS} positions, this has {n}; "
            "save a .png, .svg or .pdf instead (they pool large matrices)"
        )


def _panel(
    pool: _Pool, panel: Panel, q: int, *, notes: Panel | None = None, highlight: int | None = None
) -> dict[str, Any]:
    check_positions(panel.n)
    source = notes or panel
    return {
        "title": panel.title,
        "n": panel.n,
        "labels": pool.ref([display_label(label) for label in panel.labels]),
        "states": pool.ref(_b64(panel.states.astype(np.int8))),
        "w": _quantised(panel.weights, panel.states, q),
        "marks": [[m.index, m.kind, m.text] for m in panel.marks],
        "notes": pool.ref(sorted([int(k), v] for k, v in source.notes.items())),
        "details": pool.ref(sorted([int(k), detail_text(v, 0)] for k, v in source.details.items())),
        "highlight": highlight,
    }


def _view(view: AttentionView, panels: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "title": view.title,
        "header": [*view.header, view.caption] if view.caption else list(view.header),
        "footer": list(view.footer),
        "tables": [
            {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
            for t in view.tables
        ],
        "verdict": list(view.verdict) if view.verdict is not None else None,
        "sideBySide": view.side_by_side,
        "panels": panels,
        **extra,
    }


def _page(
    kind: str,
    title: str,
    pool: _Pool,
    views: list[dict[str, Any]],
    select: dict[str, list[Any]],
    *,
    layers: Sequence[int] = (0,),
    heads: Sequence[int] = (0,),
    q: int = 65535,
    initial: tuple[int, int | str, int] = (0, 0, 0),
    index_base: int = 1,
    **extra: Any,
) -> Page:
    data = {
        "v": 1,
        "kind": kind,
        "title": title,
        "indexBase": index_base,
        "layers": list(layers),
        "heads": list(heads),
        "q": q,
        "select": select,
        "initial": {"layer": initial[0], "head": initial[1], "step": initial[2]},
        "views": views,
        "pool": pool.items,
        "mode": "training",
        "stepsFrom": 0,
        "steps": 0,
        "rows": None,
        "colors": {
            "viridis": style.lut(style.WEIGHTS_CMAP),
            "inferno": style.lut(style.DIFF_CMAP),
            "diffFloor": style.DIFF_FLOOR,
            "masked": style.COLOR_MASKED,  # dotted, as in the figures
            "maskedDots": style.COLOR_MASKED_DOTS,
            "evicted": style.COLOR_EVICTED,  # hatched, as in the figures
            "evictedHatch": style.COLOR_EVICTED_HATCH,
            "evictedSmall": style.mix(
                style.COLOR_EVICTED, style.COLOR_EVICTED_HATCH, EVICTED_SMALL_MIX
            ),
            "smallCell": SMALL_CELL,
            "pending": style.COLOR_PENDING,
            "boundary": style.COLOR_BOUNDARY,  # every dashed mark, as in the figures
            "highlight": style.COLOR_HIGHLIGHT,
        },
        "markLabels": dict(style.MARK_LABELS),
        **extra,
    }
    return Page(kind, title, data)


# ---------------------------------------------------------------- pages


def trace_page(
    trace: Trace,
    *,
    layer: int | None = None,
    head: int | str | None = None,
    agg: Agg | None = None,
    group: Sequence[int] | None = None,
    top_k: int = TOP_K,
) -> Page:
    """Every recorded layer and head of a trace; cached traces step through decoding.

    ``layer``/``head`` choose what the page opens on (``head="all"``: every head);
    ``agg`` ("mean"/"max") adds each layer's heads combined, and opens on that;
    ``group`` (some recorded heads, as ``--heads 1,3``) adds them side by side and
    opens on them.
    """
    from maskviz.trace import Trace

    check_type(trace, Trace, "trace")
    check_positions(trace.n_tokens)
    layers = [int(x) for x in trace.layers]
    heads = [int(x) for x in trace.heads]
    if not layers or not heads:
        raise usage_error("the trace recorded no attention to draw")
    if group is not None and not set(group) <= set(heads):
        raise usage_error(f"heads {list(group)} were not all recorded (heads {heads})")
    picked = ",".join(map(str, group)) if group and list(group) != heads else None
    p, n = trace.prompt_len, trace.n_tokens
    q = _levels(len(layers) * len(heads) * n * (n + 1) // 2)
    pool = _Pool()
    views: list[dict[str, Any]] = []
    select: dict[str, list[Any]] = {}
    for lay, view in zip(layers, trace_views(trace, heads), strict=True):
        window = trace.window(lay)
        # the page's maps switch heads and steps: its caption names the layer alone
        view = replace(view, caption=f"layer {lay}: rows = queries ↓ (position, token), "
                       "columns = keys →")  # fmt: skip
        last = view.panels[-1]  # the row notes belong to the sequence: every head shows them
        views.append(
            _view(view, [_panel(pool, pan, q, notes=last) for pan in view.panels], window=window)
        )
        for hi, h in enumerate(heads):
            select[f"{lay}/{h}"] = [len(views) - 1, [hi]]
        select[f"{lay}/all"] = [len(views) - 1, list(range(len(heads)))]
        if picked:
            select[f"{lay}/{picked}"] = [len(views) - 1, [heads.index(h) for h in group or ()]]
        if agg is not None:  # as the terminal draws it, this layer's heads in one panel
            combined = trace_view(trace, layer=lay, agg=agg)
            pan = replace(combined.panels[0], title=f"{agg} over {len(heads)} heads")
            views.append(
                _view(replace(view, title=combined.title), [_panel(pool, pan, q)], window=window)
            )
            select[f"{lay}/{agg}"] = [len(views) - 1, [0]]
    rows = []
    for t in range(n):
        top = trace.next_token_probs(t, top_k)
        nxt = None
        if t + 1 < n:
            nxt = [display_label(trace.token_label(int(trace.token_ids[t + 1]))),
                   float(trace.probabilities(t)[int(trace.token_ids[t + 1])])]  # fmt: skip
        rows.append(
            {"next": nxt, "top": [[display_label(trace.token_label(i)), pr] for i, pr in top]}
        )
    cached = trace.mode == "cached" and n > p
    first = layers[0] if layer is None or layer not in layers else layer
    start: int | str = agg or picked or ("all" if group else heads[0] if head is None else head)
    if start not in (*heads, "all", agg, picked):
        start = heads[0]
    name = safe_text(trace.model_name) or "model"
    return _page(
        "trace",
        f"maskviz · {name} · {trace.mode} · {plural(n, 'token')}",
        pool,
        views,
        select,
        layers=layers,
        heads=heads,
        q=q,
        initial=(first, start, n - p if cached else 0),
        mode="cached" if cached else trace.mode,
        stepsFrom=p,
        steps=n - p if cached else 0,
        rows=rows,
        allHeads=True,
        aggs=[agg] if agg else [],
        groups=[picked] if picked else [],
    )


def _every_layer_and_head(
    n_layer: int, n_head: int, n: int, draw: Callable[[_Pool, int, int, int], dict[str, Any]]
) -> tuple[_Pool, list[dict[str, Any]], dict[str, list[Any]], int]:
    """Two-panel views of every (layer, head), as ``draw(pool, q, layer, head)`` makes
    them; with the shared pool, the selector table and the quantisation levels."""
    check_positions(n)
    q = _levels(2 * n_layer * n_head * n * n)
    pool = _Pool()
    views: list[dict[str, Any]] = []
    select: dict[str, list[Any]] = {}
    for lay in range(n_layer):
        for h in range(n_head):
            select[f"{lay}/{h}"] = [len(views), [0, 1]]
            views.append(draw(pool, q, lay, h))
    return pool, views, select, q


def comparison_page(
    result: Comparison,
    labels: Sequence[str] | None = None,
    *,
    layer: int = 0,
    head: int = 0,
    model_name: str | None = None,
) -> Page:
    """Both sides and their |Δ| for every layer and head, the verdict and tolerance."""
    from maskviz.compare import Comparison

    check_type(result, Comparison, "result")
    n_layer, n_head = result.a.attention.shape[:2]

    def draw(pool: _Pool, q: int, lay: int, h: int) -> dict[str, Any]:
        view = comparison_view(result, labels, layer=lay, head=h, model_name=model_name)
        a, b = view.panels
        panels = [_panel(pool, a, q), _panel(pool, b, q)]
        window = result.windows[lay] if result.windows else None
        # the page writes a row's |Δ| beside it only when its cells are large enough
        caption = (f"attention of layer {lay}, head {h}; in the tooltips of each row's cells: "
                   "max |Δ| of that row over all layers and heads")  # fmt: skip
        return _view(
            replace(view, caption=caption),
            panels, delta=_delta(a, b), tolerance=result.tolerance_attention,
            notesLabel=ROW_DELTA_LABEL, window=window,
        )  # fmt: skip

    n = int(result.token_ids.shape[0])
    pool, views, select, q = _every_layer_and_head(n_layer, n_head, n, draw)
    return _page(
        "compare",
        f"maskviz · compare {result.pair}",
        pool,
        views,
        select,
        layers=range(n_layer),
        heads=range(n_head),
        q=q,
        initial=(layer, head, 0),
    )


def similarity_page(
    result: Similarity,
    labels: Sequence[Sequence[str]] | None = None,
    *,
    layer: int = 0,
    head: int = 0,
) -> Page:
    """Both orderings for every layer and head, the read-out (last) row highlighted."""
    from maskviz.similarity import Similarity

    check_type(result, Similarity, "result")
    n_layer, n_head = result.forward.attention.shape[:2]

    def draw(pool: _Pool, q: int, lay: int, h: int) -> dict[str, Any]:
        view = similarity_view(result, labels, layer=lay, head=h)
        return _view(view, [_panel(pool, pan, q, highlight=pan.n - 1) for pan in view.panels])

    n = int(result.forward.token_ids.shape[0])
    pool, views, select, q = _every_layer_and_head(n_layer, n_head, n, draw)
    return _page(
        "similarity",
        "maskviz · similarity",
        pool,
        views,
        select,
        layers=range(n_layer),
        heads=range(n_head),
        q=q,
        initial=(layer, head, 0),
        highlightText=READ_OUT,  # as the figures' legend names it
    )


def view_page(
    view: AttentionView,
    *,
    kind: str = "view",
    highlight: int | None = None,
    window: int | None = None,
) -> Page:
    """One view as it is (what `save_view` writes for ``.html``); ``kind="mask"`` draws
    allowed cells in the mask figures' green instead of by weight. ``window``: the
    sliding window the tooltips name for keys too far back."""
    check_type(view, AttentionView, "view")
    n = max(p.n for p in view.panels)
    q = _levels(len(view.panels) * n * n)
    pool = _Pool()
    panels = [_panel(pool, pan, q, highlight=highlight) for pan in view.panels]
    extra: dict[str, Any] = {}
    if view.verdict is not None and len(view.panels) == 2:
        extra["delta"] = _delta(*view.panels)
        extra["notesLabel"] = ROW_DELTA_LABEL
    pads = sorted({int(r) for p in view.panels for r, note in p.notes.items() if note == PAD_NOTE})
    steps = max(n - view.steps_from, 0) if view.mode == "cached" else 0
    select = {"0/0": [0, list(range(len(panels)))]}

    return _page(
        kind,
        f"maskviz · {view.title}",
        pool,
        [_view(view, panels, pads=pads, window=window, **extra)],
        select,
        q=q,
        index_base=view.index_base,
        initial=(0, 0, steps),  # opens on the whole run, as the terminal draws it
        mode=view.mode if steps else "training",
        stepsFrom=view.steps_from,
        steps=steps,
        allowedColor=style.COLOR_ALLOWED,
    )


def mask_page(view: AttentionView, mask: Mask, *, highlight: int | None = None) -> Page:
    """A mask (`maskviz.view.mask_view` of ``mask``): allowed or not, no weights, in the
    mask figures' colours; each masked cell's tooltip says why (`Mask.reasons`)."""
    from maskviz.masks import Mask

    check_type(mask, Mask, "mask")

    page = view_page(view, kind="mask", highlight=highlight, window=mask.window)
    colors = dict(page.data["colors"], masked=style.COLOR_BLOCKED)
    (only,) = page.data["views"]
    (panel,) = only["panels"]
    texts, codes = mask.reasons()
    # run-length coded, row by row: [reason, count, reason, count, ...]
    flat = codes.ravel()
    starts = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1))
    counts = np.diff(np.append(starts, flat.size))
    runs = [int(x) for x in np.column_stack((flat[starts], counts)).ravel()]
    panel = dict(panel, reasons={"texts": list(texts), "runs": runs})
    return replace(
        page,
        data=dict(
            page.data,
            colors=colors,
            views=[dict(only, panels=[panel])],
            highlightText="the row one cached step computes",
        ),
    )


# ---------------------------------------------------------------- HTML


def _asset(name: str) -> str:
    return resources.files("maskviz.render").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' that could close it."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _instance(page: Page, root_id: str, standalone: bool) -> str:
    data = dict(page.data, standalone=standalone)
    return (
        f'<div class="maskviz" id="{root_id}" data-maskviz-ready="0">'
        f"<style>{_asset('viewer.css')}</style>"
        f'<script type="application/json" class="maskviz-data">{_json_for_script(data)}</script>'
        f"<noscript>This maskviz page needs JavaScript to draw.</noscript>"
        # the viewer is a function of its root element: no globals, so any number of
        # pages can share a notebook. Its root is its script's parent; a notebook that
        # runs scripts detached (no currentScript) gets the first root of this id not
        # yet bound, since an output shown twice has two
        f"<script>({_asset('viewer.js').strip().rstrip(';')})("
        f"document.currentScript?.parentElement ?? [...document.querySelectorAll("
        f"'div.maskviz[id=\"{root_id}\"]')].find((e) => !e.dataset.maskvizBound));</script>"
        "</div>"
    )


def render_fragment(page: Page) -> str:
    """A ``<div>`` for a notebook cell: a fresh id per call keeps instances apart."""
    return _instance(page, f"maskviz-{uuid.uuid4().hex[:12]}", standalone=False)


CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def render_document(page: Page) -> str:
    """A complete HTML file that needs nothing else: open it from disk, offline."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(page.title)}</title></head>\n"
        # the page's one landmark; its title is the viewer's h1 (h2 in a notebook)
        f"<body><main>{_instance(page, 'maskviz-page', standalone=True)}</main></body></html>\n"
    )


def write_page(page: Page, path: str | os.PathLike[str]) -> None:
    """Write the standalone document atomically; past `LARGE_PAGE` bytes, say so."""
    write_text(path, render_document(page))
    size = Path(path).stat().st_size
    if size > LARGE_PAGE:
        warnings.warn(
            f"{path} is {size / 1e6:.1f} MB: a browser may take seconds to open it and "
            "to switch layers (record fewer steps, or save a .png, which pools)",
            UserWarning,
            stacklevel=2,
        )


def save_html(view: AttentionView, path: str | os.PathLike[str]) -> None:
    """`save_view`'s ``.html``: the one view as a page."""
    write_page(view_page(view), path)


def repr_html(page_builder: Any) -> str | None:
    """A notebook's ``_repr_html_``: the page, or None (plain repr) if it cannot be drawn
    or is past `NOTEBOOK_PAGE` characters (with a warning saying how to see it)."""
    from maskviz.errors import MaskvizError

    try:
        fragment = render_fragment(page_builder())
    except MaskvizError:
        return None
    if len(fragment) > NOTEBOOK_PAGE:
        warnings.warn(
            f"this page would add {len(fragment) / 1e6:.1f} MB to the notebook: open it as "
            "a file instead (maskviz.render.html.write_page), or record fewer layers, "
            "heads or steps",
            UserWarning,
            stacklevel=2,
        )
        return None
    return fragment


__all__ = [
    "MAX_POSITIONS",
    "WEIGHT_BUDGET",
    "Page",
    "check_positions",
    "comparison_page",
    "mask_page",
    "render_document",
    "render_fragment",
    "repr_html",
    "save_html",
    "similarity_page",
    "trace_page",
    "view_page",
    "write_page",
]
