"""Attention heatmaps, comparisons and the decoding GIF, drawn from real traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

import maskviz
from maskviz.render import attention_figures as af
from maskviz.render.figures import save_figure
from maskviz.trace import Trace

CONFIG = maskviz.GPTConfig(2, 2, 16, 128, 257)


@pytest.fixture(scope="module")
def model() -> maskviz.GPT:
    return maskviz.random_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def trace(model: maskviz.GPT) -> Trace:
    return model.trace(list(b"Hello"), steps=6)


def labels_of(model: maskviz.GPT, trace: Trace) -> list[str]:
    return [model.tokenizer.token_label(int(i)) for i in trace.token_ids]


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


def legend_texts(fig: Figure) -> set[str]:
    return {text.get_text() for legend in fig.legends for text in legend.get_texts()}


def test_one_matrix_gives_one_heatmap(model: maskviz.GPT, trace: Trace) -> None:
    fig = af.attention_figure(
        [trace.head_attention(0, 1)], trace.mask, labels_of(model, trace), 5, ["L0 H1"], "one head"
    )
    (ax,) = heatmap_axes(fig)
    assert ax.get_xlabel() == "key position →"
    assert ax.get_ylabel() == "query position ↓"
    assert ax.get_title() == "L0 H1"
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["1 H", "2 e"]
    assert any(cax.get_ylabel() == "attention weight" for cax in fig.axes)
    assert {"masked (not allowed)", "prompt | generated"} <= legend_texts(fig)
    assert "downsampled" not in fig.get_suptitle()


@pytest.mark.parametrize("n_panels", [2, 3, 4])
def test_small_multiples_give_one_heatmap_per_matrix(
    model: maskviz.GPT, trace: Trace, n_panels: int
) -> None:
    pairs = [(layer, head) for layer in range(2) for head in range(2)][:n_panels]
    fig = af.attention_figure(
        [trace.head_attention(*p) for p in pairs],
        trace.mask,
        labels_of(model, trace),
        trace.prompt_len,
        [f"L{layer} H{head}" for layer, head in pairs],
        "heads",
    )
    panels = heatmap_axes(fig)
    assert [ax.get_title() for ax in panels] == [f"L{a} H{b}" for a, b in pairs]
    # Only panels with nothing below them carry key labels.
    assert sum(bool(ax.get_xlabel()) for ax in panels) == min(n_panels, 2)


def test_all_heads_of_a_layer(model: maskviz.GPT, trace: Trace) -> None:
    heads = [trace.head_attention(1, h) for h in range(CONFIG.n_head)]
    titles = [f"head {h}" for h in range(CONFIG.n_head)]
    fig = af.attention_figure(heads, trace.mask, labels_of(model, trace), 5, titles, "layer 1")
    assert len(heatmap_axes(fig)) == CONFIG.n_head


def test_masked_cells_differ_from_zero_weight(model: maskviz.GPT, trace: Trace) -> None:
    n = trace.n_tokens
    matrix = trace.head_attention(0, 0).copy()
    matrix[n - 1, 1] = 0.0  # an allowed cell with weight exactly zero
    assert trace.mask[n - 1, 1]
    assert not trace.mask[0, n - 1]
    fig = af.attention_figure([matrix], trace.mask, labels_of(model, trace), 5, [""], "")
    (ax,) = heatmap_axes(fig)
    cmap = ax.images[0].get_cmap()
    assert np.allclose(cmap.get_bad()[:3], to_rgb(af.COLOR_MASKED))
    assert np.abs(np.subtract(cmap.get_bad()[:3], cmap(0.0)[:3])).max() > 0.3

    image = rendered(fig)
    masked, zero = pixel(fig, image, ax, 0, n - 1), pixel(fig, image, ax, n - 1, 1)
    assert np.allclose(masked, to_rgb(af.COLOR_MASKED), atol=0.02)
    assert np.allclose(zero, cmap(0.0)[:3], atol=0.02)
    assert np.abs(masked - zero).max() > 0.3


def test_png_opens_with_a_sensible_size(model: maskviz.GPT, trace: Trace, tmp_path: Path) -> None:
    fig = af.attention_figure(
        [trace.head_attention(0, 0)], trace.mask, labels_of(model, trace), 5, ["h"], "title"
    )
    path = tmp_path / "attention.png"
    save_figure(fig, path)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert 400 <= png.width <= 3000
        assert 400 <= png.height <= 3000
    assert sorted(tmp_path.iterdir()) == [path]


def test_hostile_labels_are_escaped_and_draw_without_warnings(tmp_path: Path) -> None:
    mask = np.tril(np.ones((4, 4), dtype=bool))
    matrix = mask / mask.sum(axis=1, keepdims=True)
    labels = ["\x1b[31m", "猫", r"$\frac$", "→ $x$"]
    # Warnings are errors in this suite: a missing glyph or a mathtext parse error fails here.
    fig = af.attention_figure([matrix], mask, labels, 2, ["猫 head"], "prompt 🐈")
    save_figure(fig, tmp_path / "hostile.svg")
    (ax,) = heatmap_axes(fig)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == "1 \\x1b[31m"
    assert "\x1b" not in "".join(ticks)
    assert ticks[2] == r"3 $\frac$"
    assert ticks[3] == "4 → $x$"


def test_long_sequence_is_downsampled(model: maskviz.GPT) -> None:
    long = model.trace(list(b"Hello"), steps=70)
    n = long.n_tokens
    assert n == 75
    fig = af.attention_figure(
        [long.head_attention(0, 0)], long.mask, labels_of(model, long), 5, ["h"], "long"
    )
    assert "downsampled: one cell = 2 x 2 positions" in fig.get_suptitle()
    (ax,) = heatmap_axes(fig)
    shown = ax.images[0].get_array()
    assert shown.shape == (38, 38)
    # A block is masked only when every cell in it is: the diagonal blocks stay visible.
    blocks = np.arange(38)
    assert np.array_equal(np.ma.getmaskarray(shown), blocks[None, :] > blocks[:, None])
    # Numeric position ticks instead of token labels.
    assert all(t.get_text().lstrip("−-").isdigit() for t in ax.get_xticklabels() if t.get_text())


def test_pooling_averages_the_allowed_cells() -> None:
    mask = np.tril(np.ones((130, 130), dtype=bool))
    matrix = np.where(mask, 0.5, 0.0)
    matrix[0:3, 0:3] = np.where(mask[0:3, 0:3], 0.9, 0.0)
    fig = af.attention_figure([matrix], mask, [str(i) for i in range(130)], 130, [""], "")
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


def test_comparison_of_cached_and_training_reports_a_tiny_max(
    model: maskviz.GPT, trace: Trace
) -> None:
    training = model.trace(list(b"Hello"), steps=6, mode="training")
    left, right = trace.head_attention(0, 0), training.head_attention(0, 0)
    fig = af.comparison_figure(
        left,
        right,
        trace.mask,
        training.mask,
        labels_of(model, trace),
        5,
        "cached",
        "training",
        "s",
    )
    peak = float(np.abs(left.astype(np.float64) - right).max())
    assert peak < 1e-5
    title = diff_title(fig)
    assert f"max |Δ| = {peak:.2e}" in title or (peak == 0 and "max |Δ| = 0" in title)
    assert {"attention weight", "|left − right|"} <= {ax.get_ylabel() for ax in fig.axes}


def test_comparison_with_an_unmasked_pass_reports_a_large_max(
    model: maskviz.GPT, trace: Trace
) -> None:
    _, unmasked = model.forward(trace.token_ids, mask=None)
    left, right = trace.head_attention(0, 0), unmasked[0, 0]
    fig = af.comparison_figure(
        left, right, trace.mask, None, labels_of(model, trace), 5, "masked", "unmasked", "s"
    )
    peak = float(np.abs(left.astype(np.float64) - right).max())
    assert peak > 0.05
    assert f"max |Δ| = {peak:.2e}" in diff_title(fig)
    # The unmasked panel has no grey cells; the masked one has.
    masked_panel, unmasked_panel, _ = heatmap_axes(fig)
    assert np.ma.getmaskarray(masked_panel.images[0].get_array()).any()
    assert not np.ma.getmaskarray(unmasked_panel.images[0].get_array()).any()


def test_identical_matrices_report_zero(model: maskviz.GPT, trace: Trace) -> None:
    m = trace.head_attention(1, 0)
    fig = af.comparison_figure(
        m, m, trace.mask, trace.mask, labels_of(model, trace), 5, "a", "b", ""
    )
    assert "max |Δ| = 0 (identical)" in diff_title(fig)


def test_gif_has_one_frame_per_step(model: maskviz.GPT, trace: Trace, tmp_path: Path) -> None:
    path = tmp_path / "decode.gif"
    labels = labels_of(model, trace)
    frames = af.save_decode_gif(path, trace.head_attention(0, 0), trace.mask, labels, 5, "decode")
    assert frames == trace.n_tokens - trace.prompt_len == 6
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 6
        assert gif.width > 300
        assert gif.height > 300
    assert sorted(tmp_path.iterdir()) == [path]


def test_gif_of_a_prefill_only_trace_has_one_frame(model: maskviz.GPT, tmp_path: Path) -> None:
    prefill = model.trace(list(b"Hello"), steps=0)
    path = tmp_path / "prefill.gif"
    labels = labels_of(model, prefill)
    assert af.save_decode_gif(path, prefill.head_attention(0, 0), prefill.mask, labels, 5, "") == 1
    with Image.open(path) as gif:
        assert gif.n_frames == 1


def test_failed_gif_write_keeps_the_old_file(
    model: maskviz.GPT, trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.animation import PillowWriter

    path = tmp_path / "decode.gif"
    path.write_bytes(b"previous animation")
    real_grab = PillowWriter.grab_frame
    calls = 0

    def grab_then_fail(self: PillowWriter, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk on fire")
        real_grab(self, **kwargs)

    monkeypatch.setattr(PillowWriter, "grab_frame", grab_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        af.save_decode_gif(
            path, trace.head_attention(0, 0), trace.mask, labels_of(model, trace), 5, "decode"
        )
    assert calls == 3
    assert path.read_bytes() == b"previous animation"
    assert sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("labels", "prompt_len", "message"),
    [(["a"] * 3, 2, "expected 11 labels"), (["a"] * 11, 0, "prompt_len 0")],
)
def test_inconsistent_inputs_are_refused(
    trace: Trace, labels: list[str], prompt_len: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        af.attention_figure([trace.head_attention(0, 0)], trace.mask, labels, prompt_len, [""], "")
