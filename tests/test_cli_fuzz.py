"""Hostile command lines: every command ends with exit 0, 1 or 2 and one clean message.

Hypothesis builds argument lists from each command's real options, filled with
numbers (tiny, negative, huge), empty and unicode strings, control characters and
paths to folders, missing folders and unwritable places. Sizes that would need
absurd memory must be refused up front, so every run here is quick.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli

FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")

numbers = st.one_of(
    st.integers(-3, 40).map(str),
    st.sampled_from(
        ["0", "-1", "10000001", "1000000000", "10**9", "9" * 30, "1e3", "nan", "inf", "-0", "2.5"]
    ),
)
words = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "all",
            "mean",
            "max",
            "left",
            "right",
            "3,2,1",
            "1,,2",
            "float16",
            "\x1b[2J",
            "\r\n",
            "\u202e",
            "猫🐈",
        ]
    ),
    st.text(max_size=10),
)
OPTIONS: dict[str, dict[str, st.SearchStrategy[str] | None]] = {
    "show-mask": {
        "--kind": st.sampled_from(["causal", "strict", "bidirectional", "prefix-lm", "nope"]),
        "--window": numbers, "--prefix": numbers, "--docs": words, "--chunk": numbers,
        "--pad": numbers, "--pad-side": words, "--step": numbers, "--text": words,
        "--index-base": numbers, "--plain": None, "--json": None, "--save": None,
    },
    "trace": {
        "--steps": numbers, "--dtype": st.sampled_from(["float32", "float64", "float16"]),
        "--temperature": numbers, "--top-k": numbers, "--seed": numbers, "--layer": numbers,
        "--head": numbers, "--heads": words, "--agg": words, "--mode": words, "--plain": None,
        "--json": None, "--save": None,
    },
    "compare": {
        "--prompt": words, "--steps": numbers, "--layer": numbers, "--head": numbers,
        "--dtype": words, "--plain": None, "--json": None, "--save": None,
    },
    "similarity": {
        "--delimiter": words, "--layer": numbers, "--head": numbers, "--plain": None, "--json": None,
        "--save": None,
    },
    "doctor": {"--json": None},
}  # fmt: skip
POSITIONAL = {
    "show-mask": [numbers],
    "trace": [words],
    "compare": [
        st.sampled_from(["training-vs-cached", "unmasked-vs-cached", "padded-vs-cached", "x"])
    ],
    "similarity": [words, words],
    "doctor": [],
}


@st.composite
def command_lines(draw: st.DrawFn, tmp: Path) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    args = [command] + [draw(s) for s in POSITIONAL[command]]
    paths = st.sampled_from(
        [str(tmp / "out.png"), str(tmp / "out.gif"), str(tmp / "out.npz"), str(tmp / "out.json"), str(tmp),
         str(tmp / "missing" / "x.png"), "/proc/maskviz.png", "", str(tmp / "noext")]
    )  # fmt: skip
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([*OPTIONS[command], "--bogus", "-x"]))
        value = OPTIONS[command].get(name)
        args.append(name)
        if name == "--save":
            args.append(draw(paths))
        elif value is not None:
            args.append(draw(value))
        elif name in ("--bogus", "-x"):
            args.append(draw(words))
    if command in ("trace", "compare", "similarity") and draw(st.booleans()):
        args += ["--model", FIXTURE]
    elif command in ("trace", "compare", "similarity"):
        args += ["--model", draw(st.sampled_from([FIXTURE, "", "/nonexistent/dir", str(tmp)]))]
    return args


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_command_line_ends_cleanly(tmp_path: Path, data: st.DataObject) -> None:
    args = data.draw(command_lines(tmp_path))
    result = run_cli(*args)  # an uncaught exception would be raised here
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr, (args, result.stderr)
    # no byte of user or model text reaches the terminal raw (JSON escapes it too)
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in result.stdout + result.stderr, (args, raw)
    if result.exit_code == 2:
        assert result.stderr, args
    if result.stderr:
        assert result.stderr.startswith("maskviz: error: "), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers == [], args
