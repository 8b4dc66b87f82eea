"""`maskviz bench`: the shape of what it reports and its refusals; never its speed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from maskviz import GPTConfig, random_model
from maskviz.arch.llama import LlamaConfig
from maskviz.bench import MAX_TOKENS, SHAPES, run
from maskviz.cli import ShapeChoice
from maskviz.errors import MaskvizError
from tests.conftest import run_cli

FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")
CONFIG = {"n_layer": 2, "n_head": 4, "n_embd": 32, "n_ctx": 64, "vocab_size": 320}


def bench_json(*args: str) -> dict[str, object]:
    result = run_cli("bench", "--model", FIXTURE, "--repeats", "1", "--json", *args)
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_json_reports_every_mode_over_the_same_positions() -> None:
    data = bench_json("--tokens", "9")
    assert data["model"] == "gpt2-tiny"
    assert data["dtype"] == "float32"
    assert data["tokens"] == 9 and data["prompt_len"] == 1 and data["stop_reason"] == "steps"
    config = data["config"]
    assert isinstance(config, dict)
    assert {k: config[k] for k in CONFIG} == CONFIG
    for mode in ("cached", "cached_recording", "recompute"):
        decode = data[mode]
        assert isinstance(decode, dict)
        assert decode["positions"] == list(range(1, 9))
        assert len(decode["step_seconds"]) == decode["steps"] == 8
        assert all(s > 0 for s in decode["step_seconds"])
        assert decode["tokens_per_second"] > 0
    assert data["cached_recording"]["recording"] is True  # type: ignore[index]
    assert data["cached"]["recording"] is False  # type: ignore[index]
    training = data["training"]
    assert isinstance(training, dict)
    assert training["tokens"] == 9 and training["seconds"] > 0


def test_json_costs_follow_the_mac_formulas() -> None:
    data = bench_json("--tokens", "6")
    cfg = GPTConfig(**CONFIG)
    assert data["cached"]["macs"] == sum(cfg.pass_macs(1, t + 1, 1) for t in range(1, 6))  # type: ignore[index]
    assert data["recompute"]["macs"] == sum(  # type: ignore[index]
        cfg.pass_macs(t + 1, t + 1, 1) for t in range(1, 6)
    )
    assert data["training"]["macs"] == cfg.pass_macs(6, 6, 6)  # type: ignore[index]


def test_json_states_memory_per_token_and_the_bandwidth_bound() -> None:
    data = bench_json("--tokens", "5")
    memory = data["memory"]
    assert memory == {
        "kv_cache_bytes_per_token": 2 * 2 * 32 * 4,
        "kv_cache_bytes_last_token": 2 * 2 * 32 * 4,
        "kv_cache_bytes": 2 * 2 * 32 * 4 * 5,
        "record_bytes_per_token": 2 * 4 * 5 * 4,
        "record_bytes": 2 * 4 * 5 * 4 * 5,
        "record_bytes_per_token_one_head": 5 * 4,
    }
    bandwidth = data["bandwidth"]
    assert isinstance(bandwidth, dict)
    assert bandwidth["probe_shape"] == [768, 50257]
    assert bandwidth["probe_gb_per_second"] > 0
    assert bandwidth["bound_applies"] is False  # the fixture's weights fit in any cache
    assert 0 < bandwidth["weight_bytes_per_token"] < 1_000_000
    assert data["fraction_of_bound"] is not None
    machine = data["machine"]
    assert isinstance(machine, dict)
    assert {"cpu", "cores", "numpy", "blas", "env", "date"} <= set(machine)


def test_table_names_each_way_of_running_and_the_conclusions() -> None:
    result = run_cli("bench", "--model", FIXTURE, "--tokens", "6", "--repeats", "1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for label in ("cached (KV cache)", "cached + recording", "recompute", "training-mode pass"):
        assert label in out
    # the cache's speed in words that are true either way: at a few positions recompute
    # can win, and the table must not call it slower then
    assert re.search(r"the cache: \d+\.\dx (faster|slower) than recomputing", out)
    faster = re.search(r"recompute .* (\d+\.\d)x (slower|faster)", out)
    assert faster is not None and float(faster.group(1)) >= 1.0
    assert "bandwidth bound:" in out
    assert "bytes per token" in out


def test_a_narrow_terminal_gets_every_number_whole() -> None:
    wide = run_cli("bench", "--model", FIXTURE, "--tokens", "6", "--repeats", "1")
    narrow = run_cli(
        "bench", "--model", FIXTURE, "--tokens", "6", "--repeats", "1", env={"COLUMNS": "40"}
    )
    assert narrow.exit_code == 0, narrow.stderr
    assert "…" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 40
    # one line per way of running, each value named by its column; the numbers differ
    # between the runs, so only their shape is compared
    rows = [line for line in wide.stdout.splitlines() if line.startswith("recompute ")]
    assert len(rows) == 1 and "…" not in rows[0]
    joined = " ".join(narrow.stdout.split())
    assert re.search(r"recompute: tokens/s [\d,.]+, ms/token [\d.]+, MACs/token [\d,]+", joined)
    assert re.search(r"training-mode pass: .*vs cached one pass", joined)


def test_save_writes_the_latency_figure(tmp_path: Path) -> None:
    target = tmp_path / "latency.png"
    result = run_cli(
        "bench", "--model", FIXTURE, "--tokens", "6", "--repeats", "1", "--save", str(target)
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"saved {target}")
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.size[0] > image.size[1] > 100


@pytest.mark.parametrize("tokens", [3, 6])
def test_the_latency_figure_counts_positions_from_1_and_shows_a_single_step(tokens: int) -> None:
    from maskviz.render.bench_figures import latency_figure

    model = random_model(GPTConfig(1, 2, 8, 16, 40), seed=0)
    result = run(model, tokens=tokens, repeats=1, prompt=[3, 4], probe=True)
    fig = latency_figure(result)
    for ax in fig.axes:
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) == tokens - 2]
        for line in curves:  # decoded tokens at positions 3.. (from 1), each a marker
            assert list(line.get_xdata()) == list(range(3, tokens + 1))
            assert line.get_marker() == "o"
            assert max(line.get_ydata()) < ax.get_ylim()[1]  # not on the frame
        assert all(float(t).is_integer() for t in ax.get_xticks())
    (bound,) = [
        t.get_text() for t in fig.axes[1].get_legend().get_texts() if "bound" in t.get_text()
    ]
    assert bound.endswith("not a limit here: these weights fit in the CPU caches")
    assert fig._repr_png_().startswith(b"\x89PNG")  # a notebook shows it as a picture


def test_library_run_without_probe_has_no_bound() -> None:
    model = random_model(GPTConfig(1, 2, 8, 16, 40), seed=0)
    result = run(model, tokens=5, repeats=1, prompt=[3, 4], probe=False)
    assert result.bandwidth is None and result.fraction_of_bound is None
    assert result.cached.positions == [2, 3, 4]
    assert result.to_dict()["bandwidth"] is None


@pytest.mark.parametrize(
    ("tokens", "repeats", "message"),
    [
        (1, 1, "tokens must be from 2"),
        (41, 1, "tokens must be at most the model's context of 40 positions, got 41"),
        (5, 0, "repeats must be from 1 to 100, got 0"),
    ],
)
def test_library_errors_name_the_parameters_not_the_flags(
    tokens: int, repeats: int, message: str
) -> None:
    model = random_model(GPTConfig(1, 2, 8, 40, 40), seed=0)
    with pytest.raises(MaskvizError) as caught:
        run(model, tokens=tokens, repeats=repeats, probe=False)
    assert str(caught.value).startswith(message) and "--" not in str(caught.value)


def test_a_llama_runs_with_its_own_costs_and_cache_size() -> None:
    # grouped-query attention (2 KV heads for 4 query heads) and a sliding layer
    cfg = LlamaConfig(
        n_layer=2, n_head=4, n_kv_head=2, head_dim=8, n_embd=32, intermediate=48, n_ctx=32,
        vocab_size=300, tie_word_embeddings=True, windows=(3, None), model_type="qwen3",
    )  # fmt: skip
    result = run(random_model(cfg, seed=0), tokens=7, repeats=1, prompt=[5, 6], probe=False)
    data = result.to_dict()
    assert data["config"]["architecture"] == "llama"
    assert (data["config"]["n_head"], data["config"]["n_kv_head"]) == (4, 2)
    assert result.cached.positions == [2, 3, 4, 5, 6]
    assert result.cached.macs == sum(cfg.pass_macs(1, t + 1, 1, cached=True) for t in range(2, 7))
    assert result.recompute.macs == sum(cfg.pass_macs(t + 1, t + 1, 1) for t in range(2, 7))
    assert result.training_macs == cfg.pass_macs(7, 7, 7)
    # K and V of 2 KV heads of 8 dims per layer; the window-3 layer stops growing at 3
    assert data["memory"]["kv_cache_bytes_per_token"] == 2 * 2 * 8 * 4 * 2
    assert data["memory"]["kv_cache_bytes_last_token"] == 2 * 2 * 8 * 4
    assert data["memory"]["kv_cache_bytes"] == 2 * 2 * 8 * 4 * (7 + 3)
    assert data["memory"]["record_bytes_per_token"] == 2 * 4 * 7 * 4  # every query head


def test_every_named_shape_can_be_chosen_on_the_command_line() -> None:
    assert [c.value for c in ShapeChoice] == list(SHAPES)
    smol = SHAPES["smollm2-135m"]
    assert isinstance(smol, LlamaConfig)
    assert 134e6 < smol.n_params < 135e6  # SmolLM2-135M, its head tied to the embedding


def test_progress_is_reported_for_every_run_and_at_the_end() -> None:
    model = random_model(GPTConfig(1, 1, 4, 8, 20), seed=0)
    seen: list[tuple[str, int, int]] = []
    run(model, tokens=4, repeats=2, probe=False, progress=lambda *a: seen.append(a))
    assert [done for _, done, _ in seen] == list(range(len(seen)))
    assert seen[-1] == ("done", len(seen) - 1, len(seen) - 1)
    assert {what for what, _, _ in seen} >= {"cached decode", "recompute", "training-mode pass"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tokens", "0"], f"--tokens must be from 2 to {MAX_TOKENS:,}"),
        (["--tokens", "1"], "--tokens must be from 2"),
        (["--tokens", "1000000000"], "got 1,000,000,000"),
        (
            ["--tokens", "65"],
            "--tokens must be at most the model's context of 64 positions, got 65",
        ),
        (["--tokens", "lots"], "Invalid value for '--tokens'"),
        (["--repeats", "0"], "--repeats must be from 1 to 100"),
        (["--shape", "gpt2-xl"], "'gpt2-xl' is not one of"),
        (["--shape", "gpt2-small"], "--model and --shape cannot be combined"),
        (["--save", "a.txt"], "extension '.txt'"),
        (["--save", "/no/such/dir/a.png"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str) -> None:
    result = run_cli("bench", "--model", FIXTURE, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("maskviz: error: ")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_absurd_token_counts_are_refused_before_any_model_loads() -> None:
    result = run_cli("bench", "--model", "no/such/model", "--tokens", "99999999")
    assert result.exit_code == 2
    assert "--tokens must be from 2" in result.stderr


def test_default_length_adapts_to_a_short_context() -> None:
    # the example in `bench --help`: the fixture's context is 64, under the default 128
    assert bench_json()["tokens"] == 64


def test_a_change_that_rounds_to_zero_is_not_negative() -> None:
    from maskviz.render.terminal import _signed_percent

    assert _signed_percent(-0.001, 0) == "+0%"
    assert _signed_percent(-0.0004, 1) == "+0.0%"
    assert _signed_percent(-0.02, 0) == "-2%"


def test_the_progress_bar_never_shows_an_unknown_total_as_none() -> None:
    result = run_cli(
        "bench", "--model", FIXTURE, "--repeats", "1", "--tokens", "6", env={"TTY_COMPATIBLE": "1"}
    )
    assert result.exit_code == 0, result.stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)  # colours and cursor moves
    # the bar was drawn on the (forced) terminal: an unknown total as "?", then counts
    assert re.search(r"bench ━+ 0/\? runs", shown) and re.search(r"done ━+ \d+/\d+ runs", shown)
    assert "None" not in shown


def test_plain_progress_bar_has_no_colour_on_a_terminal() -> None:
    args = ("bench", "--model", FIXTURE, "--repeats", "1", "--tokens", "6")
    coloured = run_cli(*args, env={"TTY_COMPATIBLE": "1"})
    plain = run_cli(*args, "--plain", env={"TTY_COMPATIBLE": "1"})
    colour = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7])[;m]")  # a foreground colour
    assert colour.search(coloured.stderr)  # the bar is drawn in colour by default
    assert plain.exit_code == 0 and "bench" in plain.stderr
    assert not colour.search(plain.stderr)


def test_recording_is_called_noise_when_runs_disagree_on_its_sign_or_show_a_saving() -> None:
    import io
    from dataclasses import replace

    from rich.console import Console

    from maskviz.render.terminal import bench_view

    model = random_model(GPTConfig(**CONFIG), seed=0)
    result = run(model, tokens=6, repeats=2, probe=False)
    assert len(result.recording_overheads) == 2
    assert result.to_dict()["recording_overhead_runs"] == result.recording_overheads

    def shown(overheads: list[float]) -> str:
        console = Console(width=200, file=io.StringIO(), color_system=None, record=True)
        console.print(bench_view(replace(result, recording_overheads=overheads), "machine"))
        return console.export_text()

    noisy, costly, single = shown([-0.08, 0.03]), shown([0.05, 0.09]), shown([0.08])
    assert "within run-to-run noise (the 2 runs gave -8.0% to +3.0%)" in noisy
    assert "(noise)" in noisy
    assert "noise" not in costly and "noise" not in single  # one run: nothing to judge by
    assert "time, which is noise: recording adds work" in shown([-0.08])
    # recording adds work: repeats that agree it saved time agree on noise, not a saving
    assert "within run-to-run noise (the 2 runs gave -29.0% to -13.0%)" in shown([-0.13, -0.29])
    # the headline is the runs' median: never outside the range it is shown with
    assert "-30.0% time, within run-to-run noise (the 3 runs gave -37.0% to -21.0%)" in shown(
        [-0.37, -0.21, -0.30]
    )
