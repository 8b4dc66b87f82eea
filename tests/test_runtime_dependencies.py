"""What a plain `pip install .` gives: the CLI runs on the declared runtime dependencies.

The test environment has more packages (the ``hf`` and ``test`` extras and what they
pull in, such as click through huggingface_hub), so a stray import would pass every
other test and fail for a user. Each command here runs in a fresh interpreter in which
importing any of those packages fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOT_INSTALLED = ("click", "tokenizers", "huggingface_hub", "threadpoolctl", "torch", "transformers")

RUN_WITHOUT = f"""
import importlib.abc, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {NOT_INSTALLED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, Missing())
sys.argv = ["maskviz", *sys.argv[1:]]
from maskviz.__main__ import main  # the console script's entry point
main()
"""


def run_without_extras(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("show-mask", "6", "--plain"), "● may attend"),
        (("trace", "To be", "--steps", "3", "--plain"), "no mask applied at any step"),
        (("trace", "To be", "--model", "tiny-swa", "--steps", "3"), "sliding window 32"),
        (("compare", "training-vs-cached", "--steps", "3", "--plain"), "max |Δ|"),
    ],
)
def test_commands_run_without_optional_packages(args: tuple[str, ...], says: str) -> None:
    result = run_without_extras(*args)
    assert (result.returncode, result.stderr) == (0, "")
    assert says in " ".join(result.stdout.split())


def test_usage_errors_stay_one_line_without_optional_packages() -> None:
    result = run_without_extras("show-mask", "6", "--kind", "casual")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "maskviz: error: Invalid value for '--kind' / '-k': 'casual' is not one of 'causal', "
        "'strict', 'bidirectional', 'prefix-lm'; did you mean 'causal'?"
    ]


def test_a_tokenizer_json_model_names_the_missing_extra() -> None:
    fixture = Path(__file__).parent / "fixtures" / "llama-tiny"
    result = run_without_extras("trace", "hi", "--model", str(fixture))
    assert result.returncode == 1  # not a usage error: the command line was right
    assert "pip install 'maskviz[hf]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
