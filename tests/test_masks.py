"""Every mask kind against hand-written matrices, composition, alignment, downsampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maskviz import masks
from maskviz.errors import MaskvizError


def grid(rows: str) -> np.ndarray:
    """'10 11' -> [[1,0],[1,1]] as bool."""
    return np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (masks.causal(4), "1000 1100 1110 1111"),
        (masks.strict_causal(4), "0000 1000 1100 1110"),
        (masks.bidirectional(3), "111 111 111"),
        (masks.sliding_window(5, 2), "10000 11000 01100 00110 00011"),
        (masks.sliding_window(3, 1), "100 010 001"),
        (masks.prefix_lm(5, 3), "11100 11100 11100 11110 11111"),
        (masks.prefix_lm(3, 0), "100 110 111"),
        (masks.documents([3, 2]), "11100 11100 11100 00011 00011"),
        (masks.documents([2, 1]) & masks.causal(3), "100 110 001"),
        (masks.chunked(5, 2), "11000 11000 00110 00110 00001"),
        (masks.padding(4, 2, "left"), "0000 0000 0011 0011"),
        (masks.padding(4, 1, "right"), "1110 1110 1110 0000"),
        (masks.padding(4, 1, "left") & masks.causal(4), "0000 0100 0110 0111"),
    ],
    ids=lambda v: v.description if isinstance(v, masks.Mask) else "",
)
def test_each_kind_matches_hand_written_matrix(mask: masks.Mask, expected: str) -> None:
    np.testing.assert_array_equal(mask.to_array(), grid(expected))


def test_window_at_least_n_equals_causal() -> None:
    np.testing.assert_array_equal(masks.sliding_window(6, 6).to_array(), masks.causal(6).to_array())
    np.testing.assert_array_equal(
        masks.sliding_window(6, 99).to_array(), masks.causal(6).to_array()
    )


@given(n=st.integers(1, 24), w=st.integers(1, 26), kind=st.sampled_from(["causal", "strict",
       "bidirectional", "prefix-lm"]), prefix=st.integers(0, 24))  # fmt: skip
def test_a_window_keeps_keys_within_w_minus_1_of_the_query_on_the_sides_its_kind_sees(
    n: int, w: int, kind: str, prefix: int
) -> None:
    q, k = np.indices((n, n))
    near = np.abs(q - k) < w  # the W keys ending at the query and the W starting at it
    prefix = min(prefix, n)
    seen = {
        "causal": k <= q,
        "strict": k < q,
        "bidirectional": np.ones((n, n), bool),
        "prefix-lm": (k <= q) | ((q < prefix) & (k < prefix)),
    }[kind]
    built = masks.build(n, kind, window=w, prefix=prefix if kind == "prefix-lm" else None)  # type: ignore[arg-type]
    np.testing.assert_array_equal(built.to_array(), seen & near)
    # transformers' sliding_window_bidirectional_overlay(w): |q - k| <= w, one more here
    np.testing.assert_array_equal(masks.local_window(n, w + 1).to_array(), np.abs(q - k) <= w)
    assert masks.causal(n) & masks.local_window(n, w) == masks.sliding_window(n, w)


def test_and_or_compose_elementwise() -> None:
    a, b = masks.causal(6), masks.chunked(6, 4)
    np.testing.assert_array_equal((a & b).to_array(), a.to_array() & b.to_array())
    np.testing.assert_array_equal((a | b).to_array(), a.to_array() | b.to_array())
    c = masks.strict_causal(6) | masks.sliding_window(6, 1)
    np.testing.assert_array_equal(c.to_array(), a.to_array())


def test_composing_different_shapes_is_an_error() -> None:
    with pytest.raises(MaskvizError, match="cannot combine"):
        _ = masks.causal(3) & masks.causal(4)


def test_cached_step_row_is_aligned_bottom_right() -> None:
    # the classic bug: a top-left aligned causal row for one query sees only key 0
    row = masks.cached_step(past_len=5).to_array()
    assert row.shape == (1, 6)
    assert row.all()
    assert masks.causal(6, queries=2).to_array().tolist() == [[1, 1, 1, 1, 1, 0], [1] * 6]


@given(n=st.integers(1, 40), past=st.integers(0, 39))
def test_every_cached_step_row_equals_the_causal_row(n: int, past: int) -> None:
    past = past % n
    np.testing.assert_array_equal(
        masks.causal(past + 1, queries=1).to_array()[0],
        masks.causal(n).to_array()[past, : past + 1],
    )


def test_strict_first_row_is_reported_fully_masked() -> None:
    summary = masks.strict_causal(6).summary()
    assert summary.fully_masked.tolist() == [0]
    assert summary.allowed == 15


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: masks.causal(0), "N must be >= 1"),
        (lambda: masks.causal(3, queries=4), "cannot exceed"),
        (lambda: masks.sliding_window(4, 0), "window must be >= 1"),
        (lambda: masks.prefix_lm(3, 4), "prefix"),
        (lambda: masks.documents([]), "at least one"),
        (lambda: masks.documents([2, 0]), "document length must be >= 1"),
        (lambda: masks.chunked(4, 0), "chunk"),
        (lambda: masks.padding(4, 5), "pad"),
        (lambda: masks.padding(4, 1, "middle"), "left"),  # type: ignore[arg-type]
        (lambda: masks.causal(2.5), "integer"),  # type: ignore[arg-type]
        (lambda: masks.build(5, document_lengths=[2, 2]), "sum to 4"),
        (lambda: masks.build(5, "prefix-lm"), "needs a prefix"),
        (lambda: masks.build(5, "diagonal"), "unknown mask kind"),  # type: ignore[arg-type]
        # checked before use: none of these reaches a raw TypeError or a wrong name
        (lambda: masks.prefix_lm("5", 2), "N: '5' is not an integer"),  # type: ignore[arg-type]
        (lambda: masks.padding("5", 1), "N: '5' is not an integer"),  # type: ignore[arg-type]
        (lambda: masks.build(5, chunk=2, pad=-1), "pad must be >= 0"),
        (lambda: masks.build(5, chunk=2, pad="1"), "pad: '1' is not an integer"),  # type: ignore[arg-type]
        (lambda: masks.build(5, document_lengths=["a"]), "document length: 'a' is not an integer"),  # type: ignore[list-item]
        (lambda: masks.documents(5), "sequence of integers"),  # type: ignore[arg-type]
        (lambda: masks.causal(3).blocks(1.5, 1), "cell_rows: 1.5 is not an integer"),  # type: ignore[arg-type]
        (lambda: masks.causal(3).allowed_keys(1.5), "row: 1.5 is not an integer"),  # type: ignore[arg-type]
        (lambda: masks.padded_positions(5, 7, "right"), "cannot exceed"),
        (lambda: masks.padded_positions(5, 1, "middle"), "left"),  # type: ignore[arg-type]
        (lambda: masks.causal(4).allows(np.array([10]), np.array([3])), "query positions"),
        (lambda: masks.sliding_window(4, 2).allows(np.array([1]), np.array([-1])), "key positions"),
    ],
)
def test_invalid_parameters_raise_usage_errors(call: object, message: str) -> None:
    with pytest.raises(MaskvizError, match=message) as info:
        call()  # type: ignore[operator]
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "combine",
    [
        lambda m: m & np.ones((3, 3), bool),
        lambda m: np.ones((3, 3), bool) & m,  # NumPy must not apply & to each element
        lambda m: m | np.ones((3, 3), bool),
        lambda m: np.ones((3, 3), bool) | m,
        lambda m: m & 5,
        lambda m: 5 | m,
    ],
)
def test_a_mask_combined_with_a_non_mask_is_refused_naming_the_type(combine: object) -> None:
    with pytest.raises(
        MaskvizError, match=r"combine two Masks, got a Mask and a value of type '(ndarray|int)'"
    ) as info:
        combine(masks.causal(3))  # type: ignore[operator]
    assert info.value.exit_code == 2


def _reference_blocks(dense: np.ndarray, k: int) -> np.ndarray:
    n_r, n_c = -(-dense.shape[0] // k), -(-dense.shape[1] // k)
    out = np.zeros((n_r, n_c), np.int8)
    for i in range(n_r):
        for j in range(n_c):
            cell = dense[i * k : (i + 1) * k, j * k : (j + 1) * k]
            out[i, j] = 2 if cell.all() else 1 if cell.any() else 0
    return out


mask_kinds = st.sampled_from(["causal", "strict", "bidirectional", "prefix-lm"])


@st.composite
def random_masks(draw: st.DrawFn, n: int | None = None) -> masks.Mask:
    n = draw(st.integers(1, 30)) if n is None else n
    kind = draw(mask_kinds)
    mask = masks.build(
        n, kind,
        prefix=draw(st.integers(0, n)) if kind == "prefix-lm" else None,
        window=draw(st.none() | st.integers(1, n + 2)),
        chunk=draw(st.none() | st.integers(1, n + 2)),
        pad=draw(st.none() | st.integers(0, n)),
        pad_side=draw(st.sampled_from(["left", "right"])),
    )  # fmt: skip
    if draw(st.booleans()):
        mask = mask | masks.sliding_window(n, draw(st.integers(1, n)))
    return mask


@given(mask=random_masks(), k=st.integers(1, 12))
def test_blocks_match_the_dense_mask_cell_by_cell(mask: masks.Mask, k: int) -> None:
    np.testing.assert_array_equal(mask.blocks(k, k), _reference_blocks(mask.to_array(), k))


@given(mask=random_masks())
def test_summary_counts_match_the_dense_mask(mask: masks.Mask) -> None:
    dense = mask.to_array()
    summary = mask.summary()
    assert summary.allowed == dense.sum()
    assert summary.fully_masked.tolist() == np.flatnonzero(~dense.any(axis=1)).tolist()


def test_huge_masks_are_summarised_without_a_dense_matrix() -> None:
    mask = masks.causal(1_000_000) & masks.sliding_window(1_000_000, 4096)
    states = mask.blocks(20_000, 20_000)
    assert states.shape == (50, 50)
    assert (np.diag(states) == 1).all()
    assert states[0, 1] == 0 and states[1, 0] == 1
    assert mask.summary().allowed == 4096 * (1_000_000 - 4095) + 4095 * 4096 // 2
    # what would need the dense matrix, or as many cells, is refused before any is made
    for build in (mask.to_array, mask.reasons):
        with pytest.raises(MaskvizError, match="too large to build densely"):
            build()
    for rows, cols in ((1, 1), (1000, 1), (100, 100)):
        with pytest.raises(MaskvizError, match="limit 16,777,216\\): choose larger cells"):
            mask.blocks(rows, cols)


def test_chunks_start_at_the_first_real_token_with_left_padding() -> None:
    # HF's create_chunked_causal_mask convention: the padded row chunks its real tokens
    # exactly as the unpadded sequence would (real tokens 2,3 | 4,5, 1-based)
    expected = ["00000", "01000", "01100", "00010", "00011"]
    grid = masks.build(5, chunk=2, pad=1).to_array().astype(int)
    assert ["".join(map(str, row)) for row in grid] == expected
    unpadded = masks.build(4, chunk=2).to_array()
    assert np.array_equal(grid[1:, 1:], unpadded)
    right = masks.build(5, chunk=2, pad=1, pad_side="right").to_array().astype(int)
    assert ["".join(map(str, row)) for row in right] == [
        "10000",
        "11000",
        "00100",
        "00110",
        "00000",
    ]


def test_allowed_keys_are_the_rows_intervals() -> None:
    mask = masks.build(8, window=3) | masks.documents([2, 6])
    dense = mask.to_array()
    for row in range(8):
        keys = np.zeros(8, bool)
        for lo, hi in mask.allowed_keys(row):
            keys[lo : hi + 1] = True
        assert np.array_equal(keys, dense[row])


def test_allows_takes_empty_position_lists() -> None:
    assert masks.causal(4).allows([], [1, 2]).shape == (0, 2)  # type: ignore[arg-type]
    assert masks.causal(4).allows([3], []).shape == (1, 0)  # type: ignore[arg-type]


def test_a_mask_knows_the_sliding_window_its_allowed_keys_lie_within() -> None:
    assert masks.sliding_window(8, 3).window == 3
    assert (masks.causal(8) & masks.sliding_window(8, 3) & masks.padding(8, 2)).window == 3
    assert (masks.sliding_window(8, 5) & masks.sliding_window(8, 3)).window == 3
    assert (masks.causal(8) | masks.sliding_window(8, 3)).window is None
    assert masks.causal(8).window is None


def test_a_prefix_with_left_padding_is_the_first_real_tokens() -> None:
    grid = masks.build(6, "prefix-lm", prefix=3, pad=2).to_array().astype(int)
    assert grid.tolist() == [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1],
    ]
    assert masks.build(6, "prefix-lm", prefix=3, pad=2).description.startswith("prefix-LM 3")
    longer = masks.build(6, "prefix-lm", prefix=5, pad=2).to_array()  # covers every real token
    assert longer[2:, 2:].all() and not longer[:, :2].any()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # a prefix after left padding covers the first real tokens, not positions 0..1
        (masks.build(6, "prefix-lm", prefix=2, pad=2), masks.prefix_lm(6, 2) & masks.padding(6, 2)),
        (masks.documents([1] * 8 + [2]), masks.documents([2] + [1] * 8)),
    ],
)
def test_masks_allowing_different_cells_are_unequal(a: masks.Mask, b: masks.Mask) -> None:
    assert a != b and b != a


def test_masks_allowing_the_same_cells_are_equal_however_built() -> None:
    a = masks.causal(6) & masks.padding(6, 2) & masks.sliding_window(6, 3)
    b = masks.sliding_window(6, 3) & masks.padding(6, 2) & masks.causal(6)
    assert a == b and hash(a) == hash(b)
    assert (
        masks.causal(6)
        == masks.sliding_window(6, 6)
        == masks.strict_causal(6) | masks.sliding_window(6, 1)
    )
    assert masks.causal(6) in {masks.sliding_window(6, 9)}  # hash agrees with ==


def test_equality_of_huge_masks_needs_no_dense_matrix() -> None:
    n = 1_000_000  # a dense comparison would need 10^12 cells
    assert masks.causal(n) & masks.sliding_window(n, 4096) == masks.sliding_window(n, 4096)
    assert masks.causal(n) & masks.sliding_window(n, 4096) != masks.sliding_window(n, 4095)


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[masks.Mask, masks.Mask]:
    n = draw(st.integers(1, 12))  # small: equal pairs are then found often
    return draw(random_masks(n)), draw(random_masks(n))


@given(pair=mask_pairs())
def test_masks_are_equal_exactly_when_their_dense_arrays_are(
    pair: tuple[masks.Mask, masks.Mask],
) -> None:
    a, b = pair
    assert (a == b) == np.array_equal(a.to_array(), b.to_array())
    if a == b:
        assert hash(a) == hash(b)


def test_no_queries_give_an_empty_answer_for_combined_masks_too() -> None:
    for mask in (masks.causal(4), masks.causal(4) & masks.sliding_window(4, 2)):
        assert mask.allows([], [1, 2]).shape == (0, 2)


def test_summaries_compare_and_hash_by_their_counts() -> None:
    a, b = masks.causal(5).summary(), masks.causal(5).summary()
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != masks.strict_causal(5).summary()


def test_reasons_name_why_each_cell_is_masked_padding_first() -> None:
    def reason_at(mask: masks.Mask, row: int, key: int) -> str:
        texts, codes = mask.reasons()
        return texts[codes[row, key]]

    padded = masks.build(10, pad=3)
    assert reason_at(padded, 1, 2) == "padding"  # a padded row's key after it: padding wins
    assert reason_at(padded, 5, 1) == "padding"
    assert reason_at(padded, 5, 7) == "future (key after query)"
    docs = masks.build(9, document_lengths=[3, 2, 4])
    assert reason_at(docs, 4, 0) == "another document"
    assert reason_at(docs, 1, 5) == "future (key after query)"
    chunks = masks.build(10, chunk=4, pad=2)  # chunks counted from the first real token
    assert reason_at(chunks, 6, 5) == "another chunk" and reason_at(chunks, 5, 2) == ""
    assert reason_at(chunks, 6, 1) == "padding"
    assert reason_at(masks.build(10, "strict"), 3, 3) == "not before the query (strict causal)"
    assert reason_at(masks.build(10, window=3), 7, 2) == "outside the sliding window 3"
    prefix = masks.build(10, "prefix-lm", prefix=3, pad=2)  # the prefix moves past the padding
    assert reason_at(prefix, 2, 6) == "future (key after query)"
    many = masks.build(12, document_lengths=[1] * 12)  # described as "12 documents"
    assert reason_at(many, 5, 2) == "another document"
    # every masked cell of these has a reason; allowed cells none
    for mask in (padded, docs, chunks, prefix, many):
        codes = mask.reasons()[1]
        assert ((codes > 0) == ~mask.to_array()).all(), mask.description
    # a union: neither side alone forbids a cell, so no reason is given
    texts, codes = (masks.causal(6) | masks.sliding_window(6, 2)).reasons()
    assert texts == ("",) and not codes.any()


def test_json_labels_must_name_every_position() -> None:
    assert masks.causal(3).to_dict(labels=["a", "b", "c"])["labels"] == ["a", "b", "c"]
    with pytest.raises(MaskvizError, match="labels must name the mask's 3 positions, got 2"):
        masks.causal(3).to_dict(labels=["a", "b"])
