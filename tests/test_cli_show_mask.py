"""`maskviz show-mask` through the CLI: exact grids, plain/JSON output, --save, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from maskviz._text import _ASCII, ASCII_ERRORS
from maskviz.render.terminal import GLYPH_ALLOWED, GLYPH_BLOCKED, GLYPH_EVICTED, GLYPH_PARTIAL, RAMP
from tests.conftest import run_cli

STRICT_GRID = """\
\\ 1 2 3 4 5 6
1 ○ ○ ○ ○ ○ ○
2 ● ○ ○ ○ ○ ○
3 ● ● ○ ○ ○ ○
4 ● ● ● ○ ○ ○
5 ● ● ● ● ○ ○
6 ● ● ● ● ● ○"""


def grid_lines(stdout: str) -> list[str]:
    return [line.rstrip() for line in stdout.splitlines()]


def flat(stdout: str) -> str:
    """Prose with Rich's line wrapping undone."""
    return " ".join(stdout.split())


def test_strict_mask_prints_the_exact_grid() -> None:
    result = run_cli("show-mask", "6", "--kind", "strict", "--plain")
    assert result.exit_code == 0
    lines = grid_lines(result.stdout)
    start = lines.index("\\ 1 2 3 4 5 6")
    assert "\n".join(lines[start : start + 7]) == STRICT_GRID
    assert (
        "Row 1 has no key to attend to: the first token has nothing before it, and this mask "
        "hides the token itself." in flat(result.stdout)
    )
    assert "never NaN" in flat(result.stdout)
    assert "● may attend" in result.stdout


def test_default_causal_mask_includes_the_diagonal() -> None:
    lines = grid_lines(run_cli("show-mask", "6", "--plain").stdout)
    start = lines.index("\\ 1 2 3 4 5 6")
    assert lines[start + 1] == "1 ● ○ ○ ○ ○ ○"
    assert lines[start + 6] == "6 ● ● ● ● ● ●"
    assert "21 of 36 cells allowed (58.3%)" in "\n".join(lines)


def test_piped_output_has_no_escape_codes_and_no_color_forces_plain() -> None:
    assert "\x1b[" not in run_cli("show-mask", "6").stdout
    forced = run_cli("show-mask", "6", env={"FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stdout
    assert (
        "\x1b[" not in run_cli("show-mask", "6", env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    )
    assert "\x1b[" not in run_cli("show-mask", "6", "--plain", env={"FORCE_COLOR": "1"}).stdout


def test_index_base_zero_numbers_from_zero() -> None:
    lines = grid_lines(run_cli("show-mask", "3", "--index-base", "0", "--plain").stdout)
    assert "\\ 0 1 2" in lines
    assert "0 ● ○ ○" in lines


def test_step_highlights_the_row_one_cached_step_computes() -> None:
    result = run_cli("show-mask", "6", "--step", "4", "--plain")
    assert "4 ● ● ● ● ○ ○ ◀ step" in grid_lines(result.stdout)
    assert "Step 4: cached decoding computes only this row" in flat(result.stdout)


def test_text_labels_rows_and_escapes_control_characters() -> None:
    result = run_cli("show-mask", "3", "--text", "to be \x1b[31mred", "--plain")
    assert result.exit_code == 0
    assert "1 to" in result.stdout and "2 be" in result.stdout
    assert "\x1b" not in result.stdout
    assert "\\x1b[31mred" in result.stdout


def test_every_kind_option_reaches_the_mask() -> None:
    cases = {
        ("--window", "2"): "causal & sliding window 2",
        ("--kind", "prefix-lm", "--prefix", "3"): "prefix-LM 3",
        ("--docs", "3,2,1"): "causal & documents 3,2,1",
        ("--chunk", "2"): "causal & chunks of 2",
        ("--pad", "2", "--pad-side", "right"): "causal & right padding 2",
        ("--kind", "bidirectional"): "bidirectional",
    }
    for options, description in cases.items():
        result = run_cli("show-mask", "6", *options, "--plain")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"{description} mask"), result.stdout


def test_padded_rows_are_reported() -> None:
    result = run_cli("show-mask", "5", "--pad", "2", "--plain")
    assert "2 fully masked rows: 1, 2." in result.stdout
    assert "Padded query rows attend to nothing" in flat(result.stdout)


def test_a_saved_picture_hatches_padding_only_when_there_is_some(tmp_path: Path) -> None:
    from maskviz.render.figures import COLOR_PADDING

    # SVG draws a hatch as a <pattern> of lines in the hatch's colour
    for options, hatched in (((), False), (("--pad", "2"), True)):
        out = tmp_path / f"m{len(options)}.svg"
        assert run_cli("show-mask", "6", *options, "--save", str(out)).exit_code == 0
        assert (f"stroke: {COLOR_PADDING}" in out.read_text()) is hatched


def test_json_dump_has_the_matrix_and_summary() -> None:
    data = json.loads(run_cli("show-mask", "4", "--kind", "strict", "--json").stdout)
    assert data["mask"] == [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert data["fully_masked_rows"] == [1]
    assert data["allowed"] == 6


def test_large_n_is_downsampled_to_the_width() -> None:
    result = run_cli("show-mask", "1000000", "--window", "4096", "--plain")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "each cell covers" in flat(result.stdout)
    data = json.loads(run_cli("show-mask", "100000", "--json").stdout)
    assert data["cell_size"] == 391 and len(data["cells"]) == 256


@pytest.mark.parametrize(
    ("n", "legend"),
    [
        ("6", f"{GLYPH_ALLOWED} may attend   {GLYPH_BLOCKED} may not"),
        (
            "70",
            f"{GLYPH_ALLOWED} all may attend   {GLYPH_PARTIAL} some   {GLYPH_BLOCKED} none",
        ),  # rows pooled
        (
            "1000000",
            f"{GLYPH_ALLOWED} all may attend   {GLYPH_PARTIAL} some   {GLYPH_BLOCKED} none",
        ),
    ],
)
def test_one_legend_says_what_each_glyph_means_at_the_grid_drawn(n: str, legend: str) -> None:
    out = run_cli("show-mask", n, "--plain").stdout
    legends = [line for line in out.splitlines() if "rows = queries ↓" in line]
    assert legends == [f"{legend}   rows = queries ↓, columns = keys →"]
    assert ("each cell covers 31,250 x 31,250" in out) is (n == "1000000")


def test_a_downsampled_grid_names_its_keys_from_the_first_cell_column() -> None:
    lines = run_cli("show-mask", "200", "--window", "40", "--plain").stdout.splitlines()
    header = next(line for line in lines if "keys 1" in line)
    glyphs = (GLYPH_ALLOWED, GLYPH_BLOCKED, GLYPH_PARTIAL)
    first_row = next(line for line in lines if any(g in line for g in glyphs))
    first_cell = min(first_row.index(g) for g in glyphs if g in first_row)
    assert header.index("keys") == first_cell


def test_grid_never_exceeds_terminal_width() -> None:
    for n in (13, 26, 27, 40, 300):
        result = run_cli("show-mask", str(n), "--plain", "--step", "2")
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, n


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_save_writes_a_figure(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"mask{suffix}"
    result = run_cli("show-mask", "6", "--kind", "strict", "--save", str(target), "--plain")
    assert result.exit_code == 0, result.stderr
    assert target.stat().st_size > 1000
    assert list(tmp_path.iterdir()) == [target]
    if suffix == ".png":
        with Image.open(target) as image:
            assert image.format == "PNG"
            assert image.size[0] > 300 and image.size[1] > 300


def test_dpi_sets_a_png_s_resolution(tmp_path: Path) -> None:
    sizes = {}
    for dpi in (None, 300):
        target = tmp_path / f"{dpi}.png"
        args = ["--dpi", str(dpi)] if dpi else []
        assert run_cli("show-mask", "6", "--save", str(target), *args).exit_code == 0
        with Image.open(target) as image:
            sizes[dpi] = image.size
            assert round(image.info["dpi"][0]) == (dpi or 150)
    assert sizes[300] == (2 * sizes[None][0], 2 * sizes[None][1])


def test_the_saved_line_shows_escape_sequences_in_the_name_escaped(tmp_path: Path) -> None:
    target = tmp_path / "e\x1b[31m\x1b]0;title\x07.png"
    result = run_cli("show-mask", "2", "--save", str(target))
    assert result.exit_code == 0 and target.is_file()
    assert result.stdout.splitlines()[-1].endswith("e\\x1b[31m\\x1b]0;title\\x07.png")
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_failed_save_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    result = run_cli("show-mask", "0", "--save", str(target))
    assert result.exit_code == 2
    assert target.read_bytes() == b"old"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0"], "N must be >= 1"),
        (["--", "-3"], "N must be >= 1"),
        (
            ["-3"],
            "No such option: -3; a value that starts with '-' goes after --, as in: maskviz show-mask -- -3",
        ),
        (["abc"], "Invalid value for 'N'"),
        (  # an option's value that starts with '-' is the option's, not the one meant
            ["--index-base", "-1", "-3"],
            "goes after --, as in: maskviz show-mask --index-base -1 -- -3",
        ),
        # the library's words for what an option sets are the option's name
        (["6", "--window", "0"], "error: --window must be >= 1, got 0"),
        (["6", "--chunk", "0"], "error: --chunk must be >= 1, got 0"),
        (["6", "--pad", "7"], "error: --pad (7) cannot exceed N (6)"),
        (["6", "--kind", "prefix-lm", "--prefix", "7"], "error: --prefix (7) cannot exceed N (6)"),
        (["6", "--kind", "prefix-lm"], "error: --kind 'prefix-lm' needs a --prefix length"),
        (["6", "--prefix", "2"], "error: --prefix needs --kind 'prefix-lm'"),
        (["6", "--docs", "3,2"], "error: --docs sum to 5, not N = 6"),
        (["6", "--docs", "6,0"], "error: each --docs length must be >= 1, got 0"),
        (["6", "--docs", "3,x"], "comma-separated"),
        (["6", "--kind", "sideways"], "'sideways' is not one of"),
        (["6", "--pad-side", "right"], "--pad-side needs --pad"),
        (["6", "--text", "a b"], "--text has 2 words"),
        (["6", "--text", "a"], "--text has 1 word but N is 6"),
        (["6", "--step", "7"], "--step must be"),
        (["6", "--index-base", "2"], "--index-base"),
        (["6", "--save", "mask"], "no extension"),
        (["6", "--save", "mask.bmp"], "extension '.bmp'"),
        (["6", "--save", "/no/such/folder/m.png"], "does not exist"),
        (["6", "--save", "a" * 300 + "/m.png"], "File name too long"),
        (["6", "--save", "a" * 300 + ".png"], "File name too long"),
        (["10000001"], "too large"),
        (["6", "--dpi", "300"], "--dpi needs --save with a .png file"),
        (["6", "--dpi", "300", "--save", "m.svg"], "not .svg (a vector file is sharp at any size)"),
        (["6", "--dpi", "300", "--save", "m.html"], "--dpi applies to .png pictures, not .html"),
        (["6", "--dpi", "601", "--save", "m.png"], "--dpi must be from 50 to 600, got 601"),
        (["6", "--dpi", "0", "--save", "m.png"], "--dpi must be from 50 to 600, got 0"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2(args: list[str], message: str) -> None:
    result = run_cli("show-mask", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("maskviz: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_saving_over_a_file_keeps_its_permissions_and_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "private.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert run_cli("show-mask", "4", "--save", str(link)).exit_code == 0
    assert link.is_symlink() and link.resolve() == target  # the link stays a link
    assert target.read_bytes().startswith(b"\x89PNG")  # its target got the picture
    assert target.stat().st_mode & 0o777 == 0o640


def test_save_paths_that_are_folders_or_under_a_file_are_refused_naming_why(tmp_path: Path) -> None:
    (tmp_path / "pictures.png").mkdir()
    (tmp_path / "keep.png").write_bytes(b"mine")
    for target, message in [
        (tmp_path, "it is a folder"),
        (tmp_path / "pictures.png", "it is a folder"),
        (tmp_path / "keep.png" / "m.png", "keep.png' is a file, not a folder"),
        (f"{tmp_path / 'keep.png'}/", "a path ending in '/' names a folder"),
        (f"{tmp_path / 'keep.png'}/.", "a path ending in '.' names a folder"),  # not keep.png
        (f"{tmp_path / 'keep.png'}/..", "a path ending in '..' names a folder"),
        ("", "cannot save to '': the name is empty"),
    ]:
        for command in (["show-mask", "6"], ["trace", "To be"], ["compare", "training-vs-cached"]):
            result = run_cli(*command, "--save", str(target))
            assert result.exit_code == 2 and message in result.stderr, (command, result.stderr)
    assert (tmp_path / "keep.png").read_bytes() == b"mine"


def test_save_paths_that_lead_to_no_regular_file_are_refused_before_any_work(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "pipe")  # named as such even without an extension
    (tmp_path / "null.png").symlink_to("/dev/null")
    (tmp_path / "nowhere.png").symlink_to(tmp_path / "missing" / "x.png")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    for name, message in [
        ("pipe.png", "it is not a regular file"),
        ("pipe", "it is not a regular file"),
        ("null.png", "its target '/dev/null' is not a regular file"),
        ("nowhere.png", f"folder '{tmp_path / 'missing'}' does not exist"),
        ("a.png", "its symbolic links form a loop"),
    ]:
        result = run_cli("show-mask", "4", "--save", str(tmp_path / name))
        assert result.exit_code == 2, result.stderr
        assert result.stderr == f"maskviz: error: cannot save to '{tmp_path / name}': {message}\n"
        assert result.stdout == ""  # refused before drawing anything
    assert (tmp_path / "pipe.png").is_fifo() and Path("/dev/null").is_char_device()


def test_a_folder_one_may_not_write_in_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root may write anywhere: the check asks as an ordinary user would be answered
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and Path(p) != tmp_path)
    result = run_cli("show-mask", "4", "--save", str(tmp_path / "m.png"))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.endswith(f"folder '{tmp_path}' is not writable\n")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_file_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"mine")
    target.chmod(0o444)
    # root may write any file: the check asks as an ordinary user would be answered
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and Path(p) != target)
    result = run_cli("show-mask", "4", "--save", str(target))
    assert result.exit_code == 2 and "it is read-only" in result.stderr
    assert target.read_bytes() == b"mine"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_disk_is_one_line_saying_so_not_an_internal_error() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "maskviz", "show-mask", "4"],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "maskviz: error: cannot write the output: No space left on device\n"


def test_version_and_doctor_report_for_bug_reports() -> None:
    from maskviz import __version__

    assert run_cli("--version").stdout.strip() == f"maskviz {__version__}"
    report = run_cli("doctor")
    assert report.exit_code == 0
    for field in ("python:", "numpy:", "blas:", "tokenizers:", "shipped_models:", "tiny-swa:"):
        assert field in report.stdout
    data = json.loads(run_cli("doctor", "--json").stdout)
    assert data["maskviz"] == __version__
    assert {"library", "kernel", "threads", "configuration"} <= set(data["blas"])  # as bench
    # the variables that set the BLAS threads it reports are shown beside them
    env = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    shown = json.loads(run_cli("doctor", "--json", env=env).stdout)["environment"]
    assert shown.items() >= env.items()
    models = data["shipped_models"]
    assert set(models) == {"tiny", "tiny-swa"}
    assert all(m["present"] and m["path"].endswith(name) for name, m in models.items())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--window", "2", "--step", "4"],
            "against the cached keys the mask allows, plus itself: keys 3–4 (2).",
        ),
        (
            ["--index-base", "0", "--step", "4"],
            "against every key held in the KV cache, plus itself: keys 0–4 (5).",
        ),
        (
            ["--kind", "strict", "--step", "3"],
            "against every key held in the KV cache, not itself: keys 1–2 (2).",
        ),
        (
            ["--kind", "strict", "--step", "1"],
            "Row 1 may attend to no key: its attention is all zeros",
        ),
        (["--pad", "2", "--step", "5"], "plus itself: keys 3–5 (3)."),
        (["--docs", "3,3", "--step", "5"], "plus itself: keys 4–5 (2)."),
    ],
)
def test_step_names_the_allowed_keys_as_ranges_in_the_chosen_base(
    args: list[str], says: str
) -> None:
    result = run_cli("show-mask", "6", *args, "--plain")
    assert result.exit_code == 0, result.stderr
    assert says in flat(result.stdout)
    assert "allowed keys:" not in result.stdout  # a count without what it counts


@pytest.mark.parametrize(
    "args",
    [
        ["--kind", "bidirectional", "--step", "3"],
        ["--kind", "prefix-lm", "--prefix", "3", "--step", "2"],
    ],
)
def test_step_on_a_mask_that_sees_the_future_says_cached_decoding_cannot_reproduce_it(
    args: list[str],
) -> None:
    out = flat(run_cli("show-mask", "6", *args, "--plain").stdout)
    assert (
        "including later positions: cached decoding, whose KV cache holds only the past, cannot reproduce this row."
        in out
    )
    assert "cached decoding computes" not in out


def test_a_near_miss_kind_gets_a_suggestion() -> None:
    result = run_cli("show-mask", "6", "--kind", "casual")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("did you mean 'causal'?")
    assert "Value error" not in result.stderr
    assert "did you mean" not in run_cli("show-mask", "6", "--kind", "zzz").stderr
    # written with "=", and for an argument's choices
    attached = run_cli("show-mask", "6", "--kind=causl").stderr
    assert attached.strip().endswith("did you mean 'causal'?")
    pair = run_cli("compare", "training-vs-cachd").stderr
    assert pair.strip().endswith("did you mean 'training-vs-cached'?")
    # a mistyped one-letter option is no value that starts with '-'
    assert run_cli("show-mask", "6", "-z").stderr == "maskviz: error: No such option: -z\n"


def test_counts_are_worded_for_one() -> None:
    assert "1 query x 1 key (positions from 1)" in run_cli("show-mask", "1").stdout


def test_doctor_on_a_terminal_wraps_long_values_under_their_column() -> None:
    out = run_cli("doctor", env={"COLUMNS": "40", "FORCE_COLOR": "1"}).stdout
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("maskviz:"))
    column = len(lines[start]) - len(lines[start].split()[-1])  # where values start
    for line in lines:
        assert len(line) <= 40 and line == line.rstrip(), line
        # a line is a key (at its depth) or a value's continuation, aligned with the values
        assert re.match(r"( {2})*[\w-]+:", line) or line[:column].isspace(), line


def test_doctor_piped_keeps_each_value_whole_and_says_unknown_yes_and_no() -> None:
    from rich.console import Console

    from maskviz.render.terminal import KeyValues

    home = "/tmp/" + "-".join(["a-long-folder-name"] * 6)  # longer than the 80 columns
    lines = run_cli("doctor", env={"HF_HOME": home}).stdout.splitlines()
    assert any(line.split() == ["HF_HOME:", home] for line in lines)
    plain = Console(width=40, force_terminal=False)
    with plain.capture() as captured:
        plain.print(KeyValues({"blas": {"kernel": None}, "present": True, "absent": False}))
    assert [line.split() for line in captured.get().splitlines()[-3:]] == [
        ["kernel:", "unknown"],
        ["present:", "yes"],
        ["absent:", "no"],
    ]  # not Python's None, True and False


def test_doctor_takes_plain_and_its_help_has_examples() -> None:
    assert run_cli("doctor", "--plain").exit_code == 0
    assert "maskviz doctor --json" in run_cli("doctor", "--help").stdout


@pytest.mark.parametrize(
    ("command", "choices"),
    [("show-mask", ["bidirectional"]), ("bench", ["gpt2-medium", "smollm2-135m"])],
)
def test_help_names_every_long_choice_whole(command: str, choices: list[str]) -> None:
    out = run_cli(command, "--help").stdout
    for choice in choices:
        assert choice in out, choice
        assert choice[:6] not in out.replace(choice, ""), choice  # no "bidirectio|nal"


@pytest.mark.parametrize(
    "command", ["show-mask", "trace", "view", "compare", "similarity", "bench"]
)
def test_help_shows_no_internal_name_as_a_type(command: str) -> None:
    types = re.findall(r"<([^<>\s]+)>", run_cli(command, "--help").stdout)
    assert types, command
    assert not [t for t in types if t.startswith("_")], types  # view once showed <_trace_file>


def test_every_commands_examples_start_in_the_same_column() -> None:
    commands = ["show-mask", "trace", "view", "compare", "similarity", "bench", "doctor"]
    columns = set()
    for command in commands:
        examples = run_cli(command, "--help").stdout.split("Examples:")[1].split("╭")[0]
        lines = [line for line in examples.splitlines() if f"maskviz {command}" in line]
        assert lines, command
        columns |= {len(line) - len(line.lstrip()) for line in lines}
    assert len(columns) == 1, columns  # compare and bench once indented theirs 2 more


def test_absurd_window_is_a_usage_error_not_an_overflow() -> None:
    result = run_cli("show-mask", "4", "--window", "9" * 30)
    assert result.exit_code == 2
    assert "window must be at most" in result.stderr


def test_bare_maskviz_prints_the_help_and_no_empty_error_line() -> None:
    result = run_cli()
    assert result.exit_code == 2  # no command given
    assert "Usage: maskviz" in result.stdout and "show-mask" in result.stdout
    assert result.stderr == ""


def test_every_fully_masked_row_is_explained_not_only_the_first() -> None:
    out = " ".join(
        run_cli("show-mask", "6", "--kind", "strict", "--window", "1", "--plain").stdout.split()
    )
    assert "Row 1 has no key to attend to: the first token" in out
    assert "Rows 2, 3, 4, 5, 6 have no key either: the mask's rules together forbid" in out
    docs = " ".join(
        run_cli("show-mask", "6", "--docs", "3,3", "--kind", "strict", "--plain").stdout.split()
    )
    assert "Row 4 has no key either" in docs  # the second document's first token


def test_the_first_real_token_after_left_padding_is_named_when_it_sees_nothing() -> None:
    out = " ".join(
        run_cli("show-mask", "8", "--pad", "2", "--kind", "strict", "--plain").stdout.split()
    )
    assert (
        "Row 3 has no key to attend to: the first token after the padding has nothing before "
        "it but padding" in out
    )
    assert "Padded query rows attend to nothing" in out
    right = run_cli(
        "show-mask", "8", "--pad", "2", "--pad-side", "right", "--kind", "strict", "--plain"
    )
    assert "Row 1 has no key to attend to: the first token has nothing before it," in " ".join(
        right.stdout.split()
    )


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_a_terminal_without_the_glyphs_gets_ascii_stand_ins(encoding: str) -> None:
    # the encoding is fixed when the interpreter starts: a fresh one, as a user's shell runs it
    env = {**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "80"}
    run = [sys.executable, "-m", "maskviz"]
    mask = subprocess.run([*run, "show-mask", "3"], capture_output=True, env=env, check=False)
    assert (mask.returncode, mask.stderr) == (0, b"")
    assert grid_lines(mask.stdout.decode(encoding))[1:5] == [
        "\\ 1 2 3",
        "1 # . .",
        "2 # # .",
        "3 # # #",
    ]
    # a label the encoding lacks keeps its columns: a wide character is two '?'
    labelled = subprocess.run(
        [*run, "show-mask", "2", "--text", "日本 ok"], capture_output=True, env=env, check=False
    )
    assert grid_lines(labelled.stdout.decode(encoding))[2:4] == ["1 ???? # .", "2 ok   # #"]
    trace = subprocess.run(
        [*run, "trace", "To be", "--steps", "2", "--plain"], capture_output=True, env=env
    )
    assert (trace.returncode, trace.stderr) == (0, b"")
    assert "allowed cells by weight:" in trace.stdout.decode(encoding)


def test_ascii_stand_ins_keep_every_grid_s_glyphs_apart_and_one_column_wide() -> None:
    stand_in = {ch: ch.encode("ascii", ASCII_ERRORS).decode() for ch in _ASCII}
    for glyphs in [
        (GLYPH_ALLOWED, GLYPH_BLOCKED, GLYPH_PARTIAL, GLYPH_EVICTED),
        (*RAMP, GLYPH_BLOCKED, GLYPH_EVICTED),
    ]:
        drawn = [stand_in[g] for g in glyphs]
        assert len(set(drawn)) == len(glyphs)
        assert all(len(s) == 1 for s in drawn)


@pytest.mark.parametrize("columns", ["30", "40", "80"])
def test_the_step_marker_is_whole_on_a_downsampled_grid(columns: str) -> None:
    result = run_cli("show-mask", "100", "--window", "8", "--step", "50", env={"COLUMNS": columns})
    marked = [line for line in result.stdout.splitlines() if "◀" in line or "^ step" in line]
    assert len(marked) == 1
    assert marked[0].endswith(" ◀ step") or marked[0].strip() == "^ step 50"
    assert all(len(line) <= int(columns) for line in result.stdout.splitlines())


def resolution(stdout: str) -> list[str]:
    """What a drawn grid resolves, spacing, labels and the step marker aside: how it
    pools positions, then each line's row number(s) and glyphs."""
    lines = []
    for line in grid_lines(stdout):
        if line.startswith(GLYPH_ALLOWED + " "):  # the legend: the grid is over
            break
        lines.append(line)
    pooled = re.findall(
        r"each cell covers [\d,]+ x [\d,]+|rows pooled [\d,]+", flat("\n".join(lines))
    )
    rows = []
    for line in lines:
        words = line.split()
        glyphs = "".join(
            w for w in words[1:] if set(w) <= {GLYPH_ALLOWED, GLYPH_BLOCKED, GLYPH_PARTIAL}
        )
        if glyphs:
            rows.append(f"{words[0]} {glyphs}")
    return pooled + rows


@pytest.mark.parametrize("columns", ["15", "20", "21"])
def test_a_step_marker_that_does_not_fit_never_costs_resolution(columns: str) -> None:
    out = run_cli("show-mask", "12", "--step", "9", env={"COLUMNS": columns}).stdout
    lines = grid_lines(out)
    rows = [line for line in lines if re.fullmatch(r" ?\d+ [●○]{12}", line)]
    assert len(rows) == 12 and "downsampled" not in out
    under = lines[lines.index(rows[8]) + 1]  # on its own line under its row, naming it
    assert under == "   ^ step 9"
    assert max(len(line) for line in lines) <= int(columns)


@pytest.mark.parametrize("args", [["12"], ["100", "--window", "8"], ["70", "--kind", "strict"]])
def test_the_step_marker_never_changes_what_the_grid_resolves(args: list[str]) -> None:
    for columns in map(str, range(12, 130, 3)):
        bare = run_cli("show-mask", *args, env={"COLUMNS": columns}).stdout
        marked = run_cli("show-mask", *args, "--step", "9", env={"COLUMNS": columns}).stdout
        assert resolution(marked) == resolution(bare), columns
        assert "◀ step" in marked or "^ step 9" in marked, columns


def test_over_long_labels_are_cut_with_an_ellipsis_before_any_key_is_pooled() -> None:
    out = run_cli(
        "show-mask", "4", "--text", "abcdefghijklmnopqrstuvwxyz b c d", env={"COLUMNS": "20"}
    ).stdout
    rows = [line.split() for line in grid_lines(out) if re.match(r"\d ", line)]
    assert "downsampled" not in out and [row[2] for row in rows] == ["●○○○", "●●○○", "●●●○", "●●●●"]
    assert rows[0][1].startswith("abcdefgh") and rows[0][1].endswith("…")
    assert [row[1] for row in rows[1:]] == ["b", "c", "d"]
    assert max(len(line) for line in grid_lines(out)) <= 20


@pytest.mark.parametrize("words", [list("abcdefghijkl"), [f"token{i}" * 3 for i in range(12)]])
def test_labels_never_cost_a_key_its_column(words: list[str]) -> None:
    for columns in map(str, range(10, 60, 2)):
        bare = run_cli("show-mask", "12", env={"COLUMNS": columns}).stdout
        labelled = run_cli("show-mask", "12", "--text", " ".join(words), env={"COLUMNS": columns})
        assert resolution(labelled.stdout) == resolution(bare), columns


@pytest.mark.parametrize(
    ("n", "columns", "why"),
    [
        ("70", "200", "a line holds several queries"),  # rows pool past 64 queries
        ("12", "10", "a line holds several queries"),  # downsampled
        ("12", "16", "no room beside the grid"),  # one column per key fits, a label does not
    ],
)
def test_labels_left_out_are_said_to_be_left_out(n: str, columns: str, why: str) -> None:
    words = " ".join(f"w{i}" for i in range(int(n)))
    out = run_cli("show-mask", n, "--text", words, env={"COLUMNS": columns}).stdout
    assert f"labels not shown: {why}" in flat(out)
    assert "w1" not in out


def test_row_numbers_are_right_aligned_so_token_labels_line_up() -> None:
    lines = run_cli("show-mask", "11", "--text", "a b c d e f g h i j k").stdout.splitlines()
    assert [line[:5] for line in lines[10:13]] == [" 9 i ", "10 j ", "11 k "]


@pytest.mark.parametrize(("columns", "cell"), [("80", 2), ("50", 1)])
def test_a_mask_too_wide_to_number_every_key_keeps_one_glyph_per_key(
    columns: str, cell: int
) -> None:
    out = run_cli("show-mask", "31", "--window", "3", env={"COLUMNS": columns}).stdout
    lines = out.splitlines()
    rows = [line for line in lines if line[:2].strip().isdigit() and "●" in line]
    assert len(rows) == 31 and "downsampled" not in out
    for q, line in enumerate(rows, start=1):
        glyphs = line[3::cell]  # after the right-aligned row number and a space
        assert glyphs == "".join("●" if q - 3 < k <= q else "○" for k in range(1, 32)), q
    ruler = next(line for line in lines if line.startswith("   1 "))
    for number in (1, 10, 20, 30):  # each number starts over its own key's column
        assert ruler.index(str(number), 3 if number == 1 else 4) == 3 + cell * (number - 1)
    assert max(len(line) for line in lines) <= int(columns)


def test_masks_with_many_rows_pool_rows_but_keep_one_column_per_key() -> None:
    from maskviz import masks

    out = run_cli("show-mask", "65", "--window", "3", "--step", "9").stdout
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+(–\d+)? [●○◐]", line)]
    expected = masks.build(65, window=3).blocks(2, 1)
    assert len(rows) == 33 and "rows pooled 2 per line" in out
    for i, line in enumerate(rows):
        span = f"{2 * i + 1}–{2 * i + 2}" if i < 32 else "65"  # each line names its rows
        assert line.split()[0] == span
        assert line.split()[1] == "".join("○◐●"[s] for s in expected[i]), span
    assert "◀ step" in rows[4] and rows[4].split()[0] == "9–10"  # the block holding row 9


@pytest.mark.parametrize("columns", [40, 80])
def test_a_pooled_grid_names_its_keys_on_one_line_at_any_width(columns: int) -> None:
    args = ("show-mask", "1000000", "--window", "4096", "--plain")
    out = run_cli(*args, env={"COLUMNS": str(columns)}).stdout.splitlines()
    header = next(line for line in out if "per column" in line)
    assert header.lstrip().startswith("keys 1–1000000 →")  # not wrapped after the indent
    assert max(map(len, out)) <= columns


def test_characters_the_figure_font_lacks_are_drawn_as_escapes_on_both_axes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    from maskviz.render import figures

    drawn: list[Figure] = []
    real = figures.mask_figure
    monkeypatch.setattr(
        figures, "mask_figure", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1]
    )
    result = run_cli("show-mask", "3", "--text", "日本 語 x", "--save", str(tmp_path / "m.png"))
    assert result.exit_code == 0
    assert result.stderr == ""  # no empty boxes to warn about
    (ax,) = [ax for ax in drawn[0].axes if ax.images]
    expected = ["1 \\u65e5\\u672c", "2 \\u8a9e", "3 x"]  # as attention figures escape them
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == expected


def test_labels_with_dollar_signs_are_drawn_as_text_not_typeset(tmp_path: Path) -> None:
    from maskviz import masks
    from maskviz.render.figures import mask_figure

    result = run_cli("show-mask", "3", "--text", "$x_$ b c", "--save", str(tmp_path / "m.png"))
    assert result.exit_code == 0, result.stderr  # "$x_$" is not a formula that fails to parse
    fig = mask_figure(masks.causal(3), labels=["$x^2$", "b", "c"])
    labels = fig.axes[0].get_yticklabels()
    assert labels[0].get_text() == "1 $x^2$"
    assert not any(label.get_parse_math() for label in labels)


def test_vector_pictures_hold_one_pixel_per_cell_drawn_sharp(tmp_path: Path) -> None:
    path = tmp_path / "m.svg"
    assert run_cli("show-mask", "6", "--save", str(path)).exit_code == 0
    tag = re.search(r"<image [^>]*>", path.read_text())
    assert tag is not None
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', tag.group(0)))  # in any order
    assert (attributes["width"], attributes["height"]) == ("6", "6")
    assert "pixelated" in attributes["style"]


def test_big_mask_pictures_write_numbers_with_thousands_separators(tmp_path: Path) -> None:
    from maskviz import masks
    from maskviz.render.figures import mask_figure

    fig = mask_figure(masks.causal(1_000_000))
    assert "1,000,000\u00a0x\u00a01,000,000" in fig.axes[0].get_title()  # never broken
    assert "(downsampled: one cell = 1,954 x 1,954 positions)" in fig.axes[0].get_title()
