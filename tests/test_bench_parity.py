"""The benchmark's gate on published speed figures: transformers must choose maskviz's
greedy tokens, or leave them only at a near tie (bench/decode.py `_parity`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DECODE = Path(__file__).resolve().parent.parent / "bench" / "decode.py"


@pytest.fixture(scope="module")
def parity() -> Any:
    spec = importlib.util.spec_from_file_location("bench_decode", DECODE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._parity


def _run(steps: int = 6, vocab: int = 5) -> tuple[list[int], list[Any], Any]:
    """maskviz's greedy tokens, transformers' rows (off by 1e-4) and maskviz's rows."""
    decided = np.random.default_rng(0).normal(size=(steps + 1, vocab)).astype(np.float32)
    ours = [int(row.argmax()) for row in decided[:steps]]
    rows = [decided[k + 1] + np.float32(1e-4) for k in range(steps)]
    return ours, rows, decided


def _runner_up(row: Any) -> int:
    return int(np.argsort(row)[-2])


def test_identical_tokens_agree_with_the_largest_logit_difference(parity: Any) -> None:
    ours, rows, decided = _run()
    out = parity(ours, {"loop": ours, "generate": list(ours)}, rows, decided)
    assert out["tokens_agree"] and out["steps"] == 6
    assert out["max_abs_diff_logits"] == pytest.approx(1e-4, rel=1e-2)
    assert "near_tie" not in out


def test_a_difference_between_logits_closer_than_the_engines_differ_is_a_near_tie(
    parity: Any,
) -> None:
    ours, rows, decided = _run()
    second = _runner_up(decided[3])
    decided[3, second] = decided[3].max() - np.float32(5e-5)  # closer than 1e-4
    rows[2] = decided[3] + np.float32(1e-4)
    theirs = [*ours[:3], second, 0, 0]  # past the tie the sequences part
    out = parity(ours, {"loop": theirs, "generate": ours}, rows, decided)
    assert not out["tokens_agree"] and out["generate_tokens_agree"]
    assert out["first_difference"] == 3 and out["near_tie"]
    assert out["tie_gap"] == pytest.approx(5e-5, rel=0.1)
    # only the rows before the difference are compared: later ones are other sequences
    rows[4] = rows[4] + np.float32(9.0)
    assert parity(ours, {"loop": theirs}, rows, decided)["max_abs_diff_logits"] < 1e-3


def test_a_difference_between_distant_logits_is_no_tie(parity: Any) -> None:
    ours, rows, decided = _run()
    second = _runner_up(decided[3])
    theirs = [*ours[:3], second, *ours[4:]]
    out = parity(ours, {"loop": theirs}, rows, decided)
    assert out["first_difference"] == 3 and not out["near_tie"]
    assert out["tie_gap"] > 10 * out["max_abs_diff_logits"]


def test_a_run_that_stopped_early_is_no_tie(parity: Any) -> None:
    ours, rows, decided = _run()
    out = parity(ours, {"loop": ours, "generate": ours[:2]}, rows, decided)
    assert out["first_difference"] == 2 and not out["near_tie"]
    assert not out["generate_tokens_agree"] and out["loop_tokens_agree"]
