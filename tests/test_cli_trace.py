"""`maskviz trace` through the CLI: output structure, files, escaping, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.cells import cell_len

from maskviz import Trace, load_model
from maskviz._cli_process import MAX_COLUMNS
from maskviz.render.terminal import RAMP
from tests.conftest import run_cli

FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")
PROMPT = "The cat sat on the mat. The dog"


def trace_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run_cli("trace", *args, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_output_has_header_prefill_grid_one_block_per_step_and_footer() -> None:
    code, out, err = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "5")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("model gpt2-tiny: gpt2, 2 layers, 4 heads, width 32, context 64")
    assert "float32 · mode cached" in out
    assert "prompt, 14 tokens: 1:The 2:␣c 3:at" in out
    assert any("key →" in line for line in lines)
    assert sum(line.startswith("── decoding") for line in lines) == 1
    assert [line.split(":")[0].strip() for line in lines if line.strip().startswith("step ")] == [
        f"step {k}" for k in range(1, 6)
    ]
    assert "cached keys + itself" in out
    assert "prefill: 14 queries in one masked pass" in out
    assert any(line.startswith("text: The cat sat on the mat. The dog") for line in lines)
    assert "stopped after 5 steps" in out
    assert "KV cache: 9,728 bytes" in out


def test_rows_fill_the_triangle_one_key_per_step() -> None:
    _, out, _ = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "3", "--plain")
    rows = [line for line in out.splitlines() if line[:2].strip().isdigit() and line[2] == " "]
    assert len(rows) == 17
    # row t shows t allowed keys (ramp glyphs); a prompt row's later prompt keys are
    # masked, and the keys generated after it, like a decoding row's later keys, blank
    p = 14
    for t, row in enumerate(rows, start=1):
        cells = row.ljust(8 + 2 * 17)[8 : 8 + 2 * 17 : 2]
        assert sum(c in RAMP for c in cells) == t, row
        assert cells.count("○") == max(p - t, 0), row
        assert cells.count(" ") == 17 - max(t, p), row


def test_plain_output_uses_the_ramp_and_no_escape_codes() -> None:
    _, out, _ = trace_cli(
        PROMPT, "--model", FIXTURE, "--steps", "2", "--plain", env={"FORCE_COLOR": "1"}
    )
    assert "\x1b" not in out
    assert "allowed cells by weight: · <5%" in out
    _, colour, _ = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "2", env={"FORCE_COLOR": "1"})
    assert "\x1b[" in colour


def test_training_mode_draws_the_full_matrix_from_one_pass() -> None:
    code, out, _ = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "3", "--mode", "training")
    assert code == 0
    assert "mode training" in out
    assert "the same single pass, the mask hides the future" in out
    assert "cached keys" not in out
    assert "one masked pass over 17 tokens" in out


@pytest.mark.parametrize("width", [40, 80, 120])
@pytest.mark.parametrize("extra", [[], ["--heads", "all"]])
def test_long_sequences_show_every_key_and_never_wrap(width: int, extra: list[str]) -> None:
    result = run_cli(
        "trace", PROMPT, "--model", FIXTURE, "--steps", "40", "--plain", *extra,
        env={"COLUMNS": str(width)},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    assert "not shown" not in result.stdout
    # row 1 attends to key 1 alone: its first cell is shaded, whatever the layout
    row1 = next(line for line in lines if line.startswith(" 1 ") or line.startswith("1 "))
    assert any(ch in "·░▒▓█" for ch in row1)


def test_heads_all_and_agg_select_what_is_drawn() -> None:
    _, out, _ = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "1", "--heads", "all", "--plain")
    assert "layer 0, heads 0, 1, 2, 3" in out
    _, out, _ = trace_cli(
        PROMPT, "--model", FIXTURE, "--steps", "1", "--agg", "mean", "--layer", "1"
    )
    assert "layer 1, mean over 4 heads" in out


def test_escape_sequences_in_the_prompt_never_reach_the_terminal() -> None:
    code, out, _ = trace_cli(
        "a\x1b[2J\x1b]0;pwned\x07b\rc\u202ed", "--model", FIXTURE, "--steps", "2"
    )
    assert code == 0
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in out
    assert "\\x1b" in out


def test_json_prints_the_trace_content() -> None:
    code, out, _ = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "3", "--json")
    assert code == 0
    data = json.loads(out)
    reference = load_model(FIXTURE).trace(load_model(FIXTURE).tokenizer.encode(PROMPT), steps=3)
    assert data["token_ids"] == reference.token_ids.tolist()
    np.testing.assert_allclose(np.array(data["attention"]), reference.attention, atol=0)
    assert data["mode"] == "cached"
    assert data["prompt_len"] == 14


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_saved_traces_round_trip_to_the_api_numbers(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"trace{suffix}"
    code, _, err = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "3", "--save", str(path))
    assert code == 0, err
    saved = Trace.load(path)
    model = load_model(FIXTURE)
    reference = model.trace(model.tokenizer.encode(PROMPT), steps=3)
    np.testing.assert_array_equal(saved.token_ids, reference.token_ids)
    np.testing.assert_array_equal(saved.attention, reference.attention)
    np.testing.assert_array_equal(saved.logits, reference.logits)


@pytest.mark.parametrize(
    "command",
    [
        ["trace", "hi", "--steps", "2"],
        ["compare", "training-vs-cached", "--steps", "2"],
        ["similarity", "a", "b"],
        ["bench", "--tokens", "4", "--repeats", "1"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_that_saves_a_png_takes_its_dpi(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "picture.png"
    result = run_cli(*command, "--model", FIXTURE, "--save", str(path), "--dpi", "96")
    assert result.exit_code == 0, result.stderr
    with Image.open(path) as image:
        assert round(image.info["dpi"][0]) == 96
    if command[0] == "trace":  # and a saved trace drawn again
        saved = tmp_path / "t.npz"
        assert run_cli("trace", "hi", "--model", FIXTURE, "--save", str(saved)).exit_code == 0
        again = tmp_path / "again.png"
        redrawn = run_cli("view", str(saved), "--save", str(again), "--dpi", "96")
        assert redrawn.exit_code == 0, redrawn.stderr
        with Image.open(again) as image:
            assert round(image.info["dpi"][0]) == 96


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_saved_figures_are_complete_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"attention{suffix}"
    code, _, err = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "3", "--save", str(path))
    assert code == 0, err
    assert sorted(tmp_path.iterdir()) == [path]
    data = path.read_bytes()
    if suffix == ".png":
        with Image.open(path) as image:
            assert image.size[0] > 400
            image.load()  # every chunk present and its checksum right
    elif suffix == ".svg":
        import xml.etree.ElementTree as ET

        root = ET.fromstring(data)  # a cut file is not well-formed XML
        assert root.tag.endswith("svg") and len(root.findall(".//{*}path")) > 10
    else:
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_saved_gif_has_the_prefill_and_one_frame_per_step(tmp_path: Path) -> None:
    path = tmp_path / "decode.gif"
    code, _, err = trace_cli(PROMPT, "--model", FIXTURE, "--steps", "4", "--save", str(path))
    assert code == 0, err
    with Image.open(path) as image:
        assert image.n_frames == 5


def test_unicode_prompts_come_back_verbatim_in_the_text_line() -> None:
    code, out, _ = trace_cli("猫が🐈 café", "--model", FIXTURE, "--steps", "2")
    assert code == 0
    assert "text: 猫が🐈 café" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--model", FIXTURE], "prompt is empty"),
        (
            ["x " * 70, "--model", FIXTURE],
            "longer than the model's context of 64 positions: shorten it",
        ),
        (["x" * 60, "--model", FIXTURE, "--steps", "8"], "use --steps 4 or fewer"),
        (["hi", "--model", FIXTURE, "--steps", "-1"], "--steps must be >= 0"),
        (["hi", "--model", FIXTURE, "--steps", "100"], "exceeds the model's context"),
        (["hi", "--model", FIXTURE, "--layer", "2"], "--layer 2 is out of range"),
        (["hi", "--model", FIXTURE, "--head", "4"], "--head 4 is out of range"),
        (["hi", "--model", FIXTURE, "--heads", "0,9"], "--heads 9 is out of range"),
        (["hi", "--model", FIXTURE, "--heads", "1,1"], "--heads names a head twice"),
        (["hi", "--model", FIXTURE, "--agg", "median"], "'median' is not one of"),
        (["hi", "--model", FIXTURE, "--mode", "sideways"], "'sideways' is not one of"),
        (["hi", "--model", FIXTURE, "--save", "/no/such/dir/a.png"], "does not exist"),
        (["hi", "--model", FIXTURE, "--save", "a.txt"], "extension '.txt'"),
        (["hi", "--model", FIXTURE, "--agg", "max", "--heads", "all"], "cannot be combined"),
        (["hi", "--model", "no/such/model/dir"], "no model"),
        (["hi", "--dtype", "float16"], "'float16' is not one of"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str) -> None:
    code, out, err = trace_cli(*args)
    assert code == 2
    assert out == ""
    assert err.startswith("maskviz: error: ")
    assert err.count("\n") == 1
    assert message in err


def test_failed_save_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.npz"
    target.write_bytes(b"previous")
    code, _, _ = trace_cli("hi", "--model", FIXTURE, "--layer", "9", "--save", str(target))
    assert code == 2
    assert target.read_bytes() == b"previous"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "3"], "--top-k applies only when sampling: add --temperature > 0"),
        (["--seed", "7"], "--seed applies only when sampling: add --temperature > 0"),
        (["--head", "1", "--heads", "all"], "--head cannot be combined with --heads"),
        (["--head", "1", "--agg", "mean"], "--head cannot be combined with --agg"),
        (["--steps", "60"], "use --steps 50 or fewer"),
        (["--temperature", "1", "--top-k", "0"], "Invalid value for '--top-k'"),
    ],
)
def test_options_that_would_do_nothing_are_usage_errors(args: list[str], message: str) -> None:
    code, _, err = trace_cli(PROMPT, "--model", FIXTURE, *args)
    assert code == 2
    assert message in err


def test_sampling_settings_are_refused_before_any_model_loads() -> None:
    code, _, err = trace_cli(PROMPT, "--model", "no/such-model", "--top-k", "3")
    assert code == 2
    assert err == "maskviz: error: --top-k applies only when sampling: add --temperature > 0\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "--temperature must be a finite number >= 0, got -1.0"),
        (["--temperature", "nan"], "--temperature must be a finite number >= 0, got nan"),
        (["--temperature", "inf"], "--temperature must be a finite number >= 0, got inf"),
        (["--temperature", "1", "--seed", "-1"], "--seed must be from 0 to"),
    ],
)
def test_a_value_the_engine_refuses_is_reported_by_its_option(
    args: list[str], message: str
) -> None:
    code, _, err = trace_cli(PROMPT, "--model", FIXTURE, *args)
    assert code == 2
    assert err.startswith(f"maskviz: error: {message}")


def test_sampling_without_a_seed_prints_and_records_one_that_replays_the_run(
    tmp_path: Path,
) -> None:
    sampled = ["--model", FIXTURE, "--steps", "8", "--temperature", "1.5", "--top-k", "20"]
    code, out, err = trace_cli(PROMPT, *sampled)
    assert code == 0, err
    seed = int(out.split("seed")[1].split()[0])  # the header may wrap after "seed"
    assert "sampled: temperature 1.5, top-k 20, seed" in " ".join(out.split())  # may wrap
    code, out_json, _ = trace_cli(PROMPT, *sampled, "--json")
    data = json.loads(out_json)
    assert (data["temperature"], data["top_k"]) == (1.5, 20)
    assert isinstance(data["seed"], int) and data["seed"] != seed  # a new seed per run
    replay = json.loads(trace_cli(PROMPT, *sampled, "--seed", str(data["seed"]), "--json")[1])
    assert replay["token_ids"] == data["token_ids"]
    for suffix in (".npz", ".json"):
        path = tmp_path / f"t{suffix}"
        assert trace_cli(PROMPT, *sampled, "--seed", "5", "--save", str(path))[0] == 0
        saved = Trace.load(path)
        assert (saved.temperature, saved.top_k, saved.seed) == (1.5, 20, 5)
        assert saved.decoding == "sampled: temperature 1.5, top-k 20, seed 5"


def test_greedy_traces_record_no_sampling_settings() -> None:
    data = json.loads(trace_cli(PROMPT, "--model", FIXTURE, "--steps", "2", "--json")[1])
    assert (data["temperature"], data["top_k"], data["seed"]) == (0.0, None, None)


def test_weight_levels_stay_distinct_in_16_256_and_truecolor_terminals() -> None:
    from rich.color import ColorSystem

    from maskviz.render.terminal import STYLE_BLOCKED, weight_glyph

    weights = (0.0, 0.1, 0.3, 0.6, 1.0)
    for system in (ColorSystem.STANDARD, ColorSystem.EIGHT_BIT, ColorSystem.TRUECOLOR):
        # what the CLI picks for such a terminal: glyphs when colours are too few
        ramp = system == ColorSystem.STANDARD
        seen = set()
        for w in weights:
            glyph, style = weight_glyph(w, ramp)
            assert style is not None and style.color is not None
            seen.add((glyph, style.color.downgrade(system).name))
        masked = ("○", STYLE_BLOCKED.color.downgrade(system).name)  # type: ignore[union-attr]
        assert len(seen) == len(weights) and masked not in seen, system


@pytest.mark.parametrize(("term", "ramp"), [("xterm", True), ("xterm-256color", False)])
def test_cli_shades_by_glyph_in_a_16_colour_terminal(term: str, ramp: bool) -> None:
    from maskviz._cli_process import console, ramp_shading

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TERM", term)
        mp.setenv("FORCE_COLOR", "1")
        mp.delenv("NO_COLOR", raising=False)
        mp.delenv("COLORTERM", raising=False)
        assert ramp_shading(console(False)) is ramp


def test_running_out_of_memory_is_one_line_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import maskviz.model

    def trace(*args: object, **kwargs: object) -> None:
        raise MemoryError(
            "Unable to allocate 37.3 GiB for an array with shape (1, 1, 100003, 100003)"
        )

    monkeypatch.setattr(maskviz.model.GPT, "trace", trace)
    result = run_cli("trace", "To be")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "maskviz: error: not enough memory: Unable to allocate 37.3 GiB"
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])  # kill; the terminal closing
def test_kill_during_a_save_removes_the_temporary_file_and_keeps_the_old_one(
    tmp_path: Path, name: str
) -> None:
    import signal
    import subprocess
    import sys
    import time

    source, target = tmp_path / "t.npz", tmp_path / "out.gif"
    load_model().trace([84, 111], steps=120).save(source)
    target.write_bytes(b"ORIGINAL")
    save = subprocess.Popen(
        [sys.executable, "-m", "maskviz", "view", str(source), "--save", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # as from a terminal, even if this run ignores hang-ups (under nohup, say)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip
    while save.poll() is None and not list(tmp_path.glob(".out.*")):
        time.sleep(0.001)  # until the save has created its temporary file
    signum = getattr(signal, name)
    save.send_signal(signum)  # 120 frames take seconds to draw: it is still saving
    assert save.wait(timeout=600) == 128 + signum
    assert target.read_bytes() == b"ORIGINAL"
    assert not list(tmp_path.glob(".out.*"))


def test_pooled_rows_never_mix_prompt_and_decoding_rows() -> None:
    # rows pooled 4 per line over a 5-token prompt: the prompt's last row gets its own line
    lines = run_cli("trace", "To be", "--steps", "251", "--plain").stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("── decoding"))
    assert lines[rule - 1].split()[0] == "5"
    assert lines[rule + 1].split()[0] == "6–9"


def test_one_step_and_one_token_are_worded_in_the_singular() -> None:
    cached = run_cli("trace", "T", "--steps", "1").stdout
    assert "stopped after 1 step;" in " ".join(cached.split())
    training = run_cli("trace", "T", "--steps", "1", "--mode", "training").stdout
    assert "one masked pass over 2 tokens" in " ".join(training.split())
    compared = run_cli("compare", "training-vs-cached", "--prompt", "T", "--steps", "1").stdout
    assert "1 prompt token + 1 step" in compared


def test_a_terminal_width_of_zero_still_prints() -> None:
    result = run_cli("show-mask", "3", env={"COLUMNS": "0"})
    assert result.stdout.splitlines()[2] == "1 ● ○ ○"


def test_a_huge_terminal_width_draws_as_the_widest_screen() -> None:
    # uncapped, COLUMNS=8300 made the help's example (show-mask 1000000 --window 4096)
    # ask for too many pooled cells; 1,500 keys show the cap at a fraction of its cost
    args = ("show-mask", "1500", "--plain")
    huge = run_cli(*args, env={"COLUMNS": "100000"})
    assert huge.exit_code == 0, huge.stderr
    assert huge.stdout == run_cli(*args, env={"COLUMNS": str(MAX_COLUMNS)}).stdout
    lines = huge.stdout.splitlines()
    assert max(map(len, lines)) <= MAX_COLUMNS
    assert max(map(len, lines)) > 1000  # the width was used, not fallen back to 80


@pytest.mark.parametrize(
    "args",
    [
        ["trace", PROMPT, "--model", "tiny", "--steps", "3"],
        ["compare", "training-vs-cached", "--model", "tiny"],
        ["bench", "--model", "tiny", "--tokens", "2", "--repeats", "1"],
    ],
)
def test_piped_output_has_no_trailing_spaces_where_rich_wraps_or_pads(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 10
    assert [line for line in lines if line.endswith(" ")] == []


def test_a_sampled_trace_says_its_percentages_are_before_temperature() -> None:
    # the chosen token's percentage can be 0%: it is the model's, not the sampler's
    said = "percentages are the model's probabilities, before temperature and top-k"
    sampled = trace_cli("To be", "--steps", "4", "--temperature", "5", "--seed", "1", "--plain")
    greedy = trace_cli("To be", "--steps", "4", "--plain")
    assert said in " ".join(sampled[1].split())
    assert said not in " ".join(greedy[1].split())


def test_generated_bytes_that_are_not_utf8_read_in_the_text_as_in_the_labels() -> None:
    # tiny at temperature 5, seed 1 generates 0xac and 0xef, which no UTF-8 text holds
    code, out, err = trace_cli("To be", "--steps", "4", "--temperature", "5", "--seed", "1")
    assert code == 0, err
    text = next(line for line in out.splitlines() if line.startswith("text: "))
    assert text == "text: To bee\\xac$\\xef"
    assert "\\xac" in out.split("text: ")[0]  # the grid's label of the same byte


def test_ctrl_c_while_a_command_runs_says_interrupted_and_exits_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from maskviz import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_show", interrupted)
    result = run_cli("trace", "To be", "--steps", "1")
    assert result.exit_code == 130
    assert result.stderr == "maskviz: error: interrupted\n"


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "-x y", "--steps", "1"],
        ["trace", "-x y", "--plain", "--steps", "1", "--model", "tiny"],
        ["similarity", "a", "-1 b"],
        ["trace", "-mtiny", "-x y", "--steps=1"],  # an option's value attached, either way
    ],
)
def test_the_hint_for_a_prompt_starting_with_a_dash_is_a_command_that_runs(
    args: list[str],
) -> None:
    import shlex

    refused = run_cli(*args)
    assert refused.exit_code == 2
    hint = refused.stderr.strip().split("as in: maskviz ")[1]
    fixed = shlex.split(hint)
    options = [i for i, a in enumerate(fixed) if a.startswith("--") and a != "--"]
    assert fixed.index("--") > max(options, default=-1)  # nothing after -- is an option
    ran = run_cli(*fixed)
    assert ran.exit_code == 0, ran.stderr
    assert sorted(fixed) == sorted([*args, "--"])  # the same words, in an order that works


def test_no_hint_names_a_command_when_the_dash_comes_before_any_command() -> None:
    refused = run_cli("-3")
    assert refused.exit_code == 2 and "as in" not in refused.stderr


def test_every_closed_choice_on_the_command_line_is_the_librarys_own_list() -> None:
    from typing import get_args

    from maskviz import cli, compare, masks, model, trace

    pairs = {
        cli.KindChoice: masks.KINDS,
        cli.PadSide: get_args(masks.PadSide),
        cli.PairChoice: compare.PAIRS,
        cli.DTypeChoice: model.DTYPES,
        cli.AggChoice: get_args(trace.Agg),
    }
    for choice, library in pairs.items():
        assert [c.value for c in choice] == list(library), choice.__name__
    # the command line traces in two of the three modes; recompute is compare's
    assert [c.value for c in cli.ModeChoice] == [m for m in trace.MODES if m != "recompute"]
