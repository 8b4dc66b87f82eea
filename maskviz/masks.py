"""Attention masks: which keys each query may attend to.

A `Mask` is a rule over positions, not an array, so that a mask over a million
positions costs nothing until it is drawn. ``mask.to_array()`` gives the dense
boolean matrix ``[n_queries, n_keys]`` (True = the query may attend to the key;
rows are queries, columns are keys/values); ``mask.blocks(...)`` summarises it
cell by cell without ever building the full matrix.

Every kind is an interval of allowed keys per query, so kinds compose exactly:
``a & b`` (both allow) and ``a | b`` (either allows).

>>> causal(4).to_array().astype(int)
array([[1, 0, 0, 0],
       [1, 1, 0, 0],
       [1, 1, 1, 0],
       [1, 1, 1, 1]])
>>> (causal(6) & sliding_window(6, 2)).to_array()[5].astype(int)
array([0, 0, 0, 0, 1, 1])

Queries are aligned bottom-right against the keys: with ``queries=1`` the single
row is the last position, as in one step of cached decoding.

>>> cached_step(past_len=5).to_array().astype(int)
array([[1, 1, 1, 1, 1, 1]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from maskviz._text import plural
from maskviz.errors import MaskvizError, as_integer, usage_error

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

# Dense matrices above this many cells are refused: draw them downsampled instead.
MAX_DENSE_CELLS = 64 * 1024 * 1024
MAX_BLOCK_CELLS = 16 * 1024 * 1024  # a downsampled mask's cells (drawings use at most 1024²)
# JSON holds the dense matrix up to this many keys, summary cells above.
DENSE_JSON_KEYS = 1024
# Sizes, windows, chunks and other counts are refused above this.
_MAX_COUNT = 1 << 40
# Rows are processed in chunks so that memory stays O(chunk), not O(n_queries).
_ROW_CHUNK = 1 << 16

# A rule maps absolute query positions [n] to the inclusive interval [lo, hi] of
# allowed key positions for each query; the interval is empty when lo > hi.
Rule = Callable[[IntArray], tuple[IntArray, IntArray]]


@dataclass(frozen=True)
class _Leaf:
    rule: Rule
    why: str  # what a cell this rule forbids is, as a tooltip says it: "another document"


@dataclass(frozen=True)
class _And:
    a: _Node
    b: _Node


@dataclass(frozen=True)
class _Or:
    a: _Node
    b: _Node


_Node = _Leaf | _And | _Or


def _and_parts(node: _Node) -> list[_Node]:
    """The nodes ``node`` ANDs together (a union is one part)."""
    return [*_and_parts(node.a), *_and_parts(node.b)] if isinstance(node, _And) else [node]


def _intervals(node: _Node, pos: IntArray) -> tuple[IntArray, IntArray]:
    """Allowed keys of each query as a union of m intervals: lo, hi [n, m] (may overlap)."""
    if isinstance(node, _Leaf):
        lo, hi = node.rule(pos)
        return lo[:, None], hi[:, None]
    la, ha = _intervals(node.a, pos)
    lb, hb = _intervals(node.b, pos)
    if isinstance(node, _Or):
        return np.concatenate([la, lb], axis=1), np.concatenate([ha, hb], axis=1)
    # (A1 | A2) & (B1 | B2) = every pairwise intersection; intervals intersect to intervals
    n, m = pos.shape[0], la.shape[1] * lb.shape[1]  # not -1: with no queries it is unknown
    lo = np.maximum(la[:, :, None], lb[:, None, :]).reshape(n, m)
    hi = np.minimum(ha[:, :, None], hb[:, None, :]).reshape(n, m)
    return lo, hi


def _merged(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """The same sets as sorted, disjoint, non-adjacent intervals; unused slots are (0, -1)."""
    n, m = lo.shape
    empty = lo > hi
    big = np.iinfo(np.int64).max // 2
    lo = np.where(empty, big, lo)
    order = np.argsort(lo, axis=1, kind="stable")
    lo = np.take_along_axis(lo, order, axis=1)
    hi = np.take_along_axis(np.where(empty, big - 1, hi), order, axis=1)
    out_lo = np.zeros((n, m), np.int64)
    out_hi = np.full((n, m), -1, np.int64)
    rows = np.arange(n)
    slot = np.zeros(n, np.int64)
    cur_lo, cur_hi = lo[:, 0].copy(), hi[:, 0].copy()
    for i in range(1, m):
        valid = lo[:, i] != big
        joins = valid & (lo[:, i] <= cur_hi + 1)
        cur_hi = np.where(joins, np.maximum(cur_hi, hi[:, i]), cur_hi)
        starts = valid & ~joins
        out_lo[rows[starts], slot[starts]] = cur_lo[starts]
        out_hi[rows[starts], slot[starts]] = cur_hi[starts]
        slot += starts
        cur_lo = np.where(starts, lo[:, i], cur_lo)
        cur_hi = np.where(starts, hi[:, i], cur_hi)
    last = cur_lo != big
    out_lo[rows[last], slot[last]] = cur_lo[last]
    out_hi[rows[last], slot[last]] = cur_hi[last]
    return out_lo, out_hi


@dataclass(frozen=True, eq=False)
class MaskSummary:
    """Counts that describe a mask: allowed cells, density, fully masked rows.

    ``fully_masked`` holds 0-based query row indices that may attend to nothing;
    attention there is defined as all-zero weights (never NaN).
    """

    n_queries: int
    n_keys: int
    allowed: int
    fully_masked: IntArray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskSummary) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[int, int, int, bytes]:
        return self.n_queries, self.n_keys, self.allowed, self.fully_masked.tobytes()

    @property
    def cells(self) -> int:
        return self.n_queries * self.n_keys

    @property
    def density(self) -> float:
        return self.allowed / self.cells if self.cells else 0.0

    def allowed_text(self) -> str:
        """How many cells are allowed, as every view of a mask says it.

        >>> causal(6).summary().allowed_text()
        '21 of 36 cells allowed (58.3%)'
        >>> sliding_window(100_000, 3).summary().allowed_text()
        '299,997 of 10,000,000,000 cells allowed (<0.1%)'
        >>> bidirectional(2_000).summary().allowed_text()  # every cell
        '4,000,000 of 4,000,000 cells allowed (100.0%)'
        >>> padding(2_000, 1, queries=1).summary().allowed_text()  # all but one
        '1,999 of 2,000 cells allowed (>99.9%)'
        """
        share = self.density
        # never "0.0%" for cells that are allowed, nor "100.0%" for cells that are not
        shown = (
            "<0.1%" if 0 < share < 0.0005 else ">99.9%" if 0.9995 <= share < 1 else f"{share:.1%}"
        )
        return f"{self.allowed:,} of {plural(self.cells, 'cell')} allowed ({shown})"


@dataclass(frozen=True, eq=False)
class Mask:
    """A boolean attention mask ``[n_queries, n_keys]`` described by a rule.

    Query row ``i`` sits at absolute position ``query_offset + i`` where
    ``query_offset = n_keys - n_queries`` (bottom-right alignment); key column
    ``j`` is position ``j``. ``window``: the sliding window W every allowed key lies
    within, when the mask is a sliding window or one ANDed with others (else None).

    >>> (causal(8) & sliding_window(8, 3)).window, (causal(8) | sliding_window(8, 3)).window
    (3, None)

    Masks are equal when they have the same shape and allow the same cells, however
    they were built or described (compared row by row, never as dense matrices):

    >>> causal(4) == sliding_window(4, 4), causal(4) & padding(4, 1) == padding(4, 1) & causal(4)
    (True, True)
    >>> causal(4) == strict_causal(4), causal(4) == causal(5, queries=4)
    (False, False)
    """

    n_queries: int
    n_keys: int
    description: str
    node: _Node = field(repr=False)
    window: int | None = None

    # NumPy would apply ``array & mask`` to each element; None makes it defer to `__rand__`
    __array_ufunc__: ClassVar[None] = None

    @property
    def query_offset(self) -> int:
        return self.n_keys - self.n_queries

    def heading(self, index_base: int = 1) -> str:
        """What the mask is and its shape, as every view of it is titled.

        >>> causal(6).heading()
        'causal mask, 6 queries x 6 keys (positions from 1)'
        """
        return (
            f"{self.description} mask, {plural(self.n_queries, 'query')} x "
            f"{plural(self.n_keys, 'key')} (positions from {index_base})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_queries, self.n_keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        if self is other:
            return True
        if self.shape != other.shape:
            return False
        for start in self._chunks():
            stop = min(start + _ROW_CHUNK, self.n_queries)
            lo_a, hi_a = self._row_intervals(start, stop)
            lo_b, hi_b = other._row_intervals(start, stop)
            # merged intervals are canonical: the same keys give the same intervals,
            # once both are padded with unused (0, -1) slots to one width
            m = max(lo_a.shape[1], lo_b.shape[1])
            same_lo = np.array_equal(_widened(lo_a, m, 0), _widened(lo_b, m, 0))
            if not (same_lo and np.array_equal(_widened(hi_a, m, -1), _widened(hi_b, m, -1))):
                return False
        return True

    def __hash__(self) -> int:
        return hash(self.shape)  # equal masks may be built by different rules

    def __and__(self, other: Mask) -> Mask:
        if not isinstance(other, Mask):
            raise _not_a_mask(other)
        self._check_same_shape(other)
        windows = [w for w in (self.window, other.window) if w is not None]
        return Mask(
            self.n_queries,
            self.n_keys,
            f"{self.description} & {other.description}",
            _And(self.node, other.node),
            min(windows) if windows else None,
        )

    def __or__(self, other: Mask) -> Mask:
        if not isinstance(other, Mask):
            raise _not_a_mask(other)
        self._check_same_shape(other)
        return Mask(
            self.n_queries,
            self.n_keys,
            f"({self.description} | {other.description})",
            _Or(self.node, other.node),
        )

    def __rand__(self, other: object) -> Mask:
        raise _not_a_mask(other)  # Python asks the right operand only when the left is no Mask

    __ror__ = __rand__

    def _check_same_shape(self, other: Mask) -> None:
        if self.shape != other.shape:
            raise usage_error(f"cannot combine masks of shapes {self.shape} and {other.shape}")

    def _row_intervals(self, start: int, stop: int) -> tuple[IntArray, IntArray]:
        """Merged allowed intervals, clipped to the keys, for rows [start, stop)."""
        pos = np.arange(start, stop, dtype=np.int64) + self.query_offset
        lo, hi = _intervals(self.node, pos)
        lo, hi = np.maximum(lo, 0), np.minimum(hi, self.n_keys - 1)
        return _merged(lo, hi)

    def to_dict(
        self,
        index_base: int = 1,
        labels: Sequence[str] | None = None,
        padded: IntArray | None = None,
    ) -> dict[str, Any]:
        """JSON-ready: kind, shape, counts, fully masked and padded rows (numbered from
        ``index_base``), and the matrix, or above 1024 keys its summary cells.

        >>> causal(2).to_dict()["mask"]
        [[1, 0], [1, 1]]
        """
        if labels is not None and len(labels) != self.n_keys:
            raise usage_error(
                f"labels must name the mask's {self.n_keys} positions, got {len(labels)}"
            )
        s = self.summary()
        data: dict[str, Any] = {
            "kind": self.description,
            "n_queries": self.n_queries,
            "n_keys": self.n_keys,
            "index_base": index_base,
            "allowed": s.allowed,
            "density": s.density,
            "fully_masked_rows": [int(r) + index_base for r in s.fully_masked],
            "padded_rows": [] if padded is None else [int(r) + index_base for r in padded],
            "labels": None if labels is None else list(labels),
        }
        if self.n_keys <= DENSE_JSON_KEYS:
            data["mask"] = self.to_array().astype(int).tolist()
        else:
            k = -(-self.n_keys // 256)
            data["cell_size"] = k
            data["cells"] = self.blocks(k, k).tolist()
            data["cells_legend"] = {"0": "none allowed", "1": "some allowed", "2": "all allowed"}
        return data

    def allows(self, queries: ArrayLike, keys: ArrayLike) -> BoolArray:
        """Whether each query position may attend to each key position: bool [n_q, n_k].

        Positions are absolute and need not be contiguous or sorted: this is how the
        engine asks a layer's rule about the keys a (ring-buffer) KV cache holds.

        >>> (causal(8) & sliding_window(8, 3)).allows(np.array([5]), np.array([5, 2, 3, 4]))
        array([[ True, False,  True,  True]])
        """
        q, k = np.asarray(queries), np.asarray(keys)
        for name, pos, first in (("query", q, self.query_offset), ("key", k, 0)):
            if pos.ndim != 1 or (pos.dtype.kind not in "iu" and pos.size):  # [] is float64
                raise usage_error(f"{name} positions must be a 1-D integer array")
            if pos.size and (pos.min() < first or pos.max() >= self.n_keys):
                raise usage_error(
                    f"{name} positions must lie in {first}..{self.n_keys - 1} for this mask"
                )
        lo, hi = _intervals(self.node, q.astype(np.int64))
        k = k.astype(np.int64)[None, None, :]
        inside = (k >= lo[:, :, None]) & (k <= hi[:, :, None])  # [n_q, m, n_k]
        return np.asarray(inside.any(axis=1), dtype=np.bool_)

    def allowed_keys(self, row: int) -> list[tuple[int, int]]:
        """The keys query ``row`` may attend to, as sorted inclusive intervals (0-based).

        >>> (causal(8) & sliding_window(8, 3)).allowed_keys(5)
        [(3, 5)]
        >>> strict_causal(4).allowed_keys(0)
        []
        """
        if not 0 <= _count("row", row, minimum=0) < self.n_queries:
            raise usage_error(f"row {row} is outside 0..{self.n_queries - 1}")
        lo, hi = self._row_intervals(row, row + 1)
        return [(int(a), int(b)) for a, b in zip(lo[0], hi[0], strict=True) if a <= b]

    def _chunks(self) -> range:
        return range(0, self.n_queries, _ROW_CHUNK)

    def to_array(self) -> BoolArray:
        """The dense mask ``[n_queries, n_keys]``, True where attention is allowed.

        Refused (MaskvizError) above 64 Mi cells; use `blocks` for large masks.
        """
        self._check_dense()
        keys = np.arange(self.n_keys, dtype=np.int64)
        lo, hi = self._row_intervals(0, self.n_queries)
        inside = (keys >= lo[:, :, None]) & (keys <= hi[:, :, None])  # [n_q, m, n_k]
        return np.asarray(inside.any(axis=1), dtype=np.bool_)

    def _check_dense(self) -> None:
        if self.n_queries * self.n_keys > MAX_DENSE_CELLS:
            raise usage_error(
                f"a {self.n_queries} x {self.n_keys} mask is too large to build densely "
                f"(limit {MAX_DENSE_CELLS:,} cells); it can only be drawn downsampled"
            )

    def reasons(self) -> tuple[tuple[str, ...], NDArray[np.uint8]]:
        """Why each cell is masked: the reasons, and each cell's index into them
        ``[n_queries, n_keys]``. A mask ANDs its parts: a cell takes the reason of a
        part that forbids it, padding's first, then the first in the description's
        order. Code 0 ("") is an allowed cell, or a masked one no single part explains
        (a union's cell forbidden by both sides): `to_array` says which cells are
        allowed. Dense, as `to_array`.

        >>> texts, codes = (causal(3) & padding(3, 1)).reasons()
        >>> texts
        ('', 'padding', 'future (key after query)')
        >>> codes
        array([[1, 1, 1],
               [1, 0, 2],
               [1, 0, 0]], dtype=uint8)
        """
        # padding first, then the description's order (a stable sort)
        self._check_dense()
        parts = sorted(_and_parts(self.node), key=lambda p: getattr(p, "why", "") != PADDING)
        texts: list[str] = [""]
        codes = np.zeros(self.shape, np.uint8)
        for part in parts:
            forbids = ~replace(self, node=part).to_array() & (codes == 0)
            if forbids.any() and isinstance(part, _Leaf) and part.why:
                texts += [part.why] if part.why not in texts else []
                codes[forbids] = texts.index(part.why)
        return tuple(texts), codes

    def _repr_html_(self) -> str | None:
        """A notebook shows the mask as an interactive page (square masks up to
        `maskviz.render.html.MAX_POSITIONS` positions; others keep the plain repr)."""
        from maskviz.render.html import MAX_POSITIONS, mask_page, repr_html
        from maskviz.view import mask_view

        if self.n_queries != self.n_keys or self.n_keys > MAX_POSITIONS:
            return None
        return repr_html(lambda: mask_page(mask_view(self), self))

    def summary(self) -> MaskSummary:
        """Allowed cells and fully masked rows, computed without the dense matrix."""
        allowed = 0
        empty_rows: list[IntArray] = []
        for start in self._chunks():
            lo, hi = self._row_intervals(start, min(start + _ROW_CHUNK, self.n_queries))
            per_row = np.maximum(hi - lo + 1, 0).sum(axis=1)
            allowed += int(per_row.sum())
            empty_rows.append(np.flatnonzero(per_row == 0).astype(np.int64) + start)
        fully = np.concatenate(empty_rows) if empty_rows else np.zeros(0, np.int64)
        return MaskSummary(self.n_queries, self.n_keys, allowed, fully)

    def blocks(self, cell_rows: int, cell_cols: int) -> NDArray[np.int8]:
        """Downsample: each cell covers ``cell_rows x cell_cols`` entries of the mask.

        Returns ``[ceil(n_q / cell_rows), ceil(n_k / cell_cols)]`` with 2 where every
        entry of the cell is allowed, 0 where none is, 1 where some are. Time is
        O(n_queries), never O(n_queries * n_keys); memory about 40 bytes per returned
        cell, of which at most `MAX_BLOCK_CELLS` are made.

        >>> causal(4).blocks(2, 2)
        array([[1, 0],
               [2, 1]], dtype=int8)
        """
        cell_rows, cell_cols = _count("cell_rows", cell_rows), _count("cell_cols", cell_cols)
        n_rb = -(-self.n_queries // cell_rows)
        n_cb = -(-self.n_keys // cell_cols)
        if n_rb * n_cb > MAX_BLOCK_CELLS:
            raise usage_error(
                f"{cell_rows} x {cell_cols} cells would downsample a {self.n_queries} x "
                f"{self.n_keys} mask to {n_rb} x {n_cb} cells (limit {MAX_BLOCK_CELLS:,}): "
                "choose larger cells"
            )
        width = n_cb + 1
        full = np.zeros(n_rb * width, np.int64)
        touched = np.zeros(n_rb * width, np.int64)
        for start in self._chunks():
            stop = min(start + _ROW_CHUNK, self.n_queries)
            lo, hi = self._row_intervals(start, stop)
            used = lo <= hi
            row_block = (np.arange(start, stop, dtype=np.int64) // cell_rows)[:, None]
            base = np.broadcast_to(row_block * width, lo.shape)
            # column cells an interval touches at all, and those it covers entirely
            t_lo, t_hi = lo // cell_cols, hi // cell_cols
            f_lo = -(-lo // cell_cols)
            f_hi = np.where(hi == self.n_keys - 1, n_cb - 1, (hi + 1) // cell_cols - 1)
            for counts, a, b, ok in (
                (touched, t_lo, t_hi, used),
                (full, f_lo, f_hi, used & (f_lo <= f_hi)),
            ):
                # +1 where an interval's cells start, -1 after they end: summed along the row
                counts += np.bincount((base + a)[ok], minlength=counts.size)
                counts -= np.bincount((base + b + 1)[ok], minlength=counts.size)
        full_cells = np.cumsum(full.reshape(n_rb, width), axis=1)[:, :n_cb]
        touched_cells = np.cumsum(touched.reshape(n_rb, width), axis=1)[:, :n_cb]
        rows_in_block = np.minimum(
            cell_rows, self.n_queries - np.arange(n_rb, dtype=np.int64) * cell_rows
        )[:, None]
        state = np.ones((n_rb, n_cb), np.int8)
        state[full_cells == rows_in_block] = 2
        state[touched_cells == 0] = 0
        return state


def _widened(a: IntArray, width: int, fill: int) -> IntArray:
    """Interval bounds [n, m] with unused slots appended up to ``width`` columns."""
    out: IntArray = np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)
    return out


def _not_a_mask(other: object) -> MaskvizError:
    return usage_error(
        f"& and | combine two Masks, got a Mask and a value of type {type(other).__name__!r} "
        "(mask.to_array() gives the mask as a NumPy array)"
    )


def _count(name: str, value: int, minimum: int = 1) -> int:
    value = as_integer(value, name)
    if value < minimum:
        raise usage_error(f"{name} must be >= {minimum}, got {value}")
    if value > _MAX_COUNT:  # positions are int64: keep every sum of them exact
        raise usage_error(f"{name} must be at most {_MAX_COUNT:,}, got {value:,}")
    return int(value)


def _mask(n: int, queries: int | None, description: str, rule: Rule, why: str) -> Mask:
    n = _count("N", n)
    q = n if queries is None else _count("queries", queries)
    if q > n:
        raise usage_error(f"queries ({q}) cannot exceed the number of keys ({n})")
    return Mask(q, n, description, _Leaf(rule, why))


FUTURE = "future (key after query)"


def causal(n: int, *, queries: int | None = None) -> Mask:
    """Causal mask, diagonal included: query t attends to keys 0..t (what GPT-2 uses).

    ``n`` is the number of positions (keys); ``queries`` (default ``n``) keeps only
    the last rows, aligned bottom-right as in cached decoding.

    >>> causal(3).to_array().astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    return _mask(n, queries, "causal", lambda p: (np.zeros_like(p), p), FUTURE)


def strict_causal(n: int, *, queries: int | None = None) -> Mask:
    """Strictly causal: query t attends to keys 0..t-1 (the token being generated
    sees only earlier tokens). Row 0 attends to nothing.

    >>> strict_causal(3).to_array().astype(int)
    array([[0, 0, 0],
           [1, 0, 0],
           [1, 1, 0]])
    """
    why = "not before the query (strict causal)"
    return _mask(n, queries, "strict causal", lambda p: (np.zeros_like(p), p - 1), why)


def bidirectional(n: int, *, queries: int | None = None) -> Mask:
    """Every query attends to every key (no mask at all).

    >>> bidirectional(2).to_array().all()
    np.True_
    """

    def every_key(p: IntArray) -> tuple[IntArray, IntArray]:
        return np.zeros_like(p), np.full_like(p, n - 1)

    return _mask(n, queries, "bidirectional", every_key, "")


def sliding_window(n: int, window: int, *, queries: int | None = None) -> Mask:
    """Causal sliding window: query t attends to the ``window`` keys t-window+1..t.

    ``window`` counts keys *including the query itself*: ``window=1`` is the
    diagonal only, ``window >= n`` equals `causal`.

    >>> sliding_window(4, 2).to_array().astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """
    w = _count("window", window)
    why = f"outside the sliding window {w}"
    return replace(
        _mask(n, queries, f"sliding window {w}", lambda p: (p - w + 1, p), why), window=w
    )


def local_window(n: int, window: int, *, queries: int | None = None) -> Mask:
    """Two-sided sliding window, as encoders use it (Longformer, BigBird): query t
    attends to keys t-window+1..t+window-1, the ``window`` keys ending at itself and
    the ``window`` starting at it, so that ``causal & local_window`` is `sliding_window`.
    (transformers' ``sliding_window_bidirectional_overlay(w)`` allows distances up to
    ``w``: ``local_window(n, w + 1)``.)

    >>> local_window(4, 2).to_array().astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 1, 0],
           [0, 1, 1, 1],
           [0, 0, 1, 1]])
    """
    w = _count("window", window)
    why = f"outside the two-sided window {w}"
    return _mask(n, queries, f"two-sided window {w}", lambda p: (p - w + 1, p + w - 1), why)


def prefix_lm(n: int, prefix: int, *, queries: int | None = None) -> Mask:
    """Prefix-LM: the first ``prefix`` positions attend to each other in both
    directions; later positions are causal (they see the whole prefix).

    >>> prefix_lm(4, 2).to_array().astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [1, 1, 1, 0],
           [1, 1, 1, 1]])
    """
    n, p_len = _count("N", n), _count("prefix", prefix, minimum=0)
    if p_len > n:
        raise usage_error(f"prefix ({p_len}) cannot exceed n ({n})")
    return _mask(
        n,
        queries,
        f"prefix-LM {p_len}",
        lambda p: (np.zeros_like(p), np.maximum(p, p_len - 1)),
        FUTURE,
    )


def _segments(n: int, starts: IntArray, queries: int | None, description: str, why: str) -> Mask:
    """Block-diagonal mask: a query attends to every key of its own segment."""
    ends = np.append(starts[1:], n) - 1

    def rule(p: IntArray) -> tuple[IntArray, IntArray]:
        seg = np.searchsorted(starts, p, side="right") - 1
        return starts[seg], ends[seg]

    return _mask(n, queries, description, rule, why)


def documents(
    lengths: Sequence[int] | NDArray[np.integer[Any]], *, queries: int | None = None
) -> Mask:
    """Packed documents: block-diagonal, no attention across documents.

    ``lengths`` are the documents' lengths in order; n = their sum. Within a
    document attention is bidirectional: combine with `causal` for a GPT,
    ``documents([3, 2]) & causal(5)``.

    >>> documents([2, 1]).to_array().astype(int)
    array([[1, 1, 0],
           [1, 1, 0],
           [0, 0, 1]])
    >>> documents([1] * 8).description, documents([1] * 9).description
    ('documents 1,1,1,1,1,1,1,1', '9 documents')
    """
    if isinstance(lengths, str | bytes) or not isinstance(lengths, Sequence | np.ndarray):
        raise usage_error(f"document lengths must be a sequence of integers, got {lengths!r}")
    if len(lengths) == 0:
        raise usage_error("documents need at least one length")
    sizes = [_count("document length", length) for length in lengths]
    starts = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
    label = (
        f"documents {','.join(map(str, sizes))}" if len(sizes) <= 8 else f"{len(sizes)} documents"
    )
    return _segments(sum(sizes), starts, queries, label, "another document")


def chunked(n: int, chunk: int, *, start: int = 0, queries: int | None = None) -> Mask:
    """Chunked attention: positions attend only within their chunk of ``chunk``
    consecutive positions (block-diagonal; combine with `causal` for a GPT).

    Chunks are counted from position ``start``, the first real token: a left-padded
    row of a batch chunks its own tokens exactly as the unpadded sequence would
    (the convention of Hugging Face's ``create_chunked_causal_mask``). The
    positions before ``start`` form one segment of their own.

    >>> chunked(4, 2).to_array().astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 0, 1, 1],
           [0, 0, 1, 1]])
    >>> chunked(5, 2, start=1).to_array().astype(int)
    array([[1, 0, 0, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 0, 0, 1, 1],
           [0, 0, 0, 1, 1]])
    >>> chunked(5, 2, start=5)
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: chunks start at 5, past the last position 4
    """
    c = _count("chunk", chunk)
    n = _count("N", n)
    first = _count("start", start, minimum=0)
    if first >= n:
        raise usage_error(f"chunks start at {first}, past the last position {n - 1}")
    starts = np.arange(first, n, c, dtype=np.int64)
    if first:
        starts = np.concatenate([np.zeros(1, np.int64), starts])
    description = f"chunks of {c}" + (f", offset {first}" if first else "")
    return _segments(n, starts, queries, description, "another chunk")


PadSide = Literal["left", "right"]
PADDING = "padding"


def padding(n: int, pad: int, side: PadSide = "left", *, queries: int | None = None) -> Mask:
    """Padding: ``pad`` positions at the left or right end are padding.

    Padded keys are never attended; padded queries attend to nothing (their rows
    are fully masked and their outputs are ignored). Combine with `causal`.

    >>> padding(4, 1, "left").to_array().astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 1],
           [0, 1, 1, 1],
           [0, 1, 1, 1]])
    """
    n, k = _pad_count(n, pad, side)
    real_lo, real_hi = (k, n - 1) if side == "left" else (0, n - 1 - k)

    def rule(p: IntArray) -> tuple[IntArray, IntArray]:
        real = (p >= real_lo) & (p <= real_hi)
        return np.where(real, real_lo, 1), np.where(real, real_hi, 0)

    return _mask(n, queries, f"{side} padding {k}", rule, PADDING)


def padded_positions(n: int, pad: int, side: PadSide = "left") -> IntArray:
    """The 0-based positions `padding` treats as padding.

    >>> padded_positions(5, 2, "right")
    array([3, 4])
    """
    n, k = _pad_count(n, pad, side)
    return np.arange(k, dtype=np.int64) if side == "left" else np.arange(n - k, n, dtype=np.int64)


def _pad_count(n: int, pad: int, side: str) -> tuple[int, int]:
    n, k = _count("N", n), _count("pad", pad, minimum=0)
    if side not in ("left", "right"):
        raise usage_error(f"padding side must be 'left' or 'right', got {side!r}")
    if k > n:
        raise usage_error(f"pad ({k}) cannot exceed n ({n})")
    return n, k


def cached_step(past_len: int) -> Mask:
    """The one-row mask of a cached decoding step: the new query, at position
    ``past_len``, sees every cached key and itself (``past_len + 1`` keys).

    This is ``causal(past_len + 1, queries=1)``: the row is aligned bottom-right.
    A top-left aligned causal row would see only key 0, a classic bug.

    >>> cached_step(2).to_array().astype(int)
    array([[1, 1, 1]])
    >>> cached_step(0).to_array().astype(int)  # the first token: only itself
    array([[1]])
    """
    return causal(_count("past_len", past_len, minimum=0) + 1, queries=1)


Kind = Literal["causal", "strict", "bidirectional", "prefix-lm"]
KINDS: tuple[Kind, ...] = get_args(Kind)


def build(
    n: int,
    kind: Kind = "causal",
    *,
    window: int | None = None,
    prefix: int | None = None,
    document_lengths: Sequence[int] | None = None,
    chunk: int | None = None,
    pad: int | None = None,
    pad_side: PadSide = "left",
) -> Mask:
    """A base kind restricted by any of window, documents, chunks and padding (ANDed).

    The window keeps keys within W - 1 positions of the query: with the causal kinds
    that is `sliding_window`, the W keys ending at the query; with bidirectional and
    prefix-lm, which see later keys too, `local_window`, on both sides.

    >>> build(6, "strict").description
    'strict causal'
    >>> build(6, window=2, pad=1).description
    'causal & sliding window 2 & left padding 1'
    >>> build(6, "causal", prefix=2)
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: prefix needs kind 'prefix-lm'
    """
    n = _count("N", n)
    pads = None if pad is None else padding(n, pad, pad_side)  # checked before use below
    # with left padding, a prefix and chunks start at the first real token (see `chunked`)
    first = pad if pad and pad_side == "left" and pad < n else 0
    if kind == "prefix-lm":
        if prefix is None:
            raise usage_error("kind 'prefix-lm' needs a prefix length")
        # (a prefix longer than the real tokens covers them all)
        mask = prefix_lm(n, prefix)  # checks the prefix
        if first:
            mask = replace(prefix_lm(n, min(prefix + first, n)), description=mask.description)
    elif prefix is not None:
        raise usage_error("prefix needs kind 'prefix-lm'")
    elif kind == "causal":
        mask = causal(n)
    elif kind == "strict":
        mask = strict_causal(n)
    elif kind == "bidirectional":
        mask = bidirectional(n)
    else:
        raise usage_error(f"unknown mask kind {kind!r}; choose from {', '.join(KINDS)}")
    if window is not None:
        two_sided = kind in ("bidirectional", "prefix-lm")
        mask = mask & (local_window if two_sided else sliding_window)(n, window)
    if document_lengths is not None:
        docs = documents(document_lengths)
        if docs.n_keys != n:
            raise usage_error(f"document lengths sum to {docs.n_keys}, not n = {n}")
        mask = mask & docs
    if chunk is not None:
        mask = mask & chunked(n, chunk, start=first)
    if pads is not None:
        mask = mask & pads
    return mask
