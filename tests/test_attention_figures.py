"""Attention heatmaps, comparisons and the decoding GIF, drawn from the views of real traces."""

from __future__ import annotations

import gc
import io
import itertools
import json
import math
import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console

import maskviz
from maskviz._text import display_label
from maskviz.compare import compare
from maskviz.errors import MaskvizError
from maskviz.render import attention_figures as af
from maskviz.render import figures, style
from maskviz.render.figures import BLOCKED_STYLE, COLOR_HIGHLIGHT, save_figure
from maskviz.render.grid import AttentionGrid
from maskviz.render.save import save_view
from maskviz.render.terminal import GLYPH_BLOCKED, GLYPH_EVICTED, RAMP
from maskviz.similarity import similarity
from maskviz.trace import Trace
from maskviz.view import (
    ALLOWED,
    EVICTED,
    MASKED,
    NOT_YET,
    AttentionView,
    Mark,
    Panel,
    comparison_view,
    trace_view,
)
from tests.conftest import run_cli

CONFIG = maskviz.GPTConfig(2, 2, 16, 128, 257)
SLIDING = maskviz.LlamaConfig(2, 2, 1, 8, 16, 32, 64, 300, windows=(4, None))
FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")


@pytest.fixture(scope="module")
def model() -> maskviz.GPT:
    return maskviz.random_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def trace(model: maskviz.GPT) -> Trace:
    return model.trace(list(b"Hello"), steps=6)


@pytest.fixture(scope="module")
def sliding() -> maskviz.GPT:
    return maskviz.random_model(SLIDING, seed=0)


def labels_of(model: maskviz.GPT, ids: Any) -> list[str]:
    return [model.tokenizer.token_label(int(i)) for i in ids]


def causal_panel(labels: list[str], prompt_len: int, title: str = "") -> Panel:
    """A hand-made panel: causal states, uniform weights over the allowed keys."""
    n = len(labels)
    allowed = np.tril(np.ones((n, n), dtype=bool))
    states = np.where(allowed, ALLOWED, MASKED).astype(np.int8)
    marks = (Mark(prompt_len, "prompt", "generated"),) if prompt_len < n else ()
    return Panel(title, allowed / allowed.sum(axis=1, keepdims=True), states, tuple(labels), marks)


def view_of(*panels: Panel, title: str = "") -> AttentionView:
    return AttentionView(title=title, header=(), panels=panels)


def heatmap_axes(fig: Figure) -> list[Any]:
    # Colorbar axes hold no AxesImage, so this counts the heatmap panels only.
    return [ax for ax in fig.axes if ax.images]


def rendered(fig: Figure) -> np.ndarray[Any, Any]:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float) / 255


def pixel(fig: Figure, image: np.ndarray[Any, Any], ax: Any, row: int, col: int) -> Any:
    """RGB at the centre of cell (row, col) of ``ax``; display y counts from the bottom."""
    x, y = ax.transData.transform((col, row))
    return image[image.shape[0] - 1 - round(y), round(x)]


def cell_pixels(image: np.ndarray[Any, Any], ax: Any, r: int, c: int, k: int = 1) -> Any:
    """The RGB pixels [m, 3] of the inner half of drawn cell (r, c) of ``ax``."""
    (x0, y0), (x1, y1) = ax.transData.transform(
        [(c * k - 0.5 + 0.25 * k, r * k - 0.5 + 0.25 * k),
         (c * k - 0.5 + 0.75 * k, r * k - 0.5 + 0.75 * k)]
    )  # fmt: skip
    h = image.shape[0]
    ys = slice(round(h - max(y0, y1)), round(h - min(y0, y1)))
    return image[ys, round(min(x0, x1)) : round(max(x0, x1))].reshape(-1, 3)


def pixel_states(image: np.ndarray[Any, Any], ax: Any, n: int, k: int = 1) -> np.ndarray[Any, Any]:
    """The state each drawn cell of ``ax`` shows, read from its pixels: flat grey is masked,
    white not generated yet, the evicted pink and its magenta hatching (and their blends)
    evicted, anything else a weight. Each cell is judged by the majority of its inner
    pixels (hatch lines cross it)."""
    grey, white = np.array(to_rgb(style.COLOR_MASKED)), np.array(to_rgb(style.COLOR_PENDING))
    pink, magenta = (
        np.array(to_rgb(style.COLOR_EVICTED)),
        np.array(to_rgb(style.COLOR_EVICTED_HATCH)),
    )
    cells = math.ceil(n / k)
    out = np.zeros((cells, cells), np.int8)
    for r in range(cells):
        for c in range(cells):
            block = cell_pixels(image, ax, r, c, k)
            # distance to the pink-magenta segment: blends of fill and hatch stay on it
            t = np.clip((block - pink) @ (magenta - pink) / np.sum((magenta - pink) ** 2), 0, 1)
            off_segment = np.abs(block - (pink + t[:, None] * (magenta - pink))).max(axis=1)
            kinds = np.select(
                [np.abs(block - grey).max(axis=1) < 0.04,
                 np.abs(block - white).max(axis=1) < 0.04,
                 off_segment < 0.06],
                [MASKED, NOT_YET, EVICTED],
                ALLOWED,
            )  # fmt: skip
            out[r, c] = np.bincount(kinds, minlength=4).argmax()
    return out


def terminal_states(view: AttentionView, width: int) -> np.ndarray[Any, Any]:
    """The state of every cell of a one-panel view as the terminal draws it (plain glyphs)."""
    grid = AttentionGrid(view, plain=True)
    lay = grid.layout(width)
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(grid)
    pos_w, lab_w = grid._label_width(lay.row_block)
    head = pos_w + 1 + (lab_w + 1 if lab_w else 0)
    cols = math.ceil(view.panels[0].n / lay.key_block)
    glyph_state = {
        GLYPH_BLOCKED: MASKED,
        GLYPH_EVICTED: EVICTED,
        " ": NOT_YET,
        **{g: ALLOWED for g in RAMP},
    }
    rows = [  # lines end at their last drawn cell: blank cells after it are trimmed
        [
            glyph_state[ch]
            for ch in line.ljust(head + lay.cell * cols)[head : head + lay.cell * cols : lay.cell]
        ]
        for line in console.export_text().splitlines()
        if line[:pos_w].strip().split("–")[0].isdigit() and line[pos_w : pos_w + 1] == " "
    ]
    return np.array(rows, np.int8)


def legend_texts(fig: Figure) -> set[str]:
    return {text.get_text() for legend in fig.legends for text in legend.get_texts()}


def test_one_head_gives_one_heatmap(trace: Trace) -> None:
    fig = af.attention_figure(trace_view(trace, layer=0, head=1))
    (ax,) = heatmap_axes(fig)
    assert ax.get_xlabel() == "key position →"
    assert ax.get_ylabel() == "query position ↓"
    assert "layer 0, head 1" in fig.get_suptitle()
    assert ax.get_title() == ""  # said once, in the figure's title
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["1 H", "2 e"]
    assert any(cax.get_ylabel() == "attention weight" for cax in fig.axes)
    assert {"masked (not allowed)", "prompt | generated"} <= legend_texts(fig)
    assert af.EVICTED_LABEL not in legend_texts(fig)  # full attention evicts nothing
    assert "downsampled" not in fig.get_suptitle()


@pytest.mark.parametrize("n_panels", [2, 3, 4])
def test_small_multiples_give_one_heatmap_per_panel(trace: Trace, n_panels: int) -> None:
    pairs = [(layer, head) for layer in range(2) for head in range(2)][:n_panels]
    panels = [
        replace(trace_view(trace, layer=layer, head=head).panels[0], title=f"L{layer} H{head}")
        for layer, head in pairs
    ]
    fig = af.attention_figure(view_of(*panels, title="heads"))
    axes = heatmap_axes(fig)
    assert [ax.get_title() for ax in axes] == [f"L{a} H{b}" for a, b in pairs]
    # Only panels with nothing below them carry key labels.
    assert sum(bool(ax.get_xlabel()) for ax in axes) == min(n_panels, 2)


def test_all_heads_of_a_layer_are_drawn_one_panel_each_titled_by_head(trace: Trace) -> None:
    fig = af.attention_figure(trace_view(trace, layer=1, heads=range(CONFIG.n_head)))
    assert [ax.get_title() for ax in heatmap_axes(fig)] == ["head 0", "head 1"]


def test_masked_cells_differ_from_zero_weight(trace: Trace) -> None:
    view = trace_view(trace, layer=0)
    panel = view.panels[0]
    n = panel.n
    weights = panel.weights.copy()
    weights[n - 1, 1] = 0.0  # an allowed cell with weight exactly zero
    assert panel.states[n - 1, 1] == ALLOWED
    assert panel.states[0, 1] == MASKED  # the prompt's own future
    fig = af.attention_figure(replace(view, panels=(replace(panel, weights=weights),)))
    (ax,) = heatmap_axes(fig)
    cmap = ax.images[0].get_cmap()
    assert cmap.get_bad()[3] == 0  # masked cells show the axes' dotted grey through
    assert np.allclose(ax.patch.get_facecolor()[:3], to_rgb(style.COLOR_MASKED))

    image = rendered(fig)
    masked, zero = cell_pixels(image, ax, 0, 1), pixel(fig, image, ax, n - 1, 1)
    assert np.allclose(np.median(masked, axis=0), to_rgb(style.COLOR_MASKED), atol=0.02)
    assert np.allclose(zero, cmap(0.0)[:3], atol=0.02)
    assert np.abs(np.median(masked, axis=0) - zero).max() > 0.3


def test_printed_in_grey_masked_cells_stay_apart_from_the_heaviest_weight(trace: Trace) -> None:
    """viridis' light end is as light as the masked grey: the dots tell them apart."""
    view = trace_view(trace, layer=0)
    panel = view.panels[0]
    weights = panel.weights.copy()
    weights[0, 0] = 1.0  # the first query attends only to itself
    fig = af.attention_figure(replace(view, panels=(replace(panel, weights=weights),)))
    (ax,) = heatmap_axes(fig)
    grey = rendered(fig) @ np.array([0.2126, 0.7152, 0.0722])  # luminance, as a grey print
    heaviest = cell_pixels(grey[..., None].repeat(3, axis=2), ax, 0, 0)[:, 0]
    masked = cell_pixels(grey[..., None].repeat(3, axis=2), ax, 0, 1)[:, 0]
    assert np.ptp(heaviest) < 0.01  # a weight is flat
    assert np.ptp(masked) > 0.15  # masked is dotted
    assert af.MASKED_LABEL in legend_texts(fig)


def test_png_opens_with_a_sensible_size(trace: Trace, tmp_path: Path) -> None:
    path = tmp_path / "attention.png"
    save_view(trace_view(trace), path)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert 400 <= png.width <= 3000
        assert 400 <= png.height <= 3000
    assert sorted(tmp_path.iterdir()) == [path]


def test_hostile_labels_are_escaped_and_draw_without_warnings(tmp_path: Path) -> None:
    labels = ["\x1b[31m", "猫", r"$\frac$", "→ $x$"]
    # Warnings are errors in this suite: a missing glyph or a mathtext parse error fails here.
    fig = af.attention_figure(view_of(causal_panel(labels, 2, "猫 head"), title="prompt 🐈"))
    save_figure(fig, tmp_path / "hostile.svg")
    (ax,) = heatmap_axes(fig)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == "1 \\x1b[31m"
    assert "\x1b" not in "".join(ticks)
    assert ticks[2] == r"3 $\frac$"
    assert ticks[3] == "4 → $x$"
    assert "\\u732b" in ax.get_title()  # a glyph the font lacks, escaped


def test_long_sequence_is_downsampled(model: maskviz.GPT) -> None:
    long = model.trace(list(b"Hello"), steps=70)
    n = long.n_tokens
    assert n == 75
    fig = af.attention_figure(trace_view(long))
    assert "downsampled: one cell = 2 x 2 positions" in fig.get_suptitle()
    (ax,) = heatmap_axes(fig)
    shown = ax.images[0].get_array()
    assert shown.shape == (38, 38)
    # A block is masked only when every cell in it is: the diagonal blocks stay visible.
    blocks = np.arange(38)
    assert np.array_equal(np.ma.getmaskarray(shown), blocks[None, :] > blocks[:, None])
    # shaded by its largest weight, as the terminal shades a pooled cell, and says so
    weights = long.head_attention(0, 0)
    for r, c in ((0, 0), (10, 3), (37, 37)):
        block = weights[2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
        assert shown[r, c] == pytest.approx(float(block.max()))
    assert "shaded by the largest weight" in fig.get_suptitle()
    # Numeric position ticks instead of token labels.
    assert all(t.get_text().lstrip("−-").isdigit() for t in ax.get_xticklabels() if t.get_text())


def test_pooling_averages_the_allowed_cells() -> None:
    panel = causal_panel([str(i) for i in range(130)], 130)
    weights = np.where(panel.states == ALLOWED, 0.5, 0.0)
    weights[0:3, 0:3] = np.where(panel.states[0:3, 0:3] == ALLOWED, 0.9, 0.0)
    fig = af.attention_figure(view_of(replace(panel, weights=weights)))
    (ax,) = heatmap_axes(fig)
    shown = ax.images[0].get_array()
    assert shown.shape == (44, 44)  # k = 3: 130 positions -> 44 cells, the last one partial
    assert shown[0, 0] == pytest.approx(0.9)
    assert shown[10, 3] == pytest.approx(0.5)
    assert "downsampled: one cell = 3 x 3 positions" in fig.get_suptitle()
    assert "prompt | generated" not in legend_texts(fig)  # no generated tokens


def diff_title(fig: Figure) -> str:
    titles = [ax.get_title() for ax in heatmap_axes(fig)]
    assert len(titles) == 3
    return titles[2]


def comparison_of(model: maskviz.GPT, pair: str) -> AttentionView:
    result = compare(model, pair, list(b"Hello"), 6)
    return comparison_view(result, labels_of(model, result.token_ids))


def test_comparison_of_cached_and_training_reports_a_tiny_max_and_the_verdict(
    model: maskviz.GPT,
) -> None:
    view = comparison_of(model, "training-vs-cached")
    left, right = view.panels
    fig = af.comparison_figure(view)
    peak = float(np.abs(left.weights.astype(np.float64) - right.weights).max())
    assert peak < 1e-5
    title = diff_title(fig)
    assert f"max |Δ| = {peak:.2e}" in title or (peak == 0 and "max |Δ| = 0" in title)
    assert {"attention weight", "|left − right|"} <= {ax.get_ylabel() for ax in fig.axes}
    assert [ax.get_title() for ax in heatmap_axes(fig)[:2]] == ["training", "cached"]
    (legend,) = fig.legends
    verdict = legend.get_title()
    assert verdict.get_text().replace("\n", " ").startswith("identical up to float rounding")
    assert np.allclose(to_rgb(verdict.get_color()), to_rgb(af.COLOR_GOOD))


def test_comparison_with_an_unmasked_pass_reports_a_large_max(model: maskviz.GPT) -> None:
    view = comparison_of(model, "unmasked-vs-cached")
    unmasked, masked = view.panels
    fig = af.comparison_figure(view)
    peak = float(np.abs(unmasked.weights.astype(np.float64) - masked.weights).max())
    assert peak > 0.05
    # the verdict covers every layer and head; the panel's title names its own scope
    assert f"this head's max |Δ| = {peak:.2e}" in diff_title(fig)
    # The unmasked panel has no grey cells; the masked one has.
    unmasked_ax, masked_ax, _ = heatmap_axes(fig)
    assert not np.ma.getmaskarray(unmasked_ax.images[0].get_array()).any()
    assert np.ma.getmaskarray(masked_ax.images[0].get_array()).any()
    verdict = fig.legends[0].get_title()
    assert verdict.get_text().startswith("DIFFERENT")
    assert np.allclose(to_rgb(verdict.get_color()), to_rgb(af.COLOR_BAD))


def test_identical_panels_report_zero(trace: Trace) -> None:
    panel = trace_view(trace, layer=1).panels[0]
    fig = af.comparison_figure(view_of(panel, panel))
    assert "this head's max |Δ| = 0 (identical)" in diff_title(fig)


def test_gif_shows_the_prefill_then_each_step_and_holds_the_last_frame(
    model: maskviz.GPT, trace: Trace, tmp_path: Path, gif_frames: list[dict[str, Any]]
) -> None:
    path = tmp_path / "decode.gif"
    frames = af.save_decode_gif(path, trace_view(trace))
    p, n = trace.prompt_len, trace.n_tokens
    assert frames == n - p + 1 == 7
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 7
        assert gif.width > 300
        assert gif.height > 300
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [500] * 6 + [2000]
    assert sorted(tmp_path.iterdir()) == [path]
    assert any(t.startswith(f"prefill: {p} prompt positions") for t in gif_frames[0]["texts"])
    # frame k shows the f x f square of rows computed and keys cached, the rest blank,
    # and names only the tokens generated so far
    labels = [
        f"{i + 1} {model.tokenizer.token_label(int(t))}" for i, t in enumerate(trace.token_ids)
    ]
    for filled, frame in enumerate(gif_frames, start=p):
        assert frame["blank_area"] == [n * n - filled * filled], filled
        assert [t for t in labels if t in frame["texts"]] == labels[:filled]


def test_gif_keeps_the_evicted_pink_that_appears_only_in_later_frames(tmp_path: Path) -> None:
    path = tmp_path / "rolling.gif"
    swa = maskviz.load_model("tiny-swa")  # a real model: many colours compete for the palette
    trace = swa.trace(swa.tokenizer.encode("To be, or not to be"), steps=20)
    states = trace_view(trace).panels[0].states  # layer 0: sliding window 32
    assert not (states[: trace.prompt_len] == EVICTED).any() and (states == EVICTED).any()
    af.save_decode_gif(path, trace_view(trace))
    pink = np.array([int(style.COLOR_EVICTED[i : i + 2], 16) for i in (1, 3, 5)])
    with Image.open(path) as gif:
        gif.seek(gif.n_frames - 1)
        rgb = np.asarray(gif.convert("RGB")).reshape(-1, 3).astype(int)
    assert np.abs(rgb - pink).max(axis=1).min() <= 3


def test_every_gif_frame_draws_with_one_palette_so_colours_do_not_flicker(
    model: maskviz.GPT, tmp_path: Path
) -> None:
    path = tmp_path / "decode.gif"
    af.save_decode_gif(path, trace_view(model.trace(list(b"To be, or"), steps=12)))
    colours: set[tuple[int, ...]] = set()
    with Image.open(path) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            rgb = np.asarray(gif.convert("RGB")).reshape(-1, 3)
            colours |= {tuple(c) for c in np.unique(rgb, axis=0).tolist()}
    assert len(colours) <= 256  # one palette: a frame of its own would bring new shades


def test_gif_of_a_prefill_only_trace_has_one_frame(model: maskviz.GPT, tmp_path: Path) -> None:
    path = tmp_path / "prefill.gif"
    assert af.save_decode_gif(path, trace_view(model.trace(list(b"Hello"), steps=0))) == 1
    with Image.open(path) as gif:
        assert gif.n_frames == 1


def test_failed_gif_write_keeps_the_old_file(
    trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "decode.gif"
    path.write_bytes(b"previous animation")
    real_grab = af._gif_frame
    calls = 0

    def grab_then_fail(fig: Figure, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk on fire")
        return real_grab(fig, *args)

    monkeypatch.setattr(af, "_gif_frame", grab_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        af.save_decode_gif(path, trace_view(trace))
    assert calls == 3
    assert path.read_bytes() == b"previous animation"
    assert sorted(tmp_path.iterdir()) == [path]


def test_ctrl_c_in_the_gif_encoder_leaves_no_open_file_and_the_old_gif(
    trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "decode.gif"
    path.write_bytes(b"previous animation")

    def interrupted(image: Any, fp: Any, filename: Any) -> None:
        fp.write(b"GIF89a")  # part of a file written, then Ctrl-C
        raise KeyboardInterrupt

    Image.init()  # the plugins registered first, so they do not replace the patch
    monkeypatch.setitem(Image.SAVE_ALL, "GIF", interrupted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            af.save_decode_gif(path, trace_view(trace))
        gc.collect()  # an unclosed file warns when it is collected
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert path.read_bytes() == b"previous animation"
    assert sorted(tmp_path.iterdir()) == [path]


def test_inconsistent_panels_are_refused(trace: Trace) -> None:
    panel = trace_view(trace).panels[0]
    with pytest.raises(MaskvizError, match="expected 11 labels, got 3"):
        af.attention_figure(view_of(replace(panel, labels=("a", "b", "c"))))
    with pytest.raises(MaskvizError, match=r"must both be \(11, 11\)"):
        af.attention_figure(view_of(panel, causal_panel(["a", "b"], 1)))
    with pytest.raises(MaskvizError, match="at least one panel"):
        af.attention_figure(view_of())
    with pytest.raises(MaskvizError, match="a comparison has 2 panels"):
        af.comparison_figure(view_of(panel))


def test_no_layers_and_a_frame_rate_that_is_not_positive_are_refused(
    trace: Trace, tmp_path: Path
) -> None:
    with pytest.raises(MaskvizError, match="at least one layer"):
        af.layers_figure(trace, ())
    for fps in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(MaskvizError, match="fps must be a positive number"):
            af.save_decode_gif(tmp_path / "a.gif", trace_view(trace), fps=fps)
    assert list(tmp_path.iterdir()) == []


# -- evicted keys: a sliding layer's rolling cache ------------------------------------


def test_evicted_keys_get_their_own_hatched_colour_and_legend_entry(
    sliding: maskviz.GPT,
) -> None:
    trace = sliding.trace([1, 2, 3], steps=8)
    view = trace_view(trace, layer=0)
    states = view.panels[0].states
    assert (states == EVICTED).any()
    fig = af.attention_figure(view)
    (ax,) = heatmap_axes(fig)
    assert af.EVICTED_LABEL in legend_texts(fig)
    assert af.EVICTED_LABEL == "evicted from the rolling cache"  # the terminal's words
    image = rendered(fig)
    row, key = np.argwhere(states == EVICTED)[0]
    pink = np.array(to_rgb(style.COLOR_EVICTED))
    cell = pixel_states(image, ax, states.shape[0])
    assert cell[row, key] == EVICTED
    # the evicted hatching is not the masked dots, and its colour no weight's colour
    hatch, dots = to_rgb(style.COLOR_EVICTED_HATCH), to_rgb(style.COLOR_MASKED_DOTS)
    assert np.abs(np.subtract(hatch, dots)).max() > 0.3
    assert BLOCKED_STYLE["hatch"] != af.EVICTED_HATCH
    viridis = ax.images[0].get_cmap()(np.linspace(0, 1, 256))[:, :3]
    assert np.abs(viridis - pink).max(axis=1).min() > 0.2
    # the full layer of the same trace evicts nothing and says nothing about eviction
    full = af.attention_figure(trace_view(trace, layer=1))
    assert af.EVICTED_LABEL not in legend_texts(full)
    (full_ax,) = heatmap_axes(full)
    assert EVICTED not in pixel_states(rendered(full), full_ax, states.shape[0])


def test_a_training_pass_evicts_nothing(sliding: maskviz.GPT) -> None:
    view = trace_view(sliding.trace([1, 2, 3], steps=8, mode="training"), layer=0)
    fig = af.attention_figure(view)
    (ax,) = heatmap_axes(fig)
    assert af.EVICTED_LABEL not in legend_texts(fig)
    shown = pixel_states(rendered(fig), ax, view.panels[0].n)
    assert (shown == MASKED).sum() > (view.panels[0].n * (view.panels[0].n - 1)) // 2  # window
    assert EVICTED not in shown


@pytest.mark.parametrize(("mode", "layer"), [("cached", 0), ("cached", 1), ("training", 0)])
def test_figure_and_terminal_agree_on_every_cells_state(
    sliding: maskviz.GPT, mode: str, layer: int
) -> None:
    view = trace_view(sliding.trace([1, 2, 3], steps=8, mode=mode), layer=layer)
    (panel,) = view.panels
    fig = af.attention_figure(view)
    (ax,) = heatmap_axes(fig)
    shown = pixel_states(rendered(fig), ax, panel.n)
    np.testing.assert_array_equal(shown, panel.states)
    np.testing.assert_array_equal(shown, terminal_states(view, 120))


def test_pooled_cells_follow_the_terminals_rule(tmp_path: Path) -> None:
    config = maskviz.LlamaConfig(2, 2, 1, 8, 16, 32, 256, 300, windows=(32, None))
    view = trace_view(maskviz.random_model(config, seed=0).trace([1, 2, 3], steps=150), layer=0)
    states = view.panels[0].states
    n, k = states.shape[0], 3
    assert n == 153
    blocks = states.reshape(n // k, k, n // k, k).transpose(0, 2, 1, 3).reshape(n // k, n // k, -1)
    expected = np.select(
        [(blocks == ALLOWED).any(-1), (blocks == EVICTED).any(-1), (blocks == NOT_YET).all(-1)],
        [ALLOWED, EVICTED, NOT_YET],
        MASKED,
    )
    # evicted blocks that hold an allowed key are drawn allowed, not evicted
    assert ((blocks == EVICTED).any(-1) & (expected == ALLOWED)).any()
    fig = af.attention_figure(view)
    assert "one cell = 3 x 3 positions" in fig.get_suptitle()
    (ax,) = heatmap_axes(fig)
    shown = pixel_states(rendered(fig), ax, n, k)
    np.testing.assert_array_equal(shown, expected)
    # the terminal pools 3 keys per column and 3 rows per line at this width: same cells
    assert AttentionGrid(view, plain=True).layout(70).key_block == k
    np.testing.assert_array_equal(terminal_states(view, 70), expected)


def test_gif_of_a_sliding_layer_hatches_evicted_keys_and_counts_them(
    sliding: maskviz.GPT, tmp_path: Path, gif_frames: list[dict[str, Any]]
) -> None:
    view = trace_view(sliding.trace([1, 2, 3], steps=8), layer=0)
    path = tmp_path / "sliding.gif"
    assert af.save_decode_gif(path, view) == 9
    captions = [t for frame in gif_frames for t in frame["texts"] if t.startswith("step ")]
    # step 5 computes row 8: a ring of 3 cached keys + itself, keys 1-4 evicted (as the terminal)
    assert "at position 8 attends to 3 cached keys + itself (4 evicted)" in captions[4]
    assert "evicted" not in captions[0]
    assert af.EVICTED_LABEL in gif_frames[0]["texts"]
    with Image.open(path) as gif:
        gif.seek(8)
        last = np.asarray(gif.convert("RGB")).astype(float) / 255
    pink = np.array(to_rgb(style.COLOR_EVICTED))
    assert (np.abs(last - pink).max(axis=-1) < 0.03).sum() > 500  # evicted cells are drawn


def test_layers_figure_puts_a_sliding_layer_next_to_a_full_one(sliding: maskviz.GPT) -> None:
    trace = sliding.trace([1, 2, 3], steps=8)
    fig = af.layers_figure(trace, (0, 1))
    sliding_ax, full_ax = heatmap_axes(fig)
    assert sliding_ax.get_title() == "layer 0: causal & sliding window 4"
    assert full_ax.get_title() == "layer 1: causal"
    assert af.EVICTED_LABEL in legend_texts(fig)
    image = rendered(fig)
    for ax, layer in ((sliding_ax, 0), (full_ax, 1)):
        want = trace_view(trace, layer=layer).panels[0].states
        np.testing.assert_array_equal(pixel_states(image, ax, trace.n_tokens), want)
    assert "head 0" in fig.get_suptitle()
    # a training pass: the window masks instead, and nothing is said about eviction
    training = af.layers_figure(sliding.trace([1, 2, 3], steps=8, mode="training"))
    assert af.EVICTED_LABEL not in legend_texts(training)


# -- figures say what the terminal says ------------------------------------------------


def dashed_lines(ax: Any) -> set[tuple[tuple[float, ...], tuple[float, ...]]]:
    """(xdata, ydata) of each dashed line: axhline is ((0, 1), (y, y)), axvline ((x, x), (0, 1))."""
    return {
        (tuple(map(float, line.get_xdata())), tuple(map(float, line.get_ydata())))
        for line in ax.get_lines()
        if line.get_linestyle() == "--"
    }


def numbered_ticks(ticks: Any, texts: Any) -> dict[int, float]:
    """Tick number as printed ("12" or "12 tok") -> where it sits (0-based image coordinate)."""
    return {
        int(text.get_text().split()[0].replace("−", "-")): float(loc)
        for loc, text in zip(ticks, texts, strict=True)
        if text.get_text()
    }


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Figures the CLI saves with `save_figure`, kept for inspection."""
    kept: list[Figure] = []
    real = figures.save_figure

    def keep(fig: Figure, path: Any, **kwargs: Any) -> None:
        kept.append(fig)
        real(fig, path, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep)
    return kept


@pytest.fixture
def gif_frames(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each written GIF frame shows: every text drawn, and each heatmap's title and
    data (the frame rendered only to choose the palette is not written)."""
    from matplotlib.text import Text

    frames: list[dict[str, Any]] = []
    real = af._gif_frame

    def blanks(ax: Any) -> list[Any]:
        white = (1, 1, 1)
        return [
            p for p in ax.patches if p.get_fill() and np.allclose(to_rgb(p.get_facecolor()), white)
        ]

    def grab(fig: Figure, canvas: Any, still: Any, moving: Any, palette: Any = None) -> Any:
        if palette is None:
            return real(fig, canvas, still, moving)
        panels = heatmap_axes(fig)
        frames.append(
            {
                "texts": [
                    t.get_text()
                    for t in fig.findobj(Text)
                    if t.get_text() and t.get_visible() and t.get_alpha() != 0
                ],
                "titles": [ax.get_title() for ax in panels],
                "images": [np.ma.copy(ax.images[0].get_array()) for ax in panels],
                "blank_rows": [
                    sum(p.get_height() for p in blanks(ax) if p.get_width() == len(ax.get_xticks()))
                    for ax in panels
                ],
                "blank_area": [
                    sum(p.get_height() * p.get_width() for p in blanks(ax)) for ax in panels
                ],
                # first panel: the one whose row labels are shown
                "yticks": numbered_ticks(panels[0].get_yticks(), panels[0].get_yticklabels()),
            }
        )
        return real(fig, canvas, still, moving, palette)

    monkeypatch.setattr(af, "_gif_frame", grab)
    return frames


def test_similarity_panels_carry_their_own_tokens_and_delimiter(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    text1, text2 = "The king is dead", "Long live the king"
    path = tmp_path / "pair.png"
    result = run_cli("similarity", text1, text2, "--model", FIXTURE, "--save", str(path))
    assert result.exit_code == 0, result.stderr
    (fig,) = saved_figures
    model = maskviz.load_model(FIXTURE)
    pair = similarity(model, text1, text2)
    assert len(pair.forward.token_ids) == len(pair.backward.token_ids)
    assert pair.forward.segments[1] != pair.backward.segments[1]  # the texts differ in length
    panels = heatmap_axes(fig)
    # each panel's title is the view's, wrapped to the panel's width
    titles = [ax.get_title().replace("\n", " ") for ax in panels]
    assert [t.split(":")[0] for t in titles] == ["[TEXT1; delim; TEXT2]", "[TEXT2; delim; TEXT1]"]
    assert all("one pass, causal mask" in t for t in titles)
    for ax, order in zip(panels, (pair.forward, pair.backward), strict=True):
        tokens = [display_label(model.tokenizer.token_label(int(i))) for i in order.token_ids]
        for axis_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            assert all(label.get_visible() for label in axis_labels)
            assert [label.get_text() for label in axis_labels] == [
                f"{i + 1} {tokens[i]}" for i in map(round, ax.get_yticks())
            ]
        d = order.segments[1]
        assert tokens[d] == display_label(
            model.tokenizer.token_label(int(pair.forward.token_ids[pair.forward.segments[1]]))
        )
        assert dashed_lines(ax) == {
            ((0.0, 1.0), (d - 0.5, d - 0.5)),
            ((0.0, 1.0), (d + 0.5, d + 0.5)),
            ((d - 0.5, d - 0.5), (0.0, 1.0)),
            ((d + 0.5, d + 0.5), (0.0, 1.0)),
        }
        # the read-out row outlined, as the terminal notes it and the page outlines it
        n = len(order.token_ids)
        (outline,) = [p for p in ax.patches if not p.get_fill()]
        assert outline.get_xy() == (-0.5, n - 1.5) and outline.get_height() == 1
        assert np.allclose(outline.get_edgecolor()[:3], to_rgb(COLOR_HIGHLIGHT))
    assert style.DELIMITER_LABEL in legend_texts(fig)
    assert "last position: its state is read" in legend_texts(fig)
    assert "delimiter" in style.DELIMITER_LABEL
    assert not any("generated" in text for text in legend_texts(fig))


def test_a_legend_of_two_rows_gets_room_and_a_pooled_read_out_row_its_whole_outline(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    # three legend entries too wide for one row: the figure grows by the second row
    args = ["similarity", "a cat sat", "a dog sat", "--model", "tiny-swa", "--width", "5"]
    assert run_cli(*args, "--save", str(tmp_path / "s.png")).exit_code == 0
    long = ["the quick brown fox jumps over the lazy dog", "a lazy dog sleeps under its"]
    assert run_cli("similarity", *long, "--save", str(tmp_path / "l.png")).exit_code == 0
    fig, pooled = saved_figures
    fig.set_dpi(150)  # measured as saved, with the layout the save computed
    (legend,) = fig.legends
    rows = {round(t.get_window_extent().y0 / 10) for t in legend.get_texts()}
    assert len(rows) == 2
    suptitle = fig.get_suptitle() and fig._suptitle.get_window_extent()  # type: ignore[union-attr]
    for ax in heatmap_axes(fig):
        assert ax.xaxis.label.get_window_extent().y0 > legend.get_window_extent().y1
        assert ax.title.get_window_extent().y1 < suptitle.y0
    # 71 tokens, pooled 2 positions a cell: the last block holds one row, and the
    # outline is that row, inside the panel
    n = heatmap_axes(pooled)[0].get_xlim()[1] + 0.5
    assert n == 71
    (outline,) = [p for p in heatmap_axes(pooled)[0].patches if not p.get_fill()]
    assert outline.get_y() + outline.get_height() == n - 0.5


@pytest.mark.parametrize(
    "command",
    [["compare", "training-vs-cached", "--steps", "2"], ["similarity", "a cat", "a dog"]],
)
def test_compare_and_similarity_report_the_saved_file_unless_json(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(*command, "--model", FIXTURE, "--save", "figure.png")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "saved figure.png"
    assert (tmp_path / "figure.png").stat().st_size > 0
    quiet = run_cli(*command, "--model", FIXTURE, "--save", "again.png", "--json")
    assert quiet.exit_code == 0, quiet.stderr
    json.loads(quiet.stdout)  # nothing but the JSON
    assert (tmp_path / "again.png").exists()


def test_numeric_ticks_count_positions_from_one_like_the_terminal(model: maskviz.GPT) -> None:
    long = model.trace(list(b"Hello"), steps=70)
    fig = af.attention_figure(trace_view(long))
    fig.draw_without_rendering()
    (ax,) = heatmap_axes(fig)
    for ticks, texts in (
        (ax.get_xticks(), ax.get_xticklabels()),
        (ax.get_yticks(), ax.get_yticklabels()),
    ):
        shown = numbered_ticks(ticks, texts)
        assert 1 in shown
        assert len(shown) >= 4
        assert all(where == number - 1 for number, where in shown.items()), shown


def test_gif_ticks_and_captions_number_positions_alike(
    model: maskviz.GPT, tmp_path: Path, gif_frames: list[dict[str, Any]]
) -> None:
    long = model.trace(list(b"Hello"), steps=70)
    af.save_decode_gif(tmp_path / "long.gif", trace_view(long))
    assert len(gif_frames) == 71
    last = gif_frames[-1]
    assert any("at position 75 attends to 74 cached keys" in text for text in last["texts"])
    yticks = last["yticks"]
    assert 1 in yticks
    assert all(where == number - 1 for number, where in yticks.items()), yticks
    # 71 frames play faster than 2 a second: one loop lasts about 30 s, not 36
    with Image.open(tmp_path / "long.gif") as gif:
        assert gif.info["duration"] == 420  # 1/2.37 s, in GIF's hundredths


def test_training_gif_walks_the_rows_of_one_masked_pass(
    tmp_path: Path, gif_frames: list[dict[str, Any]]
) -> None:
    path = tmp_path / "training.gif"
    result = run_cli(
        "trace", "To be", "--model", FIXTURE, "--steps", "3", "--mode", "training",
        "--save", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    n = len(maskviz.load_model(FIXTURE).tokenizer.encode("To be")) + 3
    with Image.open(path) as gif:
        assert gif.n_frames == n
    texts = [text for frame in gif_frames for text in frame["texts"]]
    assert not any("cached" in text or "not computed" in text for text in texts)
    captions = [
        [text for text in frame["texts"] if "single masked pass" in text] for frame in gif_frames
    ]
    assert [c[0].split(":")[0] for c in captions] == [
        f"row {t} of {n} in the single masked pass" for t in range(1, n + 1)
    ]
    # Every row was computed in the one pass, so no frame hides any row.
    assert all(frame["blank_rows"] == [0] for frame in gif_frames)


def test_gif_of_several_heads_animates_them_side_by_side(
    tmp_path: Path, gif_frames: list[dict[str, Any]]
) -> None:
    path = tmp_path / "heads.gif"
    result = run_cli(
        "trace", "To be", "--model", FIXTURE, "--steps", "3", "--heads", "1,2",
        "--save", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    model = maskviz.load_model(FIXTURE)
    reference = model.trace(model.tokenizer.encode("To be"), steps=3)
    expected = [np.where(reference.mask, reference.head_attention(0, h), 0.0) for h in (1, 2)]
    assert not np.allclose(expected[0], expected[1])
    assert len(gif_frames) == 4
    for frame in gif_frames:
        assert frame["titles"] == ["head 1", "head 2"]
        for shown, want in zip(frame["images"], expected, strict=True):
            np.testing.assert_allclose(np.ma.filled(shown, 0.0), want, atol=1e-6)
    assert any("heads 1, 2" in text for text in gif_frames[0]["texts"])


def test_writing_a_gif_of_many_frames_shows_progress_only_on_a_terminal(tmp_path: Path) -> None:
    path = str(tmp_path / "decode.gif")
    args = ("trace", "To be", "--model", FIXTURE, "--save", path)
    on_terminal = run_cli(*args, "--steps", "5", env={"TTY_COMPATIBLE": "1"})
    assert on_terminal.exit_code == 0, on_terminal.stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", on_terminal.stderr)  # colours and cursor moves
    assert "writing GIF" in shown
    assert "6/6 frames" in shown
    assert "None" not in on_terminal.stderr
    assert "writing GIF" not in on_terminal.stdout
    piped = run_cli(*args, "--steps", "5")
    assert piped.exit_code == 0
    assert piped.stderr == ""
    few = run_cli(*args, "--steps", "2", env={"TTY_COMPATIBLE": "1"})
    assert few.exit_code == 0
    assert "writing GIF" not in few.stderr


def test_figure_titles_carry_the_sampling_settings(tmp_path: Path) -> None:
    titles: list[str] = []
    real = figures.save_figure

    def capture(fig: Figure, path: Path, **kwargs: Any) -> None:
        titles.append(fig.get_suptitle())
        real(fig, path, **kwargs)

    args = ["trace", "To be", "--steps", "2", "--temperature", "0.7", "--seed", "3", "--top-k", "9"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "save_figure", capture)
        assert run_cli(*args, "--save", str(tmp_path / "t.png")).exit_code == 0
    assert "sampled: temperature 0.7, top-k 9, seed 3" in titles[0].replace("\n", " ")


def test_a_long_title_is_wrapped_inside_a_narrow_figure(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    args = ["trace", "To be,", "--steps", "3", "--temperature", "0.85", "--top-k", "40"]
    args += ["--seed", "123456789", "--layer", "3", "--agg", "mean"]
    assert run_cli(*args, "--save", str(tmp_path / "t.png")).exit_code == 0
    (fig,) = saved_figures
    fig.set_dpi(150)  # measured as saved, with the layout the save computed
    title = fig._suptitle.get_window_extent()  # type: ignore[union-attr]
    assert "\n" in fig.get_suptitle()  # it ran past both edges on one line
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1


@pytest.mark.parametrize(("n", "cell"), [(100, 1), (2000, 4)])
@pytest.mark.parametrize("base", [0, 1])
def test_mask_figure_ticks_are_positions_wherever_they_are_drawn(
    n: int, cell: int, base: int
) -> None:
    from maskviz import masks

    fig = figures.mask_figure(masks.causal(n), index_base=base, highlight=n // 2)
    ax = fig.axes[0]
    FigureCanvasAgg(fig).draw()
    for axis in (ax.xaxis, ax.yaxis):
        ticks = [
            (t.get_loc(), int(t.label1.get_text().replace(",", ""))) for t in axis.get_major_ticks()
        ]
        assert len(ticks) >= 3
        for loc, position in ticks:
            # cell c holds positions c k .. c k + k - 1 (numbered from base)
            assert base <= position < n + base
            assert loc == pytest.approx((position - base + 0.5) / cell - 0.5)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"row {n // 2 + base}" in legend


@pytest.mark.parametrize("n", [6, 30, 48, 64])
def test_mask_figure_numbers_every_cell_without_labels_overlapping(n: int) -> None:
    from maskviz import masks

    fig = figures.mask_figure(masks.causal(n), labels=[f"w{i}" for i in range(n)])
    ax = fig.axes[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for axis in (ax.xaxis, ax.yaxis):
        boxes = [t.label1.get_window_extent(renderer) for t in axis.get_major_ticks()]
        assert len(boxes) == n
        for a, b in itertools.pairwise(boxes):
            assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize("n", [3, 5])
def test_long_mask_labels_are_cut_and_leave_the_grid_its_size(n: int) -> None:
    from maskviz import masks

    words = ["supercalifragilisticexpialidocious", *"bcde"][:n]
    plain = figures.mask_figure(masks.causal(n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constrained_layout once gave up: axes collapsed
        fig = figures.mask_figure(masks.causal(n), labels=words)
        FigureCanvasAgg(fig).draw()
        FigureCanvasAgg(plain).draw()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[0] == "1 supercalifr…"  # 12 columns, as the terminal and trace figures
    grid = fig.axes[0].get_window_extent()
    assert grid.height >= 0.9 * plain.axes[0].get_window_extent().height
    fig_box = fig.bbox
    for label in fig.axes[0].get_xticklabels() + fig.axes[0].get_yticklabels():
        box = label.get_window_extent()
        assert fig_box.x0 <= box.x0 and box.y0 >= fig_box.y0, label.get_text()  # not cut


def test_pdf_figures_embed_truetype_fonts_not_type_3(tmp_path: Path) -> None:
    from maskviz import masks

    figures.save_figure(figures.mask_figure(masks.causal(6)), tmp_path / "m.pdf")
    pdf = (tmp_path / "m.pdf").read_bytes()
    assert b"/Subtype /CIDFontType2" in pdf or b"/Subtype /TrueType" in pdf  # Type 42
    assert b"/Subtype /Type3" not in pdf


@pytest.mark.parametrize(("n", "pad", "side", "cell"), [(6, 2, "left", 1), (2000, 300, "right", 4)])
def test_mask_figure_hatches_exactly_the_padding_rows_and_columns(
    n: int, pad: int, side: str, cell: int
) -> None:

    from maskviz import masks

    padded = masks.padded_positions(n, pad, side)
    mask = masks.build(n, "causal", pad=pad, pad_side=side)
    fig = figures.mask_figure(mask, padded=padded.tolist())
    ax = fig.axes[0]
    FigureCanvasAgg(fig).draw()
    to_data = ax.transData.inverted()
    spans = [  # each hatched patch's extent in data coordinates: x0, x1, y0, y1
        to_data.transform(p.get_window_extent()).T.ravel() for p in ax.patches if p.get_hatch()
    ]
    lo, hi = int(padded.min()), int(padded.max()) + 1  # one run: padding is at one end
    pads = sorted([lo / cell - 0.5, hi / cell - 0.5])
    whole = sorted(ax.get_xlim())
    # one row span and one column span, each covering the pads' cells and nothing else
    assert len(spans) == 2
    (x0, x1, y0, y1), (u0, u1, v0, v1) = sorted(spans, key=lambda e: e[1] - e[0], reverse=True)
    assert sorted([x0, x1]) == pytest.approx(whole)
    assert sorted([y0, y1]) == pytest.approx(pads)
    assert sorted([u0, u1]) == pytest.approx(pads)
    assert sorted([v0, v1]) == pytest.approx(sorted(ax.get_ylim()))
    assert "padding" in [t.get_text() for t in fig.legends[0].get_texts()]
    # without padding: no hatching, no legend entry
    plain = figures.mask_figure(masks.causal(n))
    assert not [p for p in plain.axes[0].patches if p.get_hatch()]
    assert "padding" not in [t.get_text() for t in plain.legends[0].get_texts()]


def test_the_legend_names_masked_cells_only_when_a_cell_is_masked(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    # a one-token prompt decoded step by step: every cell is allowed or not generated yet
    for prompt, name in (("T", "a.png"), ("To be", "b.png")):
        assert (
            run_cli("trace", prompt, "--steps", "5", "--save", str(tmp_path / name)).exit_code == 0
        )
    one, prompt = saved_figures
    assert af.MASKED_LABEL not in legend_texts(one)
    assert af.NOT_YET_LABEL in legend_texts(one)
    assert af.MASKED_LABEL in legend_texts(prompt)


def test_a_sliding_layers_picture_says_its_window_in_the_title(sliding: maskviz.GPT) -> None:
    trace = sliding.trace([1, 2, 3], steps=4)
    assert " · layer 0, head 0 · sliding window " in trace_view(trace, layer=0).title
    assert "sliding" not in trace_view(trace, layer=1).title  # a full layer


# ---------------------------------------------------------------- --width


def assert_laid_out(fig: Figure) -> None:
    """Every text inside the figure; tick labels apart; titles clear of the panels'
    labels and of each other; the legend clear of the axis labels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    frame = fig.bbox.padded(1)

    def inside(text: Any) -> None:
        box = text.get_window_extent(renderer)
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), text

    tick_labels: set[int] = set()
    titles = [fig._suptitle] if fig._suptitle is not None else []  # type: ignore[attr-defined]
    labels = []
    for ax in fig.axes:
        titles += [ax.title] if ax.title.get_text() else []
        labels += [ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = axis.get_major_ticks()
            tick_labels |= {id(t.label1) for t in ticks} | {id(t.label2) for t in ticks}
            drawn = [  # matplotlib draws no tick outside the view
                t.label1
                for t in ticks
                if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high
            ]
            for t in drawn:
                inside(t)
            boxes = [t.get_window_extent(renderer) for t in drawn]
            for a, b in itertools.pairwise(boxes):
                assert not a.overlaps(b), (a, b)
    for t in fig.findobj(lambda a: hasattr(a, "get_text")):
        if id(t) not in tick_labels and t.get_visible() and t.get_text().strip():
            inside(t)
    for a, b in itertools.combinations(titles, 2):
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer))
    for legend in fig.legends:
        for label in labels:
            if label.get_text():
                assert not legend.get_window_extent(renderer).overlaps(
                    label.get_window_extent(renderer)
                )


@pytest.mark.parametrize(
    ("args", "width"),
    [
        (["show-mask", "6"], 3.3),
        (["show-mask", "6", "--text", "To be or supercalifragilistic to be"], 3.3),
        (["show-mask", "64", "--window", "8", "--pad", "3", "--step", "40"], 3.3),
        (["show-mask", "2000", "--window", "100"], 3.3),
        (["trace", "To be, or not to be"], 3.3),
        (["trace", "To be, or not to be", "--steps", "60"], 3.3),
        (["trace", "To be, or not to be", "--heads", "all"], 7.0),
        (["trace", "To be", "--heads", "all"], 3.3),
        (["compare", "training-vs-cached", "--steps", "8"], 7.0),
        (["compare", "training-vs-cached", "--steps", "8"], 5.0),
        (["similarity", "a cat sat", "a dog sat"], 7.0),
        (["bench", "--tokens", "8", "--repeats", "1"], 7.0),
        (["show-mask", "6"], 12.0),
        (["show-mask", "5000", "--window", "100"], 2.5),
        (["show-mask", "513", "--window", "64", "--pad", "20", "--step", "300"], 2.5),
        (["show-mask", "513", "--window", "64", "--pad", "20", "--step", "300"], 3.3),
        (["show-mask", "65", "--chunk", "16", "--pad", "7", "--pad-side", "right", "--step", "60"], 2.5),
        (["similarity", "the quick brown fox jumps over the lazy dog again and again and",
          "a lazy dog sleeps under the old tree by the river all day long"], 3.5),
        (["trace", "To be, or not to be, that is the question", "--steps", "40", "--heads", "all"], 3.3),
        (["bench", "--tokens", "2", "--repeats", "1"], 6.0),
        (["bench", "--tokens", "64", "--repeats", "1"], 6.0),
    ],
)  # fmt: skip
def test_a_picture_asked_for_a_width_has_it_and_keeps_its_text_apart(
    tmp_path: Path, saved_figures: list[Figure], args: list[str], width: float
) -> None:
    target = tmp_path / "p.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" among them
        result = run_cli(*args, "--width", str(width), "--save", str(target))
    assert result.exit_code == 0, result.stderr
    (fig,) = saved_figures
    assert fig.get_figwidth() == pytest.approx(width, abs=1e-9)
    with Image.open(target) as image:  # older matplotlib truncates 494.99999 to 494 pixels
        assert abs(image.size[0] - width * figures.DEFAULT_DPI) < 1
    fig.set_dpi(figures.DEFAULT_DPI)  # measured as saved, with the layout the save computed
    assert_laid_out(fig)


def test_a_narrow_picture_shrinks_its_text_to_70_percent_at_most(
    tmp_path: Path, saved_figures: list[Figure]
) -> None:
    for width in ("3.3", "6.5"):  # 21 positions: drawn 7.8 in wide; 0.7 x 7.8 = 5.5 in
        assert (
            run_cli("trace", "To be", "--width", width, "--save", str(tmp_path / "t.png")).exit_code
            == 0
        )
    narrow, middle = (fig.axes[0].xaxis.label.get_fontsize() for fig in saved_figures)
    assert narrow == pytest.approx(7.0)
    assert middle == pytest.approx(10.0 * 6.5 / 7.8, abs=0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show-mask", "6", "--width", "3"], "--width needs --save with a .png, .svg or .pdf file"),
        (["show-mask", "6", "--width", "3", "--save", "m.html"], "--width applies to .png, .svg and .pdf pictures, not .html"),
        (["trace", "To be", "--width", "3", "--save", "t.gif"], "--width applies to .png, .svg and .pdf pictures, not .gif"),
        (["show-mask", "6", "--width", "1.5", "--save", "m.png"], "a width of 1.5 in is too narrow for this mask: at least 2.4 in"),
        (["show-mask", "6", "--width", "nan", "--save", "m.png"], "--width must be a number of inches above 0 and up to 20, got nan"),
        (["trace", "To be", "--width", "25", "--save", "t.png"], "--width must be a number of inches above 0 and up to 20, got 25"),
        (["trace", "To be", "--width", "0", "--save", "t.png"], "--width must be a number of inches above 0 and up to 20, got 0"),
        (["trace", "To be", "--width", "2", "--save", "t.png"], "a width of 2 in is too narrow for this picture: at least 2.1 in"),
        (["compare", "training-vs-cached", "--steps", "2", "--width", "3.3", "--save", "c.png"],
         "a width of 3.3 in is too narrow for a comparison's three panels: at least 4.7 in"),
        (["bench", "--tokens", "4", "--repeats", "1", "--width", "5", "--save", "b.png"],
         "a width of 5 in is too narrow for the benchmark's two panels: at least 6.0 in"),
        (["trace", "To be", "--heads", "all", "--width", "2.5", "--save", "t.png"],
         "a width of 2.5 in is too narrow for 4 panels, 2 side by side: at least 2.9 in"),
        (["similarity", "a", "b", "--width", "2", "--save", "s.png"],
         "a width of 2 in is too narrow for 2 panels, 2 side by side: at least 3.5 in"),
        (["show-mask", "6", "--text", "one two three four five supercalifragilistic", "--width",
          "2", "--save", "m.png"], "a width of 2 in is too narrow for this mask: at least"),
    ],
)  # fmt: skip
def test_a_width_that_cannot_be_drawn_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"maskviz: error: {message}") and result.stderr.count("\n") == 1
    assert result.stdout == ""  # refused before the run: nothing computed, nothing drawn
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "accepted"),
    [("show-mask", "e.g. 3.3 for a paper's column, 7 for its text width (2.4 to 20; --text labels"),
     ("trace", "e.g. 3.3 for a paper's column, 7 for its text width (2.1 to 20; several heads"),
     ("view", "e.g. 3.3 for a paper's column, 7 for its text width (2.1 to 20; several heads"),
     ("similarity", "e.g. 7 for a paper's text width (3.5 to 20)"),
     ("compare", "e.g. 7 for a paper's text width (4.7 to 20)"),
     ("bench", "e.g. 7 for a paper's text width (6 to 20)")],
)  # fmt: skip
def test_width_help_names_the_widths_its_command_accepts(command: str, accepted: str) -> None:
    result = run_cli(command, "--help", env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert accepted in result.stdout


def test_figures_from_python_take_the_widths_the_command_line_does() -> None:
    view = trace_view(maskviz.load_model().trace([84, 111], steps=1))
    assert af.attention_figure(view, width=np.float32(3.3)).get_figwidth() == pytest.approx(3.3)
    mask = maskviz.masks.causal(4)
    no_width = "a figure's width must be a number of inches above 0 and up to 20, got"
    for width, message in [(100, no_width), (0, no_width), (float("nan"), no_width),
                           ("3", no_width), (True, no_width + " True"), (1.5, "too narrow for this")]:  # fmt: skip
        for draw in (af.attention_figure, lambda _, width: figures.mask_figure(mask, width=width)):
            with pytest.raises(maskviz.MaskvizError, match=message):
                draw(view, width=width)


def test_every_figure_shows_as_a_picture_in_a_notebook_without_pyplot() -> None:
    model = maskviz.load_model()
    trace = model.trace([84, 111, 32], steps=2)
    result = compare(model, "training-vs-cached", [84, 111, 32], steps=2)
    shown = [
        af.attention_figure(trace_view(trace)),
        af.comparison_figure(comparison_view(result, [str(i) for i in result.token_ids])),
        af.layers_figure(trace),
        figures.mask_figure(maskviz.masks.causal(5)),
    ]
    for fig in shown:
        png = Image.open(io.BytesIO(fig._repr_png_()))  # what IPython's PNG printer asks
        expected = np.round(fig.get_size_inches() * figures.NOTEBOOK_DPI)
        assert np.abs(np.array(png.size) - expected).max() <= 1
