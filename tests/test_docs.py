"""The docs show what the tool prints today: transcripts and docs/cli.md are checked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_generator() -> object:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_transcript_and_the_cli_reference_are_current(
    capsys: pytest.CaptureFixture[str],
) -> None:
    generator = load_generator()
    code = generator.main(check=True)  # type: ignore[attr-defined]
    assert code == 0, capsys.readouterr().out


def test_every_picture_the_docs_link_exists() -> None:
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links missing {target}"


def test_timings_are_the_only_thing_the_check_ignores() -> None:
    generator = load_generator()
    normalise = generator.normalise  # type: ignore[attr-defined]
    assert normalise("prefill 1.2 ms, 0.32 ms per step") == normalise(
        "prefill 9.9 ms, 1.00 ms per step"
    )
    assert normalise("21 of 36 cells") != normalise("22 of 36 cells")


def test_rows_of_times_in_tables_are_ignored_by_the_check() -> None:
    generator = load_generator()
    normalise = generator.normalise  # type: ignore[attr-defined]
    fast = "time, ms      2.3     10.7   0.21x\nms per step, first   -   1.09\nMACs  66,696,000"
    slow = "time, ms  32712.3  91410.7  12.21x\nms per step, first   -  411.09\nMACs  66,696,000"
    assert normalise(fast) == normalise(slow)
    assert normalise(fast) != normalise(fast.replace("66,696,000", "66,696,001"))
