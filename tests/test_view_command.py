"""`maskviz view FILE`: a saved trace drawn again, exactly as `trace` drew it, without the model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("choice", [[], ["--layer", "2", "--heads", "all"], ["--agg", "max"]])
def test_view_redraws_what_trace_saved(tmp_path: Path, suffix: str, choice: list[str]) -> None:
    path = tmp_path / f"t{suffix}"
    traced = run_cli(
        "trace", "To be, or not to be", "--steps", "6", "--plain", *choice, "--save", str(path)
    )
    assert traced.exit_code == 0, traced.stderr
    viewed = run_cli("view", str(path), "--plain", *choice)
    assert viewed.exit_code == 0, viewed.stderr
    assert viewed.stdout == traced.stdout.removesuffix(f"saved {path}\n")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_trace_saved_by_0_1_0_still_opens(suffix: str) -> None:
    result = run_cli("view", str(FIXTURES / f"trace-0.1.0{suffix}"), "--plain")
    assert result.exit_code == 0, result.stderr
    assert "mode cached · greedy" in result.stdout
    assert result.stdout.count("\n1 ") + result.stdout.count("\n 1 ") >= 1


def test_view_saves_pictures_and_converts_traces(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    assert run_cli("trace", "To be", "--steps", "3", "--save", str(path)).exit_code == 0
    for name in ("again.png", "again.json", "again.gif"):
        result = run_cli("view", str(path), "--save", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.npz"], 1, "no such file"),
        (["pipe.npz"], 1, "pipe.npz: not a regular file"),
        (["garbage.npz"], 1, "cannot read trace"),
        (["t.npz", "--layer", "9"], 2, "--layer 9 was not recorded"),
        (["t.npz", "--head", "1", "--agg", "mean"], 2, "--head cannot be combined with --agg"),
        (["t.npz", "--save", "x.txt"], 2, "extension '.txt'"),
    ],
)
def test_files_it_cannot_trust_and_bad_choices_get_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    os.mkfifo(tmp_path / "pipe.npz")  # there, but reading it would wait forever
    assert (
        run_cli("trace", "To be", "--steps", "2", "--save", str(tmp_path / "t.npz")).exit_code == 0
    )
    args = [str(tmp_path / a) if a.endswith((".npz", ".txt")) else a for a in args]
    result = run_cli("view", *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_trace_that_recorded_no_head_is_a_usage_error(tmp_path: Path) -> None:
    from maskviz import load_model

    path = tmp_path / "t.npz"
    load_model().trace([84, 111], steps=1, heads=[]).save(path)
    result = run_cli("view", str(path))
    assert result.exit_code == 2
    assert "recorded no attention head" in result.stderr
