"""The interactive HTML page: self-contained files written by every command, and the
real pages driven in headless Chromium (one browser for the module).

Without Chromium the browser tests fail; set MASKVIZ_NO_BROWSER=1 to skip them on a
machine without it (never in CI).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import maskviz
from maskviz._text import display_label
from maskviz.render import html as mvhtml
from maskviz.render import style
from maskviz.trace import Trace
from maskviz.view import ALLOWED, EVICTED, trace_states
from tests import chromium
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = "To be, or not to be"
SWA_MODEL = str(ROOT / "tests" / "fixtures" / "mistral-tiny")  # sliding window 6


# ---------------------------------------------------------------- pages


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every command's --save NAME.html, written once for the module."""
    d = tmp_path_factory.mktemp("pages")
    commands = {
        "trace": ["trace", HEADLINE, "--save", str(d / "trace.html")],
        "trace_npz": ["trace", HEADLINE, "--save", str(d / "trace.npz")],
        "view": ["view", str(d / "trace.npz"), "--layer", "1", "--save", str(d / "view.html")],
        "compare": ["compare", "training-vs-cached", "--steps", "6", "--save", str(d / "compare.html")],
        "similarity": ["similarity", "a cat sat", "a dog sat", "--save", str(d / "similarity.html")],
        "mask": ["show-mask", "64", "--window", "8", "--save", str(d / "mask.html")],
        "padded": ["show-mask", "12", "--pad", "3", "--save", str(d / "padded.html")],
        "swa": ["trace", HEADLINE, "--model", SWA_MODEL, "--steps", "12", "--save", str(d / "swa.html")],
        "compare_swa": ["compare", "training-vs-cached", "--model", SWA_MODEL, "--steps", "12",
                        "--save", str(d / "compare_swa.html")],
    }  # fmt: skip
    out = {}
    for name, args in commands.items():
        result = run_cli(*args)
        assert result.exit_code == 0, (name, result.stderr)
        assert f"saved {args[-1]}" in result.stdout, name
        out[name] = Path(args[-1])
    return out


@pytest.fixture(scope="module")
def headline(pages: dict[str, Path]) -> Trace:
    """The same run as the headline page (greedy decoding is deterministic)."""
    return Trace.load(pages["trace_npz"])


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" class="maskviz-data">(.*?)</script>', text)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def decoded_states(data: dict[str, Any], panel: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(data["pool"][panel["states"]])
    n = panel["n"]
    return np.frombuffer(raw, np.int8).reshape(n, n)


# ---------------------------------------------------------------- files, no browser


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset")]


@pytest.mark.parametrize(
    "name", ["trace", "view", "compare", "similarity", "mask", "swa", "compare_swa"]
)
def test_saved_page_references_nothing_outside_itself(pages: dict[str, Path], name: str) -> None:
    text = pages[name].read_text(encoding="utf-8")
    links = _Links()
    links.feed(text)
    assert all(u.startswith("data:") for u in links.urls), links.urls
    for needle in ("http://", "https://", "fetch(", "XMLHttpRequest", "WebSocket", "import(",
                   "@import", "url(", "<iframe", "<img", "<link rel=\"stylesheet\""):  # fmt: skip
        assert needle not in text, needle
    assert "default-src 'none'" in text  # the page forbids itself any request


def test_headline_trace_page_embeds_every_layer_and_head_under_the_size_limit(
    pages: dict[str, Path], headline: Trace
) -> None:
    data = page_data(pages["trace"])
    assert data["layers"] == [0, 1, 2, 3] and data["heads"] == [0, 1, 2, 3]
    assert headline.n_tokens == 35
    assert pages["trace"].stat().st_size < 1_500_000


def test_page_states_are_the_views_states_for_every_layer(pages: dict[str, Path]) -> None:
    swa = Trace.load(pages["trace_npz"])  # causal layers
    data = page_data(pages["trace"])
    for i, layer in enumerate(data["layers"]):
        for panel in data["views"][i]["panels"]:
            assert np.array_equal(decoded_states(data, panel), trace_states(swa, layer))


def test_every_layer_view_of_a_page_is_titled_with_its_own_layer(
    pages: dict[str, Path],
) -> None:
    for name in ("trace", "swa"):
        data = page_data(pages[name])
        for key, (index, _) in data["select"].items():
            layer = key.split("/")[0]
            assert f" · layer {layer}, " in data["views"][index]["title"], (name, key)


def test_sliding_window_page_stores_evicted_keys_as_evicted(pages: dict[str, Path]) -> None:
    data = page_data(pages["swa"])
    states = decoded_states(data, data["views"][0]["panels"][0])
    p = data["stepsFrom"]
    assert (states[p:] == EVICTED).any()  # decoding rows: the ring buffer dropped them
    assert not (states[:p] == EVICTED).any()  # the prefill pass masked them instead


def test_page_weights_round_trip_within_the_16_bit_step(
    pages: dict[str, Path], headline: Trace
) -> None:
    data = page_data(pages["trace"])
    assert data["q"] == 65535
    panel = data["views"][2]["panels"][1]  # layer 2, head 1
    states = decoded_states(data, panel)
    stored = np.frombuffer(base64.b64decode(panel["w"]), "<u2") / 65535
    expected = headline.head_attention(2, 1)[states == ALLOWED]
    assert np.abs(stored - expected).max() <= 0.5 / 65535 + 1e-7


def test_weights_drop_to_8_bits_beyond_the_budget(
    headline: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mvhtml, "WEIGHT_BUDGET", 1000)
    page = mvhtml.trace_page(headline)
    assert page.data["q"] == 255
    panel = page.data["views"][0]["panels"][0]
    stored = np.frombuffer(base64.b64decode(panel["w"]), np.uint8)
    assert stored.size == int((trace_states(headline, 0) == ALLOWED).sum())


def test_html_is_refused_beyond_the_position_limit(tmp_path: Path) -> None:
    result = run_cli("show-mask", "2000", "--save", str(tmp_path / "big.html"))
    assert result.exit_code == 2
    assert "at most 1024 positions" in result.stderr
    assert not (tmp_path / "big.html").exists()


def test_a_page_past_the_size_a_browser_opens_quickly_is_written_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "big.html"
    monkeypatch.setattr(mvhtml, "LARGE_PAGE", 50_000)  # the headline page is about 75 KB
    result = run_cli("trace", HEADLINE, "--save", str(page))
    assert result.exit_code == 0
    size = page.stat().st_size / 1e6
    assert result.stderr == (
        f"maskviz: warning: {page} is {size:.1f} MB: a browser may take seconds to open it and "
        "to switch layers (record fewer steps, or save a .png, which pools)\n"
    )


def test_token_text_cannot_close_the_script_element(headline: Trace) -> None:
    page = mvhtml.trace_page(headline)
    evil = "</script><script>alert(1)</script>"
    pool = page.data["pool"]
    pool[page.data["views"][0]["panels"][0]["labels"]] = [evil] * headline.n_tokens
    document = mvhtml.render_document(page)
    assert evil not in document
    assert document.count("</script>") == 2  # the data's and the viewer's own


def test_each_repr_html_is_a_fragment_with_its_own_id(headline: Trace) -> None:
    first, second = headline._repr_html_(), headline._repr_html_()
    assert first is not None and second is not None
    ids = [re.search(r'id="(maskviz-[0-9a-f]+)"', f) for f in (first, second)]
    assert ids[0] and ids[1] and ids[0].group(1) != ids[1].group(1)
    assert "<html" not in first  # a fragment for a notebook cell, not a document


def test_mask_repr_falls_back_to_plain_text_when_too_large() -> None:
    assert maskviz.masks.causal(5000)._repr_html_() is None
    assert maskviz.masks.causal(8)._repr_html_() is not None
    assert maskviz.masks.causal(8, queries=1)._repr_html_() is None  # a page draws squares


def test_a_notebook_gets_the_plain_repr_and_a_warning_past_its_page_size(
    headline: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskviz.render import html

    size = len(headline._repr_html_() or "")
    monkeypatch.setattr(html, "NOTEBOOK_PAGE", size // 2)
    with pytest.warns(
        UserWarning, match=r"would add \d+\.\d MB to the notebook: open it as a file"
    ):
        assert headline._repr_html_() is None


def test_viewer_assets_ship_with_the_package() -> None:
    from importlib import resources

    for name in ("viewer.js", "viewer.css"):
        assert resources.files("maskviz.render").joinpath(name).is_file()


# ---------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[chromium.Browser]:
    if os.environ.get("MASKVIZ_NO_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("MASKVIZ_NO_BROWSER=1: browser tests skipped on this machine")
    if chromium.chromium_path() is None and not os.environ.get("MASKVIZ_CHROMIUM"):
        pytest.fail(
            "headless Chromium is needed for the HTML tests: apt-get install chromium "
            "(or set MASKVIZ_NO_BROWSER=1 to skip them locally)"
        )
    with chromium.browser(width=1200, height=1400) as b:
        yield b


@pytest.fixture(scope="module")
def tab(browser: chromium.Browser) -> chromium.Tab:
    return browser.tab()


def url(path: Path, fragment: str = "") -> str:
    return path.resolve().as_uri() + (f"#{fragment}" if fragment else "")


ROOT_JS = "document.querySelector('.maskviz')"


def root_state(tab: chromium.Tab) -> dict[str, str]:
    state: dict[str, str] = tab.eval(
        f"(() => {{ const d = {ROOT_JS}.dataset;"
        " return {layer: d.layer, head: d.head, step: d.step, ready: d.maskvizReady}; })()"
    )
    return state


def tooltip_at(tab: chromium.Tab, row: int, key: int, canvas: int = 0) -> str:
    """Move the mouse over cell (row, key) (0-based) of a heatmap; the tooltip's text."""
    x, y = tab.eval(
        f"(() => {{ const c = document.querySelectorAll('.maskviz .mv-canvas')[{canvas}];"
        " c.scrollIntoView({block: 'center'}); const b = c.getBoundingClientRect();"
        " const s = Number(c.dataset.cell);"
        f" return [b.left + Number(c.dataset.left) + ({key} + 0.5) * s,"
        f"         b.top + Number(c.dataset.top) + ({row} + 0.5) * s]; }})()"
    )
    tab.mouse_move(x, y)
    text: str = tab.eval("document.querySelector('.maskviz .mv-tip').textContent")
    return text


@pytest.mark.parametrize(
    "name", ["trace", "view", "compare", "similarity", "mask", "swa", "compare_swa"]
)
def test_page_loads_from_file_with_no_console_errors_and_no_request_but_itself(
    tab: chromium.Tab, pages: dict[str, Path], name: str
) -> None:
    tab.open(url(pages[name]))
    assert tab.errors() == []
    requested = [u for u in tab.requests() if not u.startswith("about:")]
    assert requested == [url(pages[name])]
    assert tab.eval("performance.getEntriesByType('resource').length") == 0
    assert root_state(tab)["ready"] == "1"


def test_trace_page_opens_on_the_last_step_of_layer_0_head_0(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    tab.open(url(pages["trace"]))
    steps = headline.n_tokens - headline.prompt_len
    assert root_state(tab) == {"layer": "0", "head": "0", "step": str(steps), "ready": "1"}


def test_deep_link_selects_layer_head_and_step(tab: chromium.Tab, pages: dict[str, Path]) -> None:
    tab.open(url(pages["trace"], "layer=2&head=1&step=5"))
    assert root_state(tab) == {"layer": "2", "head": "1", "step": "5", "ready": "1"}
    assert tab.eval("document.querySelector('.maskviz .mv-step-out').textContent") == "5 / 16"
    # out-of-range values are clamped to the nearest that exists, not obeyed
    tab.open(url(pages["trace"], "layer=9&head=all&step=99"))
    assert root_state(tab) == {"layer": "3", "head": "all", "step": "16", "ready": "1"}
    tab.open(url(pages["trace"], "layer=1.4&head=-1&step=abc"))
    assert root_state(tab) == {"layer": "1", "head": "0", "step": "0", "ready": "1"}


def test_choosing_a_layer_updates_the_fragment(tab: chromium.Tab, pages: dict[str, Path]) -> None:
    tab.open(url(pages["trace"], "layer=0&head=0&step=3"))
    tab.eval(
        "(() => { const s = document.querySelector('.maskviz select');"
        " s.value = '3'; s.dispatchEvent(new Event('change')); })()"
    )
    assert tab.eval("location.hash") == "#layer=3&head=0&step=3"


def test_arrow_keys_move_the_step(tab: chromium.Tab, pages: dict[str, Path]) -> None:
    tab.open(url(pages["trace"], "layer=1&head=2&step=5"))
    tab.eval("document.querySelector('.maskviz .mv-slider').focus()")
    tab.key("ArrowRight")
    tab.key("ArrowRight")
    assert root_state(tab)["step"] == "7"
    tab.eval("document.querySelector('.maskviz .mv-play').focus()")  # any control but a select
    tab.key("ArrowLeft")
    assert root_state(tab)["step"] == "6"
    tab.key("Home")
    assert root_state(tab)["step"] == "0"
    assert "prefill" in tab.eval("document.querySelector('.maskviz .mv-step').textContent")


def test_tab_reaches_the_controls_first(tab: chromium.Tab, pages: dict[str, Path]) -> None:
    tab.open(url(pages["trace"]))
    order = []
    for _ in range(4):
        tab.key("Tab")
        order.append(tab.eval("document.activeElement.className || document.activeElement.tagName"))
    assert order == ["SELECT", "SELECT", "mv-play", "mv-slider"]


def test_hovering_a_cell_shows_query_key_weight_and_state(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    tab.open(url(pages["trace"], "layer=2&head=1"))
    row, key = 30, 6
    text = tooltip_at(tab, row, key)
    labels = [display_label(label) for label in headline.labels]
    lines = text.split("\n")
    assert lines[0] == f"query {row + 1} {labels[row]}"
    assert lines[1] == f"key {key + 1} {labels[key]}"
    weight = float(lines[2].removeprefix("weight "))
    assert weight == pytest.approx(float(headline.head_attention(2, 1)[row, key]), abs=1e-4)
    assert lines[3].startswith("→ ")  # the row's note: the token this row chose
    assert lines[4] == "allowed (in the KV cache)"


def saved_page(pages: dict[str, Path], tmp_path: Path, command: str, *options: str) -> Path:
    """The headline run's page as ``command`` (trace, or view of its file) saves it."""
    page = tmp_path / "page.html"
    source = [HEADLINE] if command == "trace" else [str(pages["trace_npz"])]
    result = run_cli(command, *source, *options, "--save", str(page))
    assert result.exit_code == 0, result.stderr
    return page


@pytest.mark.parametrize("command", ["trace", "view"])
def test_heads_combined_as_asked_are_on_the_page_and_open_first(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace, tmp_path: Path, command: str
) -> None:
    page = saved_page(pages, tmp_path, command, "--layer", "1", "--agg", "max")
    tab.open(url(page))
    assert (root_state(tab)["layer"], root_state(tab)["head"]) == ("1", "max")
    caption = tab.eval("document.querySelector('.maskviz figcaption').textContent")
    assert caption == "layer 1 · max over 4 heads"
    weight = float(tooltip_at(tab, 30, 6).split("\n")[2].removeprefix("weight "))
    assert weight == pytest.approx(float(headline.layer_attention(1, "max")[30, 6]), abs=1e-4)
    tab.open(url(page, "layer=3&head=max"))  # every layer has it
    assert root_state(tab)["head"] == "max"
    assert "max over" in tab.eval("document.querySelector('.maskviz figcaption').textContent")


@pytest.mark.parametrize("command", ["trace", "view"])
def test_heads_chosen_with_heads_open_side_by_side_and_stay_selectable(
    tab: chromium.Tab, pages: dict[str, Path], tmp_path: Path, command: str
) -> None:
    page = saved_page(pages, tmp_path, command, "--layer", "2", "--heads", "3,1")
    tab.open(url(page))
    assert (root_state(tab)["layer"], root_state(tab)["head"]) == ("2", "3,1")
    captions = tab.eval(
        "[...document.querySelectorAll('.maskviz figcaption')].map((c) => c.textContent)"
    )
    assert captions == ["head 3", "head 1"]
    options = tab.eval(
        "[...document.querySelectorAll('.maskviz select')[1].options].map((o) => o.text)"
    )
    assert options == ["0", "1", "2", "3", "heads 3, 1", "all heads"]
    tab.open(url(page, "layer=0&head=3,1"))  # every layer has the same group
    assert len(tab.eval("[...document.querySelectorAll('.maskviz figcaption')]")) == 2


def cell_rgb(tab: chromium.Tab, row: int, key: int) -> list[int]:
    """The colour at the centre of cell (row, key) (0-based) of the first heatmap."""
    color: list[int] = tab.eval(
        "(() => { const c = document.querySelector('.maskviz .mv-canvas');"
        " const s = Number(c.dataset.cell), r = window.devicePixelRatio || 1;"
        f" const x = (Number(c.dataset.left) + ({key} + 0.5) * s) * r;"
        f" const y = (Number(c.dataset.top) + ({row} + 0.5) * s) * r;"
        " return [...c.getContext('2d').getImageData(x, y, 1, 1).data]; })()"
    )
    return color[:3]


def test_the_prompts_future_is_masked_and_keys_generated_later_are_blank(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    p = headline.prompt_len
    tab.open(url(pages["trace"], "layer=0&head=0&step=2"))  # rows 1..p+2 computed
    # the prefill masked the prompt's own future
    assert tooltip_at(tab, 10, 12).endswith("masked: future (key after query)")
    assert "weight" not in tooltip_at(tab, 10, 12)
    # keys that a later step generated: there was nothing to mask, as the terminal's blank
    not_yet = "not generated yet when this query ran: nothing to mask"
    assert tooltip_at(tab, 10, p).endswith(not_yet)
    assert tooltip_at(tab, p, p + 1).endswith(not_yet)
    assert cell_rgb(tab, p, p + 1) == cell_rgb(tab, 10, p) == [255, 255, 255]
    assert cell_rgb(tab, 10, 12) != [255, 255, 255]
    # beyond the step: rows and keys not reached yet
    assert tooltip_at(tab, p + 6, 3).endswith("not computed yet at step 2")
    assert tooltip_at(tab, p, p + 6).endswith("not generated yet at step 2")
    legend = tab.eval("document.querySelector('.maskviz .mv-legend').textContent")
    assert "not generated yet" in legend and "not reached yet" not in legend


def test_a_focused_heatmap_reads_cells_with_the_arrow_keys(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "layer=0&head=0&step=4"))
    tab.eval("document.querySelector('.maskviz .mv-canvas').focus()")
    tip = "document.querySelector('.maskviz .mv-tip')"
    assert tab.eval(f"{tip}.dataset.row + ',' + {tip}.dataset.key") == "23,1"  # this step's row
    tab.key("ArrowRight")
    tab.key("ArrowUp")
    assert tab.eval(f"{tip}.dataset.row + ',' + {tip}.dataset.key") == "22,2"
    assert root_state(tab)["step"] == "4"  # on a heatmap the arrows move the cell, not the step


def test_evicted_keys_of_a_sliding_window_layer_say_evicted(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    data = page_data(pages["swa"])
    p = data["stepsFrom"]
    tab.open(url(pages["swa"], "layer=0&head=0"))
    assert tooltip_at(tab, p + 5, 0).endswith(
        "evicted from the rolling KV cache (sliding window 6)"
    )
    assert tooltip_at(tab, p - 1, 0).endswith("masked: outside the sliding window 6")  # prefill
    assert "evicted from the rolling KV cache" in tab.eval(
        "document.querySelector('.maskviz .mv-legend').textContent"
    )


def test_a_comparison_on_a_sliding_window_layer_names_the_window_on_both_sides(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    last = page_data(pages["compare_swa"])["views"][0]["panels"][0]["n"] - 1
    tab.open(url(pages["compare_swa"], "layer=0&head=0"))
    training, cached = tooltip_at(tab, last, 0, canvas=0), tooltip_at(tab, last, 0, canvas=1)
    assert training.endswith("masked: outside the sliding window 6"), training
    assert cached.endswith("evicted from the rolling KV cache (sliding window 6)"), cached


def test_all_heads_mode_draws_one_heatmap_per_head(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "layer=3&head=all&step=4"))
    captions = tab.eval(
        "[...document.querySelectorAll('.maskviz figcaption')].map(f => f.textContent)"
    )
    assert captions == ["head 0", "head 1", "head 2", "head 3"]
    third = "document.querySelectorAll('.maskviz .mv-canvas')[2]"
    # spoken with its layer, and with what Enter does (the mouse's title is never read)
    assert tab.eval(f"{third}.getAttribute('aria-label')") == (
        "layer 3 · head 2: Enter opens it; the arrow keys read its cells"
    )
    tab.eval(f"{third}.click()")
    assert root_state(tab) == {"layer": "3", "head": "2", "step": "4", "ready": "1"}


def test_step_panel_shows_the_chosen_token_and_the_top_k(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    tab.open(url(pages["trace"], "step=3"))
    row = headline.prompt_len - 1 + 3
    text = tab.eval("document.querySelector('.maskviz .mv-step').innerText")
    chosen = display_label(headline.labels[row + 1])
    assert f"step 3 of {headline.n_tokens - headline.prompt_len}" in text
    assert f"query {row + 1} {display_label(headline.labels[row])} → {chosen}" in text
    items = tab.eval("document.querySelectorAll('.maskviz .mv-topk li').length")
    assert items == 5


def test_compare_page_shows_both_sides_the_delta_and_the_verdict(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["compare"], "layer=1&head=3"))
    captions = tab.eval(
        "[...document.querySelectorAll('.maskviz figcaption')].map(f => f.textContent)"
    )
    assert captions == ["training", "cached", "|left − right|"]
    verdict = tab.eval("document.querySelector('.maskviz .mv-verdict').textContent")
    assert verdict.startswith("✓ identical up to float rounding") and "tolerance" in verdict
    delta_tip = tooltip_at(tab, 20, 3, canvas=2)
    assert "|Δ| " in delta_tip and "(tolerance " in delta_tip
    # written as the verdict writes numbers (Python's 1.9e-03), not JavaScript's 1.9e-3
    tolerance = re.search(r"tolerance (\S+)\)", delta_tip)
    assert tolerance and re.fullmatch(r"\d\.\de[+-]\d\d", tolerance[1])
    assert tolerance[1] in verdict
    assert "training: " in delta_tip and "cached: " in delta_tip
    # each row's max |Δ|, promised by the header, is in the row's tooltip at any cell size
    assert re.search(r"row's max \|Δ\|, all layers and heads: \d", tooltip_at(tab, 20, 3, 1))
    masked = tooltip_at(tab, 3, 20, canvas=2)  # a future key: neither side attends there
    assert "|Δ| none: neither side attends here" in masked and "e+" not in masked


def test_similarity_page_highlights_the_read_out_row(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["similarity"]))
    assert tab.eval("document.querySelectorAll('.maskviz .mv-canvas').length") == 2
    legend = tab.eval("document.querySelector('.maskviz .mv-legend').textContent")
    assert "last position: its state is read" in legend
    assert "cosine similarity" in tab.eval(
        "document.querySelector('.maskviz .mv-footer').textContent"
    )


def test_mask_page_names_padding_in_the_tooltip(tab: chromium.Tab, pages: dict[str, Path]) -> None:
    tab.open(url(pages["padded"]))
    assert tooltip_at(tab, 5, 1).endswith("masked: padding")
    assert tooltip_at(tab, 5, 4) == "query 6\nkey 5\nallowed"


def test_the_prefill_outlines_every_prompt_row_and_a_step_only_its_own(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    def outlined(row: int) -> bool:
        """Whether the highlight's left edge runs beside ``row`` of the first heatmap."""
        color: list[int] = tab.eval(
            "(() => { const c = document.querySelector('.maskviz .mv-canvas');"
            " const s = Number(c.dataset.cell), x = Number(c.dataset.left) - 1;"
            f" const y = Math.floor(Number(c.dataset.top) + ({row} + 0.5) * s);"
            " return [...c.getContext('2d').getImageData(x, y, 1, 1).data]; })()"
        )
        return color[:3] == [0xE7, 0x29, 0x8A]  # the highlight's magenta

    p = headline.prompt_len
    tab.open(url(pages["trace"], "layer=0&head=0&step=0"))
    assert outlined(0) and outlined(p - 1) and not outlined(p)
    tab.open(url(pages["trace"], "layer=0&head=0&step=1"))
    assert outlined(p) and not outlined(0) and not outlined(p - 1)


def test_mask_page_names_the_sliding_window_in_the_tooltip(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["mask"]))
    assert tooltip_at(tab, 20, 5).endswith("masked: outside the sliding window 8")
    assert tooltip_at(tab, 20, 25).endswith("masked: future (key after query)")


def sized(tab: chromium.Tab, width: int, height: int) -> chromium.Tab:
    """``tab`` with a window of ``width`` x ``height`` CSS pixels (density 1), as a resize."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    tab.send("Emulation.setDeviceMetricsOverride", metrics)
    return tab


@pytest.mark.parametrize(
    ("page", "fragment", "width"), [("compare", "", 420), ("trace", "head=all", 600)]
)
def test_panels_that_do_not_fit_side_by_side_wrap_instead_of_overflowing(
    browser: chromium.Browser, pages: dict[str, Path], page: str, fragment: str, width: int
) -> None:
    narrow = sized(browser.tab(), width, 800)
    narrow.open(url(pages[page], fragment))
    tops = narrow.eval(
        "[...document.querySelectorAll('.maskviz .mv-figure')].map(f => f.offsetTop)"
    )
    assert len(set(tops)) > 1  # on more than one line
    assert narrow.eval(f"{ROOT_JS}.scrollWidth <= {ROOT_JS}.clientWidth")


def test_a_heatmap_fits_a_phone_screen_and_the_keys_keep_the_cursor_in_view(
    browser: chromium.Browser, pages: dict[str, Path]
) -> None:
    narrow = sized(browser.tab(), 360, 640)
    narrow.open(url(pages["trace"]))
    assert narrow.eval(f"{ROOT_JS}.scrollWidth <= {ROOT_JS}.clientWidth")  # the map shrank
    narrow.eval("document.querySelector('.maskviz .mv-canvas').focus()")
    for key in ["ArrowRight"] * 30 + ["ArrowUp"] * 30:
        narrow.key(key)
    box = narrow.eval(
        "(() => { const b = document.querySelector('.maskviz .mv-cursor').getBoundingClientRect();"
        " return [b.left, b.top, b.right, b.bottom]; })()"
    )
    left, top, right, bottom = box
    assert left >= 0 and top >= 0 and right <= 360 and bottom <= 640


def test_a_click_or_tap_shows_the_cell_under_it_and_the_keys_move_on_from_there(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "layer=0&head=0&step=16"))
    tooltip_at(tab, 25, 10)
    x, y = tab.eval(
        "(() => { const c = document.querySelector('.maskviz .mv-canvas');"
        " const b = c.getBoundingClientRect(), s = Number(c.dataset.cell);"
        " return [b.left + Number(c.dataset.left) + 10.5 * s,"
        "         b.top + Number(c.dataset.top) + 25.5 * s]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):  # the press focuses the map
        tab.send(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
        )
    cell = "(() => { const d = document.querySelector('.maskviz .mv-tip').dataset; return [d.row, d.key]; })()"
    assert tab.eval("document.activeElement.tagName") == "CANVAS"
    assert tab.eval(cell) == ["26", "11"]  # 1-based, as the page numbers positions
    tab.key("ArrowLeft")
    assert tab.eval(cell) == ["26", "10"]


def test_a_pointer_resting_on_a_cell_keeps_its_tooltip_while_steps_change(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "layer=0&head=0&step=16"))
    before = tooltip_at(tab, 20, 3)
    tab.eval("document.querySelector('.maskviz .mv-play').focus()")
    tab.key("ArrowLeft")  # a redraw of step 15 under the resting pointer
    assert root_state(tab)["step"] == "15"
    assert tab.eval("document.querySelector('.maskviz .mv-tip').hidden") is False
    after = tab.eval("document.querySelector('.maskviz .mv-tip').textContent")
    assert after.split("\n")[:2] == before.split("\n")[:2]  # the same query and key


@pytest.mark.parametrize(
    ("size", "least_cell"), [((1024, 768), 10), ((1280, 720), 10), ((1600, 500), 2)]
)
def test_a_projected_page_shows_the_whole_map_and_the_step_box_in_the_window(
    browser: chromium.Browser, pages: dict[str, Path], size: tuple[int, int], least_cell: int
) -> None:
    # 10 px cells keep the token labels; a window 500 px high has the box beside the map
    tab = sized(browser.tab(), *size)
    tab.open(url(pages["trace"], "layer=0&head=0&step=5"))
    bottoms = tab.eval(
        "[document.querySelector('.maskviz .mv-canvas'), document.querySelector('.maskviz .mv-step')]"
        ".map((e) => e.getBoundingClientRect().bottom)"
    )
    assert max(bottoms) <= size[1]
    cell = "Number(document.querySelector('.maskviz .mv-canvas').dataset.cell)"
    assert tab.eval(cell) >= least_cell
    shown = tab.eval(cell)
    tab.key("End")  # stepping never resizes the map
    assert tab.eval(cell) == shown


def test_a_notebook_output_is_sized_by_its_width_alone(
    browser: chromium.Browser, headline: Trace, tmp_path: Path
) -> None:
    # a notebook's output may grow with what it holds: its window's height says nothing
    page = tmp_path / "notebook.html"
    page.write_text(f"<!doctype html><meta charset='utf-8'>{headline._repr_html_()}")
    cell = "Number(document.querySelector('.maskviz .mv-canvas').dataset.cell)"
    cells = []
    for height in (1000, 500):
        tab = sized(browser.tab(), 1024, height)
        tab.open(url(page))
        cells.append(tab.eval(cell))
    assert cells[0] == cells[1]


def test_the_tooltip_opens_above_a_cell_near_the_bottom_of_the_window(
    browser: chromium.Browser, pages: dict[str, Path]
) -> None:
    tab = sized(browser.tab(), 1200, 500)
    tab.open(url(pages["compare"]))
    n = page_data(pages["compare"])["views"][0]["panels"][0]["n"]
    x, y, cell = tab.eval(
        "(() => { const c = document.querySelectorAll('.maskviz .mv-canvas')[2];"
        " c.scrollIntoView({block: 'end'}); const b = c.getBoundingClientRect();"
        " const s = Number(c.dataset.cell);"
        f" return [b.left + Number(c.dataset.left) + ({n} - 0.5) * s,"
        f"         b.top + Number(c.dataset.top) + ({n} - 0.5) * s, s]; }})()"
    )
    tab.mouse_move(x, y)
    tip = tab.eval(
        "(() => { const t = document.querySelector('.maskviz .mv-tip').getBoundingClientRect();"
        " return [t.top, t.bottom, window.innerHeight]; })()"
    )
    assert tip[1] <= tip[2]  # wholly in the window
    assert tip[1] == pytest.approx(y - cell / 2 - 8, abs=2)  # just above the cell


def test_two_notebook_outputs_on_one_page_render_and_stay_independent(
    tab: chromium.Tab, headline: Trace, tmp_path: Path
) -> None:
    parts = [headline._repr_html_(), maskviz.masks.build(10, window=3)._repr_html_()]
    assert all(parts)
    page = tmp_path / "notebook.html"
    body = "<p>cell 1</p>" + parts[0] + "<p>cell 2</p>" + parts[1]  # type: ignore[operator]
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"
    )
    tab.open(url(page, "layer=2"))
    assert tab.errors() == []
    assert tab.eval("document.querySelectorAll('.maskviz[data-maskviz-ready=\"1\"]').length") == 2
    assert root_state(tab)["layer"] == "0"  # a notebook's fragment is not the viewer's
    tab.eval(
        "(() => { const s = document.querySelectorAll('.maskviz')[0].querySelectorAll('select')[1];"
        " s.value = 'all'; s.dispatchEvent(new Event('change')); })()"
    )
    heads = tab.eval("[...document.querySelectorAll('.maskviz')].map(r => r.dataset.head)")
    assert heads == ["all", None]  # the mask has no head to choose
    figures = tab.eval(
        "[...document.querySelectorAll('.maskviz')].map(r => r.querySelectorAll('canvas.mv-canvas').length)"
    )
    assert figures == [4, 1]


@pytest.mark.parametrize("detached", [False, True])
def test_one_output_shown_twice_draws_twice_with_its_own_controls(
    tab: chromium.Tab, headline: Trace, tmp_path: Path, detached: bool
) -> None:
    fragment = headline._repr_html_()
    assert fragment is not None
    page = tmp_path / "twice.html"
    # detached: a notebook that evaluates output scripts apart from their element, where
    # document.currentScript is null
    hide = "<script>Object.defineProperty(document, 'currentScript', {get: () => null});</script>"
    head = hide if detached else ""
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'>{head}</head>"
        f"<body>{fragment}{fragment}</body></html>"
    )
    tab.open(url(page))
    assert tab.errors() == []
    ready = tab.eval("[...document.querySelectorAll('.maskviz')].map(r => r.dataset.maskvizReady)")
    assert ready == ["1", "1"]
    selects = tab.eval(
        "[...document.querySelectorAll('.maskviz')].map(r => r.querySelectorAll('select').length)"
    )
    assert selects == [2, 2]  # layer and head, once each


def test_a_focused_heatmap_keeps_focus_and_its_cell_when_the_step_moves(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "layer=0&head=0&step=2"))
    tab.eval("document.querySelector('.maskviz .mv-canvas').focus()")
    tab.key("ArrowUp")
    tip = "document.querySelector('.maskviz .mv-tip')"
    before = tab.eval(f"{tip}.dataset.row + ',' + {tip}.dataset.key")
    # what a playing step does: the slider moves without taking the focus
    tab.eval(
        "(() => { const s = document.querySelector('.maskviz .mv-slider');"
        " s.value = '3'; s.dispatchEvent(new Event('input')); })()"
    )
    assert root_state(tab)["step"] == "3"
    assert tab.eval("document.activeElement.className") == "mv-canvas"
    assert tab.eval(f"{tip}.dataset.row + ',' + {tip}.dataset.key") == before
    tab.key("ArrowDown")  # still reading cells, not scrolling the page
    assert root_state(tab)["step"] == "3"
    assert tab.eval(f"{tip}.dataset.row") == str(int(before.split(",")[0]) + 1)
    slider = "document.querySelector('.maskviz .mv-slider')"
    assert tab.eval(f"{slider}.getAttribute('aria-valuetext')") == "step 3 of 16"


def test_positions_not_generated_at_the_step_show_no_token(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace
) -> None:
    p = headline.prompt_len
    tab.open(url(pages["trace"], "layer=0&head=0&step=1"))
    ahead = tooltip_at(tab, p + 4, 2).split("\n")
    assert ahead[0] == f"query {p + 5}"  # the number alone: the token comes later
    assert ahead[-1] == "not computed yet at step 1"
    assert tooltip_at(tab, p, p + 3).split("\n")[1] == f"key {p + 4}"


def test_both_sides_of_a_comparison_give_the_rows_max_delta(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["compare"], "layer=1&head=3"))
    for canvas in (0, 1):
        assert ROW_DELTA in tooltip_at(tab, 20, 3, canvas)


ROW_DELTA = "row's max |Δ|, all layers and heads: "


def test_mask_page_says_what_the_terminal_says_and_leaves_the_address_alone(
    tab: chromium.Tab, tmp_path: Path
) -> None:
    page = tmp_path / "step.html"
    args = ["show-mask", "12", "--window", "4", "--step", "9", "--pad", "2"]
    terminal = run_cli(*args, "--plain")
    assert run_cli(*args, "--save", str(page)).exit_code == 0
    tab.open(url(page))
    footer = tab.eval("document.querySelector('.maskviz .mv-footer').innerText")
    assert "Step 9: cached decoding computes only this row" in footer
    assert "Padded query rows attend to nothing; their outputs are ignored." in footer
    for line in footer.split("\n"):
        assert " ".join(line.split()) in " ".join(terminal.stdout.split())
    assert tooltip_at(tab, 8, 7).split("\n")[2] == "one cached decoding step computes this row"
    assert tab.eval("location.hash") == ""  # nothing to choose on this page


def test_printing_keeps_the_colours_and_drops_the_controls(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"]))
    tab.send("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        style = tab.eval(
            "(() => { const r = getComputedStyle(document.querySelector('.maskviz'));"
            " const c = getComputedStyle(document.querySelector('.maskviz .mv-controls'));"
            " return [r.printColorAdjust, c.display]; })()"
        )
    finally:
        tab.send("Emulation.setEmulatedMedia", {"media": ""})
    assert style == ["exact", "none"]


def test_a_narrower_window_redraws_the_maps_smaller(
    browser: chromium.Browser, pages: dict[str, Path]
) -> None:
    tab = sized(browser.tab(), 1200, 900)
    tab.open(url(pages["trace"]))
    cell = "Number(document.querySelector('.maskviz .mv-canvas').dataset.cell)"
    before = tab.eval(cell)
    sized(tab, 300, 900)
    for _ in range(100):  # the redraw waits for the resizing to settle (150 ms)
        if tab.eval(cell) < before:
            break
        time.sleep(0.05)
    assert tab.eval(cell) < before
    assert tab.eval(f"{ROOT_JS}.scrollWidth <= {ROOT_JS}.clientWidth")


# ---------------------------------------------------------------- as the figures draw it


def relative_luminance(hex_color: str) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(hex_color[i : i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rgb_of(hex_color: str) -> list[int]:
    return [int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]


@pytest.mark.parametrize("name", ["trace", "compare", "similarity", "mask", "swa"])
def test_pages_take_the_figures_masked_dots_marks_and_a_visible_small_evicted_colour(
    pages: dict[str, Path], name: str
) -> None:
    colors = page_data(pages[name])["colors"]
    assert colors["maskedDots"] == style.COLOR_MASKED_DOTS
    assert colors["boundary"] == style.COLOR_BOUNDARY
    assert page_data(pages[name])["markLabels"] == style.MARK_LABELS
    # evicted keys too small to hatch: between the pink and its hatching, seen on the page
    small = colors["evictedSmall"]
    assert small not in (style.COLOR_EVICTED, style.COLOR_EVICTED_HATCH, colors["highlight"])
    assert contrast(small, "#ffffff") >= 3
    assert contrast(style.COLOR_EVICTED, "#ffffff") < contrast(small, "#ffffff")
    # a masked cell's dots stand out from its grey (3:1, as graphics need): on a washed-out
    # projector they still tell it from a white cell, a key not generated yet
    assert contrast(colors["maskedDots"], colors["masked"]) >= 3


def test_pages_colour_cells_with_the_figures_colormaps_and_never_load_matplotlib(
    tmp_path: Path,
) -> None:
    import matplotlib as mpl

    for name in (style.WEIGHTS_CMAP, style.DIFF_CMAP):
        rgba = mpl.colormaps[name].resampled(256)(np.arange(256))
        table = bytes.fromhex(style.lut(name))
        expected = np.rint(rgba[:, :3] * 255).astype(np.uint8).ravel()  # exact halves: none
        assert table == expected.tobytes(), name
    script = (
        "import sys; from maskviz import load_model, masks;"
        " from maskviz.render.html import mask_page, trace_page, render_document;"
        " from maskviz.render.save import save_view; from maskviz.view import mask_view, trace_view;"
        " m = masks.causal(6); t = load_model().trace([84, 111], steps=2);"
        " render_document(trace_page(t)); render_document(mask_page(mask_view(m), m));"
        f" save_view(trace_view(t), {str(tmp_path / 'v.html')!r});"
        f" sys.argv = ['maskviz', 'compare', 'training-vs-cached', '--steps', '2', '--save', {str(tmp_path / 'c.html')!r}];"
        " from maskviz.__main__ import main\ntry: main()\nexcept SystemExit: pass\n"
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.endswith("False\n")  # after compare's report
    assert (tmp_path / "v.html").is_file() and (tmp_path / "c.html").is_file()


def test_a_standalone_page_has_a_main_landmark_and_a_fragment_none(headline: Trace) -> None:
    page = mvhtml.trace_page(headline)
    document = mvhtml.render_document(page)
    assert document.count("<main>") == 1 and "</div></main></body>" in document
    assert "<main" not in mvhtml.render_fragment(page)


def pixels(
    tab: chromium.Tab, selector: str, x: float, y: float, w: int = 1, h: int = 1
) -> list[list[int]]:
    """The RGBA pixels of a ``w`` x ``h`` box at (x, y) (CSS pixels) of a canvas."""
    found: list[list[int]] = tab.eval(
        f"(() => {{ const c = document.querySelector({json.dumps(selector)});"
        " const r = window.devicePixelRatio || 1;"
        f" const d = c.getContext('2d').getImageData({x} * r, {y} * r, {w} * r, {h} * r).data;"
        " const out = []; for (let i = 0; i < d.length; i += 4) out.push([...d.slice(i, i + 4)]);"
        " return out; })()"
    )
    return found


def map_box(tab: chromium.Tab, canvas: int = 0) -> tuple[float, float, float]:
    """left, top and cell size of a heatmap (CSS pixels in its canvas)."""
    box: list[float] = tab.eval(
        f"(() => {{ const c = document.querySelectorAll('.maskviz .mv-canvas')[{canvas}];"
        " return [Number(c.dataset.left), Number(c.dataset.top), Number(c.dataset.cell)]; })()"
    )
    return box[0], box[1], box[2]


def legend_key(tab: chromium.Tab, text: str) -> str:
    """A selector for the swatch of the legend entry that says ``text``."""
    index = tab.eval(
        "[...document.querySelectorAll('.maskviz .mv-legend .mv-key')]"
        f".findIndex((k) => k.textContent.includes({json.dumps(text)}))"
    )
    assert index >= 0, text
    return f".maskviz .mv-legend .mv-key:nth-child({index + 1}) canvas.mv-swatch"


def test_masked_cells_are_grey_dotted_in_darker_grey_as_the_figures_and_the_legend(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    data = page_data(pages["mask"])
    masked, dots = rgb_of(data["colors"]["masked"]), rgb_of(data["colors"]["maskedDots"])
    tab.open(url(pages["mask"]))
    left, top, cell = map_box(tab)
    assert cell >= 4
    row, key = 40, 5  # outside the window of 8
    seen = {tuple(p[:3]) for p in pixels(tab, ".maskviz .mv-canvas", left + key * cell,
                                          top + row * cell, int(cell), int(cell))}  # fmt: skip
    assert seen == {tuple(masked), tuple(dots)}
    swatch = {tuple(p[:3]) for p in pixels(tab, legend_key(tab, "masked"), 2, 2, 10, 10)}
    assert swatch == {tuple(masked), tuple(dots)}
    # also at one pixel a cell: the dots cover the masked region, not a cell
    big = pages["mask"].parent / "mask_big.html"
    assert run_cli("show-mask", "600", "--window", "64", "--save", str(big)).exit_code == 0
    tab.open(url(big))
    left, top, cell = map_box(tab)
    assert cell == 1
    seen = {tuple(p[:3]) for p in pixels(tab, ".maskviz .mv-canvas", left + 10, top + 300, 8, 8)}
    assert seen == {tuple(masked), tuple(dots)}


def test_evicted_keys_too_small_to_hatch_are_a_visible_flat_colour_and_the_legend_says_so(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    page = pages["swa"].parent / "swa_long.html"
    args = ["trace", HEADLINE, "--model", SWA_MODEL, "--steps", "40", "--save", str(page)]
    assert run_cli(*args).exit_code == 0
    data = page_data(page)
    states = decoded_states(data, data["views"][0]["panels"][0])
    row, key = (int(x[-1]) for x in np.nonzero(states == EVICTED))
    tab.open(url(page, "layer=0&head=all"))
    left, top, cell = map_box(tab)
    assert cell < data["colors"]["smallCell"]
    small = rgb_of(data["colors"]["evictedSmall"])
    centre = pixels(tab, ".maskviz .mv-canvas", left + (key + 0.5) * cell, top + (row + 0.5) * cell)
    assert centre[0][:3] == small
    swatch = {tuple(p[:3]) for p in pixels(tab, legend_key(tab, "evicted"), 2, 2, 10, 10)}
    assert swatch == {tuple(small)}
    tab.open(url(page, "layer=0&head=0"))  # one head: cells big enough to hatch, so hatched
    swatch = {tuple(p[:3]) for p in pixels(tab, legend_key(tab, "evicted"), 2, 2, 10, 10)}
    assert tuple(rgb_of(data["colors"]["evicted"])) in swatch
    assert tuple(rgb_of(data["colors"]["evictedHatch"])) in swatch


def test_similarity_delimiter_lines_are_the_figures_orange_and_in_the_legend(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    data = page_data(pages["similarity"])
    index = data["views"][0]["panels"][0]["marks"][0][0]
    tab.open(url(pages["similarity"]))
    left, top, cell = map_box(tab)
    # the dashed horizontal line's first dash, under the first key column
    line = pixels(tab, ".maskviz .mv-canvas", left, top + index * cell - 1, 3, 2)
    r, g, b = max((p[:3] for p in line), key=lambda p: p[0] - p[2])
    assert r > 150 and r > g > b, line  # orange, not the old dark grey
    legend = tab.eval("document.querySelector('.maskviz .mv-legend').textContent")
    assert "delimiter (between the dashed lines)" in legend


def test_legend_keys_look_like_what_they_name(
    tab: chromium.Tab, pages: dict[str, Path], tmp_path: Path
) -> None:
    highlight = rgb_of(page_data(pages["trace"])["colors"]["highlight"])
    tab.open(url(pages["trace"], "layer=0&head=0&step=3"))
    dashed = pixels(tab, legend_key(tab, "prompt | generated"), 0, 0, 24, 14)
    drawn = [i for i, p in enumerate(dashed) if p[3] > 0]
    assert drawn and {i // 24 for i in drawn} <= {6, 7}  # a line across, not a square
    assert {i % 24 for i in drawn} != set(range(24))  # dashed
    outline = legend_key(tab, "the row this step computes")
    assert pixels(tab, outline, 1, 7)[0][:3] == highlight  # its edge
    assert pixels(tab, outline, 10, 7)[0][3] == 0  # hollow, as the outlined row
    border = "getComputedStyle(document.querySelector('.maskviz .mv-step')).borderLeftColor"
    assert tab.eval(border) == "rgb({}, {}, {})".format(*highlight)  # beside the step's row
    training = saved_page(pages, tmp_path, "trace", "--mode", "training")
    tab.open(url(training))  # one masked pass: no row is outlined, nor the box magenta
    assert tab.eval("document.querySelector('.maskviz .mv-step').hidden") is False
    assert tab.eval(border) != "rgb({}, {}, {})".format(*highlight)


def test_enter_on_a_small_multiple_opens_its_head_and_keeps_the_keyboard_focus(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    for head, query in (("3", "layer=1&head=all"), ("2", "layer=1&head=all&step=3")):
        tab.open(url(pages["trace"], query))
        tab.eval(f"document.querySelectorAll('.maskviz .mv-canvas')[{head}].focus()")
        tab.key("Enter")
        assert root_state(tab)["head"] == head
        assert tab.eval("document.activeElement === document.querySelector('.maskviz .mv-canvas')")


@pytest.mark.parametrize(
    ("args", "row", "key", "reason"),
    [
        (["10", "--pad", "3", "--text", "<b>a</b> b c d e f g h i j"], 1, 2, "masked: padding"),
        (["9", "--docs", "3,2,4"], 4, 0, "masked: another document"),
        (["10", "--chunk", "4"], 5, 1, "masked: another chunk"),
        (["8", "--window", "3", "--docs", "4,4"], 4, 3, "masked: another document"),
    ],
)
def test_mask_page_tooltips_give_the_reason_the_mask_has(
    tab: chromium.Tab, tmp_path: Path, args: list[str], row: int, key: int, reason: str
) -> None:
    page = tmp_path / "mask.html"
    assert run_cli("show-mask", *args, "--save", str(page)).exit_code == 0
    tab.open(url(page))
    assert tooltip_at(tab, row, key).split("\n")[-1] == reason


def test_playback_stops_on_the_last_step_with_the_button_saying_play_at_once(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.send("Page.bringToFront")  # a tab behind others runs its timers late
    tab.open(url(pages["trace"], "layer=0&head=0&step=15"))
    play = "document.querySelector('.maskviz .mv-play')"
    tab.eval(f"{play}.click()")
    # the button as the last step is drawn: read in the same task that draws it
    button = tab.eval(
        "new Promise((done) => new MutationObserver((_, watch) => {"
        f" if ({ROOT_JS}.dataset.step === '16') {{ watch.disconnect(); done({play}.textContent); }}"
        f" }}).observe({ROOT_JS}, {{ attributes: true, attributeFilter: ['data-step'] }}))"
    )
    assert button == "▶ play"


def test_screen_readers_hear_keyboard_moves_and_stops_not_mouse_moves_or_playing_steps(
    tab: chromium.Tab, pages: dict[str, Path], headline: Trace, tmp_path: Path
) -> None:
    tab.send("Page.bringToFront")  # a tab behind others runs its timers late
    tab.open(url(pages["trace"], "layer=0&head=0&step=2"))
    assert tab.eval("document.querySelectorAll('main > .maskviz h1.mv-title').length") == 1
    assert tab.eval("document.querySelectorAll('h1').length") == 1
    tip, step = (
        "document.querySelector('.maskviz .mv-tip')",
        "document.querySelector('.maskviz .mv-step')",
    )
    assert tab.eval(f"{tip}.getAttribute('role') ?? {tip}.getAttribute('aria-live')") is None
    assert tab.eval(f"{step}.getAttribute('aria-live')") is None
    live = "document.querySelector('.maskviz .mv-live')"
    assert tab.eval(f"{live}.getAttribute('role')") == "status"
    # the controls are a labelled group: a toolbar promises arrow keys between them
    controls = "document.querySelector('.maskviz .mv-controls')"
    assert tab.eval(
        f"[{controls}.getAttribute('role'), {controls}.getAttribute('aria-label')]"
    ) == [
        "group",
        "view controls",
    ]
    # the step counter beside the slider is shown only: an <output> would be a live region
    counter = "document.querySelector('.maskviz .mv-step-out')"
    assert tab.eval(f"[{counter}.tagName, {counter}.getAttribute('aria-hidden')]") == [
        "SPAN",
        "true",
    ]

    def heard(wait: float = 0.6) -> str:
        time.sleep(wait)  # a quick run of presses says only its last
        text: str = tab.eval(f"{live}.textContent")
        return text

    tooltip_at(tab, 20, 3)
    tooltip_at(tab, 21, 4)
    assert heard() == ""  # the mouse: shown, not spoken
    tab.eval("document.querySelector('.maskviz .mv-canvas').focus()")
    tab.key("ArrowUp")
    assert heard().startswith(f"query {headline.prompt_len + 1}")
    tab.eval(f"{live}.textContent = ''")
    tab.eval("document.querySelector('.maskviz .mv-play').click()")
    assert heard(1.6) == ""  # two steps played by, silently (the map keeps the focus quietly)
    assert int(root_state(tab)["step"]) >= 4
    tab.eval("document.querySelector('.maskviz .mv-play').click()")  # pause
    assert heard().startswith("step " + root_state(tab)["step"] + " of 16: query ")
    tab.eval("document.querySelector('.maskviz .mv-play').focus()")
    tab.key("ArrowLeft")
    assert heard().startswith("step " + root_state(tab)["step"] + " of 16")
    # a notebook's output is a section of the notebook: no h1, no main
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!doctype html><meta charset='utf-8'>{headline._repr_html_()}")
    tab.open(url(notebook))
    assert tab.eval("[document.querySelectorAll('h1, main').length, "
                    "document.querySelectorAll('h2.mv-title').length]") == [0, 1]  # fmt: skip


def test_a_difference_map_hatches_no_evicted_key_as_the_figure_does(
    tab: chromium.Tab, tmp_path: Path
) -> None:
    # left-padded vs cached on a sliding model: the cached side evicts keys the padded
    # side masks; on the |Δ| map neither attends there, so the cell is masked, not hatched
    page = tmp_path / "cmp.html"
    args = ["compare", "padded-vs-cached", "--side", "left", "--model", SWA_MODEL]
    assert run_cli(*args, "--steps", "6", "--save", str(page)).exit_code in (0, 1)
    data = page_data(page)
    right = data["views"][0]["panels"][1]
    states = decoded_states(data, right)
    row, key = (int(x[-1]) for x in np.nonzero(states == EVICTED))
    tab.open(url(page))
    hatch = rgb_of(data["colors"]["evictedHatch"])
    for canvas, hatched in ((1, True), (2, False)):  # the cached side, then |Δ|
        left, top, cell = map_box(tab, canvas)
        found = tab.eval(
            f"(() => {{ const c = document.querySelectorAll('.maskviz .mv-canvas')[{canvas}];"
            " const r = window.devicePixelRatio || 1;"
            f" const d = c.getContext('2d').getImageData(({left} + {key} * {cell}) * r,"
            f" ({top} + {row} * {cell}) * r, {cell} * r, {cell} * r).data;"
            " const out = []; for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i+1], d[i+2]]);"
            " return out; })()"
        )
        assert (hatch in found) is hatched, canvas


def notes_width(tab: chromium.Tab, canvas: int = 0) -> float:
    """How wide the notes beside a heatmap's rows are drawn (0: none), CSS pixels."""
    width: float = tab.eval(
        f"(() => {{ const c = document.querySelectorAll('.maskviz .mv-canvas')[{canvas}];"
        " return parseFloat(c.style.width) - Number(c.dataset.left)"
        " - Number(c.dataset.n) * Number(c.dataset.cell) - 2; })()"
    )
    return width


@pytest.mark.parametrize("width", [360, 500, 800, 1200])
def test_row_notes_make_way_on_a_narrow_screen_before_the_cells_shrink(
    browser: chromium.Browser, pages: dict[str, Path], width: int
) -> None:
    tab = sized(browser.tab(), width, 900)
    tab.open(url(pages["similarity"]))
    _, _, cell = map_box(tab)
    notes = notes_width(tab)
    if width >= 800:
        assert notes > 100  # "◀ last: sees every token; its state is read"
    else:
        assert notes == 0
    # the notes go first: the cells keep a readable size (they shrank to 9 px at 360)
    assert cell == 18 if width >= 500 else cell >= 12


def test_row_notes_are_not_drawn_on_rows_shorter_than_their_font(
    browser: chromium.Browser, tmp_path: Path
) -> None:
    page = tmp_path / "long.html"
    assert run_cli("trace", HEADLINE, "--steps", "30", "--save", str(page)).exit_code == 0
    tab = sized(browser.tab(), 1400, 900)
    tab.open(url(page))
    _, _, cell = map_box(tab)
    assert cell == 11  # 49 rows in 560 px: "→ ␣ 74%" would run into the next row's
    assert notes_width(tab) == 0
    short = tmp_path / "short.html"
    assert run_cli("trace", HEADLINE, "--steps", "8", "--save", str(short)).exit_code == 0
    tab.open(url(short))
    assert map_box(tab)[2] == 18 and notes_width(tab) > 0


def test_a_map_without_labels_keeps_its_whole_frame_on_the_canvas(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["trace"], "head=all"))
    left, top, _ = map_box(tab)
    assert (left, top) == (2, 2)  # no labels in the small multiples: a 2 px margin
    # the frame's top and left lines are on the canvas, in its grey
    frame = tab.eval(
        "(() => { const c = document.querySelector('.maskviz .mv-canvas');"
        " const g = c.getContext('2d'), r = window.devicePixelRatio || 1;"
        " return [[...g.getImageData(1 * r, 10 * r, 1, 1).data].slice(0, 3),"
        " [...g.getImageData(10 * r, 1 * r, 1, 1).data].slice(0, 3)]; })()"
    )
    assert frame == [[128, 128, 128], [128, 128, 128]]


def test_a_view_saved_from_the_api_opens_on_its_last_step_and_links_only_the_step(
    tab: chromium.Tab, headline: Trace, tmp_path: Path
) -> None:
    from maskviz.render.save import save_view
    from maskviz.view import trace_view

    page = tmp_path / "one.html"
    save_view(trace_view(headline, layer=0, head=1), page)
    tab.open(url(page))
    steps = headline.n_tokens - headline.prompt_len
    # its one view has no layer or head to choose: the page names none
    assert root_state(tab) == {"step": str(steps), "ready": "1"}  # no layer, no head
    assert tab.eval("location.hash") == f"#step={steps}"


def test_a_page_with_8_bit_weights_says_so_in_its_legend(
    tab: chromium.Tab, headline: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legend = "document.querySelector('.maskviz .mv-legend').textContent"
    page = tmp_path / "small.html"
    mvhtml.write_page(mvhtml.trace_page(headline), page)
    tab.open(url(page))
    assert "8 bits" not in tab.eval(legend)
    monkeypatch.setattr(mvhtml, "WEIGHT_BUDGET", 1000)
    mvhtml.write_page(mvhtml.trace_page(headline), page)
    tab.open(url(page))
    assert "weights kept to ±0.002 (8 bits)" in tab.eval(legend)


def test_a_compare_page_says_its_row_delta_is_in_the_tooltips(
    tab: chromium.Tab, pages: dict[str, Path]
) -> None:
    tab.open(url(pages["compare"]))
    header = tab.eval("document.querySelector('.maskviz .mv-header').textContent")
    assert "in the tooltips of each row's cells: max |Δ| of that row" in header
    assert "after each row" not in header  # its 5 px rows have no room beside them
