"""The terminal grid tells the truth at every width: every key is drawn (full, compact or
pooled), a row that may attend never looks fully masked, and no line is too wide."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

import maskviz
from maskviz._text import cell_width
from maskviz.compare import compare
from maskviz.render.grid import ROW_LIMIT, AttentionGrid, render_view
from maskviz.render.terminal import RAMP
from maskviz.similarity import similarity
from maskviz.view import (
    ALLOWED,
    EVICTED,
    NOT_YET,
    AttentionView,
    comparison_view,
    similarity_view,
    trace_view,
)
from tests.conftest import run_cli

WIDTHS = [40, 60, 80, 100, 120, 200]
FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")


@pytest.fixture(scope="module")
def views() -> dict[str, AttentionView]:
    model = maskviz.load_model()
    ids = model.tokenizer.encode("To be, or not to be")
    trace = model.trace(ids, steps=16)
    result = compare(model, "training-vs-cached", model.tokenizer.encode("To be, or not"), 30)
    labels = [model.tokenizer.token_label(int(i)) for i in result.token_ids]
    pair = similarity(model, "The king is dead", "Long live the king")
    pair_labels = [
        [model.tokenizer.token_label(int(i)) for i in o.token_ids]
        for o in (pair.forward, pair.backward)
    ]
    return {
        "trace": trace_view(trace, layer=1),
        "heads": trace_view(trace, layer=1, heads=[0, 1, 2, 3]),
        "compare": comparison_view(result, labels),
        "similarity": similarity_view(pair, pair_labels),
        "long": trace_view(model.trace(ids, steps=120), layer=0),
    }


def render(view: AttentionView, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(AttentionGrid(view, plain=True))
    return console.export_text().splitlines()


def grid_rows(view: AttentionView, width: int) -> list[tuple[int, str]]:
    """(first row index, cells) of every grid line, panel by panel as drawn."""
    grid = AttentionGrid(view, plain=True)
    lay = grid.layout(width)
    n = max(p.n for p in view.panels)
    pos_w, lab_w = grid._label_width(lay.row_block)
    head = pos_w + 1 + (lab_w + 1 if lab_w else 0)
    cols = math.ceil(n / lay.key_block)
    out = []
    for line in render(view, width):
        start = line[:pos_w].strip().split("–")[0]
        if start.isdigit() and len(line) > head and line[pos_w] == " ":
            # trailing blank cells (keys not generated yet) are trimmed from the line
            line = line.ljust(head + lay.cell * cols)
            out.append((int(start) - 1, line[head : head + lay.cell * cols : lay.cell]))
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["trace", "heads", "compare", "similarity", "long"])
def test_no_line_is_wider_than_the_console(
    views: dict[str, AttentionView], name: str, width: int
) -> None:
    view = views[name]
    for line in render(view, width):
        assert cell_len(line) <= width, (name, width, line)


def test_the_decoding_rule_spans_the_grid_not_a_wide_terminal(
    views: dict[str, AttentionView],
) -> None:
    lines = render(views["trace"], 300)
    rule = next(line for line in lines if line.startswith("── "))
    grid = max(cell_len(line) for line in lines if line[:2].strip().isdigit())
    assert rule.endswith("───") and cell_len(rule) <= max(grid, cell_len(rule.rstrip("─ ")) + 4)
    assert cell_len(rule) < 150


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["trace", "compare", "similarity", "long"])
def test_every_key_is_drawn_and_no_attending_row_looks_masked(
    views: dict[str, AttentionView], name: str, width: int
) -> None:
    view = views[name]
    lay = AttentionGrid(view, plain=True).layout(width)
    n = view.panels[0].n
    states = view.panels[0].states
    rows = grid_rows(view, width)
    assert rows, "no grid rows found"
    ends = [first for first, _ in rows[1:]] + [n]  # a block ends where decoding starts
    for (first, cells), end in zip(rows, ends, strict=True):
        # every key (or block of keys) has its own cell
        assert len(cells) == math.ceil(n / lay.key_block)
        block = states[first : first + lay.row_block]
        may_attend = bool((block == ALLOWED).any())
        assert any(c in RAMP for c in cells) == may_attend, (name, width, first, cells)
        if len(view.panels) > 1:
            continue  # the lines of stacked panels interleave: their rows are not one block
        # blank only where no key of the block had been generated when its queries ran
        for c, cell in enumerate(cells):
            keys = states[first:end, c * lay.key_block : (c + 1) * lay.key_block]
            assert (cell == " ") == bool((keys == NOT_YET).all()), (name, width, first, c)


def test_the_densest_faithful_layout_is_chosen(views: dict[str, AttentionView]) -> None:
    view = views["trace"]  # 35 keys
    assert AttentionGrid(view).layout(200).cell == 2
    compact = AttentionGrid(view).layout(50)
    assert (compact.cell, compact.key_block) == (1, 1)
    pooled = AttentionGrid(view).layout(30)
    assert pooled.key_block == 2


def test_long_sequences_pool_rows_and_say_so(views: dict[str, AttentionView]) -> None:
    view = views["long"]
    assert view.panels[0].n > ROW_LIMIT
    lines = render(view, 80)
    assert any("rows pooled" in line for line in lines)
    assert len(grid_rows(view, 80)) <= ROW_LIMIT


def test_narrow_comparisons_stack_instead_of_pooling(views: dict[str, AttentionView]) -> None:
    view = views["compare"]
    assert not AttentionGrid(view).layout(200).stacked
    narrow = AttentionGrid(view).layout(60)
    assert narrow.stacked and narrow.key_block == 1


def test_pooled_blocks_are_masked_only_when_every_key_is(views: dict[str, AttentionView]) -> None:
    view = views["trace"]
    # at 24 columns the 35 keys pool several per cell: row 1 sees key 1 only, yet its
    # first block must be drawn allowed; the prompt's other keys are masked, and the
    # blocks of keys generated after the prefill are blank
    first, cells = grid_rows(view, 24)[0]
    key_block = AttentionGrid(view).layout(24).key_block
    prompt_cells = -(-view.steps_from // key_block)
    assert first == 0 and cells[0] in RAMP
    assert set(cells[1:prompt_cells]) == {"○"} and set(cells[prompt_cells:]) == {" "}


def test_multi_character_tokens_are_never_sliced_into_the_key_header() -> None:
    model = maskviz.load_model(FIXTURE)
    view = trace_view(model.trace(model.tokenizer.encode("The cat sat on the mat."), steps=2))
    header = render(view, 120)[:5]
    # "␣cat" is written downwards (␣, c, a, t), never as a lone "␣" passing for a space token
    assert any("␣" in line for line in header)
    assert sum(1 for line in header if "c" in line or "a" in line) >= 2


def test_sliding_layers_draw_evicted_keys_with_their_own_glyph() -> None:
    cfg = maskviz.LlamaConfig(2, 2, 1, 8, 16, 32, 64, 300, windows=(4, None))
    model = maskviz.random_model(cfg, seed=0)
    trace = model.trace([1, 2, 3], steps=8)
    view = trace_view(trace, layer=0)
    states = view.panels[0].states
    assert (states == EVICTED).any() and not (
        trace_view(trace, layer=1).panels[0].states == EVICTED
    ).any()
    console = Console(width=80, file=io.StringIO(), color_system=None, record=True)
    console.print(render_view(view, plain=True))
    out = console.export_text()
    assert "◌" in out and "evicted from the rolling cache" in out
    training = trace_view(model.trace([1, 2, 3], steps=8, mode="training"), layer=0)
    assert not (training.panels[0].states == EVICTED).any()  # one masked pass evicts nothing


@pytest.mark.parametrize("width", [40, 80, 120])
@pytest.mark.parametrize(
    "args",
    [
        ["trace", "To be, or not to be", "--steps", "16"],
        ["trace", "To be, or not to be", "--steps", "16", "--heads", "all"],
        ["compare", "training-vs-cached"],
        ["similarity", "The king is dead", "Long live the king"],
    ],
)
def test_commands_fit_the_terminal_and_hide_no_key(args: list[str], width: int) -> None:
    result = run_cli(*args, "--plain", env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    assert "not shown" not in result.stdout
    # a row whose only key is itself: its one allowed cell is shaded
    assert any(line.lstrip().startswith("1 ") and any(c in RAMP for c in line) for line in lines)
    assert not any(
        line.lstrip().startswith("2 ") and set(line.split(" ", 2)[-1].strip()) <= {"○", " "}
        for line in lines
    )


def test_views_are_plain_data_built_without_any_drawing_library() -> None:
    script = """
import sys
import maskviz
from maskviz.compare import compare
from maskviz.view import comparison_view, mask_view, trace_view
m = maskviz.random_model(maskviz.GPTConfig(2, 2, 16, 64, 50), seed=0)
views = [trace_view(m.trace([1, 2, 3], steps=3)), mask_view(maskviz.masks.causal(4))]
r = compare(m, "training-vs-cached", [1, 2, 3], 3)
views.append(comparison_view(r, [str(i) for i in r.token_ids]))
assert all(isinstance(line, str) for v in views for line in (*v.header, *v.footer))
print(sorted(k for k in ("rich", "matplotlib", "typer", "PIL") if k in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("width", [40, 80])
def test_tables_never_cut_a_number_short(width: int) -> None:
    model = maskviz.random_model(maskviz.GPTConfig(2, 2, 16, 64, 50), seed=0)
    result = compare(model, "recompute-vs-cached", [1, 2, 3], 6)
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(
        render_view(comparison_view(result, [str(i) for i in result.token_ids]), plain=True)
    )
    out = " ".join(console.export_text().split())
    for side in (result.a, result.b):
        assert f"{side.macs:,}" in out and f"{side.step_macs[-1]:,}" in out
    assert "greedy next tokens equal: yes, at every step" in out


@pytest.mark.parametrize("steps", ["8", "9", "12"])
def test_key_ruler_numbers_sit_over_their_keys_and_are_never_cut(steps: str) -> None:
    from tests.conftest import run_cli

    out = run_cli("compare", "training-vs-cached", "--steps", steps, "--plain").stdout
    ruler = next(line for line in out.splitlines() if line.rstrip().endswith("key →"))
    numbers = [(m.start(), int(m.group())) for m in re.finditer(r"\d+", ruler)]
    (one, _), (ten, _) = numbers[0], numbers[1]
    cell = (ten - one) // 9
    for start, number in numbers:
        assert start - one == (number - 1) * cell, (number, ruler)  # "5" over key 50 fails


def test_side_by_side_panels_are_titled_over_their_own_columns(
    views: dict[str, AttentionView],
) -> None:
    view = views["heads"]
    lay = AttentionGrid(view, plain=True).layout(200)
    assert not lay.stacked
    lines = render(view, 200)
    titles = next(line for line in lines if "head 0" in line)
    bars = next(line for line in lines if "│" in line)
    # each title starts where its panel's first cell does: right after a divider
    starts = [0] + [m.end() + 1 for m in re.finditer("│", bars)]
    head = AttentionGrid(view)._head_width(lay)
    for h, start in zip(range(4), [head, *starts[1:]], strict=True):
        assert titles.index(f"head {h}") == start, (h, titles, bars)


@pytest.mark.parametrize("width", [20, 25, 31, 40, 60])
def test_a_legend_never_parts_a_glyph_from_its_meaning(width: int) -> None:
    from maskviz.render.terminal import attention_legend, legend

    for key in (attention_legend(True, evicted=True), attention_legend(False), legend()):
        console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
        console.print(key)
        for line in console.export_text().splitlines():
            assert cell_len(line) <= width
            # a glyph is never last on a line, and a line never opens with a bare meaning
            assert not re.search(r"[·░▒▓█○◌●]$", line.rstrip()), (width, line)
            assert not re.match(r"\s*(<|≥|\d+%|masked|may |evicted)", line), (width, line)


@pytest.mark.parametrize("name", ["trace", "heads", "compare", "long"])
def test_grid_lines_end_without_trailing_spaces(views: dict[str, AttentionView], name: str) -> None:
    for width in (60, 120):
        for line in render(views[name], width):
            assert line == line.rstrip(), (name, width, line)


@pytest.mark.parametrize("width", [30, 50, 70, 80])
def test_detail_lines_drop_whole_candidates_never_half_of_one(width: int) -> None:
    out = run_cli("trace", "To be, or not", "--steps", "6", env={"COLUMNS": str(width)}).stdout
    details = [line for line in out.splitlines() if "cached keys" in line]
    assert len(details) == 6
    for line in details:
        assert len(line) <= width
        assert "…" not in line.replace(", …", "")  # only a whole "…" for dropped candidates
        if "; top: " in line:
            candidates = line.split("; top: ")[1].split(", ")
            assert all(re.fullmatch(r"'.+' \d+%|…", c) for c in candidates), line


def test_a_narrow_divider_wraps_its_words_instead_of_cutting_them() -> None:
    out = run_cli("trace", "To be", "--steps", "2", env={"COLUMNS": "40"}).stdout
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("── decoding"))
    said = " ".join(line.strip("─ ") for line in lines[first : first + 2])
    assert said == "decoding: one new query per step, attending to the KV cache (no mask)"
    assert "…" not in lines[first] and all(len(line) <= 40 for line in lines)


def test_a_pooled_cell_is_shaded_by_the_largest_weight_it_covers(
    views: dict[str, AttentionView],
) -> None:
    from maskviz.render.terminal import weight_glyph

    view = views["long"]
    lay = AttentionGrid(view, plain=True).layout(80)
    assert lay.row_block > 1 and lay.key_block > 1
    panel = view.panels[0]
    lines = grid_rows(view, 80)
    ends = [first for first, _ in lines[1:]] + [panel.n]  # a block ends where decoding starts
    for (first, cells), end in zip(lines, ends, strict=True):
        rows = slice(first, end)
        for c, glyph in enumerate(cells):
            keys = slice(c * lay.key_block, (c + 1) * lay.key_block)
            allowed = panel.states[rows, keys] == ALLOWED
            if allowed.any():
                largest = float(panel.weights[rows, keys][allowed].max())
                assert glyph == weight_glyph(largest, plain=True)[0], (first, c)


def test_each_shade_starts_exactly_at_its_legend_bound() -> None:
    from maskviz.render.terminal import weight_glyph

    for below, at, bound in [(" ", "░", 0.05), ("░", "▒", 0.2), ("▒", "▓", 0.4), ("▓", "█", 0.7)]:
        assert weight_glyph(bound, plain=True)[0] == at, bound
        assert weight_glyph(np.nextafter(bound, 0), plain=True)[0] == (below.strip() or "·")


def test_pooled_comparison_lines_keep_the_largest_row_difference() -> None:
    model = maskviz.load_model()
    result = compare(model, "unmasked-vs-cached", model.tokenizer.encode("To be, or not"), 60)
    labels = [model.tokenizer.token_label(int(i)) for i in result.token_ids]
    view = comparison_view(result, labels)
    lines = render(view, 200)
    pooled = [line for line in lines if re.match(r"\s*\d+–\d+ ", line)]
    assert pooled, "the rows were not pooled"
    for line in pooled:
        first, last = (int(x) - 1 for x in line.split()[0].split("–"))
        largest = result.row_diff[first : last + 1].max()
        assert line.rstrip().endswith(f"{largest:.1e} ✗"), line


def _labelled(text: str, labels: dict[int, str]) -> AttentionView:
    """A view of the shipped model's prefill of ``text``, its tokens labelled as given:
    the labels another tokenizer's vocabulary would have."""
    from dataclasses import replace

    model = maskviz.load_model()
    trace = model.trace(model.tokenizer.encode(text), steps=0)
    ids, texts = np.array(list(labels)), np.array(list(labels.values()))
    return trace_view(replace(trace, label_ids=ids, label_texts=texts))


def test_a_wide_or_combining_character_never_shifts_a_column_or_passes_for_a_token() -> None:
    # a CJK character (2 columns) and a lone combining accent (0 columns)
    lines = render(_labelled("ab?", {97: "中", 98: "\u0301"}), 80)
    header = next(line for line in lines if "中" in line)
    row = next(line for line in lines if line.startswith("3 "))
    assert cell_width(header[: header.index("?")]) == cell_width(row[: row.rindex("▒")])
    assert "\\" in header  # the accent's escape, written downwards: "\", "u", ...
    assert any(line.startswith("2 \\u0301 ") for line in lines)  # and as its row label


def test_a_column_too_narrow_for_its_character_shows_a_stand_in() -> None:
    from maskviz.render.grid import WIDE_STAND_IN

    view = _labelled("a" * 60, {97: "中"})
    assert AttentionGrid(view, plain=True).layout(70).cell == 1  # 中 would shift the rest
    header = next(line for line in render(view, 70) if WIDE_STAND_IN in line)
    assert header.split() == [WIDE_STAND_IN * 60] and "中" not in header
