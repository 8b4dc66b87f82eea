"""Attention heatmaps, comparisons and the decoding GIF, drawn from real traces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

import maskviz
from maskviz._text import display_label
from maskviz.render import attention_figures as af
from maskviz.render import figures
from maskviz.render.figures import save_figure
from maskviz.similarity import similarity
from maskviz.trace import Trace
from tests.conftest import run_cli

CONFIG = maskviz.GPTConfig(2, 2, 16, 128, 257)
FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")


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
    frames = af.save_decode_gif(path, [trace.head_attention(0, 0)], trace.mask, labels, 5, "decode")
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
    assert (
        af.save_decode_gif(path, [prefill.head_attention(0, 0)], prefill.mask, labels, 5, "") == 1
    )
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
            path, [trace.head_attention(0, 0)], trace.mask, labels_of(model, trace), 5, "decode"
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
    """What each written GIF frame shows: every text, and each heatmap's title and data."""
    from matplotlib.animation import PillowWriter
    from matplotlib.text import Text

    frames: list[dict[str, Any]] = []
    real = PillowWriter.grab_frame

    def grab(self: PillowWriter, **kwargs: Any) -> None:
        panels = heatmap_axes(self.fig)
        frames.append(
            {
                "texts": [t.get_text() for t in self.fig.findobj(Text) if t.get_text()],
                "titles": [ax.get_title() for ax in panels],
                "images": [np.ma.copy(ax.images[0].get_array()) for ax in panels],
                "blank_rows": [
                    sum(
                        p.get_height()
                        for p in ax.patches
                        if p.get_fill() and np.allclose(to_rgb(p.get_facecolor()), (1, 1, 1))
                    )
                    for ax in panels
                ],
                # first panel: the one whose row labels are shown
                "yticks": numbered_ticks(panels[0].get_yticks(), panels[0].get_yticklabels()),
            }
        )
        real(self, **kwargs)

    monkeypatch.setattr(PillowWriter, "grab_frame", grab)
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
    assert [ax.get_title() for ax in panels] == ["[TEXT1; delim; TEXT2]", "[TEXT2; delim; TEXT1]"]
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
    assert af.DELIMITER_LABEL in legend_texts(fig)
    assert "delimiter" in af.DELIMITER_LABEL
    assert not any("generated" in text for text in legend_texts(fig))


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
    fig = af.attention_figure(
        [long.head_attention(0, 0)], long.mask, labels_of(model, long), 5, ["h"], "long"
    )
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
    af.save_decode_gif(
        tmp_path / "long.gif", [long.head_attention(0, 0)], long.mask, labels_of(model, long), 5, ""
    )
    assert len(gif_frames) == 70
    last = gif_frames[-1]
    assert any("at position 75 attends to 74 cached keys" in text for text in last["texts"])
    yticks = last["yticks"]
    assert 1 in yticks
    assert all(where == number - 1 for number, where in yticks.items()), yticks


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
    assert len(gif_frames) == 3
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
    assert "5/5 frames" in shown
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

    def capture(fig: Figure, path: Path) -> None:
        titles.append(fig.get_suptitle())
        real(fig, path)

    args = ["trace", "To be", "--steps", "2", "--temperature", "0.7", "--seed", "3", "--top-k", "9"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "save_figure", capture)
        assert run_cli(*args, "--save", str(tmp_path / "t.png")).exit_code == 0
    assert "sampled: temperature 0.7, top-k 9, seed 3" in titles[0]
